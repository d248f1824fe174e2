"""Replayable history: the CSV written fast round-trips to what the model computes, faults and
transport effects included, gzip'd or plain."""

from __future__ import annotations

import gzip
import itertools
import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from parkwatch.site import Park
from simulators.faults import Fault, FaultKind, word_swap
from simulators.groundtruth import read_ground_truth
from simulators.history import HEADER, CsvBlocks, main_history, read_history, write_history
from simulators.model import ParkModel

K = FaultKind
SEED = 5
T0 = int(datetime(2024, 11, 25, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000)
H = 3_600_000
STEP_MS = 60_000


@pytest.fixture(scope="module")
def park() -> Park:
    return Park.from_yaml(Path(__file__).resolve().parent.parent / "simulators/parks/demo.yaml")


@pytest.mark.parametrize("packed", [True, False])
def test_two_days_round_trip_to_the_model(park: Park, tmp_path: Path, packed: bool) -> None:
    summary = write_history(park, 2, tmp_path, seed=SEED, gzip=packed, start=T0, faults=[])
    path = tmp_path / ("readings.csv.gz" if packed else "readings.csv")
    assert summary.readings_path == str(path)
    rows = read_history(path)
    model = ParkModel(park, SEED)
    times = T0 + np.arange(2 * 1440, dtype=np.int64) * STEP_MS
    frame = model.frame(times)
    n_t, n_s = frame.values.shape
    assert len(rows) == summary.rows == n_t * n_s
    # poll cycle by poll cycle, series in the model's order
    assert [r[0] for r in rows[::n_s]] == times.tolist()
    assert [(r[1], r[2]) for r in rows[:n_s]] == model.series
    values = np.array([r[3] for r in rows]).reshape(n_t, n_s)
    tolerance = 0.5 * 10.0**-model.decimals + 1e-9 * np.abs(frame.values)
    assert (np.abs(values - frame.values) <= tolerance).all()
    assert read_ground_truth(tmp_path / "ground_truth.jsonl") == []
    meta = json.loads((tmp_path / "history.json").read_text())
    assert meta["park"] == "lj-demo"
    assert meta["rows"] == summary.rows
    assert meta["start_ms"] == T0
    assert meta["end_ms"] == T0 + 2 * 86_400_000


def test_gzip_and_plain_hold_the_same_text(park: Park, tmp_path: Path) -> None:
    write_history(park, 0.25, tmp_path / "a", seed=SEED, gzip=True, start=T0, faults=[])
    write_history(park, 0.25, tmp_path / "b", seed=SEED, gzip=False, start=T0, faults=[])
    packed = gzip.decompress((tmp_path / "a" / "readings.csv.gz").read_bytes())
    plain = (tmp_path / "b" / "readings.csv").read_bytes()
    assert packed == plain
    assert plain.startswith(HEADER)
    first = plain.split(b"\n")[1].decode()
    assert first.startswith(f"{T0},park-main,p_kw,")


def test_faults_and_transport_effects_land_in_the_file(park: Park, tmp_path: Path) -> None:
    schedule = [
        Fault(
            K.LATE_BATCHES,
            T0 + 2 * H,
            T0 + 2 * H + 10 * STEP_MS,
            gateway="gw-pharmco",
            magnitude=900,
        ),
        Fault(
            K.DUPLICATE_BATCHES,
            T0 + 3 * H,
            T0 + 3 * H + 5 * STEP_MS,
            gateway="gw-chemco",
            magnitude=1,
        ),
        Fault(K.COMM_LOSS, T0 + 4 * H, T0 + 5 * H, gateway="gw-foodco"),
        Fault(K.CLOCK_SKEW, T0 + H, T0 + 2 * H, gateway="gw-autoparts", magnitude=-90),
        Fault(K.WORD_SWAP, T0 + 5 * H, T0 + 6 * H, meter="elecco-hvac"),
        Fault(K.COUNTER_ROLLOVER, T0 + 7 * H, meter="park-main"),
        Fault(K.WATER_BURST, T0 + 6 * H, T0 + 8 * H, zone="water-d3", magnitude=3.0),
    ]
    summary = write_history(park, 0.5, tmp_path, seed=SEED, gzip=True, start=T0, faults=schedule)
    rows = read_history(tmp_path / "readings.csv.gz")
    assert len(rows) == summary.rows

    # what the model says was sent, as a multiset of rows
    model = ParkModel(park, SEED, schedule)
    times = T0 + np.arange(720, dtype=np.int64) * STEP_MS
    model.prime(T0, STEP_MS)
    frame = model.frame(times, transport=True)
    assert frame.present is not None
    assert frame.t_offset_ms is not None
    expected: Counter[tuple[int, str, str]] = Counter()
    for r, c in zip(*np.nonzero(frame.present), strict=True):
        meter, quantity = model.series[c]
        expected[(int(times[r] + frame.t_offset_ms[r, c]), meter, quantity)] += 1
    for d in frame.deliveries:
        for c, offset in zip(d.columns, d.t_offset_ms, strict=True):
            meter, quantity = model.series[c]
            expected[(d.t_ms + int(offset), meter, quantity)] += 1
    assert Counter((t, m, q) for t, m, q, _ in rows) == expected

    # a late batch is in the file where it arrived, after later poll cycles
    position = {(t, m, q): i for i, (t, m, q, _) in enumerate(rows)}
    late = position[(T0 + 2 * H, "pharmco-main", "p_kw")]
    arrival = position[(T0 + 2 * H + 15 * STEP_MS, "park-main", "p_kw")]
    assert arrival < late < position[(T0 + 2 * H + 16 * STEP_MS, "park-main", "p_kw")]
    # a duplicated batch is there twice, with the same values
    dups = [r for r in rows if r[0] == T0 + 3 * H and r[1] == "chemco-main"]
    assert len(dups) == 2 * 4
    assert len(set(dups)) == 4
    # a skewed clock stamps its readings 90 s early
    assert (T0 + H - 90_000, "autoparts-main", "p_kw") in position
    assert (T0 + H, "autoparts-main", "p_kw") not in position
    # word-swapped floats come out as the float the gateway decoded
    c = model.column[("elecco-hvac", "p_kw")]
    row = int(np.searchsorted(times, T0 + 5 * H))
    written = rows[position[(T0 + 5 * H, "elecco-hvac", "p_kw")]][3]
    swapped = word_swap(frame.true_values[row : row + 1, c])[0]
    assert np.float32(written) == np.float32(swapped)
    # the rollover wraps in the file too
    e = [r[3] for r in rows if r[1] == "park-main" and r[2] == "e_kwh"]
    assert sum(1 for a, b in itertools.pairwise(e) if b < a) == 1

    truth = read_ground_truth(tmp_path / "ground_truth.jsonl")
    assert sorted(r["kind"] for r in truth) == sorted(f.kind.value for f in schedule)
    rollover = next(r for r in truth if r["kind"] == "counter_rollover")
    assert rollover["reading_before"] > rollover["magnitude"] - 10_000


def test_the_formatter_writes_what_registers_cannot_hold_in_full() -> None:
    csv = CsvBlocks([("m1", "p_kw"), ("m1", "e_kwh"), ("m2", "soc_pct")], np.array([3, 3, 2]))
    values = np.array(
        [
            [-12.3456, 0.0, 99.999],
            [0.0004, 1234567.5, 100.0],
            [np.nan, 3.4e38, 1e-30],
            [-0.0, -np.inf, 5e-3],
        ]
    )
    times = np.array([1_700_000_000_000 + k for k in range(4)], dtype=np.int64)
    text, ends = csv.format(times, values)
    lines = text.decode().splitlines()
    assert [line.split(",")[3] for line in lines] == [
        "-12.346",
        "0.000",
        "100.00",
        "0.0004",
        "1234567.500",
        "100.00",
        "nan",
        "3.4e+38",
        "1e-30",
        "0.000",
        "-inf",
        "0.005",
    ]
    assert lines[0] == "1700000000000,m1,p_kw,-12.346"
    assert ends[-1] == len(text)
    assert ends[0] == len("\n".join(lines[:3])) + 1
    present = np.ones(values.shape, dtype=bool)
    present[1, 1] = False
    text, _ = csv.format(times, values, present=present)
    assert len(text.decode().splitlines()) == 11


def test_main_history_for_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = main_history(None, 0.1, tmp_path, seed=2, gzip=True)
    printed = json.loads(capsys.readouterr().out)
    assert printed["rows"] == summary.rows > 0
    assert printed["park"] == "lj-demo"
    truth = read_ground_truth(tmp_path / "ground_truth.jsonl")
    assert len(truth) == summary.faults > 0  # a random schedule for the seed
    assert (tmp_path / "readings.csv.gz").stat().st_size > 0
