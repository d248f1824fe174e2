"""Benchmark of the replay CSV reader (``parkwatch bench replay-read``).

Reads one readings file — by default a simulated history of 30 days × 200 meters at 1-minute
resolution (~33 million rows), written first if it is not there — with
:func:`parkwatch.readings_csv.read_readings`, gzip'd and plain, and, as the same-run reference,
with a straightforward reader on Python's ``csv`` module that builds the same columns. Each
reader runs in a child process of its own, so that its peak memory (``ru_maxrss``) is its own.
Returns (and the CLI prints as its last line) one JSON-able dict.
"""

from __future__ import annotations

import csv
import gzip
import multiprocessing
import resource
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from parkwatch.readings_csv import read_readings


def _fast(path: str) -> dict[str, Any]:
    began = time.perf_counter()
    readings = read_readings(path)
    seconds = time.perf_counter() - began
    return {"rows": len(readings), "bad_rows": len(readings.bad_rows), "seconds": seconds}


def _python_csv(path: str) -> dict[str, Any]:
    """The plain way: ``csv.reader``, ``int()`` and ``float()`` per row, names to codes with a
    dict, growing arrays — what a reader without a CSV library looks like."""
    began = time.perf_counter()
    opener = gzip.open if _packed(Path(path)) else open
    meters: dict[str, int] = {}
    quantities: dict[str, int] = {}
    t_ms: list[int] = []
    meter: list[int] = []
    quantity: list[int] = []
    value: list[float] = []
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader)]
        at = [header.index(c) for c in ("time", "meter", "quantity", "value")]
        for row in reader:
            t_ms.append(int(row[at[0]]))
            meter.append(meters.setdefault(row[at[1]], len(meters)))
            quantity.append(quantities.setdefault(row[at[2]], len(quantities)))
            value.append(float(row[at[3]]))
    columns = (
        np.array(t_ms, dtype=np.int64),
        np.array(meter, dtype=np.int32),
        np.array(quantity, dtype=np.int32),
        np.array(value, dtype=np.float64),
    )
    seconds = time.perf_counter() - began
    return {"rows": int(columns[0].size), "seconds": seconds}


def _packed(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _measured(job: str, path: str, queue: Any) -> None:
    result = _fast(path) if job == "fast" else _python_csv(path)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)  # the machine may be shared
    result["max_rss_mb"] = round(usage.ru_maxrss / 1024)
    queue.put(result)


def _in_child(job: str, path: Path) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_measured, args=(job, str(path), queue))
    child.start()
    result: dict[str, Any] = queue.get()
    child.join()
    result["seconds"] = round(result["seconds"], 2)
    result["rows_per_s"] = round(result["rows"] / result["seconds"]) if result["seconds"] else 0
    return result


def bench_replay_read(
    file: Path | None = None,
    work_dir: Path | None = None,
    days: float = 30,
    meters: int = 200,
    reference: bool = True,
) -> dict[str, Any]:
    """Times the reader on ``file`` (a gzip'd or plain readings CSV), or on a simulated history
    written to ``work_dir`` (default: the temporary directory; kept there for the next run)."""
    if file is None:
        from simulators.history import write_history
        from simulators.synthetic import synthetic_park

        work = work_dir or Path(tempfile.gettempdir()) / "parkwatch-bench-replay"
        file = work / "readings.csv.gz"
        if not file.exists():
            start = datetime.fromisoformat("2024-11-01T00:00:00+08:00")
            write_history(synthetic_park(meters, 0), days, work, start=start, gzip=True)
    out: dict[str, Any] = {"file": str(file), "bytes": file.stat().st_size}
    out["read_readings"] = _in_child("fast", file)
    if _packed(file):
        plain = file.with_name(file.name.removesuffix(".gz") + ".plain.csv")
        if not plain.exists():
            with gzip.open(file, "rb") as src, open(plain, "wb") as dst:
                while chunk := src.read(1 << 24):
                    dst.write(chunk)
        out["read_readings_plain"] = _in_child("fast", plain)
    if reference:
        out["python_csv"] = _in_child("python", file)
        out["ratio"] = round(out["python_csv"]["seconds"] / out["read_readings"]["seconds"], 1)
    return out
