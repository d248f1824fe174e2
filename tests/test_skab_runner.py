"""The SKAB runner's scoring, on a small rig recording made here (two files, a pause between)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analytics.scoring.skab_runner import run_skab

HEADER = (
    "datetime;Accelerometer1RMS;Accelerometer2RMS;Current;Pressure;Temperature;Thermocouple;"
    "Voltage;Volume Flow RateRMS;anomaly;changepoint"
)


def _write(path: Path, start: np.datetime64, rows: int, anomalous_from: int) -> None:
    rng = np.random.default_rng(rows)
    lines = [HEADER]
    for k in range(rows):
        t = str(start + np.timedelta64(k, "s")).replace("T", " ")
        flow = 32.0 - (8.0 if k >= anomalous_from else 0.0) + rng.normal(0, 0.3)
        sensors = [0.026, 0.040, 1.33, 0.05, 79.3, 26.0, 233.0, flow]
        values = ";".join(f"{v + rng.normal(0, 0.001):.6f}" for v in sensors)
        lines.append(f"{t};{values};{float(k >= anomalous_from)};{float(k == anomalous_from)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_silence_after_a_file_that_ends_inside_an_anomaly_finds_nothing(tmp_path: Path) -> None:
    """The rig's logging pauses now and then, twice while a valve is closed; a pause there is
    a real comm_loss, raised at the last row before it, inside the labelled anomaly: it tells
    nothing of the valve, so it is counted apart and finds nothing (here the pause is the one
    between two files; the file ends 10 s into the anomaly, within the level shift's
    persistence: it cannot have seen the flow's drop)."""
    start = np.datetime64("2020-03-09T10:00:00")
    _write(tmp_path / "data" / "valve1" / "0.csv", start, 900, anomalous_from=890)
    _write(tmp_path / "data" / "valve1" / "1.csv", start + np.timedelta64(1500, "s"), 600, 10**6)
    report = run_skab(tmp_path)
    assert report.events_by_kind.get("comm_loss") == 1
    assert "level_shift" not in report.events_by_kind
    assert report.meter_fault_events == 1
    assert (report.anomalies, report.found, report.false_events) == (1, 0, 0)
    # judged as a scorer that counts every alarm would, the comm_loss inside the anomaly finds it
    assert (report.found_all, report.false_all) == (1, 0)
    assert report.nab_all["standard"] > report.nab["standard"]


def test_a_closed_valve_is_found_by_the_level_shift(tmp_path: Path) -> None:
    """The flow falls by 8 (about 25 of its scales) 300 s into the anomaly-free half of a file:
    the level shift opens inside the labelled anomaly within 24 s (the 30-s window's median
    is the new level's once 15 of its readings are, then 10 s of persistence; sooner, as the
    lower order statistics move before), and nothing else is raised."""
    _write(tmp_path / "data" / "valve1" / "0.csv", np.datetime64("2020-03-09T10:00:00"), 900, 600)
    report = run_skab(tmp_path)
    assert report.events_by_kind == {"level_shift": 1}
    assert (report.anomalies, report.found, report.false_events) == (1, 1, 0)
    assert len(report.delays_s) == 1
    assert 10.0 <= report.delays_s[0] <= 24.0
