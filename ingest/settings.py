"""Ingest settings (env prefix ``PW_INGEST_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from parkwatch.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PW_INGEST_", env_nested_delimiter="__", extra="ignore"
    )

    # a stable id per replica: the broker keeps its session (and unacknowledged messages)
    client_id: str = "ingest-0"
    # Empty: one replica owns the data topics through a plain persistent subscription. A group
    # name: replicas share the load through the MQTT v5 shared subscription
    # $share/<group>/pw/v1/+/+/data. Mosquitto 2.0.11 does not restore shared subscriptions
    # from its persistence file, so across a broker restart the group loses what is published
    # before the replicas subscribe again; use parks (below) to shard on such a broker.
    share_group: str = ""
    # per-gateway seq tracking (gaps, late batches, replays, restarts). Unset: on, except with
    # a share group — the broker spreads each gateway's batches over the group, so a replica
    # sees only part of a sequence and would count the rest as gaps. On with a share group
    # only when the group has one replica; shard by park (below) to keep it with replicas.
    track_seq: bool | None = None
    # Empty: every park. Otherwise only these parks' data topics — sharding by park, which
    # survives broker restarts on any broker.
    parks: list[str] = Field(default_factory=list)
    session_expiry_s: int = Field(default=86_400, ge=0)
    # most unacknowledged messages the broker may send us (MQTT v5 flow control). Gateways
    # send one small message per poll: with a small window the broker waits for our
    # acknowledgements more than we work (256 capped one reading per message at ~680/s).
    # Half of it is the flush trigger (see ingest.service); max_held_bytes bounds memory.
    # 65,535 (the most MQTT allows) cut the CPU per reading of ingest, Mosquitto and InfluxDB
    # by about a third at one reading per message in a burst, but under a steady load its
    # publish → readable p99 passed a second (2026-12-03, docs/architecture.md): not the default
    receive_maximum: int = Field(default=4096, ge=2, le=65_535)
    # payload bytes handed over and not yet acknowledged; above it ingest stops reading the
    # socket until acknowledgements free room (large messages are bounded by this, not count)
    max_held_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024)
    # large batches: InfluxDB spends less CPU per point (measured: 4.5 µs at 20k vs 5.8 at 5k)
    batch_lines: int = Field(default=20_000, ge=1)
    # opt-in (0: off): while no write is in flight, a batch goes at this many lines instead of
    # batch_lines. Off by default: paced at 100,000 readings/s (1,000 per message, 2026-12-03)
    # p99 publish → readable was 0.28–0.78 s off, under the one-second goal, and 0.22 s in the
    # only two runs at 10,000 — made on a busier machine than the off runs, so the gain is
    # suggestive, not established — for ~25 % more InfluxDB CPU per point (~5.0 → 6.26 µs) and
    # ingest 2.90–3.02 → 3.33 µs per reading. Must be below batch_lines.
    idle_flush_lines: int = Field(default=0, ge=0)
    flush_interval_s: float = Field(default=0.25, gt=0)
    # after a read of messages under 64 KiB, leave the socket unread this long (0: no pause,
    # the small messages' one below included), so that the next read takes what came
    # meanwhile: per read ingest pays a task, the loop's steps and a write of acknowledgements
    # whatever the read holds, which at one reading per message was most of its CPU
    # (docs/architecture.md, *Reads coalesced*). A message waits at most this much more (the
    # small messages' pause, if longer); one after a quiet spell is read at once.
    read_pause_ms: float = Field(default=10.0, ge=0, le=1000)
    # ... and this long instead (if read_pause_ms is not 0) when the read's messages average
    # under small_message_bytes (one reading a message is ~140 bytes, ten ~800): there a
    # read's cost is shared by the fewest readings. 25 ms: at one reading per message ~380 →
    # ~720 messages a read, ingest's CPU per reading −12 %; for all reads it only added
    # latency at 10 per message (p99 ~400 → ~530–600 ms, no CPU gained; 2026-12-05, *A longer
    # read pause*)
    small_message_pause_ms: float = Field(default=25.0, ge=0, le=1000)
    small_message_bytes: int = Field(default=400, ge=0)
    writes_in_flight: int = Field(default=4, ge=1)
    # 0: plain text. With the database on the same host or LAN, gzip cost both sides CPU
    # (2026-12-03: level 1 added ~0.25 µs per reading to ingest and ~0.1–0.3 µs per point to
    # InfluxDB's inflating); set 1 when the database is across a slow link
    gzip_level: int = Field(default=0, ge=0, le=9)
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # the event loop ingest runs on. uvloop (libuv, in C) saved no CPU per reading beyond the
    # runs' spread in alternating bench runs (2026-12-03, docs/architecture.md, *The MQTT
    # client*): opt-in, kept so that a quieter machine can settle it
    event_loop: Literal["asyncio", "uvloop"] = "asyncio"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0)  # /metrics and /health; 0 = no HTTP server

    @model_validator(mode="after")
    def _idle_flush_below_batch(self) -> IngestSettings:
        # at or above batch_lines the idle rule could never fire before the size rule: a
        # setting that silently does nothing is a mistake worth reporting
        if self.idle_flush_lines and self.idle_flush_lines >= self.batch_lines:
            raise ValueError(
                f"idle_flush_lines ({self.idle_flush_lines}) must be below batch_lines "
                f"({self.batch_lines}), or 0 to turn the idle flush off"
            )
        return self
