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
timestamps for every meter at once, and each block becomes CSV text as one byte matrix
(``[time, series, characters]``) from which a boolean mask keeps the characters that exist;
gzip (level 1) runs in a second thread, since zlib releases the GIL.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from parkwatch.site import Park
from simulators.faults import Delivery, Fault, random_schedule
from simulators.groundtruth import iso, records, write_ground_truth
from simulators.model import ParkModel

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
U8Array = npt.NDArray[np.uint8]

HEADER = b"time,meter,quantity,value\n"
DAY_MS = 86_400_000
INT_DIGITS = 10  # the fast path writes values below 1e10; others go through "%.9g"
TIME_DIGITS = 13  # epoch ms has 13 digits from 2001-09-09 to 2286-11-20
_MIN_MS, _MAX_MS = 10**12, 10**13


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


class CsvBlocks:
    """Formats blocks of model output as replay CSV, vectorised (see the module docstring)."""

    def __init__(self, series: Sequence[tuple[str, str]], decimals: IntArray) -> None:
        prefixes = [f",{m},{q},".encode() for m, q in series]
        width = max(len(p) for p in prefixes)
        self.prefix = np.zeros((len(series), width), dtype=np.uint8)
        self.prefix_mask = np.zeros((len(series), width), dtype=bool)
        for i, p in enumerate(prefixes):
            self.prefix[i, : len(p)] = np.frombuffer(p, dtype=np.uint8)
            self.prefix_mask[i, : len(p)] = True
        self.decimals = decimals.astype(np.int64)
        self.frac_digits = max(1, int(self.decimals.max()))
        self.scale = 10.0**self.decimals
        self.unit = (10**self.decimals).astype(np.int64)

    def format(
        self,
        t_ms: IntArray,
        values: FloatArray,
        present: BoolArray | None = None,
        t_offset_ms: IntArray | None = None,
        columns: IntArray | None = None,
    ) -> tuple[bytes, IntArray]:
        """CSV text of ``values[time, series]`` (``columns``: which series they are, default
        all); returns the text and the byte offset where each time's rows end."""
        cols = np.arange(values.shape[1]) if columns is None else columns
        n_t, n_s = values.shape
        prefix, prefix_mask = self.prefix[cols], self.prefix_mask[cols]
        dec = self.decimals[cols]
        fw = self.frac_digits
        pw = prefix.shape[1]
        vw = 1 + INT_DIGITS + 1 + fw  # sign, integer digits, point, fraction
        width = TIME_DIGITS + pw + vw + 1
        mat = np.empty((n_t, n_s, width), dtype=np.uint8)
        keep = np.empty((n_t, n_s, width), dtype=bool)

        # time: the same digits for every series unless a clock is skewed
        if t_offset_ms is not None and t_offset_ms.any():
            stamps = t_ms[:, None] + t_offset_ms
            mat[:, :, :TIME_DIGITS] = _digits(stamps, TIME_DIGITS)
        else:
            stamps = t_ms
            mat[:, :, :TIME_DIGITS] = _digits(t_ms, TIME_DIGITS)[:, None, :]
        if stamps.min() < _MIN_MS or stamps.max() >= _MAX_MS:
            raise ValueError("timestamps outside 2001-2286 do not have 13 digits")
        keep[:, :, :TIME_DIGITS] = True
        o = TIME_DIGITS
        mat[:, :, o : o + pw] = prefix[None]
        keep[:, :, o : o + pw] = prefix_mask[None]
        o += pw

        # value: fixed-point digits from integers, so no float is ever printed in Python
        with np.errstate(invalid="ignore", over="ignore"):
            magnitude = np.abs(values)
            odd = ~np.isfinite(values) | (magnitude >= 10.0**INT_DIGITS)
            scaled = np.where(odd, 0.0, magnitude) * self.scale[cols]
        k = np.rint(scaled).astype(np.int64)
        odd |= (k == 0) & (magnitude > 0)  # would print as 0: a value no register shows
        unit = self.unit[cols]
        whole = k // unit
        frac = (k - whole * unit) * (10 ** (fw - dec)).astype(np.int64)
        mat[:, :, o] = ord("-")
        keep[:, :, o] = (values < 0) & (k > 0)
        o += 1
        mat[:, :, o : o + INT_DIGITS] = _digits(whole, INT_DIGITS)
        for j in range(INT_DIGITS - 1):  # no leading zeros...
            keep[:, :, o + j] = whole >= 10 ** (INT_DIGITS - 1 - j)
        keep[:, :, o + INT_DIGITS - 1] = True  # ...but one before the point: "0.5"
        o += INT_DIGITS
        mat[:, :, o] = ord(".")
        keep[:, :, o] = (dec > 0)[None, :]
        o += 1
        mat[:, :, o : o + fw] = _digits(frac, fw)
        keep[:, :, o : o + fw] = (np.arange(fw)[None, :] < dec[:, None])[None]
        o += fw
        mat[:, :, o] = ord("\n")
        keep[:, :, o] = True

        if odd.any():  # rare: word-swapped floats and the like
            start = TIME_DIGITS + pw
            for r, c in zip(*np.nonzero(odd), strict=True):
                text = np.frombuffer(f"{values[r, c]:.9g}".encode(), dtype=np.uint8)
                mat[r, c, start : start + text.size] = text
                keep[r, c, start : start + vw] = False
                keep[r, c, start : start + text.size] = True
        if present is not None:
            keep &= present[:, :, None]
        ends = np.cumsum(keep.reshape(n_t, -1).sum(axis=1, dtype=np.int64))
        return mat[keep].tobytes(), ends


def _digits(x: IntArray, width: int) -> U8Array:
    """ASCII decimal digits of non-negative integers, most significant first, zero-padded."""
    out = np.empty((*x.shape, width), dtype=np.uint8)
    rest = x.copy()
    for j in range(width - 1, -1, -1):
        q = rest // 10
        out[..., j] = rest - q * 10
        rest = q
    out += ord("0")
    return out


class _Sink:
    """Compresses and writes in a thread of its own, fed through a short queue."""

    def __init__(self, path: Path, gzip: bool) -> None:
        self.path = path
        self.gzip = gzip
        self.bytes = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._file: IO[bytes] = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if data:
            self.bytes += len(data)
            self._queue.put(data)

    def _run(self) -> None:
        try:
            packer = zlib.compressobj(1, zlib.DEFLATED, 31) if self.gzip else None  # 31: gzip
            while (data := self._queue.get()) is not None:
                self._file.write(packer.compress(data) if packer else data)
            if packer is not None:
                self._file.write(packer.flush())
        except BaseException as exc:  # reported to the producer on its next write or close
            self._error = exc
            while self._queue.get() is not None:  # drain so the producer never blocks
                pass

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._file.close()
        if self._error is not None:
            raise self._error


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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    step_ms = round(step_s * 1000)
    if step_ms <= 0:
        raise ValueError("step_s must be positive")
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
    sink = _Sink(path, gzip)
    rows = 0
    pending: list[Delivery] = []
    per_chunk = max(1, round(chunk_s * 1000 / step_ms))
    try:
        sink.write(HEADER)
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
    """The rows of a replay CSV (plain or gzip'd), for tests and small tools."""
    import gzip as gz

    opener = gz.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        header = fh.readline()
        if header.strip() != HEADER.decode().strip():
            raise ValueError(f"not a replay file: header {header!r}")
        out = []
        for line in fh:
            t, meter, quantity, value = line.rstrip("\n").split(",")
            out.append((int(t), meter, quantity, float(value)))
        return out
