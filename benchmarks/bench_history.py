"""Benchmark of the replay-history writer: 30 simulated days of a 200-meter park at 1-minute
resolution (the target is under a minute), with a random fault schedule for the seed.

    .venv/bin/python benchmarks/bench_history.py [--days 30] [--meters 200] [--plain]

Prints one JSON line: rows, seconds, rows per second, bytes written.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from simulators.history import write_history
from simulators.synthetic import synthetic_park

START = datetime(2024, 11, 1, tzinfo=ZoneInfo("Asia/Shanghai"))  # fixed: reproducible runs


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--meters", type=int, default=200)
    parser.add_argument("--step", type=float, default=60, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="write CSV without gzip")
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="keep the files here")
    args = parser.parse_args(argv)
    park = synthetic_park(args.meters, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        summary = write_history(
            park,
            args.days,
            out,
            seed=args.seed,
            step_s=args.step,
            gzip=not args.plain,
            start=START,
            faults=[] if args.no_faults else None,
        )
        size = Path(summary.readings_path).stat().st_size
    result: dict[str, object] = {
        "days": args.days,
        "meters": summary.meters,
        "series": summary.series,
        "step_s": args.step,
        "gzip": not args.plain,
        "faults": summary.faults,
        "rows": summary.rows,
        "seconds": summary.seconds,
        "rows_per_s": round(summary.rows_per_s),
        "bytes": size,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
