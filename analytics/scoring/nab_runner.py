"""``parkwatch bench nab``: the baseline detector on the Numenta Anomaly Benchmark.

Every NAB file is replayed as one meter of a one-meter park (time zone UTC, a custom quantity
``value``, the slot step = the file's median sampling interval — a property of the data, not a
tuned parameter). The events the detector opens are mapped to the NAB row whose data raised
them (the last row before the event's ``detected_at``), and scored with NAB's method
(``analytics.scoring.nab``) per family and overall, in all three profiles.

``alarm_rows`` drives the detector through the engine's replay (``analytics.replay``), the
same streaming code the live service runs: the figures quoted come from it.
``direct_alarm_rows`` feeds the file's readings straight to the detector in slots
(``slot_block``), without the engine, for quick iteration on a detector; on the NAB files it
raises the same alarms.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.detectors.baseline import BaselineDetector
from analytics.engine.contract import Detector, ParkContext
from analytics.engine.engine import ParkEngine
from analytics.engine.slots import slot_block
from analytics.replay import replay
from analytics.scoring.nab import (
    PROFILES,
    CorpusScore,
    CostMatrix,
    FileScore,
    Window,
    load_profiles,
    score_corpus,
    score_file,
    windows_from_times,
)
from parkwatch.quantities import Utility
from parkwatch.readings_csv import Readings
from parkwatch.site import AnalyticsOptions, CustomQuantity, MeterSpec, Park

METER = "nab"
QUANTITY = "value"
# published results on the files here (standard profile, normalised over these files; see
# the datasets README): what the README table sets beside ours
PUBLISHED = {"ARTime": 77, "CAD OSE": 75, "Numenta HTM": 73, "Random Cut Forest": 53, "random": 14}


@dataclass(frozen=True)
class NabFile:
    name: str  # e.g. "realTweets/Twitter_volume_AAPL.csv"
    times_ms: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    windows: list[Window]

    @property
    def family(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def step_ms(self) -> int:
        """The median sampling interval, in whole seconds."""
        median = float(np.median(np.diff(self.times_ms)))
        return max(1000, round(median / 1000.0) * 1000)


def _ms(stamps: Sequence[str]) -> npt.NDArray[np.int64]:
    """NAB's naive ``YYYY-MM-DD HH:MM:SS[.ffffff]`` timestamps, read as UTC."""
    return np.array([s.strip().replace(" ", "T") for s in stamps], dtype="datetime64[ms]").astype(
        np.int64
    )


def load_file(root: Path, name: str, limits: Sequence[Sequence[str]]) -> NabFile:
    path = root / "data" / name
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
        if header[:2] != ["timestamp", "value"]:
            raise ValueError(f"{path}: expected the header 'timestamp,value', got {header}")
        stamps: list[str] = []
        values: list[float] = []
        for line_no, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            parts = line.split(",")
            try:
                values.append(float(parts[1]))
            except (IndexError, ValueError) as exc:
                raise ValueError(f"{path}:{line_no}: not a 'timestamp,value' row") from exc
            stamps.append(parts[0])
    times = _ms(stamps)
    # a repeated timestamp (some files have a DST hour twice) is one reading in its slot
    if np.any(np.diff(times) < 0):
        raise ValueError(f"{path}: timestamps go backwards")
    windows = windows_from_times(times, [(int(_ms([a])[0]), int(_ms([b])[0])) for a, b in limits])
    return NabFile(name, times, np.array(values), windows)


def load_corpus(root: Path) -> list[NabFile]:
    """Every labelled file under ``root/data`` (NAB's layout), in name order."""
    labels_path = root / "labels" / "combined_windows.json"
    labels: dict[str, list[list[str]]] = json.loads(labels_path.read_text(encoding="utf-8"))
    present = sorted(str(p.relative_to(root / "data")) for p in (root / "data").glob("*/*.csv"))
    if not present:
        raise FileNotFoundError(f"no NAB data files under {root / 'data'}")
    missing = [name for name in present if name not in labels]
    if missing:
        raise ValueError(f"{labels_path} has no windows for {', '.join(missing[:5])}")
    return [load_file(root, name, labels[name]) for name in present]


def one_meter_park(step_ms: int) -> Park:
    return Park(
        park="nab",
        timezone="UTC",
        quantities=[CustomQuantity(name=QUANTITY, unit="1", utilities=[Utility.ENV])],
        analytics=AnalyticsOptions(step_s=step_ms / 1000.0),
        meters=[MeterSpec(id=METER, utility=Utility.ENV)],
    )


def alarm_rows(
    file: NabFile,
    detector: type[Detector] = BaselineDetector,
    params: Mapping[str, Any] | None = None,
) -> list[int]:
    """Replay one file as one meter through the engine's replay path (the streaming code
    the live service runs); the rows whose data opened an event."""
    park = one_meter_park(file.step_ms)
    engine = ParkEngine(park, [detector], {detector.name: dict(params or {})})
    n = file.times_ms.size
    readings = Readings(
        file.times_ms,
        np.zeros(n, dtype=np.int32),
        [METER],
        np.zeros(n, dtype=np.int32),
        [QUANTITY],
        file.values,
        np.arange(2, n + 2, dtype=np.int64),  # file lines: the header is line 1
    )
    report = replay(engine, readings)
    if report.bad_row_count:
        first = report.bad_rows[0]
        raise ValueError(f"{file.name}: line {first.line}: {first.reason}")
    # the row whose data raised an event: the last row before its detected_at
    return sorted(
        int(np.searchsorted(file.times_ms, e.detected_at_ms, side="left")) - 1
        for e in report.events
    )


