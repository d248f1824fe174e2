"""SKAB (the Skoltech Anomaly Benchmark: a water pump rig, valves closed, cavitation, leaks)
replayed through the engine the way a live park would see the rig, and scored.

The rig is one meter: its eight sensors are eight quantities of that meter (the park declares
them in ``quantities:``), one reading a second. Every experiment (the anomaly-free run, then
``valve1``, ``valve2`` … in the order they were recorded) is fed in time order to one engine
running every registered detector with its fixed defaults, exactly as the live service would
meet the rig over its recording days — nothing is fitted on a file, nothing is told where a
file starts (the rig's whole recording is 8.9 hours of data; the detectors alarm only after a
day of a meter's data, so on SKAB they stay silent — the README says so). An anomaly (a run
of ``anomaly = 1`` rows) is found when an event opens inside
it; an event that opens outside every anomaly is false. The NAB score
(``analytics.scoring.nab``) of the whole stream uses the labelled anomalies as its windows. The
report judges the process events (meter faults counted apart: the labels judge the pump, not the
link to it — the rig's logging pauses for a minute or more, twice in the middle of a closed
valve, and a ``comm_loss`` raised there is no finding of the valve) and, beside them, every
event, as a scorer that counts every alarm would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.detectors import DETECTORS
from analytics.engine.engine import ParkEngine
from analytics.replay import replay
from analytics.scoring.nab import PROFILES, Window, normalise, score_file
from parkwatch.events import Event, Family
from parkwatch.quantities import Utility
from parkwatch.readings_csv import Readings
from parkwatch.site import AnalyticsOptions, CustomQuantity, MeterSpec, Park

METER = "pump-rig"
# the published changepoint leaderboard (waico/SKAB README, SKAB v0.9, NAB standard / low FP /
# low FN; the authors score with a 30 s window around each changepoint and fit most models on
# part of each file): what the README sets beside ours
PUBLISHED = {
    "Isolation forest": (37.53, 17.09, 45.02),
    "MSCRED": (28.74, 23.43, 31.21),
    "LSTM": (27.09, 11.06, 32.68),
    "T-squared+Q (PCA)": (26.71, 22.42, 28.32),
    "Null detector": (0.0, 0.0, 0.0),
}


@dataclass
class SkabStream:
    times_ms: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]  # [rows, quantities]
    quantities: list[str]
    anomaly: npt.NDArray[np.bool_]
    files: list[str]


@dataclass
class SkabReport:
    rows: int = 0
    anomalies: int = 0
    found: int = 0
    false_events: int = 0
    meter_fault_events: int = 0  # not judged by the labels (see the module's docstring)
    delays_s: list[float] = field(default_factory=list)
    nab: dict[str, float] = field(default_factory=dict)
    # the same judgement over every event, meter faults included
    found_all: int = 0
    false_all: int = 0
    nab_all: dict[str, float] = field(default_factory=dict)
    events_by_kind: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _name(column: str) -> str:
    return "skab_" + "".join(c if c.isalnum() else "_" for c in column.lower()).strip("_")


def load_stream(root: Path) -> SkabStream:
    """Every CSV under ``root/data``, rows in time order (a second repeated across files keeps
    its first reading)."""
    paths = sorted((root / "data").glob("*/*.csv"))
    if not paths:
        raise FileNotFoundError(f"no SKAB files under {root / 'data'}")
    columns: list[str] | None = None
    times: list[npt.NDArray[np.int64]] = []
    values: list[npt.NDArray[np.float64]] = []
    labels: list[npt.NDArray[np.bool_]] = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            header = fh.readline().strip().split(";")
            rows = [line.strip().split(";") for line in fh if line.strip()]
        sensors = [c for c in header[1:] if c not in ("anomaly", "changepoint")]
        if columns is None:
            columns = sensors
        elif sensors != columns:
            raise ValueError(f"{path}: columns {sensors} differ from {columns}")
        stamps = np.array([r[0].replace(" ", "T") for r in rows], dtype="datetime64[ms]")
        times.append(stamps.astype(np.int64))
        values.append(np.array([[float(x) for x in r[1 : 1 + len(sensors)]] for r in rows]))
        at = header.index("anomaly") if "anomaly" in header else -1
        labels.append(
            np.array([float(r[at]) > 0 for r in rows])
            if at >= 0
            else np.zeros(len(rows), dtype=bool)
        )
    t = np.concatenate(times)
    order = np.argsort(t, kind="stable")
    t = t[order]
    keep = np.r_[True, np.diff(t) > 0]
    return SkabStream(
        t[keep],
        np.concatenate(values)[order][keep],
        [_name(c) for c in columns or []],
        np.concatenate(labels)[order][keep],
        [str(p.relative_to(root / "data")) for p in paths],
    )


def rig_park(quantities: list[str]) -> Park:
    return Park(
        park="skab",
        timezone="UTC",
        quantities=[CustomQuantity(name=q, unit="1", utilities=[Utility.ENV]) for q in quantities],
        # the rig runs steady: a level change of its flow, pressures or temperatures is a fault
        analytics=AnalyticsOptions(step_s=1.0, level_shift=quantities),
        meters=[MeterSpec(id=METER, utility=Utility.ENV)],
    )


def _segments(flags: npt.NDArray[np.bool_]) -> list[Window]:
    edges = np.diff(np.r_[0, flags.astype(np.int8), 0])
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return [Window(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def _judge(
    stream: SkabStream, windows: list[Window], events: list[Event]
) -> tuple[int, int, list[float], dict[str, float]]:
    """Found anomalies, false events, delays (s) and NAB scores of ``events`` on the stream."""
    # the row whose data raised each event
    alarms = sorted(
        int(np.searchsorted(stream.times_ms, e.detected_at_ms, side="left")) - 1 for e in events
    )
    found = 0
    delays: list[float] = []
    used: set[int] = set()
    for w in windows:
        inside = [a for a in alarms if w.first <= a <= w.last]
        if inside:
            found += 1
            used.update(inside)
            delays.append(float(stream.times_ms[inside[0]] - stream.times_ms[w.first]) / 1000.0)
    nab: dict[str, float] = {}
    for name, cost in PROFILES.items():
        score = score_file(alarms, len(stream.times_ms), windows, cost)
        nab[name] = normalise(score.score, score.windows, cost)
    return found, len([a for a in alarms if a not in used]), delays, nab


def run_skab(root: Path) -> SkabReport:
    stream = load_stream(root)
    n, q = stream.values.shape
    readings = Readings(
        np.repeat(stream.times_ms, q),
        np.zeros(n * q, dtype=np.int32),
        [METER],
        np.tile(np.arange(q, dtype=np.int32), n),
        stream.quantities,
        stream.values.reshape(-1),
        np.arange(2, n * q + 2, dtype=np.int64),
    )
    started = time.perf_counter()
    result = replay(ParkEngine(rig_park(stream.quantities), DETECTORS), readings)
    report = SkabReport(rows=n, seconds=time.perf_counter() - started)
    for e in result.events:
        report.events_by_kind[e.kind] = report.events_by_kind.get(e.kind, 0) + 1
    process = [e for e in result.events if e.family is not Family.METER_FAULT]
    report.meter_fault_events = len(result.events) - len(process)
    windows = _segments(stream.anomaly)
    report.anomalies = len(windows)
    report.found, report.false_events, report.delays_s, report.nab = _judge(
        stream, windows, process
    )
    report.found_all, report.false_all, _, report.nab_all = _judge(stream, windows, result.events)
    return report


def format_report(report: SkabReport) -> str:
    delay = f"{np.median(report.delays_s):.0f} s" if report.delays_s else "-"
    lines = [
        f"{report.rows:,} seconds of the rig, {report.anomalies} labelled anomalies: "
        f"found {report.found}, missed {report.anomalies - report.found}, "
        f"false events {report.false_events}, median time to detect {delay} "
        f"({report.seconds:.1f} s)",
        "NAB (anomalies as windows): " + ", ".join(f"{k} {v:.2f}" for k, v in report.nab.items()),
        "events: "
        + (", ".join(f"{k} {v}" for k, v in sorted(report.events_by_kind.items())) or "none")
        + f" ({report.meter_fault_events} about the meter, not judged by the labels)",
        f"every event judged, meter faults included: found {report.found_all}, "
        f"false events {report.false_all}, NAB "
        + ", ".join(f"{k} {v:.2f}" for k, v in report.nab_all.items()),
        "published (changepoint leaderboard, standard / low FP / low FN): "
        + "; ".join(f"{k} {a} / {b} / {c}" for k, (a, b, c) in PUBLISHED.items()),
    ]
    return "\n".join(lines)


def report_json(report: SkabReport) -> dict[str, Any]:
    return {
        "rows": report.rows,
        "anomalies": report.anomalies,
        "found": report.found,
        "false_events": report.false_events,
        "meter_fault_events": report.meter_fault_events,
        "every_event": {
            "found": report.found_all,
            "false_events": report.false_all,
            "nab": {k: round(v, 2) for k, v in report.nab_all.items()},
        },
        "median_delay_s": float(np.median(report.delays_s)) if report.delays_s else None,
        "nab": {k: round(v, 2) for k, v in report.nab.items()},
        "events": report.events_by_kind,
        "seconds": round(report.seconds, 1),
    }
