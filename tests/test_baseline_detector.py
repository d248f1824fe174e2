"""The baseline-deviation detector on synthetic meters: a plant's daily and weekly cycle with
Chinese holidays and make-up workdays, clean or with a step, a spike, a drift."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from analytics.detectors import DETECTORS
from analytics.detectors.baseline import KIND, BaselineDetector, BaselineParams
from analytics.engine.contract import Block, Finding, ParkContext
from analytics.engine.slots import slot_block
from parkwatch.calendar import HOLIDAY, SATURDAY, SUNDAY
from parkwatch.events import Family
from parkwatch.site import Park

ZONE = ZoneInfo("Asia/Shanghai")
STEP_MS = 900_000  # 15-minute slots keep five weeks quick
DAY_SLOTS = 96
# Monday 14 April 2025: five weeks take in a make-up workday (Sunday 27 April) and the
# Labour Day holiday (1–5 May)
START_MS = int(datetime(2025, 4, 14, tzinfo=ZONE).timestamp() * 1000)
WEEKS = 5


def park(meters: int) -> Park:
    return Park.model_validate(
        {
            "park": "test",
            "analytics": {"step_s": STEP_MS / 1000},
            "tariffs": {"prices": {"electricity": 0.8}},  # ¥ per kWh
            "meters": [{"id": f"m{i}", "utility": "electricity"} for i in range(meters)],
        }
    )


def context(meters: int) -> ParkContext:
    return ParkContext(park(meters), reported={f"m{i}": ["p_kw"] for i in range(meters)})


def plant_load(slots: int, seed: int, peak: float = 300.0) -> np.ndarray:
    """A plant: 100 kW at night and on Sundays and holidays, +peak on workdays and
    +peak/3 on Saturdays from 08:00 to 18:00 with hour-long ramps, 1 % noise."""
    ctx = context(1)
    times = START_MS + np.arange(slots, dtype=np.int64) * STEP_MS
    hour = (ctx.local_ms(times) % 86_400_000) / 3_600_000
    shape = np.clip(np.minimum(hour - 7.5, 18.5 - hour), 0.0, 1.0)  # trapezoid 07:30–18:30
    types = ctx.day_types(times)
    amplitude = np.where(types == SATURDAY, peak / 3, peak)
    amplitude[(types == SUNDAY) | (types == HOLIDAY)] = 0.0
    rng = np.random.default_rng(seed)
    return 100.0 + amplitude * shape + rng.normal(0.0, 0.01 * (100 + peak / 2), slots)


def blocks(values: np.ndarray, chunk: int) -> list[Block]:
    rows, slots = values.shape
    row = np.repeat(np.arange(rows, dtype=np.int64), slots)
    t = np.tile(START_MS + np.arange(slots, dtype=np.int64) * STEP_MS, rows)
    v = values.reshape(-1)
    keep = ~np.isnan(v)
    out = []
    for first in range(0, slots, chunk):
        n = min(chunk, slots - first)
        out.append(
            slot_block(row[keep], t[keep], v[keep], rows, START_MS + first * STEP_MS, STEP_MS, n)
        )
    return out


def run(
    values: np.ndarray, chunk: int = DAY_SLOTS, params: dict[str, float] | None = None
) -> list[Finding]:
    ctx = context(values.shape[0])
    detector = BaselineDetector(ctx, BaselineDetector.select(ctx), params)
    findings: list[Finding] = []
    for block in blocks(values, chunk):
        findings.extend(detector.update(block).findings)
    return findings


def opened(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.active]


def slot_ms(day: int, hour: float) -> int:
    return START_MS + day * 86_400_000 + int(hour * 3_600_000)


# A profile met again after a while follows the lasting change the workdays saw (a change
# for good on 5 May is one event), but what a holiday's profile learnt of a passing change on
# 5 May (a spike, two days at 0 on a flat series, whose scale the change seeded) comes back on
# the next holiday (Dragon Boat, 31 May): tests of what follows such a change check the
# events before then.
NEXT_HOLIDAY_MS = slot_ms(47, 0.0)


def before(findings: list[Finding], until_ms: int) -> list[Finding]:
    return [f for f in findings if f.at_ms < until_ms]


def test_registered_and_selects_rates_and_the_parks_own_quantities() -> None:
    assert BaselineDetector in DETECTORS
    spec = park(2).model_dump()
    spec["quantities"] = [
        {"name": "oven_c", "unit": "°C", "utilities": ["electricity"]},
        {"name": "runs", "unit": "1", "kind": "counter", "utilities": ["electricity"]},
    ]
    ctx = ParkContext(
        Park.model_validate(spec),
        reported={"m0": ["p_kw", "e_kwh", "oven_c", "runs"], "m1": ["p_kw", "pf"]},
    )
    keys = BaselineDetector.select(ctx)
    # counters (energy, a custom counter) and registry quantities that are not a
    # consumption rate (power factor) are left out
    assert [(k.meter, k.quantity) for k in keys] == [
        ("m0", "p_kw"),
        ("m0", "oven_c"),
        ("m1", "p_kw"),
    ]


def test_clean_cycle_with_weekends_holidays_and_a_makeup_day_raises_nothing() -> None:
    slots = WEEKS * 7 * DAY_SLOTS
    values = np.stack([plant_load(slots, seed, peak) for seed, peak in enumerate((300, 50, 900))])
    assert opened(run(values)) == []


def test_cold_start_on_a_saturday_does_not_alarm() -> None:
    # start on Saturday 19 April: nothing on the weekend it starts with, nor once a week of
    # every day type has been seen. (Its first workday morning ramps three times as steeply
    # as anything seen before: that one may be remarked.)
    values = plant_load(WEEKS * 7 * DAY_SLOTS, seed=4)[None, 5 * DAY_SLOTS :]
    ctx = context(1)
    detector = BaselineDetector(ctx, BaselineDetector.select(ctx))
    start = START_MS + 5 * 86_400_000
    t = start + np.arange(values.shape[1], dtype=np.int64) * STEP_MS
    block = slot_block(
        np.zeros(t.size, dtype=np.int64), t, values[0], 1, start, STEP_MS, values.shape[1]
    )
    found = opened(detector.update(block).findings)
    weekend_end = start + 2 * 86_400_000
    week_end = start + 7 * 86_400_000
    assert [f for f in found if f.at_ms <= weekend_end or f.at_ms > week_end] == []


def test_step_change_is_found_within_an_hour() -> None:
    slots = WEEKS * 7 * DAY_SLOTS
    values = plant_load(slots, seed=1)[None, :].copy()
    onset = 23 * DAY_SLOTS + 40  # Wednesday 7 May 2025, 10:00
    values[0, onset : onset + 2 * DAY_SLOTS] += 150.0
    found = opened(run(values))
    assert found, "the step was not found"
    first = found[0]
    assert first.kind == KIND
    assert first.family is Family.CONSUMPTION
    assert first.meter == "m0"
    onset_ms = START_MS + onset * STEP_MS
    assert onset_ms < first.at_ms <= onset_ms + 3_600_000
    assert first.evidence["direction"] == "high"
    assert first.estimate is not None
    assert first.estimate.value > 50  # kW above the expected band
    assert first.estimate.per_day_unit == "kWh/d"
    # kW above the band, for a day, at 0.8 ¥/kWh
    assert first.estimate.per_day == pytest.approx(first.estimate.value * 24)
    assert first.estimate.cny_per_day == pytest.approx(first.estimate.value * 24 * 0.8)


def test_night_spike_is_found_in_its_slot() -> None:
    slots = WEEKS * 7 * DAY_SLOTS
    values = plant_load(slots, seed=2)[None, :].copy()
    spike = 16 * DAY_SLOTS + 8  # Wednesday 30 April, 02:00
    values[0, spike] += 250.0
    found = opened(run(values))
    assert [f.at_ms for f in found] == [START_MS + (spike + 1) * STEP_MS]


def test_load_falling_to_nothing_on_a_workday_is_found() -> None:
    slots = WEEKS * 7 * DAY_SLOTS
    values = plant_load(slots, seed=3)[None, :].copy()
    day = 22 * DAY_SLOTS  # Tuesday 6 May: the plant does not start up
    values[0, day : day + DAY_SLOTS] = 100.0 + np.random.default_rng(9).normal(0, 2, DAY_SLOTS)
    found = opened(run(values))
    assert found, "the missing production day was not found"
    assert found[0].evidence["direction"] == "low"
    assert slot_ms(22, 7.5) < found[0].at_ms <= slot_ms(22, 10)


def test_drift_is_found() -> None:
    slots = WEEKS * 7 * DAY_SLOTS
    values = plant_load(slots, seed=5)[None, :].copy()
    first = 21 * DAY_SLOTS
    values[0, first:] += np.linspace(0.0, 300.0, slots - first)  # +300 kW over two weeks
    found = opened(run(values))
    assert found, "the drift was not found"
    assert found[0].at_ms > START_MS + first * STEP_MS


def test_gaps_are_no_evidence() -> None:
    slots = WEEKS * 7 * DAY_SLOTS
    values = plant_load(slots, seed=6)[None, :].copy()
    values[0, 12 * DAY_SLOTS : 12 * DAY_SLOTS + 30] = np.nan  # 7.5 hours without readings
    values[0, 20 * DAY_SLOTS : 21 * DAY_SLOTS] = np.nan  # a whole day
    assert opened(run(values)) == []


def test_an_hourly_meter_starting_an_hour_early_is_no_deviation() -> None:
    # an hourly meter fills every other 30-minute bin: the band reaches the next hour's bins
    # (as a 15-minute meter's reaches the next half hour's), not the empty ones beside it
    hour_ms = 3_600_000
    ctx = ParkContext(
        park(1).model_copy(
            update={"analytics": park(1).analytics.model_copy(update={"step_s": 3600})}
        ),
        reported={"m0": ["p_kw"]},
    )
    slots = WEEKS * 7 * 24
    times = START_MS + np.arange(slots, dtype=np.int64) * hour_ms
    hour = (ctx.local_ms(times) % 86_400_000) / hour_ms
    day = np.arange(slots) // 24
    early = day == 23  # Wednesday 7 May: the plant starts and stops an hour early
    hour = np.where(early, hour + 1.0, hour)
    shape = np.clip(np.minimum(hour - 7.5, 18.5 - hour), 0.0, 1.0)
    workday = ctx.day_types(times) == 0
    values = 100.0 + 300.0 * shape * workday
    values += np.random.default_rng(7).normal(0.0, 2.5, slots)
    detector = BaselineDetector(ctx, BaselineDetector.select(ctx))
    block = slot_block(np.zeros(slots, dtype=np.int64), times, values, 1, START_MS, hour_ms, slots)
    found = opened(detector.update(block).findings)
    # the band holds the early start (the smoothed deviation's new high may still remark on it)
    assert [f.evidence["reason"] for f in found if f.evidence["reason"] == "deviation"] == []


def test_a_deviation_opens_no_new_event_within_a_day_of_the_last() -> None:
    # hour-long bumps on the night load: 02:00 (a new high of the smoothed deviation),
    # 05:00 (a deviation), 22:00 the same day (quiet: the operator has heard of this meter's
    # baseline today), and 02:00 two days later (a day on: alerted again), all of 80 kW.
    # Review: the silenced one set the record the repeat had to beat by record_margin, so
    # the repeat was not alerted (the test had raised it to 100 kW); silenced, it takes the
    # record no further than an open one could.
    slots = WEEKS * 7 * DAY_SLOTS
    values = plant_load(slots, seed=2)[None, :].copy()
    for day, hour, kw in ((16, 2, 80.0), (16, 5, 80.0), (16, 22, 80.0), (18, 2, 80.0)):
        first = day * DAY_SLOTS + hour * 4
        values[0, first : first + 4] += kw
    found = opened(run(values))
    assert [f.evidence["reason"] for f in found] == ["new_deviation_high", "deviation", "deviation"]
    assert [f.at_ms for f in found] == [slot_ms(16, 2.25), slot_ms(16, 5.25), slot_ms(18, 2.25)]


def test_event_closes_when_the_deviation_ends() -> None:
    slots = WEEKS * 7 * DAY_SLOTS
    values = plant_load(slots, seed=1)[None, :].copy()
    onset = 23 * DAY_SLOTS + 40
    values[0, onset : onset + 8] += 200.0  # two hours
    findings = run(values)
    assert [f.active for f in findings][:2] == [True, False]
    assert findings[1].at_ms > findings[0].at_ms


def test_rows_of_one_meter_share_one_event() -> None:
    spec = park(1).model_dump()
    spec["quantities"] = [{"name": "line_a", "unit": "A", "utilities": ["electricity"]}]
    ctx = ParkContext(Park.model_validate(spec), reported={"m0": ["p_kw", "line_a"]})
    detector = BaselineDetector(ctx, BaselineDetector.select(ctx))
    slots = WEEKS * 7 * DAY_SLOTS
    load = plant_load(slots, seed=1)
    values = np.stack([load, load / 0.4]).copy()  # current follows power
    onset = 23 * DAY_SLOTS + 40
    values[:, onset : onset + 8] *= 1.6
    findings = []
    for block in blocks(values, DAY_SLOTS):
        findings.extend(detector.update(block).findings)
    assert [f.active for f in findings] == [True, False]
    assert findings[0].meter == "m0"


def test_chunk_size_snapshot_and_restore_give_the_same_findings() -> None:
    slots = 4 * 7 * DAY_SLOTS
    values = np.stack([plant_load(slots, seed) for seed in range(3)])
    values[1, 20 * DAY_SLOTS + 40 : 20 * DAY_SLOTS + 60] += 200.0
    values[2, 25 * DAY_SLOTS + 10] -= 80.0
    values[0, 15 * DAY_SLOTS : 15 * DAY_SLOTS + 5] = np.nan
    expected = run(values, chunk=slots)
    assert expected, "the test needs findings to compare"
    for chunk in (1, 7, DAY_SLOTS, 500):
        assert run(values, chunk=chunk) == expected
    # snapshot half-way, restore into a new instance, continue
    ctx = context(3)
    keys = BaselineDetector.select(ctx)
    first = BaselineDetector(ctx, keys)
    parts = blocks(values, 250)
    findings: list[Finding] = []
    for block in parts[:6]:
        findings.extend(first.update(block).findings)
    snapshot = first.state()
    second = BaselineDetector(ctx, keys)
    second.restore(snapshot)
    for block in parts[6:]:
        findings.extend(second.update(block).findings)
    assert findings == expected
    # the snapshot is plain data and numpy arrays, and the old instance did not change it
    for value in snapshot.values():
        assert isinstance(value, int | float | np.ndarray)


def test_params_are_checked() -> None:
    assert BaselineParams.from_mapping({"z_min": 5}).z_min == 5
    with pytest.raises(ValueError, match="unknown baseline parameter"):
        BaselineParams.from_mapping({"z_mni": 5})


def test_block_of_another_shape_is_refused() -> None:
    ctx = context(2)
    detector = BaselineDetector(ctx, BaselineDetector.select(ctx))
    values = np.zeros((3, 4))
    block = blocks(values, 4)[0]
    with pytest.raises(ValueError, match="rows"):
        detector.update(block)


def test_a_meter_reading_zero_until_its_plant_starts_learns_a_scale() -> None:
    # review: a meter reading exactly 0 for its first days learnt a scale of 0 (every miss
    # was clipped at 0 scales), and then judged the plant's plain noise against the range
    # floor alone: deviations of ~240 scales, events open for days, every week. The clip is
    # now never at 0 scales: the plant's start is a new extreme (alerted once), the scale
    # grows from there, and a real spike is still found in its slot. Review (base10): the
    # start's event stayed open ~72 h while the scale regrew from the range floor, and the
    # profile learnt the workday ramp only from that floor: the first Monday's morning ramp
    # was remarked (pinned here as expected). The scale is now seeded from the change: the
    # event closes in hours; the plant's first morning (higher than anything seen) is a new
    # extreme, the first Monday is no remark.
    slots = WEEKS * 7 * DAY_SLOTS
    values = plant_load(slots, seed=1)[None, :].copy()
    values[0, : 2 * DAY_SLOTS] = 0.0
    spike = 16 * DAY_SLOTS + 8  # Wednesday 30 April, 02:00
    values[0, spike] += 250.0
    ctx = context(1)
    detector = BaselineDetector(ctx, BaselineDetector.select(ctx))
    found = []
    for block in blocks(values, DAY_SLOTS):
        found.extend(opened(detector.update(block).findings))
    assert detector.s["scale"][0] > 0
    assert [f.at_ms for f in found] == [slot_ms(2, 0.25), slot_ms(2, 8.0), slot_ms(16, 2.25)]
    assert found[0].evidence["reason"] == "new_value_extreme"
    assert max(durations_h(run(values))) <= 12


def test_a_spike_in_the_days_after_a_flat_start_is_found() -> None:
    # review (base10): 25 hours at 0 (past the warm-up), then the plant: the start's event
    # stayed open ~70 h while the scale regrew from the range floor, and a spike of 150 kW
    # the next day was not raised. The start's scale is now what its change says.
    values = plant_load(3 * 7 * DAY_SLOTS, seed=4)[None, :].copy()
    values[0, :100] = 0.0
    spike = 2 * DAY_SLOTS + 44  # Wednesday 16 April, 11:00, the plant's second day
    values[0, spike : spike + 4] += 150.0
    found = run(values)
    assert opened(found)[0].at_ms == START_MS + 101 * STEP_MS  # the start
    assert START_MS + (spike + 1) * STEP_MS in [f.at_ms for f in opened(found)]
    assert durations_h(found)[0] <= 6


def durations_h(findings: list[Finding]) -> list[float]:
    """How long each event was open (hours), the last one up to the end of the data."""
    out, since = [], 0
    for f in findings:
        if f.active:
            since = f.at_ms
        else:
            out.append((f.at_ms - since) / 3_600_000)
    return out


LONG = 8 * 7 * DAY_SLOTS  # eight weeks: what a stuck scale did shows weeks after the change


def test_a_constant_series_that_steps_is_alerted_once() -> None:
    # review: a series that read one value and then changed was started afresh at its first
    # change, so the change itself was never judged (no event), and its scale stayed 0
    # afterwards (the new series read one value again): nothing when a constant 120 stepped to
    # 0 for good; when it came back after two days, events of 1000 scales for four weeks.
    # (Base10d: the Saturday and holiday profiles, met again after the holiday week and 26
    # days on, still held 120 and were remarked; they now follow the workdays' change.)
    change = 21 * DAY_SLOTS + 30  # Monday 5 May, 07:30
    values = np.full((1, WEEKS * 7 * DAY_SLOTS), 120.0)
    values[0, change:] = 0.0
    found = run(values)
    assert [(f.active, f.at_ms) for f in found][:1] == [(True, START_MS + (change + 1) * STEP_MS)]
    assert [f.active for f in found] == [True, False]  # and its event closes
    assert found[0].evidence["reason"] == "new_value_extreme"
    # 1 / range_floor scales (base10 had 400: over a resolution of 0.25 % of the level, which
    # hid 30-scale anomalies of steady meters; the level's share is now a float's, 1e-6)
    assert found[0].evidence["scales"] == 1000.0
    values = np.full((1, LONG), 120.0)
    values[0, change : 23 * DAY_SLOTS] = 0.0  # back at 120 after two days
    # (the holiday profile learnt the 0 of 5 May, a holiday: remarked on the next one)
    found = before(run(values), NEXT_HOLIDAY_MS)
    assert [(f.active, f.at_ms) for f in found] == [
        (True, START_MS + (change + 1) * STEP_MS),
        (False, found[1].at_ms),
    ]


def test_an_hour_long_spike_on_a_constant_series_is_alerted_and_nothing_after() -> None:
    # review: the spike started the series afresh (not alerted), and 26 days later the
    # profile it left opened three false deviations
    spike = 21 * DAY_SLOTS + 30
    values = np.full((1, LONG), 120.0)
    values[0, spike : spike + 4] = 400.0
    # the holiday profile learns some of the spike (5 May is a holiday), remarked on the
    # next holiday 26 days later: the trade-off of a profile that keeps its level
    found = before(run(values), NEXT_HOLIDAY_MS)
    assert [(f.active, f.at_ms) for f in found] == [
        (True, START_MS + (spike + 1) * STEP_MS),
        (False, START_MS + (spike + 5) * STEP_MS),
    ]


def test_a_plant_after_zeros_and_a_constant_standby_raises_no_flood() -> None:
    # review: 0 for two days, a standby of exactly 20 kW for three, then the plant: the
    # standby's scale stayed 0 (only a first change from one value started afresh), and 10
    # events opened over six weeks, open up to 200 h. Now: the standby's start, the plant's
    # start and its first Monday night (the workday profile had learnt the standby's night),
    # all within the first week and each closed within a little over three days. With the
    # scale seeded from a flat series' change (base10) each closes within a day and a half
    # (within a day with base10's resolution of 0.25 % of the level, gone: it hid 30-scale
    # anomalies of steady meters; the first Monday night's, 27 scales, stays open 28.5 h while
    # the workday profile unlearns the standby's night), and the plant's first morning,
    # higher than anything seen, is a new extreme of its own.
    values = plant_load(LONG, seed=3)[None, :].copy()
    values[0, : 2 * DAY_SLOTS] = 0.0
    values[0, 2 * DAY_SLOTS : 5 * DAY_SLOTS] = 20.0
    found = run(values)
    assert len(opened(found)) <= 4
    assert all(f.at_ms < slot_ms(8, 0) for f in opened(found))
    assert max(durations_h(found)) < 36


def test_a_blip_in_a_zero_prefix_changes_nothing() -> None:
    # review: a single 0.1 among two days of zeros kept the series from starting afresh (its
    # lowest and highest differed): its scale stayed ~0, events open 72 h and 42 h. The
    # blip is one more small change now: the plant is alerted as without it.
    values = plant_load(LONG, seed=3)[None, :].copy()
    values[0, : 2 * DAY_SLOTS] = 0.0
    plain = run(values)
    values[0, 40] = 0.1
    blip = run(values)
    assert plain, "the plant's start is a new extreme"
    assert [(f.active, f.at_ms) for f in blip] == [(f.active, f.at_ms) for f in plain]
    assert max(durations_h(blip)) < 80


@pytest.mark.parametrize("case", ["step", "spike", "zeros"])
def test_changes_of_a_constant_series_are_the_same_in_any_chunk_and_across_a_restore(
    case: str,
) -> None:
    values = np.full((1, 4 * 7 * DAY_SLOTS), 120.0)
    if case == "step":
        values[0, 15 * DAY_SLOTS + 30 : 17 * DAY_SLOTS] = 0.0
    elif case == "spike":
        values[0, 15 * DAY_SLOTS + 30 : 15 * DAY_SLOTS + 34] = 400.0
    else:
        values = plant_load(values.shape[1], seed=3)[None, :].copy()
        values[0, : 2 * DAY_SLOTS] = 0.0
    expected = run(values, DAY_SLOTS)
    assert expected
    for chunk in (1, 7, 500):
        assert run(values, chunk) == expected
    ctx = context(1)
    keys = BaselineDetector.select(ctx)
    detector = BaselineDetector(ctx, keys)
    found: list[Finding] = []
    for block in blocks(values, 37):  # a fresh instance from a snapshot at every block
        snapshot = detector.state()
        detector = BaselineDetector(ctx, keys)
        detector.restore(snapshot)
        found.extend(detector.update(block).findings)
    assert found == expected


def test_the_usual_noise_after_two_calm_days_is_no_deviation() -> None:
    # two calm weekdays (a tenth of the usual noise) shrink the day's scale; when the usual
    # noise comes back it is no deviation, as the slower scale (three days) still knows it.
    # With the day's scale alone 2 of these 10 meters alarmed at 4.2–4.5 scales.
    slots = WEEKS * 7 * DAY_SLOTS
    first = 22 * DAY_SLOTS  # Tuesday 6 May
    calm = slice(first, first + 2 * DAY_SLOTS)
    values = np.stack([plant_load(slots, seed) for seed in range(10)])
    for seed in range(10):
        # plant_load's own noise, drawn again from its seed, taken down to a tenth
        noise = np.random.default_rng(seed).normal(0.0, 2.5, slots)
        values[seed, calm] -= 0.9 * noise[calm]
    assert opened(run(values)) == []


def test_changes_under_the_resolution_of_a_flat_series_are_nothing() -> None:
    # review (base10): on a flat series a change of 1e-9 was judged against the range floor
    # alone: events of 500 scales. The scale is now floored by the float's resolution (1e-6 of
    # the level). Review (base10c): a quantised sensor's flicker 20.0 ↔ 20.1 is silenced by its
    # quantum (the step, once seen three times), not by a share of the level (0.25 % hid
    # 30-scale anomalies of steady meters): its first 20.1 is one event, a step for good of
    # a series that never moved (nothing says yet it is the sensor's step) is one event.
    change = 21 * DAY_SLOTS + 30
    rng = np.random.default_rng(0)
    tiny = np.full((1, LONG), 50.0)
    tiny[0, change:] += 1e-9
    assert opened(run(tiny)) == []
    step = np.full((1, LONG), 20.0)
    step[0, change:] = 20.1  # 0.5 %
    found = opened(run(step))
    assert [f.at_ms for f in found] == [START_MS + (change + 1) * STEP_MS]
    flicker = np.full((1, LONG), 20.0)
    flicker[0, rng.choice(np.arange(3 * DAY_SLOTS, LONG), 40, replace=False)] = 20.1
    assert len(opened(run(flicker))) == 1
    real = np.full((1, LONG), 20.0)
    real[0, change:] = 24.0  # 20 %: a real step is still alerted
    found = opened(run(real))
    assert found[0].at_ms == START_MS + (change + 1) * STEP_MS
    assert found[0].evidence["scales"] == pytest.approx(1000.0)  # 1 / range_floor


THREE_WEEKS = 21 * DAY_SLOTS + 40  # Monday 5 May, 10:00


@pytest.mark.parametrize(
    ("level", "noise", "change", "slots"),
    [
        (50.0, 0.01, -0.3, 8),  # a 50 Hz series: a dip of 30 σ for two hours
        (10_000.0, 5.0, 80.0, DAY_SLOTS),  # a 10 MW incomer: +80 kW (16 σ) for a day
        (100.0, 0.02, 0.6, 3 * 7 * DAY_SLOTS),  # a steady flow: a leak of 0.6 m³/h for good
    ],
)
def test_a_large_anomaly_of_a_steady_meter_is_found(
    level: float, noise: float, change: float, slots: int
) -> None:
    # review (base10c): the resolution of 0.25 % of the level hid these (0.6–0.8 % of the
    # level, 16–30 σ); the level's share is now a float's rounding (1e-6)
    values = level + np.random.default_rng(5).normal(0.0, noise, (1, 6 * 7 * DAY_SLOTS))
    values[0, THREE_WEEKS : THREE_WEEKS + slots] += change
    found = [f.at_ms for f in opened(run(values))]
    assert START_MS + (THREE_WEEKS + 1) * STEP_MS in found


STEADY = [(50.0, 0.01), (10_000.0, 5.0), (100.0, 0.02)]


def _extremes(level: float, noise: float, seed: int, params: dict[str, float]) -> list[str]:
    values = level + np.random.default_rng(seed).normal(0.0, noise, (1, 15 * DAY_SLOTS))
    reasons = [f.evidence["reason"] for f in opened(run(values, params=params))]
    return [r for r in reasons if r in ("new_value_extreme", "new_level_extreme")]


@pytest.mark.xfail(
    strict=True,
    reason="pure noise widens a steady series' range by more than extreme_margin (5 %) of it"
    " for weeks; a new extreme passing the old by a scale too (extreme_scales=1) raises none,"
    " but lost 3 NAB windows (77.14 → 74.2), so its default is 0",
)
@pytest.mark.parametrize(("level", "noise"), STEADY)
def test_a_steady_noisy_meter_raises_no_new_extremes(level: float, noise: float) -> None:
    # review (base10c): these three steady series, pure noise, raised 6–9 new-value and
    # new-level extremes of 0.4–3.7 scales in their first 15 days
    assert _extremes(level, noise, 5, {}) == []


@pytest.mark.parametrize("seed", range(5, 11))
@pytest.mark.parametrize(("level", "noise"), STEADY)
def test_extremes_passing_the_old_by_a_scale_raise_none_on_noise(
    level: float, noise: float, seed: int
) -> None:
    assert _extremes(level, noise, seed, {"extreme_scales": 1.0}) == []


@pytest.mark.parametrize(
    ("case", "at"),
    [
        ("step up", THREE_WEEKS),
        ("step down", THREE_WEEKS),
        ("spike", THREE_WEEKS),
        ("heater", 24 * DAY_SLOTS + 40),
    ],
)
def test_a_first_change_off_a_constant_is_no_quantum(case: str, at: int) -> None:
    # review (base10c): the quantum was the smallest change ever, so a series' first change
    # (0 → a flat 500, 120 → 0) made it 500 or 120, and every later change under half of it
    # was nothing: a step of 500 to 700 or 300, a spike to 720 for two hours, the heater's
    # 80 kW for two hours were missed. A quantum is now a step seen three times.
    values = np.zeros((1, 6 * 7 * DAY_SLOTS))
    if case == "heater":
        values[0, : 10 * DAY_SLOTS] = 120.0
        values[0, at : at + 8] = 80.0
    else:
        values[0, 2 * DAY_SLOTS :] = 500.0
        values[0, at : at + 8 if case == "spike" else None] = {
            "step up": 700.0, "step down": 300.0, "spike": 720.0
        }[case]  # fmt: skip
    found = [f.at_ms for f in opened(run(values))]
    assert START_MS + (at + 1) * STEP_MS in found


@pytest.mark.parametrize(("low", "high"), [(2.0, 2.1), (3.0, 4.0)])
def test_a_quantised_flicker_is_one_event(low: float, high: float) -> None:
    # review (base10c): one step of the quantum was quantum_scales (8) scales, over z_min: a
    # flicker 2.0 ↔ 2.1, or an integer-kW meter's 3 ↔ 4, opened 9 events in six weeks. One
    # step of the series' quantum off its band is now nothing: the first (before the step
    # has repeated) is alerted, no other; without the quantum (never learnt) they flood.
    values = np.full((1, 6 * 7 * DAY_SLOTS), low)
    rng = np.random.default_rng(5)
    values[0, rng.choice(np.arange(3 * DAY_SLOTS, values.shape[1]), 40, replace=False)] = high
    assert len(opened(run(values))) == 1
    assert len(opened(run(values, params={"quantum_repeats": 10**9}))) > 3


@pytest.mark.parametrize("change", [1e-9, 5.5e-17])
def test_a_float_residue_at_zero_is_nothing(change: float) -> None:
    # review (base10c): at a level of 0 (no quantum yet) the level's share is 0: a change of
    # 1e-9 opened a 500-scale event, a virtual meter's a − b residue of 5.5e-17 too. The
    # resolution has an absolute floor (abs_resolution, 1e-9 of the quantity's unit)
    values = np.zeros((1, 6 * 7 * DAY_SLOTS))
    values[0, THREE_WEEKS:] = change
    values[0, THREE_WEEKS + 4 : THREE_WEEKS + 5] = 0.0
    assert opened(run(values)) == []


@pytest.mark.parametrize("case", ["flat", "plant", "half", "net", "crossing"])
def test_a_step_for_good_is_one_event(case: str) -> None:
    # review (base10): a step to 0 for good was remarked again 19 and 26 days later, when the
    # Saturday and holiday profiles were first met at the new level: the offset that carries
    # the change fades as the profiles met daily learn it, and a profile met once in weeks
    # (the holiday's: Dragon Boat, 26 days on) still held the old level; a step to half was
    # remarked on the two Saturdays after the first (met 14 days apart across Labour Day).
    # A profile not met for over stale_d days was learnt afresh. Review (base10c): with the
    # quantum no longer the step itself (120 kW, which hid it), the flat series' step was
    # remarked on the second Saturday, the workday profile's lag carried by the one offset onto
    # the Saturday profile learnt afresh at 0: the offset is now per day type
    change = 21 * DAY_SLOTS + 30  # Monday 5 May (a Labour Day holiday), 07:30
    if case == "plant":
        values = plant_load(LONG, seed=1)[None, :].copy()
    elif case in ("net", "crossing"):
        # review (base11): a net meter (below 0: an export) stepping by −50 for good was
        # remarked on two Sundays after: its Sunday profile, met first on its own day, took
        # the workdays' change as if it had begun at their level and did not follow it
        values = plant_load(LONG, seed=1)[None, :] - (390.0 if case == "net" else 120.0)
    else:
        values = np.full((1, LONG), 120.0)
    if case in ("net", "crossing"):
        values[0, change:] -= 50.0
    else:
        values[0, change:] = 0.0
    if case == "half":
        values[0, change:] = 60.0 + np.random.default_rng(1).normal(0.0, 0.5, LONG - change)
    found = opened(run(values))
    assert [f.at_ms for f in found] == [START_MS + (change + 1) * STEP_MS]
    # Review (base10c): learnt afresh, a holiday's profile found no plant run like a workday
    # through it (test_a_plant_run_like_a_workday_through_a_holiday_is_flagged); the reset
    # went and this was remarked on 10 May (Saturday, 14 days on) and 31 May (Dragon Boat).
    # Base11: a profile met again after a while follows the workdays' change since its last day


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_weekend_only_load_keeps_its_level(seed: int) -> None:
    # review (base11): a load run on weekends and holidays only (100 kW, 08–18) with
    # workday blips of 0.5 kW: its Saturday and holiday profiles followed the ratio of the
    # workdays' near-0 level (100.8 → 5.7, 99.6 → 4755, 99.4 → 82,163) and 20 events opened
    # over three seeds. A ratio is taken off a level well above the row's scale only
    ctx = context(1)
    times = START_MS + np.arange(7 * 7 * DAY_SLOTS, dtype=np.int64) * STEP_MS
    hour = (ctx.local_ms(times) % 86_400_000) / 3_600_000
    types = ctx.day_types(times)
    shape = np.clip(np.minimum(hour - 7.5, 18.5 - hour), 0.0, 1.0)
    rng = np.random.default_rng(seed)
    values = np.where(types > 0, 100.0, 0.0) * shape * (1 + rng.normal(0, 0.01, times.size))
    values[(types == 0) & (rng.random(times.size) < 0.02)] = 0.5
    # (after two weeks: the first Saturday and holiday are new to it)
    found = [f for f in opened(run(values[None, :])) if f.at_ms >= slot_ms(14, 0)]
    # (what remains is the 1 % noise of a load with a calm scale: a few kW off, not a level)
    assert all(abs(f.evidence["value"] - f.evidence["expected"]) < 5.0 for f in found), [
        (f.at_ms, f.evidence["value"], f.evidence["expected"]) for f in found
    ]


@pytest.mark.parametrize("standby", [0.0, 0.3])
def test_a_shutdown_then_a_restart_is_two_events(standby: float) -> None:
    # review (base11): the workdays' recent level was clipped at a few scales each update,
    # and lagged a shutdown (to 0 on 6 May) for days (22 kW after 6 days): the Sunday
    # profile that followed it went to −18.6 on a meter never below 0; after the restart on
    # 20 May it followed the workdays' change (+300 kW by day) onto a weekend that runs a
    # third of it, and 7 June was remarked. A rate's bin at 0 then is no base to follow from
    values = plant_load(LONG, seed=2)[None, :].copy()
    off = np.abs(np.random.default_rng(0).normal(0.0, 0.1, 14 * DAY_SLOTS))
    values[0, 22 * DAY_SLOTS : 36 * DAY_SLOTS] = standby + off * (standby > 0)
    found = [f.at_ms for f in opened(run(values))]
    assert len(found) == 2, found
    assert slot_ms(22, 0) <= found[0] < slot_ms(22, 1)
    assert slot_ms(36, 0) <= found[1] < slot_ms(36, 12)


@pytest.mark.parametrize("glitch", [-0.001, -1.0])
def test_one_negative_glitch_makes_no_net_meter(glitch: float) -> None:
    # review (base11b): one negative reading of a plain consumption meter (a CT offset
    # glitch on 17 April) sent its weekend profiles onto the net meter's difference path for
    # good: after a shutdown they followed the workdays' fall to −107 / −138 kW, the scale
    # grew and the restart on 20 May was missed; a step to 0 was remarked again on the
    # Saturday and Sunday after. A difference path is for a meter read well below 0 (over
    # z_min scales), and no profile is moved below the lowest reading
    at = 3 * DAY_SLOTS + 5
    restart = plant_load(LONG, seed=2)[None, :].copy()
    restart[0, at] = glitch
    restart[0, 22 * DAY_SLOTS : 36 * DAY_SLOTS] = 0.0
    found = [f.at_ms for f in opened(run(restart)) if f.at_ms > slot_ms(4, 0)]
    assert len(found) == 2, found
    assert slot_ms(22, 0) <= found[0] < slot_ms(22, 1)
    assert slot_ms(36, 0) <= found[1] < slot_ms(36, 12)
    step = plant_load(LONG, seed=1)[None, :].copy()
    step[0, at] = glitch
    change = 21 * DAY_SLOTS + 30
    step[0, change:] = 0.0
    found = [f.at_ms for f in opened(run(step)) if f.at_ms > slot_ms(4, 0)]
    assert found == [START_MS + (change + 1) * STEP_MS]


def test_a_plant_run_like_a_workday_through_a_holiday_is_flagged() -> None:
    # review (base10c): a profile not met for over stale_d (7) days was learnt afresh, judged
    # meanwhile by what the other day types' profiles explain: a plant run at its workday
    # load through the Dragon Boat holiday (the holiday profile last met 26 days before) was
    # never flagged. The holiday profile now keeps its level: each holiday day is flagged.
    values = plant_load(LONG, seed=2)[None, :].copy()
    ctx = context(1)
    times = START_MS + np.arange(LONG, dtype=np.int64) * STEP_MS
    hour = (ctx.local_ms(times) % 86_400_000) / 3_600_000
    shape = np.clip(np.minimum(hour - 7.5, 18.5 - hour), 0.0, 1.0)
    holiday = (ctx.day_types(times) == HOLIDAY) & (np.arange(LONG) >= 47 * DAY_SLOTS)
    values[0, holiday] += 300.0 * shape[holiday]
    found = [f.at_ms for f in opened(run(values))]
    for day in (47, 48, 49):  # 31 May – 2 June
        assert any(slot_ms(day, 7.5) <= t < slot_ms(day, 18.5) for t in found), day


@pytest.mark.parametrize("hour", [2.0, 12.0])
def test_a_spike_on_a_holidays_first_day_is_one_event(hour: float) -> None:
    # review (base10c): the holiday profile, learnt afresh on the first day of Dragon Boat
    # (26 days after Labour Day), took its first reading raw: a two-hour spike of +150 kW was
    # learnt whole, and the next two holiday days were false alarms at that hour
    values = plant_load(LONG, seed=4)[None, :].copy()
    at = 47 * DAY_SLOTS + int(hour * 4)
    values[0, at : at + 8] += 150.0
    assert [f.at_ms for f in opened(run(values))] == [START_MS + (at + 1) * STEP_MS]


@pytest.mark.xfail(
    strict=True,
    reason="a day type's first day is learnt raw (no profile of its own to clip against; the"
    " cold band holds the fast level, which follows a spike within the hour): the spike comes"
    " back on the holiday's next days and on the next holiday",
)
def test_a_spike_on_a_first_holiday_does_not_come_back() -> None:
    # brief base11: checked. A two-hour spike on 1 May at 02:00, the first holiday of the
    # history, is alerted; the holiday profile learns its last hour raw, and 2–4 May and
    # 31 May – 1 June are false alarms at that hour. On a holiday whose profile is trusted
    # (5 May) the profile's step is clipped and nothing comes back
    values = plant_load(LONG, seed=4)[None, :].copy()
    at = 17 * DAY_SLOTS + 8
    values[0, at : at + 8] += 150.0
    assert [f.at_ms for f in opened(run(values))] == [START_MS + (at + 1) * STEP_MS]


def test_a_spike_on_a_trusted_holiday_profile_does_not_come_back() -> None:
    values = plant_load(LONG, seed=4)[None, :].copy()
    at = 21 * DAY_SLOTS + 8  # 5 May, 02:00: the holiday profile has four days
    values[0, at : at + 8] += 150.0
    assert [f.at_ms for f in opened(run(values))] == [START_MS + (at + 1) * STEP_MS]


def _staged(case: str) -> tuple[np.ndarray, int]:
    """p1's loads: a stage of the load (not a sensor's step) changes for good on day 22."""
    slots = 6 * 7 * DAY_SLOTS
    ctx = context(1)
    times = START_MS + np.arange(slots, dtype=np.int64) * STEP_MS
    hour = (ctx.local_ms(times) % 86_400_000) / 3_600_000
    work = (ctx.day_types(times) == 0) & (hour >= 8) & (hour < 18)
    night = hour < 6
    change = 22 * DAY_SLOTS  # Tuesday 6 May, 00:00
    late = np.arange(slots) >= change
    if case == "compressor 25/50":  # its nights go from 25 to 50 kW for good
        values = np.where(work | (night & late), 50.0, 25.0)
    elif case == "pumps 1/2":  # pumps running: 2 at night for good
        values = np.where(work | (night & late), 2.0, 1.0)
    else:  # a pump 0/500 switched every 2 h by day, once 1000 (two pumps), then on at night
        on = ((np.arange(slots) // 8) % 2 == 0) & ~night
        values = np.where(on | (night & late), 500.0, 0.0)
        values[10 * DAY_SLOTS + 40 : 10 * DAY_SLOTS + 48] = 1000.0
    return values[None, :], change


@pytest.mark.parametrize("case", ["compressor 25/50", "pumps 1/2", "pump 0/500/1000"])
def test_a_stage_of_a_load_changed_for_good_is_alerted(case: str) -> None:
    # review (base10c): a quantum was a step seen three times and at most half the largest
    # value: a staged load's one stage (25 of 50 kW, 1 of 2 pumps, 500 of a pump that once
    # read 1000) was the quantum, and its nights going up one stage for good raised nothing.
    # A quantum is now at most a quarter of the largest value seen.
    values, change = _staged(case)
    found = [f.at_ms for f in opened(run(values))]
    assert START_MS + (change + 1) * STEP_MS in found
