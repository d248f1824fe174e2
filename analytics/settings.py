"""Analytics settings (env prefix ``PW_ANALYTICS_``)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from parkwatch.energy import ROLLUP_RETENTION_POLICY
from parkwatch.settings import ServiceSettings


def default_client_id() -> str:
    """Unique per worker: analytics keeps no broker session (it refills from InfluxDB), and
    two workers with one id would throw each other off the broker."""
    return f"analytics-{socket.gethostname()}-{os.getpid()}"[:64]


class AnalyticsSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PW_ANALYTICS_", env_nested_delimiter="__", extra="ignore"
    )

    client_id: str = Field(default_factory=default_client_id)
    # how often complete slots are looked for when no message arrives (silent gateways)
    tick_s: float = Field(default=1.0, gt=0)
    # at start-up, history is read back from InfluxDB so a restart or a new worker loses no
    # context: after a usable snapshot, since its time; with none (a new worker, no state_dir,
    # a snapshot of another version), or a snapshot older, ``rebuild_s``: as far back as the
    # detectors remember — a water zone counts young for 35 days (leaks ``young_days``), which
    # also covers the leak baselines' 21 days, a month's peaks and waste heat's 14 days
    rebuild_s: float = Field(default=35 * 86_400, ge=0)
    # a refill writes from the earlier worker's progress mark (``analytics_progress``); with
    # none, a rebuild writes the event messages and derived points of the last ``warmup_s``
    # only (older ones are taken for stored), and the rollups catch up this far
    warmup_s: float = Field(default=6 * 3600, ge=0)
    # of the messages a refill writes after an earlier worker's mark (an outage's, nobody
    # published them) only those of the last ``publish_late_s`` are published, and the latest
    # of each event still open (all marked ``"late": true``): a week's outage is not a burst
    # of hundreds of alerts that ended days ago (InfluxDB has them all)
    publish_late_s: float = Field(default=6 * 3600, ge=0)
    # history is read and fed a slice of this length at a time (bounded memory); a rebuild
    # starts on this grid (since // slice), so rebuilds within one slice give the same events
    history_slice_s: float = Field(default=86_400, ge=60)
    state_dir: Path | None = None  # where snapshots of the engine go (none: no snapshots)
    snapshot_s: float = Field(default=300.0, gt=0)
    http_host: str = "127.0.0.1"
    http_port: int | None = None  # /metrics and /health when set
    output_queue: int = Field(default=10_000, ge=1)  # events and points waiting to be written
    # the accounting's rollups (analytics/accounting/job.py): how often, where, how long raw
    # data is kept (an InfluxDB duration such as "400d"; None leaves the default policy alone)
    rollups: bool = True
    rollup_interval_s: float = Field(default=60.0, gt=0)
    rollup_recent_s: float = Field(default=900.0, gt=0)
    rollup_retention_policy: str | None = ROLLUP_RETENTION_POLICY
    raw_retention: str | None = None

    @field_validator("rollup_retention_policy")
    @classmethod
    def _default_policy(cls, value: str | None) -> str | None:
        # PW_..._ROLLUP_RETENTION_POLICY= (empty): the database's default policy
        return value or None
