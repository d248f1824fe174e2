"""``parkwatch bench ingest-path``: ingest's CPU per reading in one process, part by part.

The end-to-end bench (``parkwatch bench ingest``) says how much CPU ingest spends per reading
beside InfluxDB; this one says where, without a broker or a database: payloads built as the
load generator builds them (N meters per message, two values each) are framed as MQTT
PUBLISH packets and then

* *parse*: :func:`parkwatch.wire.parse_batch` alone, message by message;
* *encode*: :func:`ingest.service.encode_lines` alone, a chunk's readings at a time;
* *path*: everything ingest does in its own code for a chunk — the MQTT client's parsing of
  the bytes, :meth:`IngestService._handle` (parse, seq and counter tracking, encoding,
  bookkeeping) with a writer that joins each batch (and gzips it, at ingest's gzip level) as
  the real one does but sends nothing, and the acknowledgements — which leaves out the event
  loop's and HTTP's share.

Each is timed as process CPU over every message, best of ``repeats``, with the garbage
collector tuned as ingest tunes it; µs per reading.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import time
from collections.abc import Callable, Sequence
from typing import Any

import mqtt5

from ingest.service import AckTracker, IngestService, encode_lines, tune_gc
from ingest.settings import IngestSettings
from parkwatch import hotpath, topics
from parkwatch.mqttio import FastClient, _Protocol
from parkwatch.settings import MqttSettings
from parkwatch.site import SiteRegistry
from parkwatch.wire import Limits, ParsedBatch, encode_batch, parse_batch
from simulators.load import LoadPlan, expected_value, gateway_id, load_park, meter_id

_START_MS = 1_700_000_000_000


def _payloads(gateways: int, meters: int, cycles: int) -> list[tuple[str, bytes]]:
    """(topic, payload) per message, in the order the load generator's gateways interleave."""
    out = []
    for c in range(cycles):
        for g in range(gateways):
            t = _START_MS + c * 1000
            readings = [
                {
                    "m": meter_id(g, j),
                    "t": t,
                    "q": {"p_kw": expected_value(c, j), "e_kwh": 1e5 + c + j},
                }
                for j in range(meters)
            ]
            out.append(
                (
                    topics.data_topic("load", gateway_id(g)),
                    encode_batch(gateway_id(g), c + 1, readings),
                )
            )
    return out


def _cpu_us(run: Callable[[], object], readings: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        tune_gc()  # as ingest runs
        began = time.process_time()
        run()
        best = min(best, time.process_time() - began)
    return best / readings * 1e6


class _Transport(asyncio.Transport):
    """Takes what the client writes (acknowledgements) and drops it."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _Writer:
    """InfluxWriter's CPU without the network: lines are batched, joined and gzip'd."""

    def __init__(self, batch_lines: int, gzip_level: int) -> None:
        self.batch_lines = batch_lines
        self.gzip_level = gzip_level
        self.lines: list[str] = []
        self.written = 0

    async def write(self, lines: Sequence[str], units: int = 0) -> None:
        self.lines.extend(lines)
        if len(self.lines) >= self.batch_lines:
            self.flush()

    def flush(self) -> None:
        body = ("\n".join(self.lines) + "\n").encode()
        if self.gzip_level:
            body = gzip.compress(body, self.gzip_level)
        self.written += len(self.lines)
        self.lines = []


def _path(
    service: IngestService, packets: list[bytes], gzip_level: int, batch_lines: int, total: int
) -> Callable[[], object]:
    """One run of the whole in-process path over every chunk of packets (``total`` readings)."""

    async def run() -> None:
        client = FastClient(MqttSettings(), "bench")
        client._transport = _Transport()
        protocol = _Protocol(client)
        writer = _Writer(batch_lines, gzip_level)
        acks = AckTracker(client.release)
        for data in packets:
            protocol.data_received(data)
            while client._inbox:
                chunk = client._inbox.popleft()
                entry = acks.received(chunk)
                await service._handle(client, writer, chunk)  # type: ignore[arg-type]
                acks.done(entry)
        writer.flush()
        if writer.written != total or len(acks) or client._held:
            raise RuntimeError(f"{writer.written} of {total} readings written, {len(acks)} unacked")

    def once() -> None:
        asyncio.run(run())

    return once


def bench_ingest_path(
    meters: Sequence[int],
    readings: int = 200_000,
    chunk: int = 64,
    repeats: int = 3,
    gzip_level: int | None = None,
) -> dict[str, Any]:
    """µs of CPU per reading for parse, encode and the whole in-process path, per batch size.
    ``chunk``: messages per socket read (ingest sees 10s to 100s at a time under load);
    ``gzip_level``: the batch bodies' compression (default: ingest's setting)."""
    level = IngestSettings().gzip_level if gzip_level is None else gzip_level
    # the runs tune the GC as ingest does; the caller's process gets its own settings back
    threshold = gc.get_threshold()
    try:
        per_meters = {str(n): _one_size(n, readings, chunk, repeats, level) for n in meters}
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    return {
        "readings": readings,
        "messages_per_chunk": chunk,
        "gzip_level": level,
        # the loops measured: compiled (parkwatch._hotpath) or the Python fallback
        "compiled": hotpath.COMPILED,
        "per_meters": per_meters,
    }


def _one_size(n: int, readings: int, chunk: int, repeats: int, level: int) -> dict[str, Any]:
    gateways = 10
    cycles = max(1, readings // (gateways * n))
    messages = _payloads(gateways, n, cycles)
    total = len(messages) * n
    registry = SiteRegistry([load_park(LoadPlan(gateways=gateways, meters=n))])
    now_ms = _START_MS + cycles * 1000
    limits = Limits()
    parsed_topics = [(topics.parse_data_topic(t), payload) for t, payload in messages]
    parsed: list[ParsedBatch] = []

    def parse() -> None:
        parsed.clear()
        for data_topic, payload in parsed_topics:
            parsed.append(parse_batch(payload, data_topic, registry, now_ms, limits))

    parse_us = _cpu_us(parse, total, repeats)
    accepted = [r for batch in parsed for r in batch.readings]
    if len(accepted) != total:
        raise RuntimeError(f"{total - len(accepted)} readings rejected")
    per_chunk = max(1, chunk * n)
    groups = [accepted[i : i + per_chunk] for i in range(0, total, per_chunk)]

    def encode() -> None:
        for group in groups:
            encode_lines(group)

    encode_us = _cpu_us(encode, total, repeats)
    packets = [
        b"".join(
            mqtt5.PublishPacket(
                topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=(start + i) % 65_535 + 1
            ).write()
            for i, (topic, payload) in enumerate(messages[start : start + chunk])
        )
        for start in range(0, len(messages), chunk)
    ]
    settings = IngestSettings()
    path_us = []
    for _ in range(repeats):
        # a fresh service each run: seq and counter tracking see the stream once
        service = IngestService(settings, registry, clock=lambda: now_ms / 1000)
        run = _path(service, packets, level, settings.batch_lines, total)
        path_us.append(_cpu_us(run, total, 1))
    return {
        "messages": len(messages),
        "parse_us_per_reading": round(parse_us, 3),
        "encode_us_per_reading": round(encode_us, 3),
        "path_us_per_reading": round(min(path_us), 3),
    }
