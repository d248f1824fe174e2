"""Fault injection: every fault of an explicit schedule shows in the readings as documented,
and in the ground truth with its kind, target, start and end."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pytest

from parkwatch.site import Park
from simulators.faults import (
    PROCESS_KINDS,
    ROLLOVER_MODULUS,
    Fault,
    FaultKind,
    load_schedule,
    random_schedule,
    word_swap,
)
from simulators.groundtruth import read_ground_truth, records, write_ground_truth
from simulators.model import Frame, ParkModel

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
K = FaultKind
SEED = 11
STEP_MS = 60_000
H = 3_600_000
T0 = int(datetime(2024, 11, 25, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000)  # Monday

SCHEDULE = [
    Fault(K.WATER_BURST, T0 + 10 * H, T0 + 14 * H, zone="water-d2", magnitude=4.0),
    Fault(
        K.WATER_LEAK,
        T0 + 2 * H,
        T0 + 40 * H,
        zone="park-water-main",
        magnitude=6.0,
        ramp_s=20 * 3600,
    ),
    Fault(K.AIR_LEAK, T0 + 20 * H, T0 + 47 * H, zone="autoparts", magnitude=250.0),
    Fault(
        K.FLUE_TEMP_RISE,
        T0 + 6 * H,
        T0 + 30 * H,
        meter="chemco-boiler",
        magnitude=30.0,
        ramp_s=12 * 3600,
    ),
    Fault(K.COOLING_TEMP_RISE, T0 + 8 * H, T0 + 20 * H, meter="steelco-cooling", magnitude=5.0),
    Fault(K.HEAT_RECOVERY_BYPASS, T0 + 30 * H, T0 + 36 * H, meter="steelco-heat", magnitude=1.0),
    Fault(
        K.DEMAND_PEAK,
        T0 + 10 * H,
        T0 + 10 * H + 30 * 60_000,
        meter="autoparts-main",
        magnitude=0.15,
    ),
    Fault(K.COUNTER_RESET, T0 + 12 * H, meter="elecco-smt"),
    Fault(K.COUNTER_ROLLOVER, T0 + 15 * H, meter="chemco-reactors"),
    Fault(K.METER_REPLACEMENT, T0 + 9 * H, T0 + 10 * H, meter="elecco-water", magnitude=5.0),
    Fault(K.STUCK_VALUE, T0 + 16 * H, T0 + 19 * H, meter="pharmco-hvac"),
    Fault(K.WORD_SWAP, T0 + 5 * H, T0 + 6 * H, meter="elecco-hvac"),
    Fault(K.COMM_LOSS, T0 + 3 * H, T0 + 4 * H, gateway="gw-foodco"),
    Fault(K.COMM_LOSS, T0 + 22 * H, T0 + 23 * H, meter="park-weather"),
    Fault(K.CLOCK_SKEW, T0 + 1 * H, T0 + 3 * H, gateway="gw-autoparts", magnitude=120.0),
    Fault(
        K.DUPLICATE_BATCHES,
        T0 + 4 * H,
        T0 + 4 * H + 600_000,
        gateway="gw-chemco",
        magnitude=1,
        delay_s=20,
    ),
    Fault(K.LATE_BATCHES, T0 + 7 * H, T0 + 7 * H + 1_800_000, gateway="gw-pharmco", magnitude=600),
]


@pytest.fixture(scope="module")
def park() -> Park:
    return Park.from_yaml(Path(__file__).resolve().parent.parent / "simulators/parks/demo.yaml")


@pytest.fixture(scope="module")
def times() -> IntArray:
    return T0 + np.arange(2 * 1440, dtype=np.int64) * STEP_MS


@pytest.fixture(scope="module")
def model(park: Park, times: IntArray) -> ParkModel:
    model = ParkModel(park, SEED, SCHEDULE)
    model.prime(int(times[0]), STEP_MS)
    return model


@pytest.fixture(scope="module")
def faulty(model: ParkModel, times: IntArray) -> Frame:
    return model.frame(times, transport=True)


@pytest.fixture(scope="module")
def clean(park: Park, times: IntArray) -> Frame:
    return ParkModel(park, SEED).frame(times)


def col(model: ParkModel, meter: str, quantity: str) -> int:
    return model.column[(meter, quantity)]


def cols_of(model: ParkModel, meters: set[str]) -> IntArray:
    return np.array([k for k, (m, _) in enumerate(model.series) if m in meters])


def window(times: IntArray, fault: Fault) -> npt.NDArray[np.bool_]:
    return fault.active(times)


def first_row(times: IntArray, t: int) -> int:
    return int(np.searchsorted(times, t))


def test_ground_truth_has_every_fault(model: ParkModel, faulty: Frame, tmp_path: Path) -> None:
    truth = records(SCHEDULE, model.fault_details())
    assert len(truth) == len(SCHEDULE)
    by_id = {r["id"]: r for r in truth}
    for i, fault in enumerate(SCHEDULE):
        r = by_id[i]
        assert r["kind"] == fault.kind.value
        assert r["start"] == fault.start_ms
        assert r["end"] == fault.end_ms
        assert r.get("meter") == fault.meter
        assert r.get("zone") == fault.zone
        assert r.get("gateway") == fault.gateway
        assert r["magnitude"] == fault.magnitude
        assert r["start_iso"].endswith("Z")
    assert [r["start"] for r in truth] == sorted(r["start"] for r in truth)
    path = tmp_path / "ground_truth.jsonl"
    assert write_ground_truth(path, truth) == len(SCHEDULE)
    assert read_ground_truth(path) == truth
    # the ground truth reads back as the schedule it records
    assert sorted(load_schedule(path), key=SCHEDULE.index) == SCHEDULE


def test_counter_reset_drops_to_zero_and_counts_on(
    model: ParkModel, faulty: Frame, times: IntArray
) -> None:
    fault = SCHEDULE[7]
    c = col(model, "elecco-smt", "e_kwh")
    r0 = first_row(times, fault.start_ms)
    shown, true = faulty.values[:, c], faulty.true_values[:, c]
    assert shown[r0] == 0.0
    np.testing.assert_array_equal(shown[:r0], true[:r0])
    np.testing.assert_allclose(shown[r0:], true[r0:] - true[r0], atol=1e-6)
    assert model.fault_details()[7]["reading_before"] == true[r0 - 1]


def test_counter_rollover_wraps_at_the_register_modulus(
    model: ParkModel, faulty: Frame, times: IntArray
) -> None:
    fault = SCHEDULE[8]
    assert fault.magnitude == ROLLOVER_MODULUS
    c = col(model, "chemco-reactors", "e_kwh")
    r0 = first_row(times, fault.start_ms)
    shown, true = faulty.values[:, c], faulty.true_values[:, c]
    assert ROLLOVER_MODULUS - 1000 < shown[r0 - 1] < ROLLOVER_MODULUS
    assert 0 <= shown[r0] < 1000
    assert (shown >= 0).all()
    assert (shown < ROLLOVER_MODULUS).all()
    # consumption across the wrap is kept: the increments are the true ones
    wrapped = np.diff(shown) + np.where(np.diff(shown) < 0, ROLLOVER_MODULUS, 0.0)
    np.testing.assert_allclose(wrapped, np.diff(true), atol=1e-6)
    assert np.count_nonzero(np.diff(shown) < 0) == 1


def test_meter_replacement_leaves_a_gap_and_a_new_counter(
    model: ParkModel, faulty: Frame, times: IntArray
) -> None:
    fault = SCHEDULE[9]
    assert faulty.present is not None
    cols = cols_of(model, {"elecco-water"})
    gap = window(times, fault)
    assert not faulty.present[np.ix_(gap, cols)].any()
    assert faulty.present[np.ix_(~gap, cols)].all()
    c = col(model, "elecco-water", "vol_m3")
    r_end = first_row(times, fault.end_ms or 0)
    true = faulty.true_values[:, c]
    np.testing.assert_allclose(
        faulty.values[r_end:, c], fault.magnitude + true[r_end:] - true[r_end], atol=1e-6
    )
    assert model.fault_details()[9]["old_reading"] == true[first_row(times, fault.start_ms) - 1]


def test_stuck_meter_repeats_one_reading(model: ParkModel, faulty: Frame, times: IntArray) -> None:
    fault = SCHEDULE[10]
    rows = window(times, fault)
    r0 = first_row(times, fault.start_ms)
    for c in cols_of(model, {"pharmco-hvac"}):
        assert (faulty.values[rows, c] == faulty.true_values[r0, c]).all()
        assert faulty.values[rows, c].size == 180
    p = col(model, "pharmco-hvac", "p_kw")
    assert faulty.true_values[rows, p].std() > 0  # the meter was not really constant


def test_word_swapped_floats(model: ParkModel, faulty: Frame, times: IntArray) -> None:
    assert word_swap(np.array([412.5]))[0] == np.array([0x400043CE], np.uint32).view(np.float32)[0]
    fault = SCHEDULE[11]
    rows = window(times, fault)
    cols = cols_of(model, {"elecco-hvac"})
    shown = faulty.values[np.ix_(rows, cols)]
    true = faulty.true_values[np.ix_(rows, cols)]
    bits = true.astype(np.float32).view(np.uint32)
    swapped = ((bits >> np.uint32(16)) | (bits << np.uint32(16))).view(np.float32)
    np.testing.assert_array_equal(shown.astype(np.float32).view(np.uint32), swapped.view(np.uint32))
    assert not np.allclose(shown, true)
    np.testing.assert_array_equal(faulty.values[~rows][:, cols], faulty.true_values[~rows][:, cols])


def test_communication_loss_drops_readings(
    model: ParkModel, faulty: Frame, times: IntArray, park: Park
) -> None:
    assert faulty.present is not None
    gateway = {m.id for m in park.iter_meters() if m.gateway == "gw-foodco"}
    for fault, meters in ((SCHEDULE[12], gateway), (SCHEDULE[13], {"park-weather"})):
        rows = window(times, fault)
        cols = cols_of(model, meters)
        assert not faulty.present[np.ix_(rows, cols)].any()
        assert faulty.present[np.ix_(~rows, cols)].all()
    lost = window(times, SCHEDULE[12])
    readings = model.readings(faulty, int(np.flatnonzero(lost)[0]))
    assert not gateway & {r["m"] for r in readings}


def test_clock_skew_shifts_timestamps(
    model: ParkModel, faulty: Frame, times: IntArray, park: Park
) -> None:
    fault = SCHEDULE[14]
    assert faulty.t_offset_ms is not None
    rows = window(times, fault)
    meters = {m.id for m in park.iter_meters() if m.gateway == "gw-autoparts"}
    cols = cols_of(model, meters)
    assert (faulty.t_offset_ms[np.ix_(rows, cols)] == 120_000).all()
    assert (faulty.t_offset_ms[np.ix_(~rows, cols)] == 0).all()
    row = int(np.flatnonzero(rows)[0])
    for reading in model.readings(faulty, row):
        skew = 120_000 if reading["m"] in meters else 0
        assert reading["t"] == times[row] + skew


def test_duplicated_and_late_batches_are_delivered(
    model: ParkModel, faulty: Frame, times: IntArray
) -> None:
    assert faulty.present is not None
    dup, late = SCHEDULE[15], SCHEDULE[16]
    copies = [d for d in faulty.deliveries if d.duplicate]
    assert {d.gateway for d in copies} == {"gw-chemco"}
    assert [d.t_ms for d in copies] == [int(t) for t in times[window(times, dup)]]
    for d in copies:
        row = first_row(times, d.t_ms)
        assert d.arrival_ms == d.t_ms + 20_000
        np.testing.assert_array_equal(d.values, faulty.values[row, d.columns])
        assert faulty.present[row, d.columns].all()  # the original went out too
    delayed = [d for d in faulty.deliveries if not d.duplicate]
    assert [d.t_ms for d in delayed] == [int(t) for t in times[window(times, late)]]
    for d in delayed:
        row = first_row(times, d.t_ms)
        assert d.gateway == "gw-pharmco"
        assert d.arrival_ms == d.t_ms + 600_000
        assert not faulty.present[row, d.columns].any()  # not in its own poll cycle
        np.testing.assert_array_equal(d.values, faulty.true_values[row, d.columns])
        readings = model.delivery_readings(d)
        assert {r["m"] for r in readings} == {"pharmco-main", "pharmco-hvac", "pharmco-water"}


def test_batches_publish_duplicates_and_late_batches_in_arrival_order(park: Park) -> None:
    late = Fault(
        K.LATE_BATCHES, T0 + 5 * STEP_MS, T0 + 7 * STEP_MS, gateway="gw-elecco", magnitude=180
    )
    dup = Fault(
        K.DUPLICATE_BATCHES, T0 + 2 * STEP_MS, T0 + 3 * STEP_MS, gateway="gw-park", magnitude=1
    )
    model = ParkModel(park, SEED, [late, dup])
    seen = []
    for k in range(12):
        t = T0 + k * STEP_MS
        for batch in model.batches(t):
            seen.append((k, batch.gateway, batch.late, batch.duplicate, batch.readings[0]["t"]))
    assert (2, "gw-park", False, True, T0 + 2 * STEP_MS) in seen
    assert sum(1 for s in seen if s[1] == "gw-park" and s[0] == 2) == 2
    elecco = [s for s in seen if s[1] == "gw-elecco"]
    assert [s[0] for s in elecco if not s[2]] == [k for k in range(12) if k not in (5, 6)]
    assert [(s[0], s[4]) for s in elecco if s[2]] == [
        (8, T0 + 5 * STEP_MS),
        (9, T0 + 6 * STEP_MS),
    ]


def imbalance(model: ParkModel, frame: Frame, park: Park, zone: str) -> FloatArray:
    """A zone meter minus its children (the tank's outlet feeds back: it counts negatively)."""
    flow = frame.values[:, col(model, zone, "flow_m3h")].copy()
    for m in park.iter_meters():
        if m.spec.parent == zone:
            sign = -1.0 if m.spec.role == "tank_out" else 1.0
            flow -= sign * frame.values[:, col(model, m.id, "flow_m3h")]
    return flow


def test_leaks_raise_the_zone_imbalance_by_their_magnitude(
    model: ParkModel, faulty: Frame, clean: Frame, times: IntArray, park: Park
) -> None:
    burst, leak = SCHEDULE[0], SCHEDULE[1]
    extra = imbalance(model, faulty, park, "water-d2") - imbalance(model, clean, park, "water-d2")
    np.testing.assert_allclose(extra, 4.0 * window(times, burst), atol=0.004)
    extra = imbalance(model, faulty, park, "park-water-main") - imbalance(
        model, clean, park, "park-water-main"
    )
    np.testing.assert_allclose(extra, 6.0 * leak.intensity(times), atol=0.006)
    halfway = first_row(times, leak.start_ms + 10 * H)
    assert extra[halfway] == pytest.approx(3.0, abs=0.01)  # the leak grows slowly


def test_compressed_air_leak_raises_the_off_shift_load(
    model: ParkModel, faulty: Frame, clean: Frame, times: IntArray
) -> None:
    fault = SCHEDULE[2]
    c = col(model, "autoparts-air", "flow_nm3h")
    local_hour = (times - T0) % 86_400_000 // H
    night = window(times, fault) & (local_hour < 6)
    gain = faulty.values[night, c].mean() - clean.values[night, c].mean()
    assert gain == pytest.approx(250.0, rel=0.25)
    motors = np.array([col(model, m, "p_kw") for m in ("autoparts-comp1", "autoparts-comp2")])
    assert (
        faulty.values[np.ix_(night, motors)].sum() > 1.1 * clean.values[np.ix_(night, motors)].sum()
    )
    np.testing.assert_array_equal(faulty.values[:1000, c], clean.values[:1000, c])


def test_waste_heat_faults(model: ParkModel, faulty: Frame, clean: Frame, times: IntArray) -> None:
    flue_fault, cooling_fault, bypass_fault = SCHEDULE[3], SCHEDULE[4], SCHEDULE[5]
    flue = col(model, "chemco-boiler", "t_flue_c")
    rise = faulty.values[:, flue] - clean.values[:, flue]
    np.testing.assert_allclose(rise, 30.0 * flue_fault.intensity(times), atol=0.011)
    gas = col(model, "chemco-boiler-gas", "flow_nm3h")
    hot = window(times, flue_fault) & (flue_fault.intensity(times) == 1)
    ratio = faulty.values[hot, gas] / clean.values[hot, gas]
    np.testing.assert_allclose(ratio, 0.92 / (0.92 - 0.0005 * 30), rtol=1e-4)

    back = col(model, "steelco-cooling", "t_return_c")
    rise = faulty.values[:, back] - clean.values[:, back]
    on = window(times, cooling_fault)
    np.testing.assert_allclose(rise[on], 5.0, atol=0.011)

    heat = col(model, "steelco-heat", "heat_kw")
    flow = col(model, "steelco-heat", "flow_m3h")
    on = window(times, bypass_fault)
    assert (faulty.values[on, heat] == 0).all()
    assert (clean.values[on, heat] > 50).all()
    np.testing.assert_array_equal(faulty.values[on, flow], clean.values[on, flow])
    # what is no longer recovered heats the cooling water
    np.testing.assert_allclose(rise[on], 8.0, atol=0.011)
    np.testing.assert_array_equal(faulty.values[~on, heat], clean.values[~on, heat])


def test_demand_peak_pushes_the_site_past_its_contract(
    model: ParkModel, faulty: Frame, times: IntArray
) -> None:
    fault = SCHEDULE[6]
    main = col(model, "autoparts-main", "p_kw")
    on = window(times, fault)
    contracted = 3000.0
    assert (faulty.values[on, main] > contracted).all()
    assert faulty.values[on, main].mean() == pytest.approx(contracted * 1.15, rel=0.05)
    quarter = faulty.values[first_row(times, fault.start_ms) :][:15, main].mean()
    assert quarter > contracted
    before = faulty.values[
        first_row(times, fault.start_ms) - 30 : first_row(times, fault.start_ms), main
    ]
    assert before.max() < contracted
    details = model.fault_details()[6]
    assert details["contracted_kw"] == contracted
    assert details["extra_kw"] > 0
    park_main = col(model, "park-main", "p_kw")
    assert (
        faulty.values[on, park_main].mean()
        > faulty.values[first_row(times, fault.end_ms or 0) + 5, park_main]
    )


def test_random_schedules_are_deterministic_and_complete(park: Park) -> None:
    end = T0 + 30 * 86_400_000
    a = random_schedule(park, T0, end, seed=3)
    assert a == random_schedule(park, T0, end, seed=3)
    assert a != random_schedule(park, T0, end, seed=4)
    assert {f.kind for f in a} == set(FaultKind)  # the demo park has a target for each
    for f in a:
        assert f.start_ms >= T0
        assert (f.end_ms or f.start_ms) <= end
        assert f.start_ms % 60_000 == 0
    # the model takes any of them, and so does the ground truth
    model = ParkModel(park, 3, a)
    model.frame(T0 + np.arange(60, dtype=np.int64) * STEP_MS, transport=True)
    assert len(records(a, model.fault_details())) == len(a)
    process = [f for f in a if f.kind in PROCESS_KINDS]
    assert len(process) == len(PROCESS_KINDS)


def test_schedules_read_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text(
        "- {kind: water_burst, zone: water-d1, start: '2024-11-25T02:00:00Z',"
        " end: '2024-11-25T04:00:00Z', magnitude: 5}\n"
        "- {kind: counter_reset, meter: park-main, start: 1732500000000}\n"
    )
    burst, reset = load_schedule(path)
    assert burst.kind is K.WATER_BURST
    assert burst.start_ms == 1_732_500_000_000
    assert burst.end_ms == burst.start_ms + 2 * H
    assert burst.magnitude == 5
    assert reset.end_ms == reset.start_ms == 1_732_500_000_000


def test_bad_faults_are_refused(park: Park) -> None:
    with pytest.raises(ValueError, match="needs a zone"):
        Fault(K.WATER_LEAK, T0, T0 + H, meter="water-d1")
    with pytest.raises(ValueError, match="not a water meter"):
        ParkModel(park, 0, [Fault(K.WATER_LEAK, T0, T0 + H, zone="park-main")])
    with pytest.raises(ValueError, match="unknown gateway"):
        ParkModel(park, 0, [Fault(K.CLOCK_SKEW, T0, T0 + H, gateway="gw-nowhere")])
    with pytest.raises(ValueError, match="no contracted demand"):
        ParkModel(park, 0, [Fault(K.DEMAND_PEAK, T0, T0 + H, meter="steelco-furnace")])


UNDER = Fault(
    K.METER_UNDER_REGISTRATION, T0 + 6 * H, T0 + 30 * H, meter="steelco-water", magnitude=0.85
)


def test_an_under_registering_sub_meter_reads_low_and_its_parent_does_not(
    park: Park, clean: Frame, times: IntArray
) -> None:
    model = ParkModel(park, SEED, [UNDER])
    frame = model.frame(times)
    on = window(times, UNDER)
    flow, vol = col(model, "steelco-water", "flow_m3h"), col(model, "steelco-water", "vol_m3")
    np.testing.assert_allclose(frame.values[on, flow], 0.85 * clean.values[on, flow], rtol=1e-12)
    np.testing.assert_array_equal(frame.values[~on, flow], clean.values[~on, flow])
    # the parent measures the true flow: its balance with its children no longer closes
    parent = col(model, "water-d1", "flow_m3h")
    np.testing.assert_array_equal(frame.values[:, parent], clean.values[:, parent])
    gap = imbalance(model, frame, park, "water-d1") - imbalance(model, clean, park, "water-d1")
    np.testing.assert_allclose(gap[on], 0.15 * clean.values[on, flow], atol=1e-9)
    # its counter registers 85 % of what flows while the fault lasts, never steps back, and
    # keeps the shortfall afterwards
    shown, true = np.diff(frame.values[:, vol]), np.diff(clean.values[:, vol])
    inside = on[1:] & on[:-1]
    np.testing.assert_allclose(shown[inside], 0.85 * true[inside], rtol=1e-9, atol=1e-9)
    assert (shown >= 0).all()
    after = first_row(times, UNDER.end_ms or 0)
    start = first_row(times, UNDER.start_ms)
    true_during = clean.values[after, vol] - clean.values[start, vol]
    shortfall = clean.values[after:, vol] - frame.values[after:, vol]
    np.testing.assert_allclose(shortfall, 0.15 * true_during, rtol=1e-9)
    # the ground truth says what share it shows
    (record,) = records([UNDER], model.fault_details())
    assert (record["kind"], record["meter"], record["unit"]) == (
        "meter_under_registration",
        "steelco-water",
        "fraction",
    )
    assert record["magnitude"] == 0.85


def test_a_rollover_of_an_under_registering_counter_wraps_at_its_start(
    park: Park, times: IntArray
) -> None:
    rollover = Fault(K.COUNTER_ROLLOVER, T0 + 20 * H, meter="steelco-water", magnitude=1e5)
    model = ParkModel(park, SEED, [UNDER, rollover])
    model.prime(int(times[0]), STEP_MS)
    frame = model.frame(times)
    vol = frame.values[:, col(model, "steelco-water", "vol_m3")]
    steps = np.diff(vol)
    (wrap,) = np.flatnonzero(steps < 0)
    assert times[wrap + 1] == rollover.start_ms  # the first sample at or after the start
    assert 0 <= vol[wrap + 1] < steps[wrap + 1 :].max() + 1  # just past zero
    assert vol[wrap] > 1e5 - 10  # just below the modulus


def test_under_registration_needs_the_share_the_meter_shows() -> None:
    with pytest.raises(ValueError, match="share of the true flow"):
        Fault(K.METER_UNDER_REGISTRATION, T0, T0 + H, meter="steelco-water")
