"""The NAB harness: labels read right (a perfect and a never-alarm detector score 100 and 0 on
NAB's own labels), a file replayed as one meter, the direct path raising the replay's alarms,
and the ``parkwatch bench nab`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from analytics.scoring.nab import PROFILES, score_corpus, score_file
from analytics.scoring.nab_runner import alarm_rows, direct_alarm_rows, load_corpus, load_file
from parkwatch_cli.app import app

NAB = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "nab"


def test_perfect_and_never_alarm_on_nab_labels() -> None:
    corpus = load_corpus(NAB)
    assert len(corpus) == 51
    assert sum(len(f.windows) for f in corpus) == 97
    for cost in PROFILES.values():
        perfect = {
            f.name: score_file([w.first for w in f.windows], f.times_ms.size, f.windows, cost)
            for f in corpus
        }
        never = {f.name: score_file([], f.times_ms.size, f.windows, cost) for f in corpus}
        assert score_corpus(perfect, cost).normalised == pytest.approx(100.0)
        assert score_corpus(never, cost).normalised == pytest.approx(0.0)


def _nab_dir(tmp_path: Path) -> Path:
    """A one-file NAB layout: 5-minute rows, noise around 50, a step to 80 at row 2000, and
    one repeated timestamp (as some NAB files have at a DST change)."""
    rng = np.random.default_rng(0)
    rows = 3000
    times = np.datetime64("2015-03-02T00:00:00") + np.arange(rows) * np.timedelta64(5, "m")
    values = 50 + rng.normal(0, 1, rows)
    values[2000:] += 30
    lines = ["timestamp,value"]
    for i, (t, v) in enumerate(zip(times, values, strict=True)):
        stamp = str(t).replace("T", " ")
        lines.append(f"{stamp},{v:.3f}")
        if i == 500:
            lines.append(f"{stamp},{v:.3f}")
    data = tmp_path / "nab" / "data" / "synthetic"
    data.mkdir(parents=True)
    (data / "step.csv").write_text("\n".join(lines) + "\n")
    labels = tmp_path / "nab" / "labels"
    labels.mkdir()
    window = [str(times[1850]).replace("T", " ") + ".000000", str(times[2150]).replace("T", " ")]
    (labels / "combined_windows.json").write_text(json.dumps({"synthetic/step.csv": [window]}))
    return tmp_path / "nab"


def test_file_replayed_as_one_meter_alarms_at_the_step(tmp_path: Path) -> None:
    root = _nab_dir(tmp_path)
    labels = json.loads((root / "labels" / "combined_windows.json").read_text())
    nab_file = load_file(root, "synthetic/step.csv", labels["synthetic/step.csv"])
    assert nab_file.step_ms == 300_000
    assert nab_file.times_ms.size == 3001  # the repeated row is kept as a row
    rows = alarm_rows(nab_file)
    # the step is at data row 2000, which is file row 2001 after the repeated one
    assert any(2001 <= r <= 2005 for r in rows), rows


def test_bench_nab_command(tmp_path: Path) -> None:
    root = _nab_dir(tmp_path)
    result = CliRunner().invoke(app, ["bench", "nab", "--data", str(root)])
    assert result.exit_code == 0, result.output
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["windows"] == 1
    assert last["detected"]["standard"] == 1
    assert last["normalised"]["standard"] > 80


def test_bench_nab_without_labels_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "nab", "--data", str(tmp_path)])
    assert result.exit_code != 0
    assert "combined_windows.json" in result.output


@pytest.mark.parametrize(
    "name",
    [
        # irregular spacings around a 5-minute median; hourly; 5-minute with a dozen alarms
        "realTraffic/occupancy_6005.csv",
        "realAdExchange/exchange-2_cpc_results.csv",
        "realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv",
    ],
)
def test_direct_path_raises_the_replays_alarms(name: str) -> None:
    labels = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    nab_file = load_file(NAB, name, labels[name])
    replayed = alarm_rows(nab_file)
    assert replayed  # the comparison means something
    assert direct_alarm_rows(nab_file) == replayed


def test_bench_nab_direct_with_parameters(tmp_path: Path) -> None:
    root = _nab_dir(tmp_path)
    base = ["bench", "nab", "--data", str(root), "--direct"]
    result = CliRunner().invoke(app, base)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["detected"]["standard"] == 1
    # the step is found by a new extreme and a deviation: with both out of reach, nothing
    blind = ["--param", "extreme_margin=100", "--param", "peak_margin=100", "--param", "z_min=1e6"]
    result = CliRunner().invoke(app, base + blind)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["detected"]["standard"] == 0
    result = CliRunner().invoke(app, [*base, "--param", "no_such=1"])
    assert result.exit_code != 0
    assert "no_such" in result.output
