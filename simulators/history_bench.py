"""Benchmark of the replay-history writer (``parkwatch bench history``): 30 simulated days of a
200-meter park at 1-minute resolution by default — the target is under a minute — with a
random fault schedule for the seed. Returns (and the CLI prints) one JSON-able dict."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from simulators.history import write_history
from simulators.synthetic import synthetic_park

START = datetime(2024, 11, 1, tzinfo=ZoneInfo("Asia/Shanghai"))  # fixed: reproducible runs


def bench_history(
    days: float = 30,
    meters: int = 200,
    step_s: float = 60,
    seed: int = 0,
    gzip: bool = True,
    faults: bool = True,
) -> dict[str, object]:
    park = synthetic_park(meters, seed)
    with tempfile.TemporaryDirectory() as tmp:
        summary = write_history(
            park,
            days,
            Path(tmp),
            seed=seed,
            step_s=step_s,
            gzip=gzip,
            start=START,
            faults=None if faults else [],
        )
        size = Path(summary.readings_path).stat().st_size
    return {
        "days": days,
        "meters": summary.meters,
        "series": summary.series,
        "step_s": step_s,
        "gzip": gzip,
        "faults": summary.faults,
        "rows": summary.rows,
        "seconds": summary.seconds,
        "rows_per_s": round(summary.rows_per_s),
        "bytes": size,
    }
