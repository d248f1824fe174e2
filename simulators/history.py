"""Replayable history: a park's readings over days or months, written fast, with ground truth.

``write_history(park, days, out_dir)`` writes three files:

* ``readings.csv.gz`` (or ``readings.csv``): the replay format, header ``time,meter,quantity,
  value``, one value per row. ``time`` is epoch milliseconds (UTC) as the source stamped it
  (clock skew included), the same integer as a reading's ``t`` on the wire. Rows are in the
  order a platform would receive them: by poll cycle, meters in park order, quantities in the
  meter's order; a late batch appears where it arrives, a duplicated batch twice. ``value`` is
  in the quantity's registry unit with a fixed number of decimals per quantity
  (``simulators.model.DECIMALS``, rounded half to even); a value no real register would show (a
  word-swapped float: non-finite, beyond 1e10, or non-zero but too small for those decimals)
  is written ``%.9g`` (``nan``, ``1.5e+38``, ``2.1e-41``). Missing readings (communication
  loss) are simply absent.
* ``ground_truth.jsonl``: every injected fault (see :mod:`simulators.groundtruth`).
* ``history.json``: what was simulated (park, seed, start, end, step, rows, seconds).

Speed comes from never formatting a row in Python: the model computes whole blocks of
timestamps for every meter at once, and each block becomes CSV text at once
(:class:`parkwatch.readings_csv.CsvBlocks`, the format's one writer, which
:func:`~parkwatch.readings_csv.read_readings` reads back); gzip (level 1) runs in a second
thread.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from parkwatch.readings_csv import HEADER, CsvBlocks, ReadingsWriter, read_readings
from parkwatch.site import Park
from simulators.fault_layer import Delivery
from simulators.faults import Fault, random_schedule
from simulators.groundtruth import iso, records, write_ground_truth
from simulators.model import ParkModel

BoolArray = npt.NDArray[np.bool_]

__all__ = ["HEADER", "CsvBlocks", "HistorySummary", "main_history", "read_history", "write_history"]

DAY_MS = 86_400_000


@dataclass(frozen=True)
class HistorySummary:
    park: str
    seed: int
    start_ms: int
    end_ms: int
    step_s: float
    meters: int
    series: int
    rows: int
    faults: int
    seconds: float
    readings_path: str
    ground_truth_path: str

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["start"] = iso(self.start_ms)
        out["end"] = iso(self.end_ms)
        out["rows_per_s"] = round(self.rows_per_s)
        return out


def default_start(park: Park, days: float) -> int:
    """The history ends at the last local midnight before now and starts ``days`` before."""
    now = datetime.now(park.zone)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return int((midnight - timedelta(days=days)).timestamp() * 1000)


def write_history(
    park: Park,
    days: float,
    out_dir: Path | str,
    seed: int = 0,
    step_s: float = 60,
    gzip: bool = True,
    start: int | datetime | None = None,
    faults: Sequence[Fault] | None = None,
    chunk_s: float = 6 * 3600,
) -> HistorySummary:
    """Simulates ``days`` of ``park`` every ``step_s`` seconds and writes the history files.

    ``start``: epoch ms or an aware datetime (default: :func:`default_start`). ``faults``:
    the schedule to inject; None draws one at random for the seed (one fault of every kind
    the park has a target for), ``[]`` injects none.
    """
    began = time.perf_counter()
    if not (math.isfinite(step_s) and step_s >= 0.001):  # times are whole milliseconds
        raise ValueError(f"the step must be at least 0.001 s, not {step_s}")
    step_ms = round(step_s * 1000)
    # a history shorter than one step would still write the first poll cycle, and a negative
    # one a start after its end: neither is what was asked for
    if not (math.isfinite(days) and days * DAY_MS >= step_ms):
        raise ValueError(f"a history of {days} days is not at least one step ({step_s} s) long")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if start is None:
        start_ms = default_start(park, days)
    elif isinstance(start, datetime):
        start_ms = int(start.timestamp() * 1000)
    else:
        start_ms = int(start)
    end_ms = start_ms + round(days * DAY_MS)
    steps = max(1, -(-(end_ms - start_ms) // step_ms))
    if faults is None:
        faults = random_schedule(park, start_ms, end_ms, seed)
    model = ParkModel(park, seed, faults)
    model.prime(start_ms, step_ms)
    csv = CsvBlocks(model.series, model.decimals)
    path = out / ("readings.csv.gz" if gzip else "readings.csv")
    sink = ReadingsWriter(path, gzip)
    rows = 0
    pending: list[Delivery] = []
    per_chunk = max(1, round(chunk_s * 1000 / step_ms))
    try:
        for first in range(0, steps, per_chunk):
            times = start_ms + np.arange(first, min(first + per_chunk, steps)) * step_ms
            frame = model.frame(times, transport=True)
            text, ends = csv.format(times, frame.values, frame.present, frame.t_offset_ms)
            rows += _count_rows(frame.present, frame.values.shape)
            pending.extend(frame.deliveries)
            pending.sort(key=lambda d: d.arrival_ms)
            # late and duplicated batches go in right after the last poll cycle before they
            # arrive
            due = [d for d in pending if d.arrival_ms <= times[-1]]
            pending = pending[len(due) :]
            cut = 0
            for d in due:
                row = int(np.searchsorted(times, d.arrival_ms, side="right")) - 1
                at = int(ends[row]) if row >= 0 else 0
                sink.write(text[cut:at])
                cut = max(cut, at)
                sink.write(_delivery_text(csv, d))
                rows += d.columns.size
            sink.write(text[cut:])
        for d in pending:  # arriving after the end: still delivered
            sink.write(_delivery_text(csv, d))
            rows += d.columns.size
    finally:
        sink.close()
    seconds = time.perf_counter() - began
    details = model.fault_details()
    truth = out / "ground_truth.jsonl"
    write_ground_truth(truth, records(faults, details))
    summary = HistorySummary(
        park=park.park,
        seed=seed,
        start_ms=start_ms,
        end_ms=end_ms,
        step_s=step_s,
        meters=len(model.meters),
        series=len(model.series),
        rows=rows,
        faults=len(faults),
        seconds=round(seconds, 3),
        readings_path=str(path),
        ground_truth_path=str(truth),
    )
    (out / "history.json").write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    return summary


def _count_rows(present: BoolArray | None, shape: tuple[int, ...]) -> int:
    return int(np.prod(shape)) if present is None else int(present.sum())


def _delivery_text(csv: CsvBlocks, d: Delivery) -> bytes:
    text, _ = csv.format(
        np.array([d.t_ms], dtype=np.int64),
        d.values[None, :],
        t_offset_ms=d.t_offset_ms[None, :],
        columns=d.columns,
    )
    return text


def main_history(
    site: Path | None,
    days: float,
    out: Path,
    seed: int = 0,
    gzip: bool = True,
    *,
    step_s: float = 60,
    start: datetime | None = None,
    faults: Path | None = None,
    no_faults: bool = False,
) -> HistorySummary:
    """``parkwatch simulate --history DAYS --out DIR``: the demo park unless ``site``; a random
    fault schedule for the seed unless ``faults`` (YAML/JSON list) or ``no_faults``. Prints
    the summary as one JSON line and returns it."""
    from simulators import DEMO_PARK
    from simulators.faults import load_schedule

    park = Park.from_yaml(site or DEMO_PARK)
    schedule: Sequence[Fault] | None = None
    if no_faults:
        schedule = []
    elif faults is not None:
        schedule = load_schedule(faults)
    summary = write_history(
        park, days, out, seed=seed, step_s=step_s, gzip=gzip, start=start, faults=schedule
    )
    print(json.dumps(summary.as_dict()))
    return summary


def read_history(path: Path | str) -> list[tuple[int, str, str, float]]:
    """The rows of a history file as written (word-swapped floats included), for tests and small
    tools; :func:`parkwatch.readings_csv.read_readings` gives the columns."""
    readings = read_readings(path, finite=False)
    if readings.bad_rows:
        raise ValueError(f"{path}: {readings.bad_rows[0]}: not a history as this writer writes it")
    meters = [readings.meters[c] for c in readings.meter_code.tolist()]
    quantities = [readings.quantities[c] for c in readings.quantity_code.tolist()]
    return list(
        zip(readings.t_ms.tolist(), meters, quantities, readings.value.tolist(), strict=True)
    )
