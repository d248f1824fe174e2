"""The ground truth of a simulation: every injected fault, one JSON object per line.

Detectors are scored against this file. A record::

    {"id": 3, "kind": "water_leak", "zone": "water-d2",
     "start": 1732406400000, "end": 1732665600000,
     "start_iso": "2024-11-24T00:00:00.000Z", "end_iso": "2024-11-27T00:00:00.000Z",
     "magnitude": 2.4, "unit": "m3/h", "ramp_s": 207360}

* ``start`` and ``end`` are epoch milliseconds (UTC), like a reading's ``t``; ``end`` is
  exclusive and null for a fault still on when the simulation ended; point events
  (``counter_reset``, ``counter_rollover``) have ``end == start``. The ``*_iso`` copies are for
  people. A fault shows from the first sample at or after ``start``.
* The target is ``meter``, ``zone`` (leaks: the water meter whose balance shows the leak, or
  the enterprise whose compressed-air system leaks) or ``gateway``.
* ``magnitude`` is in ``unit`` (see ``simulators.faults.UNITS``); optional fields: ``ramp_s``
  (growing faults), ``quantity``, ``delay_s``, and what the simulation observed while applying
  the fault (``reading_before``, ``old_reading``, ``extra_kw``, ...).

A history writes the whole schedule at the end. A live run (:class:`LiveGroundTruth`) keeps the
file true while it runs: it lists the faults that have started by the last timestamp published,
an end still ahead as null, and is rewritten (atomically: a reader never sees half a file) when
a fault starts or ends and when the run stops.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simulators.faults import UNITS, Fault


def iso(t_ms: int | None) -> str | None:
    """Epoch ms as ISO 8601 UTC with milliseconds (``2024-11-24T00:00:00.000Z``)."""
    if t_ms is None:
        return None
    moment = datetime.fromtimestamp(t_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t_ms % 1000:03d}Z"


def record(index: int, fault: Fault, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ground-truth record of one fault (``index``: its place in the schedule)."""
    out: dict[str, Any] = {"id": index, "kind": str(fault.kind)}
    for key in ("meter", "zone", "gateway"):
        value = getattr(fault, key)
        if value is not None:
            out[key] = value
    out["start"] = fault.start_ms
    out["end"] = fault.end_ms
    out["start_iso"] = iso(fault.start_ms)
    out["end_iso"] = iso(fault.end_ms)
    out["magnitude"] = fault.magnitude
    out["unit"] = UNITS[fault.kind]
    if fault.ramp_s:
        out["ramp_s"] = fault.ramp_s
    if fault.quantity is not None:
        out["quantity"] = fault.quantity
    if fault.delay_s:
        out["delay_s"] = fault.delay_s
    for key, value in (details or {}).items():
        out.setdefault(key, _plain(value))
    return out


def records(
    faults: Sequence[Fault], details: Mapping[int, Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Ground truth for a whole schedule, ordered by start."""
    details = details or {}
    out = [record(i, f, details.get(i)) for i, f in enumerate(faults)]
    out.sort(key=lambda r: (r["start"], r["id"]))
    return out


def write_ground_truth(path: Path | str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Writes the records as JSONL, atomically (a reader sees the old file or the new one);
    returns how many."""
    count = 0
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp")
    with open(temporary, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
            count += 1
    os.replace(temporary, target)
    return count


def so_far(
    faults: Sequence[Fault], details: Mapping[int, Mapping[str, Any]], until_ms: int
) -> list[dict[str, Any]]:
    """The ground truth of a run that has simulated up to ``until_ms`` (inclusive): the faults
    that have started, with ``end`` null for those still on."""
    shown = []
    for i, fault in enumerate(faults):
        if fault.start_ms > until_ms:
            continue
        if fault.end_ms is not None and fault.end_ms > until_ms:
            fault = replace(fault, end_ms=None)
        shown.append(record(i, fault, details.get(i)))
    shown.sort(key=lambda r: (r["start"], r["id"]))
    return shown


class LiveGroundTruth:
    """Keeps a live run's ground-truth file true as it goes (see the module docstring).

    ``details`` returns what the simulation has learnt about each fault so far
    (``ParkModel.fault_details``).
    """

    def __init__(
        self,
        path: Path | str,
        faults: Sequence[Fault],
        details: Callable[[], Mapping[int, Mapping[str, Any]]],
    ) -> None:
        self.path = Path(path)
        self.faults = list(faults)
        self._details = details
        self._state: tuple[int, int] | None = None
        self._until: int | None = None

    def advance(self, t_ms: int) -> None:
        """The run has published up to ``t_ms``: rewrites the file when a fault started or
        ended since the last call."""
        self._until = t_ms
        started = sum(1 for f in self.faults if f.start_ms <= t_ms)
        ended = sum(1 for f in self.faults if f.end_ms is not None and f.end_ms <= t_ms)
        if (started, ended) != self._state:
            self._state = (started, ended)
            self.flush()

    def flush(self) -> None:
        """Rewrites the file for what has been published so far (an empty file before the
        first timestamp; the run's start and end call it)."""
        shown = [] if self._until is None else so_far(self.faults, self._details(), self._until)
        write_ground_truth(self.path, shown)


def read_ground_truth(path: Path | str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _plain(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, non-finite floats to None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value