DIRECT_CHUNK_SLOTS = 1000  # slots per block on the direct path


def direct_alarm_rows(
    file: NabFile,
    detector: type[Detector] = BaselineDetector,
    params: Mapping[str, Any] | None = None,
) -> list[int]:
    """The file's readings straight to the detector, in blocks of slots of the file's step
    aligned as the engine aligns them; the rows whose data opened an event."""
    step = file.step_ms
    ctx = ParkContext(one_meter_park(step), reported={METER: [QUANTITY]})
    instance = detector(ctx, detector.select(ctx), params)
    start = int(file.times_ms[0]) // step * step
    slots = int((int(file.times_ms[-1]) - start) // step) + 1
    row = np.zeros(file.times_ms.size, dtype=np.int64)
    rows: list[int] = []
    for first in range(0, slots, DIRECT_CHUNK_SLOTS):
        count = min(DIRECT_CHUNK_SLOTS, slots - first)
        block = slot_block(row, file.times_ms, file.values, 1, start + first * step, step, count)
        rows.extend(
            int(np.searchsorted(file.times_ms, f.at_ms, side="left")) - 1
            for f in instance.update(block).findings
            if f.active
        )
    return sorted(rows)


@dataclass
class NabReport:
    profiles: dict[str, CorpusScore] = field(default_factory=dict)
    families: dict[str, dict[str, CorpusScore]] = field(default_factory=dict)
    files: dict[str, FileScore] = field(default_factory=dict)  # standard profile
    seconds: float = 0.0
    rows: int = 0


def run_nab(
    root: Path,
    params: Mapping[str, Any] | None = None,
    profiles: Mapping[str, CostMatrix] | None = None,
    direct: bool = False,
) -> NabReport:
    if profiles is None:
        path = root / "config" / "profiles.json"
        profiles = load_profiles(path) if path.exists() else PROFILES
    corpus = load_corpus(root)
    report = NabReport()
    started = time.perf_counter()
    run = direct_alarm_rows if direct else alarm_rows
    alarms = {f.name: run(f, params=params) for f in corpus}
    report.seconds = time.perf_counter() - started
    report.rows = sum(f.times_ms.size for f in corpus)
    for profile, cost in profiles.items():
        scores = {
            f.name: score_file(alarms[f.name], f.times_ms.size, f.windows, cost) for f in corpus
        }
        report.profiles[profile] = score_corpus(scores, cost)
        by_family: dict[str, dict[str, FileScore]] = {}
        for f in corpus:
            by_family.setdefault(f.family, {})[f.name] = scores[f.name]
        report.families[profile] = {k: score_corpus(v, cost) for k, v in sorted(by_family.items())}
        if profile == "standard":
            report.files = scores
    return report


def _fmt(value: float) -> str:
    return "—" if value != value else f"{value:.1f}"  # NaN: a family without windows


def format_report(report: NabReport) -> str:
    names = list(report.profiles)
    head = f"{'family':24} {'windows':>7} {'found':>5} {'false':>5} " + " ".join(
        f"{n[:18]:>18}" for n in names
    )
    lines = [head, "-" * len(head)]
    families = next(iter(report.families.values()))
    for family in families:
        c = report.families[names[0]][family]
        scores = " ".join(f"{_fmt(report.families[n][family].normalised):>18}" for n in names)
        lines.append(f"{family:24} {c.windows:>7} {c.detected:>5} {c.false_alarms:>5} {scores}")
    c = report.profiles[names[0]]
    scores = " ".join(f"{_fmt(report.profiles[n].normalised):>18}" for n in names)
    lines.append(f"{'all':24} {c.windows:>7} {c.detected:>5} {c.false_alarms:>5} {scores}")
    published = ", ".join(f"{k} {v}" for k, v in PUBLISHED.items())
    lines.append(f"published (standard, these files): {published}")
    lines.append(
        f"{report.rows:,} rows in {report.seconds:.1f} s "
        f"({report.seconds / max(report.rows, 1) * 1e6:.1f} µs per row, one meter per file)"
    )
    return "\n".join(lines)


def report_json(report: NabReport) -> dict[str, Any]:
    def num(v: float) -> float | None:
        return None if v != v else round(v, 2)

    return {
        "normalised": {k: num(v.normalised) for k, v in report.profiles.items()},
        "raw": {k: round(v.raw, 3) for k, v in report.profiles.items()},
        "windows": report.profiles["standard"].windows if "standard" in report.profiles else None,
        "detected": {k: v.detected for k, v in report.profiles.items()},
        "false_alarms": {k: v.false_alarms for k, v in report.profiles.items()},
        "families": {
            profile: {f: num(c.normalised) for f, c in fams.items()}
            for profile, fams in report.families.items()
        },
        "published_standard": PUBLISHED,
        "rows": report.rows,
        "seconds": round(report.seconds, 2),
    }
