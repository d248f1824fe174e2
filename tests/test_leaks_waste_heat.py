"""Leaks and waste heat, on hand-computed cases and a synthetic water network: a zone defined only
by two inflow meters and a tank level (the shape of the public leak data we score on), clean
and with a leak; the heat ``Q = ṁ·cp·ΔT`` of water and flue gas; a leak's share of the load
from an off-shift profile."""

from __future__ import annotations

import copy
import pickle
import warnings
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import yaml

from analytics.detectors import DETECTORS, leaks
from analytics.detectors.leaks import ZoneLeaks, off_production_share, production_meters
from analytics.detectors.meter_faults import MeterFaults
from analytics.detectors.robust import nanmedian_rows
from analytics.detectors.waste_heat import (
    GJ_PER_TCE,
    KW_TO_GJ_PER_DAY,
    WasteHeat,
    flue_heat_kw,
    water_heat_kw,
)
from analytics.engine.contract import Finding, Output, ParkContext
from analytics.engine.engine import ParkEngine
from analytics.engine.slots import slot_block
from analytics.replay import replay
from parkwatch.calendar import SATURDAY, WORKDAY
from parkwatch.events import Family
from parkwatch.quantities import Utility
from parkwatch.site import Park
from simulators import DEMO_PARK
from simulators.faults import Fault, FaultKind
from simulators.town import (
    DAY_MS,
    DAY_SLOTS,
    START_MS,
    STEP_MS,
    TownLeak,
    step_leak,
    town_network,
    town_park,
)
from tests.analytics_data import simulated_rows

ZONE = ZoneInfo("Asia/Shanghai")
DEMO_START_MS = 1_795_968_000_000  # 2026-11-29 16:00 UTC: local midnight in Shanghai


def test_registered() -> None:
    assert ZoneLeaks in DETECTORS
    assert WasteHeat in DETECTORS


def test_heat_of_water_by_hand() -> None:
    """10 m³/h of water from 45 °C to 30 °C: 10 000 kg / 3600 s × 4.186 kJ/kg·K × 15 K =
    174.4 kW, 15.07 GJ a day, 0.514 tce a day."""
    kw = float(water_heat_kw(10.0, 45.0, 30.0))
    assert kw == pytest.approx(10_000 / 3600 * 4.186 * 15)
    assert kw == pytest.approx(174.42, abs=0.01)
    assert kw * KW_TO_GJ_PER_DAY == pytest.approx(15.07, abs=0.01)
    assert kw * KW_TO_GJ_PER_DAY / GJ_PER_TCE == pytest.approx(0.514, abs=0.001)
    assert float(water_heat_kw(10.0, 25.0, 30.0)) == 0.0  # colder than recovery: nothing


def test_heat_of_flue_gas_by_hand() -> None:
    """100 Nm³/h of natural gas makes 1 700 kg/h of flue gas; from 180 °C to 90 °C at
    1.1 kJ/kg·K: 1700 / 3600 × 1.1 × 90 = 46.75 kW."""
    assert float(flue_heat_kw(100.0, 180.0, 90.0, 17.0)) == pytest.approx(46.75)


def test_leak_share_from_an_off_shift_profile() -> None:
    """Compressors draw 100 kW while the plant works (08–20) and 30 kW when it does not:
    what still flows off shift is leakage, 30 % of the production load."""
    hour = np.arange(48) % 24
    producing = (hour >= 8) & (hour < 20)
    load = np.where(producing, 100.0, 30.0)
    assert off_production_share(load, producing) == pytest.approx(0.30)


def _park() -> Park:
    return town_park()


def _network(
    days: int,
    leak_m3h: float,
    leak_from_day: float,
    seed: int,
    steady_a: float | None = None,
    hold: tuple[int, float, float] | None = None,
) -> np.ndarray:
    """The town (``simulators.town``) with a leak of ``leak_m3h`` from ``leak_from_day``."""
    extra = step_leak(days, leak_m3h, leak_from_day)
    return town_network(days, seed, extra, steady_a=steady_a, hold=hold)


def _openings(findings: list[Finding]) -> list[Finding]:
    """The findings that open an event: an open leak's later findings update it (its estimate
    as it grows, a second leak), as the event book takes them."""
    open_: set[tuple[str, str]] = set()
    out = []
    for f in findings:
        key = (f.kind, f.subject)
        if f.active and key not in open_:
            out.append(f)
        (open_.add if f.active else open_.discard)(key)
    return out


def _run(
    values: np.ndarray, chunk: int = DAY_SLOTS // 3, detector: ZoneLeaks | None = None
) -> list[Finding]:
    if detector is None:
        ctx = ParkContext(_park())
        detector = ZoneLeaks(ctx, ZoneLeaks.select(ctx))
    rows, slots = values.shape
    row = np.repeat(np.arange(rows, dtype=np.int64), slots)
    t = np.tile(START_MS + np.arange(slots, dtype=np.int64) * STEP_MS, rows)
    out: list[Finding] = []
    for first in range(0, slots, chunk):
        n = min(chunk, slots - first)
        block = slot_block(row, t, values.reshape(-1), rows, START_MS + first * STEP_MS, STEP_MS, n)
        out.extend(detector.update(block).findings)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_inflows_and_a_tank_stay_quiet_without_a_leak(seed: int) -> None:
    """Days that use 4 % more than usual, at random, are what the detector must not take for
    a leak. The goal is at most one false event per zone per month; measured on seeds 1-6:
    0, 0, 2, 0, 0, 0 (README, Detection scores), 0 on all six on 2026-12-06."""
    findings = _run(_network(28, 0.0, 99, seed))
    assert len([f for f in findings if f.active]) <= 2


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_inflows_and_a_tank_find_a_leak(seed: int) -> None:
    """A 4 m³/h leak (a fifth of the night flow, a tenth of the day's peak) from day 15, 01:00."""
    start_day = 15 + 1 / 24
    leak_ms = START_MS + int(start_day * 86_400_000)
    findings = [f for f in _run(_network(28, 4.0, start_day, seed)) if f.active]
    assert len([f for f in findings if f.at_ms <= leak_ms]) <= 2  # as without the leak
    after = [f for f in findings if f.at_ms > leak_ms]
    assert after, "the leak was not found"
    first = after[0]
    assert first.kind in ("water_leak", "water_burst")
    assert first.zone == "town"
    # within a day (measured on seeds 1-6: 3, 12, 3, 3, not found, 5 hours — seed 5's days
    # happen to hide most of it; on 2026-12-06 seed 5's at 23 h)
    assert first.at_ms <= leak_ms + 24 * 3_600_000
    assert first.estimate is not None
    assert first.estimate.value == pytest.approx(4.0, rel=0.5)
    assert first.estimate.cny_per_day == pytest.approx(first.estimate.value * 24 * 4.0, rel=1e-3)


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_two_inflows_and_a_tank_find_a_leak_under_the_hourly_allowance(seed: int) -> None:
    """A 1.8 m³/h leak (9 % of the night flow) from day 15, 01:00: under the hourly CUSUM's
    allowance (2.5 spreads of the town's day-to-day scatter, 0.8 m³/h at night), so main
    never found it in the four weeks on these seeds. A day's hours fitted as ``a + b_d ·
    baseline`` (``ZoneLeaks._added_test``) take the day-to-day scatter out as ``b``: the leak
    is ``a``, found once a day of hours holds it (measured: 24 h on seeds 2-6, seed 1 at 6 h
    by the CUSUM as before). One event, open while the leak runs, never a burst, and
    estimated at the fit's ``a`` (2026-12-06: 1.64, 1.80, 1.80 m³/h on seeds 2-4; the last
    three hours' raw excess read 2.83 on seed 4's busy day, and seed 4 closed 12 h on,
    then reopened three times; seed 2 reopened as a 3.5 m³/h burst)."""
    start_day = 15 + 1 / 24
    leak_ms = START_MS + int(start_day * 86_400_000)
    everything = _run(_network(28, 1.8, start_day, seed))
    findings = [f for f in everything if f.active]
    assert [f for f in findings if f.at_ms <= leak_ms] == []
    after = [f for f in findings if f.at_ms > leak_ms]
    assert after, "the leak was not found"
    assert after[0].kind == "water_leak"
    assert after[0].zone == "town"
    assert after[0].at_ms <= leak_ms + 26 * 3_600_000
    assert after[0].estimate is not None
    assert after[0].estimate.value == pytest.approx(1.8, rel=0.3)
    assert _openings(everything) == [after[0]]
    assert [f for f in everything if not f.active] == []
    assert [f for f in everything if f.kind == "water_burst"] == []


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_a_leak_the_added_test_found_stays_open_over_a_low_day(seed: int) -> None:
    """The 1.8 m³/h leak above, found by the added test: its event stays open while it runs.
    Its hours over a day that uses a few per cent less read under half its estimate for 12 h
    (``_quiet``), and the event closed with the leak running, to reopen 17-32 h later (seeds
    4-6: closed at 36, 63 and 131 h). Such an hour counts towards closing only once the
    added fit, the day's scatter taken out, says most of the leak is gone too."""
    start_day = 15 + 1 / 24
    leak_ms = START_MS + int(start_day * 86_400_000)
    after = [f for f in _run(_network(28, 1.8, start_day, seed)) if f.at_ms > leak_ms]
    assert after
    assert after[0].active
    assert [f for f in after if not f.active] == []


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_a_repair_that_leaves_a_small_leak_running_keeps_its_event_open(seed: int) -> None:
    """3 m³/h from day 9, 01:00, and a 10 m³/h burst from day 10, 01:00, repaired on day 20,
    01:00: one event, open past a week (its baseline learning net of its estimate), whose
    fall leaves 3 m³/h running. That is under the hourly CUSUM's allowance (2.5 spreads of
    the town's day-to-day scatter), so the fall closed the event with the leak running
    (seeds 4-6 at 482-485 h; the town's year, seed 3, after a burst's repair, and the next
    leaks were missed). The hours since the fall fitted as ``a + b_d · baseline``
    (``ZoneLeaks._remains``) still read 3 m³/h added: the event stays open at that
    estimate (measured 2026-12-06: 3.09, 2.84, 2.98 m³/h, 18 h after the repair). Not on
    every seed: seed 3 still closes 12 h after the repair (a spread widened for the few days
    left of the hour's kind reads the 3 m³/h under one spread and under half the estimate,
    and no fit was at hand), seed 1 on a low day 107 h after it (``_quiet``)."""
    days, small, big, repair = 30, 9 + 1 / 24, 10 + 1 / 24, 20 + 1 / 24
    extra = step_leak(days, 3.0, small) + step_leak(days, 10.0, big) - step_leak(days, 10.0, repair)
    findings = _run(town_network(days, seed, extra))
    assert len(_openings(findings)) == 1
    assert [f for f in findings if not f.active] == []
    repair_ms = START_MS + int(repair * 86_400_000)
    last = [f for f in findings if f.at_ms > repair_ms]
    assert last, "the fall moved no estimate"
    assert last[-1].estimate is not None
    assert last[-1].estimate.value == pytest.approx(3.0, rel=0.3)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_growing_leaks_event_stays_open_over_a_low_days_fall(seed: int) -> None:
    """An incipient leak growing to 3 m³/h over 20 days from day 9, as the town's year has
    them: the added test finds it young (~1 m³/h), and its event stays open while it grows.
    A low day's hours trip the down track of an event open past a week: on seed 1 its
    estimate (1.99 m³/h, 2.4 running) fell to 0 and the event closed at 596 h, to reopen 83 h
    on. The hours since such a fall, fitted as ``a + b_d · baseline``
    (``ZoneLeaks._remains``), read half the estimate or more still running: the fall was the
    day's, and the event stays open (2026-12-06: at 2.33 m³/h from 612 h on seed 1)."""
    days, start = 30, 9.0
    t = START_MS + np.arange(days * DAY_SLOTS, dtype=np.int64) * STEP_MS
    leak = TownLeak("x", "incipient", START_MS + int(start * DAY_MS), t[-1] + 1, 3.0, 20.0)
    findings = _run(town_network(days, seed, leak.flow(t)))
    onset_ms = START_MS + int(start * DAY_MS)
    assert [f for f in findings if f.at_ms <= onset_ms] == []
    assert len(_openings(findings)) == 1
    assert [f for f in findings if not f.active] == []
    assert findings[-1].estimate is not None
    assert findings[-1].estimate.value == pytest.approx(float(leak.flow(t[-1:])[0]), rel=0.5)


def test_a_step_leaks_event_stays_open_over_a_low_days_fall() -> None:
    """A 3 m³/h leak from day 9, opened by the hourly CUSUM and re-read a week on (3.08 m³/h),
    then a day using 18 % less (day 20): its hours trip the down track under a quarter of the
    estimate and count quiet while the fall waits for its fit (``ZoneLeaks._fall_waits``),
    which reads 2.92 m³/h still running. Without the fit's reading deciding, the event
    closed the hour the fit came, by the quiet hours counted meanwhile, at 499 h (main at
    488 h), and reopened 34 h on (review of town25, seed 1). It stays open over the low day
    and the two days after at the fit's rate. (Known limit, 2026-12-06: the event closes at
    588 h by quiet hours with the leak running, the baseline having learnt the estimate's
    error, docs/architecture.md, Leaks.)"""
    days, seed = 30, 1
    onset_ms = START_MS + int((9 + 1 / 24) * DAY_MS)
    low = START_MS + 20 * DAY_MS
    findings = _run(
        town_network(days, seed, step_leak(days, 3.0, 9 + 1 / 24) + _busy_day(days, 20, -0.18))
    )
    assert [f for f in findings if f.at_ms <= onset_ms] == []
    assert len(_openings(findings)) == 1
    assert [f for f in findings if not f.active and f.at_ms < low + 3 * DAY_MS] == []
    during = [
        f.estimate.value
        for f in findings
        if low <= f.at_ms < low + 3 * DAY_MS and f.estimate is not None
    ]
    assert during
    assert during == pytest.approx([3.0] * len(during), rel=0.3)


@pytest.mark.parametrize("cut_h", [611, 615, 619])
def test_an_added_test_events_close_is_the_same_across_a_snapshot(cut_h: int) -> None:
    """The 1.8 m³/h leak the added test finds (seed 2, from day 15, 01:00), repaired on day
    25, 01:00: its event closes by quiet hours, each judged against the last hour's added fit
    (``_quiet`` runs before ``_added_test``). Snapshotted inside those hours and restored,
    the detector closes it at the same hour as an unbroken run (without the fit in the
    snapshot: 624, 660 and 660 h against 621 h)."""
    days, start, repair = 30, 15 + 1 / 24, 25 + 1 / 24
    extra = step_leak(days, 1.8, start) - step_leak(days, 1.8, repair)
    _, whole = _open_leak_run(days, extra, seed=2)
    _, restored = _open_leak_run(days, extra, snapshot_day=cut_h / 24, seed=2)

    def told(findings: list[Finding]) -> list[tuple[int, str, bool, float | None]]:
        return [
            (f.at_ms, f.kind, f.active, round(f.estimate.value, 6) if f.estimate else None)
            for f in findings
        ]

    closes = [f for f in whole if not f.active]
    repair_ms = START_MS + int(repair * 86_400_000)
    assert closes
    assert closes[0].at_ms > repair_ms  # closed after the repair…
    assert closes[0].at_ms > START_MS + cut_h * 3_600_000  # …after the snapshot
    assert told(restored) == told(whole)


def _busy_day(days: int, day: int, share: float) -> np.ndarray:
    """Per slot: the town using ``share`` more on ``day`` in every hour, in its own daily shape
    (``simulators.town``'s), so most at the peaks — what a busy day is, and a leak is not."""
    slot = np.arange(days * DAY_SLOTS)
    hour = (slot % DAY_SLOTS) * STEP_MS / 3_600_000
    shape = 20 + 25 * np.exp(-(((hour - 8) / 2) ** 2)) + 20 * np.exp(-(((hour - 19) / 2.5) ** 2))
    busy: np.ndarray = np.where(slot // DAY_SLOTS == day, share * shape, 0.0)
    return busy


@pytest.mark.parametrize("seed", [1, 2])
def test_a_young_towns_busy_day_is_no_leak_but_a_leak_is(seed: int) -> None:
    """A Tuesday (day 22) using 10 % more in every hour: 2 m³/h more at night, 4.5 at the
    morning peak. Its kept days agree within about 2 % on these seeds, so main reported it as
    a leak on both (at 03 h and 10 h). In a zone's first ``young_days`` such an excess waits
    for the night after its day (``ZoneLeaks._busy_day``), unless the morning's hours show it
    added rather than a share: the busy day is gone by then. A leak of 4 m³/h (a fifth of the
    night flow) from that day's 01:00 runs on, and is found within a day and a night."""
    days = 24
    busy = _run(town_network(days, seed, _busy_day(days, 22, 0.10)))
    assert [f for f in busy if f.active] == []
    onset = 22 + 1 / 24
    onset_ms = START_MS + int(onset * 86_400_000)
    leak = [f for f in _run(town_network(days, seed, step_leak(days, 4.0, onset))) if f.active]
    assert leak, "the leak was not found"
    assert leak[0].kind in ("water_leak", "water_burst")
    assert onset_ms < leak[0].at_ms <= onset_ms + 29 * 3_600_000


def _young_run(
    values: np.ndarray, chunk: int, snapshots: tuple[float, ...] = ()
) -> tuple[ZoneLeaks, list[Finding], list[int]]:
    """``values`` through ``update()`` in blocks of ``chunk`` slots; at each day in
    ``snapshots`` the detector is snapshotted and a new one restored from it goes on. Also
    the zone's ``held_at`` at each snapshot."""
    ctx = ParkContext(_park())
    detector = ZoneLeaks(ctx, ZoneLeaks.select(ctx))
    rows, slots = values.shape
    cuts = sorted({*range(0, slots, chunk), *(int(d * DAY_SLOTS) for d in snapshots)})
    found: list[Finding] = []
    held: list[int] = []
    for i, first in enumerate(cuts):
        n = (cuts[i + 1] if i + 1 < len(cuts) else slots) - first
        if first in {int(d * DAY_SLOTS) for d in snapshots}:
            held.append(int(detector.held_at[0]))
            state = pickle.loads(pickle.dumps(detector.state()))
            detector = ZoneLeaks(ctx, ZoneLeaks.select(ctx))
            detector.restore(state)
        row = np.repeat(np.arange(rows, dtype=np.int64), n)
        t = np.tile(START_MS + (first + np.arange(n, dtype=np.int64)) * STEP_MS, rows)
        part = values[:, first : first + n].reshape(-1)
        found.extend(detector.update(slot_block(row, t, part, rows, t[0], STEP_MS, n)).findings)
    return detector, found, held


@pytest.mark.parametrize("night", ["stuck", "gap"])
def test_a_young_towns_busy_day_waits_past_an_unknown_night(night: str) -> None:
    """The busy Tuesday above (seed 1, held from day 22 02:00), with the night after it
    unknown: feed B stuck at 30.2 m³/h from day 22 16:48 to day 23 07:12 (the hours
    it stood read 0.8–2.7 over), or every meter silent day 23 00:00–06:00. That night says
    nothing: the busy day is still held at day 23 06:00, and fades that day (or the night
    after, read clean, drops it). Released on the unknown night, it was a leak on day 23
    (review probes ``stuck.py``, ``gap.py``)."""
    days = 25
    values = town_network(
        days, 1, _busy_day(days, 22, 0.10), hold=(1, 22.70, 23.30) if night == "stuck" else None
    )
    if night == "gap":
        values[:, 23 * DAY_SLOTS : int(23.25 * DAY_SLOTS)] = np.nan
    detector, found, held = _young_run(values, DAY_SLOTS // 3, snapshots=(23.25,))
    assert held[0] >= 0, "not held over the unknown night"
    assert [f for f in found if f.active and f.family is Family.LEAK] == []
    assert detector.held_at[0] == -1
    assert detector.state_[0] == leaks.QUIET


def test_a_young_towns_leak_is_released_once_the_day_shows_it_added() -> None:
    """3 m³/h (under a fifth of the baseline) from day 22 15:00, seed 1: a busy day could be
    it, so it is held; the evening's rise shows it added (``_additive``), not a share of the
    use, and it is reported that evening — long before the night that would decide — with
    the hours it was held in its evidence."""
    days = 24
    onset_ms = START_MS + int((22 + 15 / 24) * 86_400_000)
    _, found, _ = _young_run(town_network(days, 1, step_leak(days, 3.0, 22 + 15 / 24)), 96)
    leak = [f for f in found if f.active]
    assert leak, "the leak was not found"
    assert leak[0].kind == "water_leak"
    assert leak[0].evidence["held_h"] >= 1
    assert onset_ms < leak[0].at_ms < START_MS + 23 * 86_400_000


def test_a_snapshot_inside_a_hold_gives_the_same_findings() -> None:
    """The busy Tuesday held across a gap (above: held from day 22 02:00), run in blocks of 7
    slots and snapshotted into a new detector three times inside the hold: the
    same findings and the same state at the end as in thirds of a day without a snapshot."""
    days = 25
    values = town_network(days, 1, _busy_day(days, 22, 0.10))
    values[:, 23 * DAY_SLOTS : int(23.25 * DAY_SLOTS)] = np.nan
    whole, expected, _ = _young_run(values, DAY_SLOTS // 3)
    restored, found, held = _young_run(values, 7, snapshots=(22.5, 23.1, 23.26))
    assert min(held) >= 0, "a snapshot outside the hold"
    assert [(f.kind, f.at_ms, f.active) for f in found] == [
        (f.kind, f.at_ms, f.active) for f in expected
    ]
    for name, value in whole.state().items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            # sums over blocks of 7 slots, not 32, added in another order (the covariances,
            # differences of such sums, to 1e-9 relative)
            np.testing.assert_allclose(restored.state()[name], value, rtol=1e-7, err_msg=name)
        else:
            np.testing.assert_array_equal(restored.state()[name], value, err_msg=name)


def _demo_replay(faults: list[Any], days: int) -> list[Any]:
    """The demo park simulated with ``faults`` and replayed through the engine with the leak
    and waste-heat detectors: the events."""
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, DEMO_START_MS, days, seed=11, faults=faults)
    return replay(ParkEngine(park, [ZoneLeaks, WasteHeat]), rows).events


def test_the_demo_parks_waste_heat_faults_are_found_at_their_meter() -> None:
    """Four simulated days: a heat-recovery unit bypassed on day 3 (found within two hours)
    and a boiler's flue gas fouling from day 2, 30 K over a day (found the same day)."""
    day = 86_400_000
    bypass = Fault(
        FaultKind.HEAT_RECOVERY_BYPASS,
        DEMO_START_MS + 3 * day + 2 * 3_600_000,
        DEMO_START_MS + 3 * day + 10 * 3_600_000,
        meter="steelco-heat",
        magnitude=0.9,
    )
    flue = Fault(
        FaultKind.FLUE_TEMP_RISE,
        DEMO_START_MS + 2 * day,
        None,
        meter="chemco-boiler",
        magnitude=30.0,
        ramp_s=86_400,
    )
    events = _demo_replay([bypass, flue], 4)
    kinds = {(e.kind, e.meter): e for e in events}
    found = kinds[("heat_recovery_bypass", "steelco-heat")]
    assert bypass.start_ms < found.detected_at_ms <= bypass.start_ms + 2 * 3_600_000
    assert found.estimate is not None
    assert found.estimate.value > 50  # % of its heat not recovered
    fouled = kinds[("flue_temp_rise", "chemco-boiler")]
    assert flue.start_ms < fouled.detected_at_ms <= flue.start_ms + day
    # the bypassed unit's heat goes to the cooling water: that is no fault of the cooling
    assert ("cooling_temp_rise", "steelco-cooling") not in kinds
    assert not [e for e in events if e.family is Family.LEAK]


def test_a_sub_meter_of_near_constant_flow_under_registering_is_a_meter_fault() -> None:
    """Steelco's cooling-tower make-up hardly varies, so its reading 85 % of the truth from day
    4 adds a near-constant flow to its zone's balance — what a leak adds too. Which side of
    the balance moved tells them apart: the make-up meter reads a step lower at every hour
    while the zone's inflow reads as it did. A meter fault on that meter, no leak."""
    day, hour = 86_400_000, 3_600_000
    under = Fault(
        FaultKind.METER_UNDER_REGISTRATION,
        DEMO_START_MS + 4 * day + 10 * hour,
        None,
        meter="steelco-cooling",
        magnitude=0.85,
    )
    events = _demo_replay([under], 6)
    assert not [e for e in events if e.family is Family.LEAK]
    found = [e for e in events if e.kind == "meter_under_registration"]
    assert [e.meter for e in found] == ["steelco-cooling"]
    assert under.start_ms < found[0].detected_at_ms <= under.start_ms + day
    assert found[0].estimate is not None
    assert found[0].estimate.value == pytest.approx(15, abs=7)  # % of its flow not registered


def test_a_lively_sub_meter_under_registering_is_a_meter_fault_not_a_burst() -> None:
    """Seed 5's case (the meter-fault table's 14-day history): pharmco's intake reads 86.3 %
    of the truth from 21:02. The south district's balance steps up by 3.4 m³/h at once, a
    burst by its score, while the district's inflow reads as it did. Pharmco's flow swings
    from day to day, so its drop stands at about 3 of its errors, not the 4 that decide at
    once (a burst was reported after three hours); the balance leaning on it holds the
    decision, and once the wait is over it is that meter's fault: no burst. (On a Tuesday
    of the second week: a meter's own history needs days of the kind it is judged on.)"""
    day, hour = 86_400_000, 3_600_000
    under = Fault(
        FaultKind.METER_UNDER_REGISTRATION,
        DEMO_START_MS + 8 * day + 21 * hour + 2 * 60_000,
        None,
        meter="pharmco-water",
        magnitude=0.863,
    )
    events = _demo_replay([under], 10)
    assert not [e for e in events if e.family is Family.LEAK and e.zone == "water-d3"]
    found = [e for e in events if e.kind == "meter_under_registration"]
    assert [e.meter for e in found] == ["pharmco-water"]
    assert under.start_ms < found[0].detected_at_ms <= under.start_ms + day
    assert found[0].estimate is not None
    assert found[0].estimate.value == pytest.approx(13.7, abs=5)  # % of its flow not registered


def test_a_district_main_under_registering_is_a_meter_fault_not_a_leak_of_the_park() -> None:
    """Seed 7's case (the demo histories of 2026-12-04): the east district's main reads 83 %
    of the truth. It is an outflow of the park's zone and the inflow of its district, so the
    park's zone gains 2 m³/h while the district stands 2 m³/h under a baseline it keeps within
    0.1 — a leak of the park's zone was reported, the meter never blamed (its own drop, on a
    lively flow, never stood out enough). The district mirroring the excess is that meter.
    (From a Sunday 05:00 in the third week, as seed 7's began on a Sunday: against its few
    rest days the meter's own drop stays within its errors and the leak was reported after
    the 12 hours' wait; on a Tuesday its drop alone decides.)"""
    day, hour = 86_400_000, 3_600_000
    under = Fault(
        FaultKind.METER_UNDER_REGISTRATION,
        DEMO_START_MS + 13 * day + 5 * hour,  # 05:00 local on the second Sunday
        None,
        meter="water-d2",
        magnitude=0.83,
    )
    under_zones = ("park-water-main", "water-d2")
    events = _demo_replay([under], 15)
    # (the zones the meter is in: this simulation's steelco pipes have a small false leak of
    # their own on day 7, before the fault, with or without it)
    assert not [e for e in events if e.family is Family.LEAK and e.zone in under_zones]
    found = [e for e in events if e.kind == "meter_under_registration"]
    assert [e.meter for e in found] == ["water-d2"]
    assert under.start_ms < found[0].detected_at_ms <= under.start_ms + day
    assert found[0].estimate is not None
    assert found[0].estimate.value == pytest.approx(17, abs=5)  # % of its flow not registered


def test_a_district_leak_on_its_first_saturday_is_no_mirror_of_the_works_it_feeds() -> None:
    """An 8 m³/h leak in the north district from the first Saturday 02:00. The steelworks'
    zone, fed by the district's outflow meter, has no rest-day baseline yet: its hours are
    judged against the workdays' envelope, a high upper bound, so its excess there reads as a
    deficit of about the leak — the mirror check blamed the steelworks' meter (12 h) and the
    leak was never reported. The other zone's first rest days say nothing of a mirror."""
    day, hour = 86_400_000, 3_600_000
    start = DEMO_START_MS + 5 * day + 2 * hour
    leak = Fault(FaultKind.WATER_LEAK, start, None, zone="water-d1", magnitude=8.0)
    events = [e for e in _demo_replay([leak], 9) if e.detected_at_ms >= start]
    assert not [e for e in events if e.kind == "meter_under_registration"]
    found = [e for e in events if e.family is Family.LEAK and e.zone == "water-d1"]
    assert found
    assert found[0].detected_at_ms <= start + day


def test_a_trunk_leak_days_after_a_district_uses_less_is_a_leak_not_its_meter() -> None:
    """The east district's use falls by 2 m³/h (a leak of its own, long learnt into its
    baseline, repaired) on a Friday 10:00; 67 hours later a real 2 m³/h leak starts on the
    trunk. The district then stands 2 m³/h under its baseline while the park's zone gains
    2 m³/h — the mirror of a district main reading low, but the deficit began days before the
    excess: the district's meter was blamed (8 h) and the leak never reported."""
    day, hour = 86_400_000, 3_600_000
    start = DEMO_START_MS + 13 * day + 5 * hour
    faults = [
        Fault(FaultKind.WATER_LEAK, start, None, zone="park-water-main", magnitude=2.0),
        Fault(FaultKind.WATER_LEAK, start - 67 * hour, None, zone="water-d2", magnitude=-2.0),
    ]
    events = [e for e in _demo_replay(faults, 15) if e.detected_at_ms >= start]
    assert not [e for e in events if e.kind == "meter_under_registration"]
    found = [e for e in events if e.family is Family.LEAK and e.zone == "park-water-main"]
    assert found
    assert found[0].detected_at_ms <= start + day


def test_a_leak_beside_a_sub_meter_of_near_constant_flow_is_still_a_leak() -> None:
    """The same zone with a 3 m³/h leak instead: the inflow rises and the make-up meter reads
    as it did — a leak, not the meter."""
    day, hour = 86_400_000, 3_600_000
    leak = Fault(
        FaultKind.WATER_LEAK,
        DEMO_START_MS + 4 * day + 10 * hour,
        None,
        zone="steelco-water",
        magnitude=3.0,
        ramp_s=2 * 3600,
    )
    events = _demo_replay([leak], 6)
    assert not [e for e in events if e.kind == "meter_under_registration"]
    found = [e for e in events if e.family is Family.LEAK]
    assert [e.zone for e in found] == ["steelco-water"]
    assert leak.start_ms < found[0].detected_at_ms <= leak.start_ms + day


def test_gas_zones_are_judged_net_of_production_like_compressed_air() -> None:
    """Issue 8, item 3: a gas network's off-production flow is a loss as compressed air's is,
    so its hours are taken net of what its plants' production explains, by the same code:
    chemco's gas pipes against chemco's electricity (not its PV, batteries or compressors),
    the park's gas distribution against every enterprise it feeds."""
    ctx = ParkContext(Park.from_yaml(DEMO_PARK))
    meters = production_meters(ctx)
    assert set(meters) == {"steelco-air", "autoparts-air", "park-gas-main", "chemco-gas"}
    assert sorted(meters["chemco-gas"]) == ["chemco-reactors", "chemco-utilities"]
    gas_plants = {ctx.tree.meters[m].enterprise for m in meters["park-gas-main"]}
    assert gas_plants == {"steelco", "chemco", "autoparts", "foodco"}


def test_a_burst_in_a_district_is_a_burst_not_a_sub_meter_reading_low() -> None:
    """A burst of 7 m³/h in the south district from 13:17 for nine hours: the district's
    inflow rises by it while its sub-meters read as they did. Its hours happen to move with
    pharmco's flow within the hour (the within-hour check alone blamed pharmco's meter, and
    two of four simulated months' bursts were lost so), but the balance says the water came
    in: a burst at that zone, no meter blamed."""
    day, hour = 86_400_000, 3_600_000
    burst = Fault(
        FaultKind.WATER_BURST,
        DEMO_START_MS + 4 * day + 13 * hour + 17 * 60_000,
        DEMO_START_MS + 4 * day + 22 * hour,
        zone="water-d3",
        magnitude=7.0,
    )
    events = _demo_replay([burst], 6)
    assert not [e for e in events if e.kind == "meter_under_registration"]
    found = [e for e in events if e.family is Family.LEAK]
    assert [(e.kind, e.zone) for e in found] == [("water_burst", "water-d3")]
    assert burst.start_ms < found[0].detected_at_ms <= burst.start_ms + 4 * hour


def test_a_district_meter_stuck_at_its_evening_flow_is_a_meter_fault_not_a_burst() -> None:
    """Seed 8's case (README, Leaks and waste heat): the east district's inflow meter holds
    its 20:55 reading (evening demand) for seven hours, here on a Thursday night. Against the
    night's baseline (14.8 m³/h over it from midnight) that was a burst — reported once the
    meter check had its three hours, although
    the meter-fault detector had said "stuck" from 21:10 (a leak names a zone, never a meter,
    so the event book could not hold it back). Hours in which a meter of the zone is stuck,
    reading by reading, are not judged, and an excess that began with one is withdrawn."""
    day, hour = 86_400_000, 3_600_000
    stuck = Fault(
        FaultKind.STUCK_VALUE,
        DEMO_START_MS + 3 * day + 20 * hour + 55 * 60_000,
        DEMO_START_MS + 4 * day + 3 * hour + 49 * 60_000,
        meter="water-d2",
    )
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, DEMO_START_MS, 5, seed=11, faults=[stuck])
    events = replay(ParkEngine(park, [ZoneLeaks, MeterFaults]), rows).events
    assert [e.kind for e in events if e.meter == "water-d2"] == ["stuck_value"]
    assert not [e for e in events if e.family is Family.LEAK]


def test_a_burst_is_found_beside_a_steady_pump_that_holds_its_reading_for_hours() -> None:
    """The town's feed A reads exactly 32.001 from 00:00 to 07:00 every day and lives
    otherwise — a steady pump, not a stuck meter: a run of one value is taken for stuck only
    past the longest the meter has shown (the meter-fault detector's rule alone would leave
    every night unjudged). A 10 m³/h burst from day 15, 02:00 is found in its third hour."""
    start_day = 15 + 2 / 24
    burst_ms = START_MS + int(start_day * 86_400_000)
    findings = [f for f in _run(_network(28, 10.0, start_day, 1, steady_a=32.001)) if f.active]
    after = [f for f in findings if f.at_ms > burst_ms]
    assert after, "the burst was not found"
    assert after[0].zone == "town"
    assert after[0].at_ms <= burst_ms + 4 * 3_600_000  # 3 h; 10 h with every night unjudged


def test_a_growing_leak_in_a_district_is_found_within_the_day_and_blames_no_meter() -> None:
    """The leak of seed 3's simulated history (README, Leaks and waste heat): 3.75 m³/h
    reached over 48 h in the south district from its fourth day, 00:54, with three days of
    baseline. Each hour it grows by 0.08 m³/h, under the hourly CUSUM's allowance (1.25 × the
    meters' class, 0.9 m³/h here) for 12 hours; the 6-hour mean passes ¾ of the class
    sooner: found after 17 hours (21 before the window test). Its first hours move with
    pharmco's flow within the hour, and pharmco happens to draw 0.9 m³/h less that morning
    than on the three days kept — 6.6 times its scatter taken as is, but a scatter from three
    days is widened as the baseline's is (Student's t), and then it does not stand out: no
    meter is blamed (pharmco's was, once)."""
    start = 1_793_635_200_000  # 2026-11-02 16:00 UTC, local midnight
    leak = Fault(
        FaultKind.WATER_LEAK,
        1_793_897_640_000,  # 2026-11-06 00:54 local
        1_794_112_980_000,
        zone="water-d3",
        magnitude=3.749,
        ramp_s=172_272,
    )
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, start, 4.5, seed=3, faults=[leak])
    events = replay(ParkEngine(park, [ZoneLeaks]), rows).events
    assert not [e for e in events if e.kind == "meter_under_registration"]
    found = [e for e in events if e.family is Family.LEAK]
    assert [(e.kind, e.zone) for e in found] == [("water_leak", "water-d3")]
    assert leak.start_ms < found[0].detected_at_ms <= leak.start_ms + 18 * 3_600_000


FIRST_THURSDAY_MS = 1_793_808_000_000  # 2026-11-05 00:00 local, a Thursday


def test_a_district_leak_from_the_first_sunday_is_found_within_the_day() -> None:
    """Seed 3's leak of the eight demo histories (README, Leaks and waste heat): 3.75 m³/h
    reached over 48 h in the south district from the history's first Sunday, 00:54 local.
    Neither the Sunday (no rest day seen) nor the Monday (two workdays kept) has a baseline
    of its kind, so the leak ran unjudged until its repair on the Tuesday. A district's
    balance (its main less the works it feeds) reads the same every hour of every kind of
    day, so it is judged on its pooled hours meanwhile: found the same day (after the slow
    leak's 12 hours' wait)."""
    leak = Fault(
        FaultKind.WATER_LEAK,
        1_794_070_440_000,  # 2026-11-08 00:54 local, a Sunday
        1_794_285_780_000,
        zone="water-d3",
        magnitude=3.749,
        ramp_s=172_272,
    )
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, FIRST_THURSDAY_MS, 4.5, seed=3, faults=[leak])
    events = replay(ParkEngine(park, [ZoneLeaks]), rows).events
    found = [e for e in events if e.family is Family.LEAK]
    assert [(e.kind, e.zone) for e in found] == [("water_leak", "water-d3")]
    assert leak.start_ms < found[0].detected_at_ms <= leak.start_ms + 24 * 3_600_000


def test_a_sub_meter_reading_low_in_the_first_days_is_no_leak_of_its_district() -> None:
    """Seed 3's steelworks intake reading 87.6 % from the history's first Friday, 19:32
    local. Its district, judged on its pooled workday hours from the Friday, stands out; the
    intake's flow stands out of the district's hours within each hour too, but by a β that
    does not account for the excess (0.33, not 0.14), and no meter has days of its kind to
    compare with: a leak, until such a case held the decision. The intake alone stands out,
    so the decision leans on it: its meter fault within a day, no leak (demo19; before it,
    pooled hours needed a rest day's too, and the fault ran unjudged to its end)."""
    fault = Fault(
        FaultKind.METER_UNDER_REGISTRATION,
        1_793_964_720_000,  # 2026-11-06 19:32 local
        1_794_142_440_000,
        meter="steelco-water",
        magnitude=0.876,
    )
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, FIRST_THURSDAY_MS, 4.0, seed=3, faults=[fault])
    events = replay(ParkEngine(park, [ZoneLeaks]), rows).events
    assert not [e for e in events if e.family is Family.LEAK and e.zone == "water-d1"]
    found = [e for e in events if e.kind == "meter_under_registration"]
    assert [e.meter for e in found] == ["steelco-water"]
    assert fault.start_ms < found[0].detected_at_ms <= fault.start_ms + 86_400_000
    assert found[0].estimate is not None
    assert found[0].estimate.value == pytest.approx(100 / 0.876 - 100, abs=5)  # % unregistered


@pytest.mark.parametrize("seed", [1, 2])
def test_a_lively_sub_meter_reading_low_in_the_first_days_is_its_fault_not_a_leak(
    seed: int,
) -> None:
    """The chemicals intake reading 85 % from the history's first Saturday 19:30 (hour
    67.5; second review of demo19). Its lively flow, part of what the district's main
    carries, moves the main's β too ((1 − f)·cov/var: up 0.13 at 6 of its errors, read
    with the hour of the step), which the second review's rule (an inflow's β rising a
    leak) read as a water_leak at 16.5 h in every seed; that rule is gone (fix of demo19):
    its meter fault within a day, no leak."""
    start = FIRST_THURSDAY_MS + 67 * 3_600_000 + 1_800_000
    fault = Fault(
        FaultKind.METER_UNDER_REGISTRATION,
        start,
        FIRST_THURSDAY_MS + 6 * 86_400_000,
        meter="chemco-water",
        magnitude=0.85,
    )
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, FIRST_THURSDAY_MS, 5.0, seed=seed, faults=[fault])
    events = replay(ParkEngine(park, [ZoneLeaks]), rows).events
    assert not [e for e in events if e.family is Family.LEAK]
    found = [e for e in events if e.kind == "meter_under_registration"]
    assert [e.meter for e in found] == ["chemco-water"]
    assert start < found[0].detected_at_ms <= start + 86_400_000
    assert found[0].estimate is not None
    # % unregistered (16.0 and 15.0 %; before β was read on matching hours: 22 %)
    assert found[0].estimate.value == pytest.approx(100 / 0.85 - 100, abs=6)


@pytest.mark.parametrize("seed", [1, 3])
def test_a_lively_sub_meter_reading_low_from_the_first_friday_is_its_fault_not_a_leak(
    seed: int,
) -> None:
    """The chemicals intake reading 88 % from the history's first Friday 19:30 (hour 43.5).
    The district is judged from that Friday on its pooled hours; its Saturday's hours have
    no excess, and β read on Friday's three evening hours, the hour of the step among them,
    follows that hour: the main's β rose 0.53–0.86 on seed 1 for a drop of 0.14 — a
    water_leak at 5.5 h in 4 of 8 seeds. β read on every hour since but the step's,
    against the same hours of the day before: its meter fault within a day, no leak."""
    start = FIRST_THURSDAY_MS + 43 * 3_600_000 + 1_800_000
    fault = Fault(
        FaultKind.METER_UNDER_REGISTRATION,
        start,
        FIRST_THURSDAY_MS + 6 * 86_400_000,
        meter="chemco-water",
        magnitude=0.88,
    )
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, FIRST_THURSDAY_MS, 3.0, seed=seed, faults=[fault])
    events = replay(ParkEngine(park, [ZoneLeaks]), rows).events
    assert not [e for e in events if e.family is Family.LEAK]
    found = [e for e in events if e.kind == "meter_under_registration"]
    assert [e.meter for e in found] == ["chemco-water"]
    assert start < found[0].detected_at_ms <= start + 86_400_000
    assert found[0].estimate is not None
    assert found[0].estimate.value == pytest.approx(100 / 0.88 - 100, abs=5)  # % unregistered


def test_a_burst_while_a_sub_meters_beta_stands_out_in_the_first_days_stays_a_burst() -> None:
    """Seed 3, a 7 m³/h burst in the north district from the history's first Sunday 19:32
    (review of demo19). Read with the hour the balance stepped in, the chemicals intake's β
    stood out by chance (18 of its errors: a lean on the intake at 688 min, and before it
    a meter fault at 808 min); β leaves that hour out, and no meter's β then passes four of
    its errors: a burst, no meter fault."""
    start = FIRST_THURSDAY_MS + 3 * 86_400_000 + 70_320_000  # 2026-11-08 19:32 local
    burst = Fault(
        FaultKind.WATER_BURST, start, start + 30 * 3_600_000, zone="water-d1", magnitude=7.0
    )
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, FIRST_THURSDAY_MS, 5.0, seed=3, faults=[burst])
    events = replay(ParkEngine(park, [ZoneLeaks]), rows).events
    assert not [e for e in events if e.kind == "meter_under_registration"]
    found = [e for e in events if e.family is Family.LEAK]
    assert [(e.kind, e.zone) for e in found] == [("water_burst", "water-d1")]
    assert start < found[0].detected_at_ms <= start + 86_400_000
    assert found[0].estimate is not None
    assert found[0].estimate.value == pytest.approx(7.0, rel=0.25)


def test_a_leak_reported_over_unjudged_hours_is_estimated_from_its_onset() -> None:
    """Seed 3, a 4.4 m³/h leak in the north district from the history's first Friday 19:32
    (review of demo19): judged on Friday's pooled hours, reported after the 12 h wait on the
    Saturday morning, whose hours wait for a day of rest days' to be judged. The last three
    hours hold no excess: the estimate is the mean since the onset, not 0."""
    start = FIRST_THURSDAY_MS + 86_400_000 + 70_320_000  # 2026-11-06 19:32 local
    leak = Fault(
        FaultKind.WATER_LEAK, start, start + 30 * 3_600_000, zone="water-d1", magnitude=4.4
    )
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, FIRST_THURSDAY_MS, 3.0, seed=3, faults=[leak])
    events = replay(ParkEngine(park, [ZoneLeaks]), rows).events
    found = [e for e in events if e.family is Family.LEAK]
    assert [(e.kind, e.zone) for e in found] == [("water_leak", "water-d1")]
    assert start < found[0].detected_at_ms <= start + 86_400_000
    assert found[0].estimate is not None
    assert found[0].estimate.value == pytest.approx(4.4, rel=0.15)


@pytest.mark.parametrize(("seed", "from_h"), [(1, 24), (2, 82)])
def test_an_outflow_meter_reading_88_percent_in_the_first_days_is_no_burst_nor_leak(
    seed: int, from_h: int
) -> None:
    """The steelworks intake reading 88 % from the history's first Friday 00:00 (seed 1) or
    its first Sunday 10:00 (seed 2), for five days (review of cold15). Its district, judged
    on its pooled hours, stood out at once: no baseline of the hour's kind, yet a burst's
    wait, and a leak three hours on (at 27 and 85 h). From the Friday the district has no
    rest day to pool; from the Sunday its excess waits as a slow leak's, and the intake,
    whose β moved 3.3 of its errors (not the 4 that blame it), holds it: the intake is blamed
    once its β stands out (97 h), never the district."""
    fault = Fault(
        FaultKind.METER_UNDER_REGISTRATION,
        FIRST_THURSDAY_MS + from_h * 3_600_000,
        FIRST_THURSDAY_MS + 6 * 86_400_000,
        meter="steelco-water",
        magnitude=0.88,
    )
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, FIRST_THURSDAY_MS, 6.0, seed=seed, faults=[fault])
    events = replay(ParkEngine(park, [ZoneLeaks]), rows).events
    assert not [e for e in events if e.family is Family.LEAK and e.zone == "water-d1"]
    assert {e.meter for e in events if e.kind == "meter_under_registration"} <= {"steelco-water"}


def test_a_blind_decision_is_dropped_at_its_limit() -> None:
    """By hand (``_explain`` always answering "blind"): a flat zone's decision that waits on
    a meter nothing can settle yet waits at most ``blind_h`` hours from its first "blind"
    verdict — not from the excess's onset, which a slow excess left a day back already (it
    was dropped at its first verdict) — then it is dropped: no event, the drop marked on the
    zone's balance point, the zone quiet, and its pooled hours start afresh from there
    (``flat_from``). Unbounded, it waited for the zone's baselines of its kind (about six
    days from a history's start)."""
    ctx = ParkContext(_yard_park())
    detector = ZoneLeaks(ctx, ZoneLeaks.select(ctx))
    detector._explain = lambda zi, hour: ("blind", -1, 0.0)  # type: ignore[method-assign]
    first = 24 * 20400 + 3
    onset = first - 2 * detector.p.blind_h  # the excess began two days before the decision
    detector.state_[0], detector.cusum[0], detector.onset[0] = leaks.DECIDING, 20.0, onset
    detector.pooled_now[0] = True
    out = Output()
    limit = first + detector.p.blind_h - 1
    for hour in range(first, limit):
        detector._judge(0, hour, (hour + 1) * 3_600_000, 9.0, None, out)
        assert detector.state_[0] == leaks.DECIDING
    assert detector.blind_at[0] == first
    assert detector.flat_from[0] == -1
    assert not out.points
    detector._judge(0, limit, (limit + 1) * 3_600_000, 9.0, None, out)
    assert not out.findings
    assert [p.fields for p in out.points] == [{"blind_dropped": True}]
    assert out.points[0].tags["zone"] == "yard"
    assert out.points[0].t_ms == limit * 3_600_000
    assert detector.state_[0] == leaks.QUIET
    assert detector.cusum[0] == 0.0
    assert detector.onset[0] == -1
    assert detector.blind_at[0] == -1
    assert detector.flat_from[0] == limit


def _blind_case(
    gap: bool, days: float = 6.0, repaired_h: int | None = None, extra: list[Fault] | None = None
) -> tuple[Park, Any]:
    """Seed 2's demo park, 6 days from the first Thursday, the steelworks intake reading 92 %
    from the first Saturday 22:00 (hour 70): its district stands out, the intake stands out
    too but nothing can settle it yet: "blind" (review of cold16). With ``gap``, the
    district main is silent on the first Friday 10:00–11:00: that hour of the day then has
    one workday kept until the Monday, so the district's kinds of day are not told alike
    (``_kinds_alike``) before the Tuesday, and its Sunday and Monday are judged on its
    pooled hours (``_flat_baseline``) as before steel17; without it they are alike from the
    Sunday and judged against every kept day. The intake's fault lasts past the ``days``
    replayed, or ends ``repaired_h`` hours after the Thursday's midnight. The scenario is
    tuned (one particular 1-h gap keeps the rule off): if it stops pooling, rebuild the
    scenario — do not loosen the tests' asserts. ``extra``: more faults on top."""
    faults = [
        *(extra or []),
        Fault(
            FaultKind.METER_UNDER_REGISTRATION,
            FIRST_THURSDAY_MS + 70 * 3_600_000,
            FIRST_THURSDAY_MS
            + (int((days + 1) * 86_400_000) if repaired_h is None else repaired_h * 3_600_000),
            meter="steelco-water",
            magnitude=0.92,
        ),
    ]
    if gap:
        at = FIRST_THURSDAY_MS + 34 * 3_600_000
        faults.append(Fault(FaultKind.COMM_LOSS, at, at + 3_600_000, meter="water-d1"))
    park = Park.from_yaml(DEMO_PARK)
    return park, simulated_rows(park, FIRST_THURSDAY_MS, days, seed=2, faults=faults)


def _local_hour(t_ms: int) -> int:
    """The detector's hour number of ``t_ms``: hours since 1970 on the demo park's clock."""
    return int(ParkContext(Park.from_yaml(DEMO_PARK)).local_ms(np.array([t_ms]))[0]) // 3_600_000


def _blind_replay(
    gap: bool,
    monkeypatch: pytest.MonkeyPatch,
    days: float = 6.0,
    repaired_h: int | None = None,
    points: list[Any] | None = None,
    extra: list[Fault] | None = None,
) -> tuple[list[Any], list[Any], list[tuple[int, str, bool, bool]], ZoneLeaks]:
    """The blind case replayed: its events, the drops marked on balance points, the
    district's verdicts (local hour since the first Thursday, verdict, judged on pooled
    hours, judged against every kind's days) and the detector as it ended; every derived
    point goes to ``points`` when given."""
    verdicts: list[tuple[int, str, bool, bool]] = []
    explain = ZoneLeaks._explain
    first = _local_hour(FIRST_THURSDAY_MS)

    def recording(self: ZoneLeaks, zi: int, hour: int) -> tuple[str, int, float]:
        verdict = explain(self, zi, hour)
        if self.layout.zones[zi].id == "water-d1":
            pooled, mixed = bool(self.pooled_now[zi]), bool(self.mixed_now[zi])
            verdicts.append((hour - first, verdict[0], pooled, mixed))
        return verdict

    monkeypatch.setattr(ZoneLeaks, "_explain", recording)
    park, rows = _blind_case(gap, days, repaired_h, extra)
    engine = ParkEngine(park, [ZoneLeaks])
    points = [] if points is None else points
    report = replay(engine, rows, on_advance=lambda adv: points.extend(adv.points))
    monkeypatch.setattr(ZoneLeaks, "_explain", explain)
    dropped = [p for p in points if p.fields.get("blind_dropped")]
    detector = next(i.detector for i in engine.instances if isinstance(i.detector, ZoneLeaks))
    return report.events, dropped, verdicts, detector


def test_a_blind_decision_on_a_simulated_park_is_dropped_without_an_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """End to end, the blind case on pooled hours (``_blind_case`` with its Friday gap): its
    district's decision gets "blind" verdicts hour after hour on its pooled hours, and is
    dropped exactly ``blind_h`` hours after the first: no leak, the drop marked on the
    district's balance point of that hour and ``flat_from`` set to it. From the Tuesday the
    district's kinds of day are alike, it is judged against every kept day, and the intake
    is blamed for its reading low."""
    events, dropped, verdicts, detector = _blind_replay(True, monkeypatch)
    assert [(e.kind, e.meter) for e in events] == [("meter_under_registration", "steelco-water")]
    blind = [hour for hour, verdict, *_ in verdicts if verdict == "blind"]
    assert blind
    drop = blind[0] + leaks.LeakParams().blind_h - 1
    # blind every hour on pooled hours up to the drop; after it, only on hours judged
    # against every kind's days
    assert [v[1:3] for v in verdicts if blind[0] <= v[0] <= drop] == [("blind", True)] * 24
    assert all(mixed for hour, verdict, _, mixed in verdicts if verdict == "blind" and hour > drop)
    # (β alone blames the intake: with no meter's own days it leans, demo19, then is blamed)
    assert {"meter", "lean"} & {verdict for hour, verdict, *_ in verdicts if hour > drop}
    assert [(p.tags["zone"], p.t_ms) for p in dropped] == [
        ("water-d1", FIRST_THURSDAY_MS + drop * 3_600_000)
    ]
    # the intake itself is blamed only later, once its district is judged again
    assert events[0].detected_at_ms > FIRST_THURSDAY_MS + (drop + 1) * 3_600_000
    zi = [z.id for z in detector.layout.zones].index("water-d1")
    assert int(detector.flat_from[zi]) - _local_hour(FIRST_THURSDAY_MS) == drop
    assert detector.alike[0, zi]  # (the rule took over on the Tuesday)


def test_a_round_the_clock_districts_blind_decision_ends_as_its_intakes_meter_fault(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The blind case on a district whose kinds of day are alike (``_blind_case`` without
    the gap): from the Sunday its hours are judged against every kept day, not pooled. Its
    excess waits as a slow leak's (no meter has days of the kind to split the balance by,
    ``_unsplit``), is then "blind" (nothing settles the intake) but never dropped, and the
    intake is blamed once Tuesday's hours settle it: one event, the intake's reading low,
    no leak. (Pooled, before steel17, the decision was dropped; without the blind verdict on
    such hours it was a leak of the district.)"""
    events, dropped, verdicts, _ = _blind_replay(False, monkeypatch)
    assert [(e.kind, e.meter) for e in events] == [("meter_under_registration", "steelco-water")]
    assert dropped == []
    assert not any(pooled for *_, pooled, _ in verdicts)
    blind = [mixed for _, verdict, _, mixed in verdicts if verdict == "blind"]
    assert blind
    assert all(blind)
    # β alone blames the intake: with no meter's own days it leans (demo19), already waited
    assert verdicts[-1][1] in ("meter", "lean")


def test_a_dropped_blind_decisions_meter_fault_stays_open_while_it_lasts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pooled blind case (``_blind_case`` with its gap) run 9 days, the intake's fault on
    to the end (review of steel18): one event, the intake's reading low, open to the end —
    no leak of the district. The Monday's hours after the drop were learnt with the fault
    in them: from the Tuesday 05:00 the workdays' baseline holds them, its median still the
    fault-free days' but its spread 5.5 m³/h against the fault's 3.1–3.8, so the hours
    scored under 1 with the fault on; the event closed at 137 h and the Wednesday was a
    leak at 150 h, until an open meter fault's hour counted quiet only with most of the
    excess its meter accounted for gone (``ZoneLeaks._quiet``)."""
    events, dropped, _, _ = _blind_replay(True, monkeypatch, days=9.0)
    assert len(dropped) == 1
    assert [(e.kind, e.meter, e.end_ms) for e in events] == [
        ("meter_under_registration", "steelco-water", None)
    ]


def test_a_dropped_blind_decisions_meter_fault_closes_after_its_repair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same case, the intake repaired at 130 h, with the meter fault open over the
    widened baseline (above): the event closes ``close_h`` hours after the repair, as a
    meter event does over an ordinary baseline, not days later (a rule that counted no
    hour judged against every kind's days quiet for an open meter fault kept it open 206 h
    past the repair) — and no leak."""
    events, dropped, _, _ = _blind_replay(True, monkeypatch, days=9.0, repaired_h=130)
    assert len(dropped) == 1
    assert [(e.kind, e.meter) for e in events] == [("meter_under_registration", "steelco-water")]
    end_ms = events[0].end_ms
    assert end_ms is not None
    repair_ms = FIRST_THURSDAY_MS + 130 * 3_600_000
    close_ms = leaks.LeakParams().close_h * 3_600_000
    assert repair_ms + close_ms <= end_ms <= repair_ms + close_ms + 2 * 3_600_000


def test_a_meter_fault_open_past_the_baselines_days_is_judged_and_closes_at_its_repair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same case run 30 days, the intake reading low from 70 h to its repair at 700 h
    (over 26 days; its event open from 122 h, longer than the 21 days the baselines keep):
    the district is judged every workday to the repair, the event stays open while the
    fault lasts and closes ``close_h`` hours after it, no leak anywhere. An open meter
    fault's hours were never learnt, so past the ring's days its district had no baseline —
    no hour judged after day 28, the event open for good — until they were learnt net of
    what the meter loses (``ZoneLeaks._learn_meter_fault``)."""
    points: list[Any] = []
    repair_h = 700
    events, dropped, _, _ = _blind_replay(
        True, monkeypatch, days=30.0, repaired_h=repair_h, points=points
    )
    assert len(dropped) == 1
    assert [(e.kind, e.meter) for e in events] == [("meter_under_registration", "steelco-water")]
    day_ms = 86_400_000
    judged_days = {
        (p.t_ms - FIRST_THURSDAY_MS) // day_ms
        for p in points
        if p.tags.get("zone") == "water-d1" and "score" in p.fields
    }
    # (its rest days have no baseline of their own: the fault began on the first weekend)
    workdays = {d for d in range(4, repair_h // 24 + 1) if d % 7 not in (2, 3)}
    assert workdays <= judged_days
    end_ms = events[0].end_ms
    assert end_ms is not None
    repair_ms = FIRST_THURSDAY_MS + repair_h * 3_600_000
    close_ms = leaks.LeakParams().close_h * 3_600_000
    assert repair_ms + close_ms <= end_ms <= repair_ms + close_ms + 2 * 3_600_000


def test_a_works_fed_by_an_intake_reading_low_learns_no_leak_from_its_repair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same case, the intake repaired at 200 h: its event closes ``close_h`` hours after,
    and steelco's own pipes, fed by the intake, are no leak. They had learnt its low
    readings as their normal over the fault's days, so the repair read as 3.6 m³/h more:
    a leak of steelco's pipes at 268 h — until the hours of every zone the faulty meter
    enters were learnt corrected by what it loses (``ZoneLeaks._start_meter_fault``)."""
    events, dropped, _, _ = _blind_replay(True, monkeypatch, days=14.0, repaired_h=200)
    assert len(dropped) == 1
    assert [(e.kind, e.meter) for e in events] == [("meter_under_registration", "steelco-water")]
    end_ms = events[0].end_ms
    assert end_ms is not None
    repair_ms = FIRST_THURSDAY_MS + 200 * 3_600_000
    close_ms = leaks.LeakParams().close_h * 3_600_000
    assert repair_ms + close_ms <= end_ms <= repair_ms + close_ms + 2 * 3_600_000


def test_a_burst_of_the_works_fed_by_an_intake_reading_low_is_a_burst(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same case, the intake's fault never repaired, and a 5 m³/h burst of steelco's own
    pipes at 400 h: a burst, found within 3 h. Those pipes learnt their hours corrected by
    what the intake loses, but were judged raw, so they sat that much under their baseline:
    the burst was a leak 24 h late at 0.8 m³/h — until they were judged on the same
    corrected balance (``ZoneLeaks._meter_corrections``)."""
    burst_ms = FIRST_THURSDAY_MS + 400 * 3_600_000
    burst = Fault(FaultKind.WATER_BURST, burst_ms, None, zone="steelco-water", magnitude=5.0)
    events, _, _, _ = _blind_replay(True, monkeypatch, days=18.0, extra=[burst])
    assert [(e.kind, e.meter or e.zone) for e in events] == [
        ("meter_under_registration", "steelco-water"),
        ("water_burst", "steelco-water"),
    ]
    assert events[0].end_ms is None  # (the fault lasts)
    assert burst_ms <= events[1].detected_at_ms <= burst_ms + 3 * 3_600_000
    assert events[1].estimate is not None
    assert 4.0 <= events[1].estimate.value <= 6.0


@pytest.mark.parametrize("gap", [True, False], ids=["pooled-drop", "alike-meter"])
def test_a_pooled_history_is_the_same_in_any_chunks_and_over_snapshots(
    gap: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blind cases (``_blind_case``: pooled hours, "blind" verdicts, a drop, ``flat_from``
    set, then the kinds of day alike; or alike from the Sunday, blind, the intake blamed) —
    which the contract's chunking and snapshot checks never reach (their zones are never
    pooled, nor blind): its detector's blocks fed straight, or with its state pickled and
    restored into a fresh one at hour boundaries before, during and after the blind
    decision, give the same findings and the same state (``flat_from``, ``blind_at``
    included) and the same kinds of day alike (not state: recomputed each hour); replayed
    in stretches of 7 and 1000 slots, the same events and drops."""
    blocks: list[Any] = []
    fresh: list[ZoneLeaks] = []
    update = ZoneLeaks.update

    def recording(self: ZoneLeaks, block: Any) -> Output:
        if not fresh:
            fresh.append(copy.deepcopy(self))
        blocks.append(block)
        return update(self, block)

    monkeypatch.setattr(ZoneLeaks, "update", recording)
    park, rows = _blind_case(gap)
    points: list[Any] = []
    events = replay(
        ParkEngine(park, [ZoneLeaks]), rows, on_advance=lambda adv: points.extend(adv.points)
    ).events
    monkeypatch.setattr(ZoneLeaks, "update", update)

    def feed(detector: ZoneLeaks, part: list[Any]) -> list[tuple[str, str, int, bool]]:
        return [
            (f.kind, f.subject, f.at_ms, f.active)
            for b in part
            for f in detector.update(b).findings
        ]

    def drops(found: list[Any]) -> list[tuple[str, int]]:
        return [(p.tags["zone"], p.t_ms) for p in found if p.fields.get("blind_dropped")]

    straight = copy.deepcopy(fresh[0])
    whole: list[tuple[str, str, int, bool]] = []
    # ``alike`` and ``blunt`` are recomputed every hour from persisted state, not persisted:
    # kept after each block, to check them an hour past each restore, not only at the end
    rules: list[tuple[Any, Any]] = []
    for b in blocks:
        whole += feed(straight, [b])
        rules.append((straight.alike.copy(), straight.blunt.copy()))
    zi = [z.id for z in straight.layout.zones].index("water-d1")
    if gap:
        assert straight.flat_from[zi] >= 0
        assert len(drops(points)) == 1
    else:
        assert [f[0] for f in whole] == ["meter_under_registration"]
    assert straight.alike[0, zi]
    for hours in (40, 75, 90, 100, 110, 121, 125):
        # the first block of that hour's stretch: where the service would snapshot
        cut = next(
            i for i, b in enumerate(blocks) if b.start_ms >= FIRST_THURSDAY_MS + hours * 3_600_000
        )
        first = copy.deepcopy(fresh[0])
        found = feed(first, blocks[:cut])
        second = copy.deepcopy(fresh[0])
        second.restore(pickle.loads(pickle.dumps(first.state())))
        # (two hours on: past at least one hour finished after the restore)
        later = next(
            i
            for i, b in enumerate(blocks)
            if b.start_ms >= FIRST_THURSDAY_MS + (hours + 2) * 3_600_000
        )
        found += feed(second, blocks[cut:later])
        assert np.array_equal(second.alike, rules[later - 1][0]), hours
        assert np.array_equal(second.blunt, rules[later - 1][1]), hours
        assert found + feed(second, blocks[later:]) == whole, hours
        for (name, mine), (_, theirs) in zip(second._fields(), straight._fields(), strict=True):
            if isinstance(mine, np.ndarray):
                assert np.array_equal(mine, theirs, equal_nan=True), (hours, name)
            else:
                assert mine == theirs or (mine != mine and theirs != theirs), (hours, name)
        assert np.array_equal(second.alike, straight.alike), hours
        assert np.array_equal(second.blunt, straight.blunt), hours
    for every in (7, 1000):
        chunk_points: list[Any] = []

        def collect(adv: Any, into: list[Any] = chunk_points) -> None:
            into.extend(adv.points)

        chunked = replay(
            ParkEngine(park, [ZoneLeaks]), rows, advance_every_slots=every, on_advance=collect
        ).events
        assert [(e.kind, e.zone, e.meter) for e in chunked] == [
            (e.kind, e.zone, e.meter) for e in events
        ], every
        assert drops(chunk_points) == drops(points), every


def test_a_meter_reading_low_from_a_sunday_on_an_alike_zone_waits_12_hours() -> None:
    """Seed 2's steelco cooling make-up meter reading 83.1 % from the history's third
    Sunday, 15:13 local (README, the eight histories). The works' pipes (steelco-water,
    less that meter) have kinds of day alike (``_kinds_alike``) and two Sundays kept, so the
    Sunday is judged against every kept day — whose workdays use more than its Sundays, so
    the meter's lost 2.9 m³/h read as 1.8 and did not account for the excess: a leak of the
    works at 7 h. An excess begun on such an hour waits as a slow leak's (``_blunt_start``):
    the meter is blamed within 12 h of the fault, and no leak is reported."""
    fault = Fault(
        FaultKind.METER_UNDER_REGISTRATION,
        1_795_331_580_000,  # 2026-11-22 15:13 local, a Sunday
        1_795_660_380_000,
        meter="steelco-cooling",
        magnitude=0.831,
    )
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, FIRST_THURSDAY_MS, 18.5, seed=2, faults=[fault])
    blunt: list[bool] = []
    judge = ZoneLeaks._judge

    def recording(self: ZoneLeaks, zi: int, hour: int, *args: Any) -> None:
        if self.layout.zones[zi].id == "steelco-water" and self.state_[zi] == leaks.DECIDING:
            blunt.append(self._blunt_start(zi))
        judge(self, zi, hour, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ZoneLeaks, "_judge", recording)
        events = replay(ParkEngine(park, [ZoneLeaks]), rows).events
    assert [e for e in events if e.family is Family.LEAK] == []
    found = [(e.kind, e.meter) for e in events]
    assert found == [("meter_under_registration", "steelco-cooling")]
    meter = events[0]
    # the 12 h is the wait itself (``decide_h``): found 11.8 h after the fault, so the margin
    # is small on purpose — a blame later than the wait means the wait did not hold
    wait_ms = leaks.LeakParams().decide_h * 3_600_000
    assert fault.start_ms < meter.detected_at_ms <= fault.start_ms + wait_ms
    # the zone decided on an excess begun on such an hour (the wait is what held it)
    assert blunt
    assert all(blunt)


def _yard_park() -> Park:
    """A yard's water: its main feeds a works, metered, and the yard's own taps, not."""
    return Park.model_validate(
        {
            "park": "yard",
            "analytics": {"step_s": 60},
            "meters": [
                {"id": "yard-main", "utility": "water"},
                {"id": "works", "utility": "water"},
            ],
            "zones": [
                {"id": "yard", "utility": "water", "inflow": ["yard-main"], "outflow": ["works"]}
            ],
        }
    )


def test_a_zone_idle_over_its_first_weekend_is_no_burst_when_its_monday_gets_busy() -> None:
    """A history from a Saturday: the works and the yard's own taps idle all weekend (2 and
    1 m³/h, the yard's hours scattering by 0.01 — under half the floor a busy hour's inflow
    gives, 0.5 × 2 % × 35 = 0.35, not under an idle one's, 0.03), then busy on Monday from
    08:00 (30 and 5 m³/h). Pooled under the hour's own floor, the weekend read flat as
    Monday got busy, and Monday morning was a burst (review of cold15): judged against a
    weekend alone, any workday is. What holds it here is the guard that pooled hours need
    a day of each kind (the weekend alone never pools: Monday has no workday before it, and
    on Tuesday Monday's busy hours are not flat). The other fix, a floor from the pooled
    hours' own inflows, is not reached here: the by-hand test
    (``test_a_flat_zones_pooled_baseline_by_hand``) covers it."""
    saturday = FIRST_THURSDAY_MS + 2 * 86_400_000
    slots = 4 * 1440
    t = saturday + np.arange(slots, dtype=np.int64) * 60_000
    hod = (t - saturday) % 86_400_000 / 3_600_000
    busy = (t - saturday >= 2 * 86_400_000) & (hod >= 8) & (hod < 18)
    rng = np.random.default_rng(1)
    works = np.where(busy, 30.0, 2.0) + 0.05 * rng.standard_normal(slots)
    taps = np.where(busy, 5.0, 1.0) + 0.05 * rng.standard_normal(slots)
    values = np.vstack([works + taps, works])
    ctx = ParkContext(_yard_park())
    detector = ZoneLeaks(ctx, ZoneLeaks.select(ctx))
    found: list[Finding] = []
    for first in range(0, slots, 360):
        row = np.repeat(np.arange(2, dtype=np.int64), 360)
        part = values[:, first : first + 360].reshape(-1)
        block = slot_block(row, np.tile(t[first : first + 360], 2), part, 2, t[first], 60_000, 360)
        found.extend(detector.update(block).findings)
    assert not found


def _ring_detector(params: dict[str, Any]) -> ZoneLeaks:
    """The town's detector with its ring of hours filled by hand: four past workdays that
    used 10, 12, 11 and 13 m³/h in every hour (day 1000 to 1003), and today (day 1004)."""
    ctx = ParkContext(_park())
    detector = ZoneLeaks(ctx, ZoneLeaks.select(ctx), params)
    for day, value in enumerate([10.0, 12.0, 11.0, 13.0, 0.0]):
        for hod in range(24):
            hour = 24 * (1000 + day) + hod
            pos = hour % detector.ring
            detector.h_id[pos] = hour
            detector.h_daytype[pos] = 0  # a workday
            detector.h_value[:, pos] = value
            detector.h_clean[:, pos] = True
            detector.h_flow[:, pos] = 0.0  # no inflow: no floor
    return detector


def test_the_window_test_by_hand() -> None:
    """Today's last two hours used 15 and 17 m³/h: a window mean of 16 against the median of
    the four days' windows (10, 12, 11, 13 → 11.5), an excess of 4.5. Each day's window
    against the median of the other three: 10 − 12 = −2, 12 − 11 = 1, 11 − 12 = −1,
    13 − 11 = 2; the median of |−2|, 1, 1, 2 is 1.5, so the spread is 1.4826 × 1.5 and the
    limit 5 spreads (the floor is 0: no inflow) = 11.12 m³/h — a day that uses more in every
    hour is one deviation, so a window does not shrink it."""
    detector = _ring_detector({"window_h": 2, "window_z": 5.0, "widen": False})
    noon = 24 * 1004 + 12
    for hour, value in ((noon - 1, 15.0), (noon, 17.0)):
        detector.h_value[:, hour % detector.ring] = value
    excess, limit = detector._window_test(noon, 0)
    assert excess[0] == pytest.approx(4.5)
    assert limit[0] == pytest.approx(5 * 1.4826 * 1.5)
    # an hour of the window missing: no window, nothing judged
    detector.h_id[(noon - 1) % detector.ring] = -1
    excess, _ = detector._window_test(noon, 0)
    assert np.isnan(excess[0])


def test_the_window_test_takes_the_larger_of_spread_and_floor() -> None:
    """The same days with 200 m³/h flowing in: a floor of 0.5 × 2 % × 200 = 2 m³/h, 1.5 floors
    = 3 m³/h, under 5 spreads (11.12 m³/h): the spread decides; with window_z = 1 the floor's
    3 m³/h is more than 1.4826 × 1.5 = 2.22 m³/h and decides."""
    detector = _ring_detector({"window_h": 2, "widen": False})
    detector.h_flow[0, :] = 200.0  # feed A
    _, limit = detector._window_test(24 * 1004 + 12, 0)
    assert limit[0] == pytest.approx(5 * 1.4826 * 1.5)
    detector = _ring_detector({"window_h": 2, "window_z": 1.0, "widen": False})
    detector.h_flow[0, :] = 200.0
    _, limit = detector._window_test(24 * 1004 + 12, 0)
    assert limit[0] == pytest.approx(1.5 * 0.5 * 0.02 * 200.0)


def test_a_flat_zones_pooled_baseline_by_hand() -> None:
    """A zone whose hours read 5.35 and 5.45 m³/h in turn, 200 m³/h flowing in over them: a
    floor of 0.5 × 2 % × 200 = 2 m³/h, a pooled spread of 1.4826 × 0.05 = 0.074 (four days'
    hours: widened by Student's t for 4 days, 3.18 / 1.96), under half the floor: flat, its
    baseline the median, 5.4. One day at 9 m³/h is a quarter of the hours 3.6 m³/h away, past
    the floor at the 90th percentile: not flat (a works' or a town's use follows the shifts
    and days). Day 1003 is a Saturday: without a day of each kind, nothing is pooled for a
    rest day's hour (a workday's needs only workdays'); nor are the hours up to a dropped
    decision's (``flat_from``)."""
    detector = _ring_detector({})
    detector.h_flow[0, :] = 200.0
    flat = 5.4 + 0.05 * np.where(np.arange(detector.ring) % 2 == 0, -1.0, 1.0)
    detector.h_value[:, :] = flat
    saturday = [(24 * 1003 + hod) % detector.ring for hod in range(24)]
    detector.h_daytype[saturday] = SATURDAY
    noon = 24 * 1004 + 12
    base, spread = detector._flat_baseline(noon, SATURDAY)
    assert base[0] == pytest.approx(5.4)
    assert spread[0] == pytest.approx(1.4826 * 0.05 * 3.18 / 1.96)
    # the floor is the pooled hours' inflow, not the hour's: a tenth of it, flat no more
    detector.h_flow[0, :] = 20.0
    assert np.isnan(detector._flat_baseline(noon, SATURDAY)[0][0])
    detector.h_flow[0, :] = 200.0
    # workdays only: nothing pooled for a rest day's hour, a workday's is (demo19)
    detector.h_daytype[saturday] = WORKDAY
    assert np.isnan(detector._flat_baseline(noon, SATURDAY)[0][0])
    assert detector._flat_baseline(noon, WORKDAY)[0][0] == pytest.approx(5.4)
    detector.h_daytype[saturday] = SATURDAY
    # hours up to a dropped "blind" decision's: not pooled (Saturday's afternoon on: 12 left)
    detector.flat_from[0] = 24 * 1003 + 12
    assert np.isnan(detector._flat_baseline(noon, SATURDAY)[0][0])
    detector.flat_from[0] = -1
    # fewer than 24 clean hours: nothing pooled yet
    detector.h_clean[:, :] = False
    assert np.isnan(detector._flat_baseline(noon, SATURDAY)[0][0])
    detector.h_clean[:, :] = True
    for hod in range(24):
        detector.h_value[:, (24 * 1002 + hod) % detector.ring] = 9.0
    assert np.isnan(detector._flat_baseline(noon, SATURDAY)[0][0])


def test_a_window_alarm_dates_the_leak_from_the_hours_over_the_baseline() -> None:
    """Of a six-hour window whose hours stood −0.2, 0.1, −0.1, 0.3, 0.6, 0.9 over the
    baseline, the leak began after the last hour at or under it: three hours ago. When every
    hour is over, at the window's first hour."""
    detector = _ring_detector({})
    noon = 24 * 1004 + 12
    for back, excess in enumerate([0.9, 0.6, 0.3, -0.1, 0.1, -0.2]):
        detector.h_excess[:, (noon - back) % detector.ring] = excess
    assert int(detector._window_onset(noon)[0]) == noon - 2
    detector.h_excess[:, (noon - 2) % detector.ring] = np.nan  # not judged: not over
    assert int(detector._window_onset(noon)[0]) == noon - 1
    for back in range(6):
        detector.h_excess[:, (noon - back) % detector.ring] = 1.0
    assert int(detector._window_onset(noon)[0]) == noon - 5


def test_a_leaks_estimate_falls_back_to_its_onset_by_hand() -> None:
    """A leak from five hours ago whose hours stood 2, 2, 2 over the baseline, then 3 at or
    under it: the last three hours' mean, −0.5, is no estimate (second review of demo19).
    The mean since the onset is, (6 − 1.5) / 6 = 0.75 m³/h; with those three not judged
    (a first Saturday's), 2."""
    detector = _ring_detector({})
    noon = 24 * 1004 + 12
    detector.onset[0] = noon - 5
    for back, excess in enumerate([-0.5, -0.5, -0.5, 2.0, 2.0, 2.0]):
        detector.h_excess[:, (noon - back) % detector.ring] = excess
    at_ms = (noon + 1) * 3_600_000
    found = detector._leak_finding(0, noon, at_ms, None)
    assert found.estimate is not None
    assert found.estimate.value == pytest.approx(0.75)
    for back in range(3):
        detector.h_excess[:, (noon - back) % detector.ring] = np.nan
    found = detector._leak_finding(0, noon, at_ms, None)
    assert found.estimate is not None
    assert found.estimate.value == pytest.approx(2.0)


def _stepped(detector: ZoneLeaks, step: int, hours: range) -> None:
    """Zone 0's excess 0 before hour ``step``, 1 in it (a step at its half hour), 2 after."""
    for hour in hours:
        level = 0.0 if hour < step else 1.0 if hour == step else 2.0
        detector.h_excess[0, hour % detector.ring] = level


def test_the_step_hour_across_a_gap_by_hand() -> None:
    """A balance stepped by 2 in the hour of its onset (excess 0, then 1, then 2), the hour
    before it not read: across the gap its rise is 2 − 0 from the hour before the gap, the
    most of any hour. Read only from the hour either side it had none, and the step was
    taken an hour early (its rise 1 − 0 across it), the step's own hour kept in β."""
    detector = _ring_detector({})
    noon = 24 * 1004 + 12
    onset = noon - 4
    detector.onset[0] = onset
    _stepped(detector, onset, range(noon - 12, noon + 1))
    detector.h_excess[0, (onset - 1) % detector.ring] = np.nan
    assert detector._step_hour(0, noon) == onset


def test_the_step_hour_without_a_baseline_by_hand() -> None:
    """No hour around the onset holds an excess (a first weekend's hours have no baseline):
    the step is found in the zone's consumption less the median of the same hours on the
    days before. The four days used 10 + 0.5·h m³/h at local hour h (a morning's rise of
    0.5 every hour, more than the step's half hour), today the same and 3 more from its
    step's half hour: rises 3 across the step, 1.5 either side of it, 0 elsewhere."""
    detector = _ring_detector({})
    noon = 24 * 1004 + 12
    step = noon - 3
    detector.onset[0] = step + 1  # (an onset an hour late)
    for hour in range(24 * 1000, noon + 1):
        pos = hour % detector.ring
        extra = 0.0 if hour < step else 1.5 if hour == step else 3.0
        detector.h_mean[0, pos] = 10 + 0.5 * (hour % 24) + (extra if hour >= 24 * 1004 else 0)
        detector.h_excess[0, pos] = np.nan
    assert detector._step_hour(0, noon) == step


def test_the_step_hour_hours_before_its_onset_by_hand() -> None:
    """A small step's onset lags it (its excess is seen once the CUSUM passes its limit):
    a step five hours before its onset is still found, the largest rise within
    ``step_back_h`` (6) hours before it."""
    detector = _ring_detector({})
    noon = 24 * 1004 + 12
    onset = noon - 2
    detector.onset[0] = onset
    _stepped(detector, onset - 5, range(noon - 16, noon + 1))
    assert detector._step_hour(0, noon) == onset - 5


def test_the_hours_before_are_weighed_to_the_hours_since_by_hand() -> None:
    """Hours since the onset at 20:00, 21:00 (twice: two days) and 03:00 local; the hours
    before hold days 1000–1003's 20:00 and 21:00 (4 each) and no 03:00. Each 20:00 before
    weighs 1/4, each 21:00 2/4, every other hour 0; the 03:00 since has no hour before to
    match and is left out of β."""
    a_ids = np.array([24 * 1004 + 20, 24 * 1004 + 21, 24 * 1005 + 21, 24 * 1005 + 3, 24 * 1005])
    after = np.array([True, True, True, True, False])  # (the last: not read)
    b_ids = np.array([24 * d + h for d in range(1000, 1004) for h in (19, 20, 21)])
    before = np.ones(b_ids.size, dtype=bool)
    m_after, weight = ZoneLeaks._hour_weights(a_ids, after, b_ids, before)
    assert m_after.tolist() == [True, True, True, False, False]
    assert weight.tolist() == [0.0, 0.25, 0.5] * 4
    assert weight.sum() == m_after.sum()  # β's sides weigh alike
    before[1] = False  # one 20:00 before not read: the other three share its weight
    assert ZoneLeaks._hour_weights(a_ids, after, b_ids, before)[1][1::3].tolist() == [
        0.0,
        1 / 3,
        1 / 3,
        1 / 3,
    ]


def test_a_meters_own_shift_is_widened_for_few_days_by_hand() -> None:
    """Feed A drew 10, 12, 11 and 13 m³/h on the four days kept and 15 today, in each of
    three hours: a change of 15 − 11.5 = 3.5 against residuals ±0.5, ±1.5 (median 1.0, a
    scatter of 1.4826); three hours are one day's worth, so the standard error is that
    scatter, taken 3.18 / 1.96 wider for four days (Student's t with 3 degrees of freedom),
    as the baseline's spread is — from a few days the meter check must not blame a meter on
    a scatter it underrates."""
    noon = 24 * 1004 + 12
    hours = np.array([noon - 2, noon - 1, noon])
    for widen, factor in ((False, 1.0), (True, 3.18 / 1.96)):
        detector = _ring_detector({"widen": widen})
        for day, value in enumerate([10.0, 12.0, 11.0, 13.0, 15.0]):
            detector.h_flow[0, (hours - 24 * (4 - day)) % detector.ring] = value
        shift = detector._own_shift(0, 0, hours % detector.ring)
        assert shift is not None
        change, se, usual = shift
        assert change == pytest.approx(3.5)
        assert se == pytest.approx(1.4826 * factor)
        assert usual == pytest.approx(11.5)


def test_a_production_meter_silent_for_hours_is_no_air_leak() -> None:
    """Autoparts' compressed air is judged net of what its plant's production explains. When
    its paint shop's meter is replaced (silent 01:14–03:55 on the eighth day), its hours
    without a reading had been taken as no production at all, so the paint shop's share of
    the air looked like a leak (seed 1's simulated month had its one false air leak so). An
    hour whose production a silent meter leaves unknown is not judged: no event."""
    day, hour = 86_400_000, 3_600_000
    replaced = Fault(
        FaultKind.METER_REPLACEMENT,
        DEMO_START_MS + 7 * day + 1 * hour + 14 * 60_000,
        DEMO_START_MS + 7 * day + 3 * hour + 55 * 60_000,
        meter="autoparts-paint",
        magnitude=3.4,
    )
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, DEMO_START_MS, 8, seed=11, faults=[replaced])
    engine = ParkEngine(park, [ZoneLeaks])
    events = replay(engine, rows).events
    assert not [e for e in events if e.family is Family.LEAK]
    detector = engine.instances[0].detector
    assert isinstance(detector, ZoneLeaks)
    zone = [z.id for z in detector.layout.zones].index("autoparts-air")
    assert detector.gamma[zone] > 0  # the zone is taken net of its production


@pytest.mark.parametrize(
    ("kind", "first_hour", "hours"),
    [(FaultKind.STUCK_VALUE, 0, 12), (FaultKind.WORD_SWAP, 8, 6)],
    ids=["stuck", "word_swap"],
)
def test_a_production_meter_stuck_or_word_swapped_is_no_air_leak(
    kind: FaultKind, first_hour: int, hours: int
) -> None:
    """Steelco's compressed air is modelled on its furnace's electricity. That meter stuck at
    its night load from midnight for 12 hours made the working morning's air a leak (over the
    production model), and six word-swapped hours one of 3.9e10 Nm³/h: a production meter
    stuck or out of its range leaves its hours' production unknown, as a silent one does, so
    they are not judged: no event."""
    day, hour = 86_400_000, 3_600_000
    begin = DEMO_START_MS + 3 * day
    start = begin + 5 * day + first_hour * hour
    fault = Fault(kind, start, start + hours * hour, meter="steelco-furnace")
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, begin, 8, seed=13, faults=[fault])
    engine = ParkEngine(park, [ZoneLeaks])
    events = replay(engine, rows).events
    assert not [e for e in events if e.family is Family.LEAK]
    detector = engine.instances[0].detector
    assert isinstance(detector, ZoneLeaks)
    zone = [z.id for z in detector.layout.zones].index("steelco-air")
    assert np.isfinite(detector.model[zone]).all()  # the zone has its production model


def _stuck_flags(values: np.ndarray, size: int) -> np.ndarray:
    """The leak detector's stuck check on the town's feed A reading ``values`` (the other
    meters lively), fed in blocks of ``size`` slots: which of feed A's readings it flags."""
    ctx = ParkContext(_park())
    detector = ZoneLeaks(ctx, ZoneLeaks.select(ctx))
    rng = np.random.default_rng(1)
    rows = np.vstack([values, 10 + rng.standard_normal(values.size), 4 + rng.random(values.size)])
    flags = []
    for first in range(0, values.size, size):
        n = min(size, values.size - first)
        chunk = rows[:, first : first + n]
        row = np.repeat(np.arange(3, dtype=np.int64), n)
        t = np.tile(START_MS + (first + np.arange(n, dtype=np.int64)) * STEP_MS, 3)
        block = slot_block(row, t, chunk.reshape(-1), 3, START_MS + first * STEP_MS, STEP_MS, n)
        flags.append(detector._stuck(block)[0][0])
    return np.concatenate(flags)


def test_the_stuck_check_flags_the_same_readings_whatever_the_block_size() -> None:
    """A shorter steady run after a longer one that ended is judged the same in one block or
    slot by slot (found in review: a block judged it against the longest known at its start).
    Both runs were stuck: a stuck episode does not teach the meter's longest run (it did: one
    long episode spared every shorter one for good). A third no longer than both is the
    meter's way, a steady pump's: once a meter held one value that long twice."""
    values = 10 + np.random.default_rng(0).standard_normal(600)
    values[100:160] = 12.5  # stuck an hour (5-minute slots: five hours), which ends
    values[300:340] = 13.5  # a shorter run later: stuck too
    values[450:490] = 14.5  # and a third as long as the second: no longer stuck
    slot_by_slot = _stuck_flags(values, 1)
    assert slot_by_slot[100:160].sum() > 0
    assert slot_by_slot[300:340].sum() > 0
    assert slot_by_slot[450:490].sum() == 0
    for size in (7, 60, 600):
        assert np.array_equal(_stuck_flags(values, size), slot_by_slot)


def test_a_burst_stands_when_a_zone_meter_sticks_hours_after_it_began() -> None:
    """A 10 m³/h burst from day 15, 02:00, found in its third hour; feed A sticks at 03:00
    for three hours, flagged at 04:15. Every hour from the one before the onset was checked
    for a stuck meter, so the burst was withdrawn and found again only at 10:00 (review of
    issue 8). A stuck run withdraws an excess only when it began by the excess's first hour."""
    start_day = 15 + 2 / 24
    burst_ms = START_MS + int(start_day * 86_400_000)
    hold = (0, 15 + 3 / 24, 15 + 6 / 24)
    findings = [f for f in _run(_network(28, 10.0, start_day, 1, hold=hold)) if f.active]
    after = [f for f in findings if f.at_ms > burst_ms]
    assert after, "the burst was not found"
    assert (after[0].kind, after[0].zone) == ("water_burst", "town")
    assert after[0].at_ms <= burst_ms + 3 * 3_600_000


def test_a_tank_level_held_still_is_no_burst() -> None:
    """The town's tank level reads 01:00's value until 07:00 on day 15, no leak: with the
    level still, the zone's consumption is its inflow alone, and feed B pumping 30 m³/h into
    the tank looked like a burst. A level meter's stuck run is judged as a flow meter's."""
    hold = (2, 15 + 1 / 24, 15 + 7 / 24)
    held_ms = START_MS + int(hold[1] * 86_400_000)
    baseline = [f for f in _run(_network(28, 0.0, 99, 1)) if f.active]
    findings = [f for f in _run(_network(28, 0.0, 99, 1, hold=hold)) if f.active]
    assert [f for f in findings if f.at_ms <= held_ms] == [
        f for f in baseline if f.at_ms <= held_ms
    ]
    assert not [f for f in findings if f.at_ms > held_ms and f.family is Family.LEAK]


def test_a_burst_is_found_through_an_inflow_meter_pinned_at_its_top() -> None:
    """The south district's burst (7 m³/h, 13:17–22:00) with its inflow meter reading at most
    43.0 m³/h (its range; it never read over 42.5 before): through the burst it reads 43.0,
    a value held for hours — stuck by the stuck rule, so the burst's hours went unjudged and
    the burst was withdrawn. A run at the highest the meter ever read (or its nameplate) is a
    lower bound of the flow: the district's hours are judged where that bound already stands
    over the baseline (a burst), and the event says so. The park's main zone, whose outflow
    that meter is, is not judged meanwhile (its consumption has no bound): no event there.
    Its nameplate says 43 m³/h: a first run at a new high is a top only so (else one it
    already clipped at; a meter stuck at a new high is as likely)."""
    day, hour = 86_400_000, 3_600_000
    burst = Fault(
        FaultKind.WATER_BURST,
        DEMO_START_MS + 4 * day + 13 * hour + 17 * 60_000,
        DEMO_START_MS + 4 * day + 22 * hour,
        zone="water-d3",
        magnitude=7.0,
    )
    with open(DEMO_PARK, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    next(m for m in raw["meters"] if m["id"] == "water-d3")["rated"] = 43.0
    park = Park.model_validate(raw)
    rows = simulated_rows(park, DEMO_START_MS, 6, seed=11, faults=[burst])
    flow = (rows.meter_code == rows.meters.index("water-d3")) & (
        rows.quantity_code == rows.quantities.index("flow_m3h")
    )
    assert rows.value[flow & (rows.t_ms < burst.start_ms)].max() < 43.0
    rows.value[flow] = np.minimum(rows.value[flow], 43.0)
    events = replay(ParkEngine(park, [ZoneLeaks]), rows).events
    found = [e for e in events if e.family is Family.LEAK]
    assert [(e.kind, e.zone) for e in found] == [("water_burst", "water-d3")]
    assert burst.start_ms < found[0].detected_at_ms <= burst.start_ms + 4 * hour
    assert found[0].evidence["lower_bound_hours"] >= 2


def test_a_district_meter_stuck_just_above_its_highest_reading_is_no_leak() -> None:
    """The south district's inflow meter holds 43.02 m³/h for 8 hours from day 5, 17:00,
    just over the most it read before (42.97; it has no nameplate), while the district
    draws 37 m³/h: taken for a meter pinned at its range top, the hours were a lower bound
    over the baseline, a water leak (review of issue 8). A first run at a new high is as
    likely a meter stuck there: unjudged, as a stuck one; no event."""
    day, hour = 86_400_000, 3_600_000
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, DEMO_START_MS, 6, seed=11, faults=[])
    flow = (rows.meter_code == rows.meters.index("water-d3")) & (
        rows.quantity_code == rows.quantities.index("flow_m3h")
    )
    t0 = DEMO_START_MS + 4 * day + 17 * hour
    held = flow & (rows.t_ms >= t0) & (rows.t_ms < t0 + 8 * hour)
    rows.value[held] = rows.value[flow & (rows.t_ms < t0)].max() + 0.05
    events = replay(ParkEngine(park, [ZoneLeaks]), rows).events
    assert not [e for e in events if e.family is Family.LEAK]


def _balance_points(values: np.ndarray, size: int) -> list[tuple[int, dict[str, Any]]]:
    """The town's ``zone_balance`` points, fed in blocks of ``size`` slots."""
    ctx = ParkContext(_park())
    detector = ZoneLeaks(ctx, ZoneLeaks.select(ctx))
    rows, slots = values.shape
    points = []
    for first in range(0, slots, size):
        n = min(size, slots - first)
        row = np.repeat(np.arange(rows, dtype=np.int64), n)
        t = np.tile(START_MS + (first + np.arange(n, dtype=np.int64)) * STEP_MS, rows)
        chunk = values[:, first : first + n].reshape(-1)
        block = slot_block(row, t, chunk, rows, START_MS + first * STEP_MS, STEP_MS, n)
        points += [(p.t_ms, p.fields) for p in detector.update(block).points]
    return points


def test_a_meter_pinned_at_a_top_it_clipped_at_is_judged_the_same_whatever_the_block_size() -> None:
    """Feed A holds a new high from 22:00 on its first day to 00:10: its readings after the
    first 24 hours teach that value as a top it may clip at; on day 3, 19:00–23:00, it holds
    it again (flagged from 20:15): pinned, the hours lower bounds. Whether the first day had
    passed was decided once per block, from the block's start (review of issue 8: slot by
    slot the 00:00 hour was a lower bound, in blocks of 5 slots a stuck meter): it is
    decided per slot."""
    values = _network(3, 0.0, 99, 1)
    top = values[0].max() + 0.01
    values[0, 264:290] = top
    values[0, 2 * DAY_SLOTS + 228 : 2 * DAY_SLOTS + 276] = top
    slot_by_slot = _balance_points(values, 1)
    pinned = {t for t, f in slot_by_slot if f.get("lower_bound")}
    day3 = START_MS + 2 * 86_400_000
    assert pinned == {day3 + h * 3_600_000 for h in (20, 21, 22)}
    for size in (5, 7, 96, 1000):
        assert _balance_points(values, size) == slot_by_slot


def test_runs_that_could_not_be_judged_stuck_do_not_teach_the_longest_run() -> None:
    """Feed A reads one value for its first 21 hours (commissioning, not yet lively), then
    lives, then holds 12.5 for 8 hours: the first run taught the meter's longest (249
    slots), and the stuck run was never flagged (review of issue 8). Only a run that could
    have been judged stuck (a lively meter, not zero) teaches it."""
    values = 10 + np.random.default_rng(0).standard_normal(900)
    values[:250] = 11.0
    values[600:700] = 12.5
    assert _stuck_flags(values, 50)[600:700].sum() > 0


def test_a_pump_stuck_at_its_last_pumping_reading_is_no_burst() -> None:
    """The town's feed B switches off on day 16 (about 03:40), but its meter holds its last
    pumping reading for 6 hours. Its zeros while the pump was off (31 hours in a row) had
    taught it a longest run of one value, so the held reading was never flagged stuck: a
    water burst 2.3 hours later (review of issue 8, seeds 1-3). Zeros teach nothing."""
    values = _network(28, 0.0, 99, 1)
    b = values[1]
    a = next(k for k in range(15 * DAY_SLOTS, 20 * DAY_SLOTS) if b[k] > 0 and b[k + 1] == 0)
    baseline = [f for f in _run(values) if f.active]
    values[1, a : a + 72] = b[a]
    assert [f for f in _run(values) if f.active] == baseline


# --- the history's first rest days (issue 8: a cold start) -----------------------------------


def _site_park() -> Park:
    """A district fed by ``main`` with a factory's sub-meter ``plant`` taken out, and a
    boiler's steam as a zone of its own."""
    return Park.model_validate(
        {
            "park": "site",
            "analytics": {"step_s": STEP_MS / 1000},
            "meters": [
                {"id": "main", "utility": "water"},
                {"id": "plant", "utility": "water"},
                {"id": "boiler", "utility": "steam"},
            ],
            "zones": [
                {"id": "district", "utility": "water", "inflow": ["main"], "outflow": ["plant"]},
                {"id": "steam", "utility": "steam", "inflow": ["boiler"]},
            ],
        }
    )


def _bump(hour: np.ndarray, at: float, width: float) -> np.ndarray:
    bump: np.ndarray = np.exp(-(((hour - at) / width) ** 2))
    return bump


def _site(
    days: int,
    seed: int,
    net: Any,
    leak: Any = None,
    steam_loss: Any = None,
    first_day: int = 0,
) -> np.ndarray:
    """Rows main, plant, boiler at 5-minute slots from a Monday 00:00. The factory's sub-meter
    reads 30 m³/h, 50 while it works (08–20) on workdays, 15 on rest days; the boiler raises
    8 t/h of steam from 06 to 22 on workdays, 5 at night, 0.3 on rest days (steam off). The
    district's own use besides the factory is ``net(hour, rest)`` m³/h, days 1 % apart;
    ``leak(days)`` and ``steam_loss(days)`` add to the district and the steam (days since
    the start). ``first_day``: the weekday of the first day (0 Monday)."""
    rng = np.random.default_rng(seed)
    slots = days * DAY_SLOTS
    t_days = np.arange(slots) / DAY_SLOTS
    day = t_days.astype(np.int64)
    hour = (t_days - day) * 24
    rest = ((day + first_day) % 7) >= 5
    daily = 1 + 0.01 * rng.standard_normal(days)[day]
    works = ~rest & (hour >= 8) & (hour < 20)
    plant = np.where(rest, 15.0, np.where(works, 50.0, 30.0))
    plant = plant * (1 + 0.01 * rng.standard_normal(slots))
    use = net(hour, rest) * daily + 0.05 * rng.standard_normal(slots)
    if leak is not None:
        use = use + leak(t_days)
    steam = np.where(rest, 0.3, np.where((hour >= 6) & (hour < 22), 8.0, 5.0))
    steam = steam * daily * (1 + 0.01 * rng.standard_normal(slots))
    if steam_loss is not None:
        steam = steam + steam_loss(t_days)
    return np.vstack([plant + use, plant, steam])


def _site_findings(values: np.ndarray, start_ms: int = START_MS) -> list[Finding]:
    ctx = ParkContext(_site_park())
    detector = ZoneLeaks(ctx, ZoneLeaks.select(ctx))
    rows, slots = values.shape
    row = np.repeat(np.arange(rows, dtype=np.int64), slots)
    t = np.tile(start_ms + np.arange(slots, dtype=np.int64) * STEP_MS, rows)
    out: list[Finding] = []
    for first in range(0, slots, DAY_SLOTS // 3):
        n = min(DAY_SLOTS // 3, slots - first)
        block = slot_block(row, t, values.reshape(-1), rows, start_ms + first * STEP_MS, STEP_MS, n)
        out.extend(detector.update(block).findings)
    return out


def _at(days: float) -> int:
    return START_MS + int(days * 86_400_000)


def _flat(hour: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """A district's balance with no activity of its own: losses and unmetered use, 5.4 m³/h
    at every hour of every day (seed 8's east district, README)."""
    return np.full(hour.shape, 5.4) + 0 * rest


def test_a_leak_from_a_friday_night_is_found_on_the_first_saturday() -> None:
    """Seed 8's case: a leak growing by 0.15 m³/h each hour from the history's first Friday,
    23:00, in a district whose balance is flat. No rest day has been seen, so no rest day
    has a baseline: it was found on the Monday, 49 h on. Against the workdays' envelope (their
    busiest hour, 5.45 m³/h, plus their swing of 0.1) it stands out from the Saturday's first
    hours; every hour of twelve must (a first rest day's window, leaks10c), so it is found
    on the Saturday afternoon (18 h; 16 with six hours), and it stays one event until it
    has stopped."""
    start, stop = 4 + 23 / 24, 11.0
    values = _site(
        14, 1, _flat, leak=lambda d: np.clip((d - start) * 24 * 0.15, 0, None) * (d < stop)
    )
    found = [f for f in _site_findings(values) if f.zone == "district"]
    opened = _openings(found)
    assert len(opened) == 1
    assert opened[0].kind in ("water_leak", "water_burst")
    assert _at(start) < opened[0].at_ms <= _at(start) + 18 * 3_600_000
    assert opened[0].evidence["first_rest_days"]
    closed = [f for f in found if not f.active]
    assert closed
    assert closed[0].at_ms >= _at(stop)


def _residential(hour: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """A residential quarter: morning and evening peaks on workdays; at home on rest days it
    uses 30 % more in every hour and its morning peak comes two hours later."""
    work = 20 + 25 * _bump(hour, 8, 2) + 20 * _bump(hour, 19, 2.5)
    home = 1.3 * (20 + 25 * _bump(hour, 10, 2.5) + 20 * _bump(hour, 19, 2.5))
    out: np.ndarray = np.where(rest, home, work)
    return out


def _washdown(hour: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """A plant outside the sub-meter: 30 m³/h, 50 while it works (08–20); on rest days it is
    off (5) but hosed down at 40 m³/h from 20:00 to 02:00, more than a workday night uses."""
    work = np.where((hour >= 8) & (hour < 20), 50.0, 30.0)
    down = np.where((hour >= 20) | (hour < 2), 45.0, 5.0)
    out: np.ndarray = np.where(rest, down, work)
    return out


@pytest.mark.parametrize(("net", "seed"), [(_residential, 1), (_residential, 2), (_washdown, 3)])
def test_rest_days_using_more_than_workdays_are_no_leak_on_any_weekend(net: Any, seed: int) -> None:
    """Four weeks without a leak in a district whose rest days use more than its workdays
    (review of leaks9: judged against the workdays' same hours, its first weekend was a leak,
    and every weekend after, its rest days never clean). A rest day's use stays inside the
    workdays' envelope — their busiest hour plus their whole swing — and after the first
    weekend rest days wait for their own baseline: no event raised on a rest day, nor dated
    from a window that held rest hours (main raised one on Mondays: the first windows of a
    Monday held Sunday evening's hours and were judged against workdays'). The washdown case
    never comes near the envelope and passes on main too: a guard against the reverted first
    try. Days that happen
    to use 1 % more may still be taken for a leak on a workday, rest days or not: the quiet
    town's rate, above."""
    found = [f for f in _site_findings(_site(28, seed, net)) if f.zone == "district"]
    window_ms = 6 * 3_600_000

    def rest(t: int) -> bool:
        return bool((t - START_MS) // 86_400_000 % 7 >= 5)

    weekend = [
        f.at_ms
        for f in found
        if f.active and (rest(f.at_ms) or rest((f.start_ms or f.at_ms) - window_ms))
    ]
    assert weekend == []


def _top_ups(hour: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """A steady 30 m³/h process; on rest days a tank is topped up for an hour at 10:00 and at
    16:00 (+2.5 m³/h over the hour)."""
    top = rest & (((hour >= 10) & (hour < 11)) | ((hour >= 16) & (hour < 17)))
    out: np.ndarray = np.where(top, 32.5, 30.0)
    return out


def _weekend_cleaning(hour: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """A steady 30 m³/h process; on rest days a cleaning crew adds 12 m³/h from 08 to 14."""
    out: np.ndarray = np.where(rest & (hour >= 8) & (hour < 14), 42.0, 30.0)
    return out


def _heavy_washdown(hour: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """As ``_washdown`` but hosed at 80 m³/h, over the workdays' envelope (50 + 20 = 70)."""
    work = np.where((hour >= 8) & (hour < 20), 50.0, 30.0)
    down = np.where((hour >= 20) | (hour < 2), 80.0, 5.0)
    out: np.ndarray = np.where(rest, down, work)
    return out


@pytest.mark.parametrize(
    ("net", "seed"),
    [(_top_ups, 1), (_top_ups, 2), (_weekend_cleaning, 1), (_heavy_washdown, 1)],
)
def test_weekend_only_use_over_a_flat_workday_is_no_leak_on_any_weekend(
    net: Any, seed: int
) -> None:
    """A district flat on workdays with some use on rest days only, some of it over the
    workdays' envelope for an hour (top-ups) or for six (cleaning, a heavy washdown). The
    first weekend's hours under the envelope were not judged while those over it added to the
    CUSUM, which never came down: the top-ups were a leak (seed 1, Sunday 11:00) or a burst
    from one hour (seed 2, Saturday 17:00); the cleaning and the washdown were bursts, and
    the washdown's first weekend, left out of the rest days' baseline, made more on the next
    weekends (review of leaks10). A first rest day is now judged by the window test alone,
    every hour of twelve over the envelope: nothing on any weekend."""
    found = [f for f in _site_findings(_site(28, seed, net)) if f.zone == "district"]

    def rest(t: int) -> bool:
        return bool((t - START_MS) // 86_400_000 % 7 >= 5)

    assert [f.at_ms for f in found if f.active and rest(f.at_ms)] == []


def test_a_history_from_a_saturday_still_finds_a_leak_in_its_second_week() -> None:
    """Each meter's plausible range was learnt from the first 24 hours: a history from a
    Saturday learnt the boiler's steam-off 0.3 t/h and the factory's 15 m³/h, every workday
    was out of range and never judged, and a leak growing by 0.15 m³/h an hour from the
    first full week's Friday, 23:00, was never reported (review of leaks10). The range is
    learnt once the ring holds a workday and a rest day (or a week)."""
    start = 6 + 23 / 24
    values = _site(
        21,
        4,
        _residential,
        leak=lambda d: np.clip((d - start) * 24 * 0.15, 0, None) * (d < start + 6),
        first_day=5,
    )
    saturday = START_MS - 2 * 86_400_000
    found = [f for f in _site_findings(values, saturday) if f.zone == "district"]
    at = saturday + int(start * 86_400_000)
    opened = _openings(found)
    assert len(opened) == 1
    assert at < opened[0].at_ms < at + 3 * 86_400_000


@pytest.mark.parametrize("day", [3, 4])
def test_a_word_swapped_hour_in_the_first_week_is_no_burst(day: int) -> None:
    """The main's register word-swapped for an hour (×1000) on the first Thursday or Friday
    of a history from a Monday: the learnt range waits for a rest day, the baseline does not,
    so the hour was a burst and, kept in the history, hid the next swap (leaks10c review).
    Far outside anything the meter has shown, it is implausible from the first day: no
    event, nor from the same swap a week later."""
    values = _site(14, 1, _residential)
    for at in (day, day + 7):
        slot = at * DAY_SLOTS + 10 * 12
        values[0, slot : slot + 12] *= 1000.0
    assert [f.kind for f in _site_findings(values) if f.active] == []


def _lively_plant_site(burst: float, from_day: float) -> np.ndarray:
    """``_site``'s residential district for three weeks, its factory's sub-meter swinging 8 %
    from day to day, and a burst of ``burst`` m³/h from ``from_day``."""
    rng = np.random.default_rng(1)
    days = 21
    t_days = np.arange(days * DAY_SLOTS) / DAY_SLOTS
    day = t_days.astype(np.int64)
    hour = (t_days - day) * 24
    rest = (day % 7) >= 5
    daily = 1 + 0.01 * rng.standard_normal(days)[day]
    plant_daily = 1 + 0.08 * rng.standard_normal(days)[day]
    works = ~rest & (hour >= 8) & (hour < 20)
    plant = np.where(rest, 15.0, np.where(works, 50.0, 30.0)) * plant_daily
    plant = plant * (1 + 0.01 * rng.standard_normal(t_days.size))
    use = _residential(hour, rest) * daily + 0.05 * rng.standard_normal(t_days.size)
    use = use + burst * (t_days >= from_day)
    steam = np.where(rest, 0.3, np.where((hour >= 6) & (hour < 22), 8.0, 5.0)) * daily
    return np.vstack([plant + use, plant, steam])


def test_a_burst_beside_a_lively_sub_meter_is_reported_after_three_hours() -> None:
    """A 12 m³/h burst on the third Wednesday, 08:00, in a district whose factory sub-meter
    swings 8 % from day to day: that day it read 6.7 m³/h under its usual (1.1 of its errors)
    and the inflow rose by 5.3 — the balance leaned on the sub-meter, so the burst was held
    for 12 h, not 3 (leaks10b), and a sub-meter 2 errors low made it that meter's fault. A
    hold now needs the inflow flat: a burst raises it."""
    start = 16 + 8 / 24
    found = [f for f in _site_findings(_lively_plant_site(12.0, start)) if f.active]
    found = [f for f in found if f.zone != "steam"]
    assert [f.kind for f in found][:1] == ["water_burst"]
    assert _at(start) < found[0].at_ms <= _at(start) + 3 * 3_600_000


def _weekday_less(hour: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Shops and offices: peaks on workdays, 20 % less in every hour on rest days."""
    work = 20 + 25 * _bump(hour, 8, 2) + 20 * _bump(hour, 19, 2.5)
    out: np.ndarray = np.where(rest, 0.8 * work, work)
    return out


def test_a_leak_open_over_weekends_stays_one_event() -> None:
    """A 4 m³/h leak from the first Thursday, 01:00, for two weeks, in a district whose rest
    days use 20 % less: found on the Thursday, one event until it stops. (Rest hours under
    the workdays' same hours counted as quiet closed it every Saturday and it opened again
    every Monday: leaks9.) It passes on main before leaks10 too: it guards against that
    reverted first try, not a fault of main's."""
    start, stop = 3 + 1 / 24, 17.0
    values = _site(20, 2, _weekday_less, leak=lambda d: 4.0 * ((d >= start) & (d < stop)))
    found = [f for f in _site_findings(values) if f.zone == "district"]
    opened = _openings(found)  # (its estimate re-read at a week is an update of it)
    assert len(opened) == 1
    assert opened[0].kind in ("water_leak", "water_burst")
    assert opened[0].at_ms < _at(4)
    closed = [f for f in found if not f.active]
    assert closed
    assert closed[0].at_ms >= _at(stop)


def test_rest_days_with_the_steam_off_never_close_a_loss() -> None:
    """A steam loss of 1.5 t/h from the first Thursday, 01:00, to the second Thursday: the
    boiler's rest days (0.3 t/h, steam off) are far under anything the workdays say, but
    that is no sign the loss stopped — such hours are not judged — so it stays one event.
    (Passes on main before leaks10 too: a guard against leaks10's reverted first try.)"""
    start, stop = 3 + 1 / 24, 10.0
    values = _site(14, 3, _flat, steam_loss=lambda d: 1.5 * ((d >= start) & (d < stop)))
    found = [f for f in _site_findings(values) if f.zone == "steam"]
    opened = [f for f in found if f.active]
    assert [f.kind for f in opened] == ["steam_loss"]
    assert opened[0].at_ms < _at(5)
    closed = [f for f in found if not f.active]
    assert closed
    assert closed[0].at_ms >= _at(stop)


def test_only_the_first_rest_days_are_judged_against_the_workdays_envelope() -> None:
    """The ring's four workdays use 10, 12, 11 and 13 m³/h in every hour but 03:00, when they
    use 8 more. At noon the last 24 hours' medians are 19.5 at 03:00 (four days) and 11 at
    its quietest (yesterday afternoon's hours, from the three days before: 10, 12, 11), so
    the envelope is 19.5 + (19.5 − 11) = 28 m³/h. Today, a Saturday after them, is a first
    rest day. A rest day is judged so while fewer than ``min_days`` (3) rest days are held
    before it, kept or not: one rest day held among the workdays (a history that began on a
    Sunday) leaves today a first rest day (leaks10 took only the first run of rest days,
    and a history starting Thursday to Sunday had none judged so); three held (not kept: an
    event was open over them) make it wait for rest days of its own."""
    detector = _ring_detector({})
    for day in range(1000, 1004):
        detector.h_value[:, (24 * day + 3) % detector.ring] += 8.0
    noon = 24 * 1004 + 12
    for hod in range(24):
        detector.h_daytype[(24 * 1004 + hod) % detector.ring] = 1
    assert detector._envelope(noon)[0] == pytest.approx(28.0)
    assert detector._cold(noon, 1)[0]
    assert not detector._cold(noon, 0)[0]  # a workday is never

    def rest_day(day: int) -> None:
        for hod in range(24):
            pos = (24 * day + hod) % detector.ring
            detector.h_id[pos] = 24 * day + hod
            detector.h_daytype[pos] = 2
            detector.h_clean[:, pos] = False

    rest_day(999)
    assert detector._cold(noon, 1)[0]
    rest_day(997)
    rest_day(998)
    assert not detector._cold(noon, 1)[0]


def test_a_window_across_a_change_of_kind_holds_only_the_hours_since() -> None:
    """Yesterday evening (from 18:00) was a Sunday's; today (day 1004) is a workday whose
    first three hours used 15, 17 and 16 m³/h. A window of Sunday evening's hours is no
    workday's: at 01:00 (two of today's hours) nothing is judged; at 02:00 the window is
    today's three hours, 16 against the workdays' same three (median 11.5): 4.5 over. (The
    six hours, three of them the Sunday's 13, would have said 14.5 − 11.5 = 3.)"""
    detector = _ring_detector({"widen": False})
    monday = 24 * 1004
    for hod in range(18, 24):
        detector.h_daytype[(monday - 24 + hod) % detector.ring] = 2
    for hour, value in ((monday, 15.0), (monday + 1, 17.0), (monday + 2, 16.0)):
        detector.h_value[:, hour % detector.ring] = value
    excess, _ = detector._window_test(monday + 1, 0)
    assert np.isnan(excess[0])
    excess, limit = detector._window_test(monday + 2, 0)
    assert excess[0] == pytest.approx(16.0 - 11.5)
    assert np.isfinite(limit[0])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_leak_open_longer_than_the_baselines_days_closes_at_its_repair(seed: int) -> None:
    """A 4 m³/h leak from day 21, 01:00, repaired on day 47, 01:00: open 26 days, longer than
    the 21 days of hours the baselines keep. An open leak's hours, net of its estimate, are
    the zone's usual ones again, so the baseline does not run dry: the event stays open
    while the leak runs and closes after the repair (measured 12, 35, 18 hours after it;
    before, no hour was left to learn from, nothing was judged, and the event stayed open
    for good — in a year of the town it hid every later leak). Its estimate is re-read as
    it goes, and what it is off by the baseline learns: on seed 1 it ends at 3.2 m³/h, and
    a day after the repair a 1.6 m³/h event opens for a day; seed 2's ends at 4.7 and its
    closing takes 35 hours."""
    days, onset, repair = 52, 21 + 1 / 24, 47 + 1 / 24
    extra = step_leak(days, 4.0, onset) - step_leak(days, 4.0, repair)
    findings = _run(town_network(days, seed, extra))
    onset_ms = START_MS + int(onset * 86_400_000)
    repair_ms = START_MS + int(repair * 86_400_000)
    found = [f for f in findings if f.active and f.at_ms > onset_ms]
    assert found
    assert found[0].at_ms <= onset_ms + 24 * 3_600_000
    closings = [f for f in findings if not f.active and f.at_ms > found[0].at_ms]
    assert closings, "the leak's event never closed"
    assert repair_ms < closings[0].at_ms <= repair_ms + 48 * 3_600_000


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_second_leak_while_one_is_open_updates_its_estimate(seed: int) -> None:
    """4 m³/h from day 15, 01:00, and 6 m³/h more from day 20, 02:00: one open event per kind
    and zone, so the second leak is an update of the open one, its estimate the two leaks'
    (measured: 10.5, 10.8, 10.4 m³/h within 3 hours). Before, the open event said nothing
    more until it closed."""
    days, first, second = 28, 15 + 1 / 24, 20 + 2 / 24
    extra = step_leak(days, 4.0, first) + step_leak(days, 6.0, second)
    findings = _run(town_network(days, seed, extra))
    first_ms = START_MS + int(first * 86_400_000)
    second_ms = START_MS + int(second * 86_400_000)
    opened = [f for f in findings if f.active and first_ms < f.at_ms < second_ms]
    assert opened
    assert opened[0].estimate is not None
    assert opened[0].estimate.value == pytest.approx(4.0, rel=0.5)
    assert not [f for f in findings if not f.active and f.at_ms > opened[0].at_ms]
    later = [
        f
        for f in findings
        if f.active and second_ms < f.at_ms <= second_ms + 24 * 3_600_000 and f.estimate
    ]
    assert later
    assert later[0].kind == opened[0].kind
    assert later[0].zone == "town"
    assert max(f.estimate.value for f in later if f.estimate) == pytest.approx(10.0, rel=0.25)


def test_a_growing_air_leak_in_a_casting_plant_is_found_within_a_day() -> None:
    """The casting plant (steelco) runs day and night: no hour of it is off production, and
    its air, net of what production explains, wanders ±5 % (a 6-hour mean's spread of
    25–90 Nm³/h). A leak growing to 300 Nm³/h over 60 hours from a Tuesday 01:39 stood under
    five of those spreads until 33 h (125 Nm³/h); an air zone's window alarms past four (its
    scatter is the machines', no blocks of use), and it is found within the day (12 h), at
    the right zone, with nothing else reported."""
    hour = 3_600_000
    start = DEMO_START_MS + 8 * 24 * hour + int(1.65 * hour)
    leak = Fault(FaultKind.AIR_LEAK, start, None, zone="steelco", magnitude=300.0, ramp_s=60 * 3600)
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, DEMO_START_MS, 10, seed=4, faults=[leak])
    events = [e for e in replay(ParkEngine(park, [ZoneLeaks]), rows).events]
    assert [(e.kind, e.zone) for e in events] == [("air_leak", "steelco-air")]
    assert start < events[0].detected_at_ms <= start + 24 * hour


def test_an_air_zone_without_production_meters_keeps_five_spreads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four spreads suit an air zone only net of its production, where what is left is the
    machines' scatter. A park whose plants' electricity is not metered (no production
    meters: nothing subtracted) leaves each air zone with the plant's own swings, as a water
    zone's: at four spreads a fault-free month (seed 26) raised a false air leak at
    autoparts on day 26; at five, none."""
    monkeypatch.setattr(leaks, "production_meters", lambda ctx: {})
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, DEMO_START_MS, 27, seed=26)
    engine = ParkEngine(park, [ZoneLeaks])
    events = replay(engine, rows).events
    assert not [(e.zone, e.detected_at_ms) for e in events if e.kind == "air_leak"]
    detector = engine.instances[0].detector
    assert isinstance(detector, ZoneLeaks)
    air = [i for i, z in enumerate(detector.layout.zones) if z.utility is Utility.AIR]
    assert len(air) == 2
    assert not detector.gamma[air].any()  # nothing subtracted


def test_an_open_leak_teaches_the_baseline_only_after_a_week_and_closes_on_its_fall() -> None:
    """An open leak's hours, net of its estimate, teach the baseline only once it has been
    open a week (a third of the ring): sooner, an estimate short of a growing leak taught the
    baseline the leak (the demo park's seed 4: an air leak closed while growing, a meter
    fault in a leaking zone judged a leak). Learning, its estimate re-read over two days is
    5 m³/h; a fall of the zone by 4 (a repair) leaves 1, under a quarter of it: the event
    closes (its baseline learnt the estimate's error and may never read quiet)."""
    detector = _ring_detector({"widen": False})
    hour = 24 * 1004 + 12
    detector.state_[0] = leaks.LEAK
    detector.onset[0] = hour - 24
    assert not detector._learning(hour)[0]
    detector.onset[0] = hour - 7 * 24
    assert detector._learning(hour)[0]
    detector.reread[0] = True
    detector.known[0] = 5.0
    detector.track[1, 0] = 2 * detector.p.h
    detector.track_sum[1, 0] = -4.0 * 10
    detector.track_n[1, 0] = 10
    detector.scale_now[0] = 1.0  # 1 m³/h left is under the CUSUM's allowance (2.5)
    out = Output()
    detector._re_estimate(0, hour, START_MS, None, out)
    assert [f.active for f in out.findings] == [False]
    assert detector.state_[0] == leaks.QUIET


def test_an_open_leaks_hour_is_quiet_only_against_its_own_kind_of_day() -> None:
    """An hour scoring 0.8 counts towards closing an open leak of 5 m³/h where the baseline
    came from days of its own kind: four workdays kept, a workday's hour is; a Saturday's (no
    Saturday kept: its baseline would be the rest days at large, their spread widened) is
    not while it stands 4 m³/h over — it did close the town's seed 2 event with 5 m³/h of
    leaks running — but is at 2 m³/h (under half the estimate: the leak mostly gone). A zone
    with no open leak is quiet under 1 either way, as before."""
    detector = _ring_detector({})
    hour = 24 * 1004 + 12
    own = detector._own_kind(hour, WORKDAY)
    assert own[0]
    assert not detector._own_kind(hour, SATURDAY)[0]
    judged, z, over = np.array([True]), np.array([0.8]), np.array([4.0])
    yes, no = np.array([True]), np.array([False])
    detector.state_[0] = leaks.LEAK
    detector.known[0] = 5.0
    assert detector._quiet(judged, z, over, yes)[0]
    assert not detector._quiet(judged, z, over, no)[0]
    assert detector._quiet(judged, z, np.array([2.0]), no)[0]
    assert not detector._quiet(judged, np.array([1.2]), over, yes)[0]
    detector.state_[0] = leaks.QUIET
    assert detector._quiet(judged, z, over, no)[0]


def test_a_meters_own_shift_leaves_out_an_open_leaks_hours() -> None:
    """The four workdays of ``test_a_meters_own_shift_is_widened_for_few_days_by_hand`` and a
    fifth before them (day 999) on which a leak was open: the zone's hour is learnt net of the
    estimate, but feed A's reading carries the leak (30 m³/h). A meter's usual flow leaves
    that day out (11.5, a change of 3.5); taking it (12, a change of 3) makes the inflow look
    as if it had fallen when a sub-meter under-registers after a leak, and the fault was
    reported as a leak (the demo's seed 4 after town11)."""
    noon = 24 * 1004 + 12
    hours = np.array([noon - 2, noon - 1, noon])
    detector = _ring_detector({"widen": False})
    for day, value in enumerate([30.0, 10.0, 12.0, 11.0, 13.0, 15.0]):
        pos = (hours - 24 * (5 - day)) % detector.ring
        detector.h_flow[0, pos] = value
        if day == 0:
            detector.h_id[pos] = hours - 24 * 5
            detector.h_daytype[pos] = 0
            detector.h_clean[:, pos] = True
            detector.h_open[:, pos] = True
    shift = detector._own_shift(0, 0, hours % detector.ring)
    assert shift is not None
    change, _, usual = shift
    assert usual == pytest.approx(11.5)
    assert change == pytest.approx(3.5)


def test_a_fall_that_leaves_a_leak_running_moves_the_estimate_instead_of_closing() -> None:
    """12 m³/h of leaks open (10 + 2), the 10 repaired: the estimate falls to 2, under a
    quarter of 12, but 2 m³/h is over the CUSUM's allowance (2.5 × a scale of 0.5) and the
    hour is not quiet: the event stays open at 2 m³/h (an update). Before, it closed with 2
    running (the town's seed 3: 10.5 m³/h running, the next leak missed)."""
    detector = _ring_detector({"widen": False})
    hour = 24 * 1004 + 12
    detector.state_[0] = leaks.LEAK
    detector.onset[0] = hour - 8 * 24
    detector.reread[0] = True
    detector.known[0] = 12.0
    detector.track[1, 0] = 2 * detector.p.h
    detector.track_sum[1, 0] = -10.0 * 10
    detector.track_n[1, 0] = 10
    detector.scale_now[0] = 0.5
    out = Output()
    detector._re_estimate(0, hour, START_MS, None, out)
    assert detector.state_[0] == leaks.LEAK
    assert detector.known[0] == pytest.approx(2.0)
    assert [f.active for f in out.findings] == [True]
    assert out.findings[0].evidence["estimate_before"] == pytest.approx(12.0)


def _open_leak_run(
    days: int, extra: np.ndarray, snapshot_day: float | None = None, seed: int = 1
) -> tuple[ZoneLeaks, list[Finding]]:
    """The town's ``seed`` through ``update()`` in thirds of a day; with ``snapshot_day``, the
    detector is snapshotted there and a new one restored from it goes on."""
    values = town_network(days, seed, extra)
    ctx = ParkContext(_park())
    detector = ZoneLeaks(ctx, ZoneLeaks.select(ctx))
    if snapshot_day is None:
        return detector, _run(values, detector=detector)
    cut = int(snapshot_day * DAY_SLOTS)
    found = _run(values[:, :cut], detector=detector)
    restored = ZoneLeaks(ctx, ZoneLeaks.select(ctx))
    restored.restore(pickle.loads(pickle.dumps(detector.state())))
    rest = values[:, cut:]
    rows, slots = rest.shape
    row = np.repeat(np.arange(rows, dtype=np.int64), slots)
    first_ms = START_MS + cut * STEP_MS
    t = np.tile(first_ms + np.arange(slots, dtype=np.int64) * STEP_MS, rows)
    chunk = DAY_SLOTS // 3
    for first in range(0, slots, chunk):
        n = min(chunk, slots - first)
        block = slot_block(row, t, rest.reshape(-1), rows, first_ms + first * STEP_MS, STEP_MS, n)
        found.extend(restored.update(block).findings)
    return restored, found


_FIRST, _SECOND = 9 + 1 / 24, 15 + 1 / 24  # a 4 m³/h leak, and 6 m³/h more a day before the re-read


def _two_leaks(days: int) -> np.ndarray:
    return step_leak(days, 4.0, _FIRST) + step_leak(days, 6.0, _SECOND)


def test_an_open_leak_teaches_nothing_in_its_first_week_and_is_re_read_since_its_update() -> None:
    """The town's seed 1, a 4 m³/h leak from day 9, 01:00, and 6 m³/h more from day 15,
    01:00 — a day before the leak has been open a week — driven through ``update()`` to day
    18 (the two days before the re-read are workdays). Its first week teaches the baseline
    nothing (no hour net of an estimate, none an open leak's); from its eighth day it does.
    The re-read at a week is over the hours since the second leak's re-estimate (10.2 m³/h
    measured), not the last two days' (6.7: the step halved), and the event says so (an
    update with the estimate before). The production fit stays off (a water zone)."""
    days = 18
    detector, findings = _open_leak_run(days, _two_leaks(days))
    assert detector.state_[0] == leaks.LEAK
    first_hour = int(detector.h_id[detector.h_id >= 0].min())  # the run's first local hour
    onset = int(detector.onset[0])
    assert abs(onset - first_hour - (24 * 9 + 1)) <= 6
    week = np.arange(onset, onset + detector.p.learn_open_h)
    pos = week % detector.ring
    assert (detector.h_id[pos] == week).all()
    assert not detector.h_known[0, pos].any()
    assert not detector.h_open[0, pos].any()
    later = np.arange(onset + detector.p.learn_open_h, first_hour + 24 * days - 1)
    assert detector.h_known[0, later % detector.ring].all()
    assert detector.h_open[0, later % detector.ring].any()
    assert not detector.gamma.any()
    learnt_ms = START_MS + (onset - first_hour + detector.p.learn_open_h + 1) * 3_600_000
    reread = [f for f in findings if f.active and f.at_ms == learnt_ms and f.estimate]
    assert reread, "the re-read said nothing"
    assert reread[0].estimate is not None
    assert reread[0].estimate.value == pytest.approx(10.0, rel=0.15)
    assert detector.known[0] == pytest.approx(10.0, rel=0.15)


def test_a_snapshot_past_the_week_of_an_open_leak_gives_the_same_events() -> None:
    """The run above snapshotted on day 16.5 (the leak open over a week, its estimate re-read,
    its hours learnt) and restored into a new detector: the same findings, and the same
    state at the end."""
    days = 18
    whole, expected = _open_leak_run(days, _two_leaks(days))
    restored, found = _open_leak_run(days, _two_leaks(days), snapshot_day=16.5)
    first_hour = int(restored.h_id[restored.h_id >= 0].min())
    assert int(restored.onset[0]) - first_hour + restored.p.learn_open_h < 24 * 16.5
    assert restored.reread[0]
    assert [(f.at_ms, f.active, f.estimate) for f in found] == [
        (f.at_ms, f.active, f.estimate) for f in expected
    ]
    for name, value in whole.state().items():
        np.testing.assert_array_equal(restored.state()[name], value, err_msg=name)


def test_an_open_leaks_hours_are_no_before_for_the_meter_check() -> None:
    """The meter check compares each meter's within-hour β since the onset with β before it,
    over clean hours — never an open leak's learnt ones (its zone's hour carries the leak
    net of an estimate, a meter's reading the leak whole). The four workdays of
    ``_ring_detector`` and three hours of excess today: with those days clean the check has
    its hours before; with them an open leak's, it waits (fewer than 12 before)."""
    detector = _ring_detector({"widen": False})
    noon = 24 * 1004 + 12
    detector.onset[0] = noon - 2
    for hour in range(noon - 2, noon + 1):
        pos = hour % detector.ring
        detector.h_excess[0, pos] = 5.0
    assert detector._explain(0, noon)[0] != "wait"
    past = detector.h_id < noon - 2
    detector.h_open[0, past] = True
    assert detector._explain(0, noon) == ("wait", -1, 0.0)


def test_an_open_leaks_hours_do_not_teach_the_production_fit() -> None:
    """The production fit (an air zone's swing against its plant's production) is taken over
    clean hours, never an open leak's learnt ones: they carry the estimate's errors. The demo
    park's steelco air over a ring of hours using twice its production: fitted, γ = 2; with
    all but one day an open leak's (24 hours, under the fit's 48), nothing is fitted."""
    ctx = ParkContext(Park.from_yaml(DEMO_PARK))
    detector = ZoneLeaks(ctx, ZoneLeaks.select(ctx))
    zi = [z.id for z in detector.layout.zones].index("steelco-air")
    hours = 24 * 1000 + np.arange(detector.ring)
    pos = hours % detector.ring
    production = 100.0 + 50.0 * np.sin(hours / 3.0) + 20.0 * (hours // 24 % 3)
    detector.h_id[pos] = hours
    detector.h_clean[:, pos] = True
    detector.h_prod[:, pos] = production
    detector.h_value[:, pos] = 2.0 * production
    detector._fit_production()
    assert detector.gamma[zi] == pytest.approx(2.0)
    detector.h_open[zi, pos[24:]] = True
    detector._fit_production()
    assert detector.gamma[zi] == 0.0


def test_waste_heats_row_medians_are_numpys_to_the_bit() -> None:
    """``nanmedian_rows`` (one sort) gives what ``np.nanmedian(axis=1)`` gives, bit for bit:
    odd and even counts, rows without values or without columns, infinities of either sign,
    rows short and long (equal up to a zero's sign, which only negative input can flip)."""
    rng = np.random.default_rng(7)
    for trial in range(200):
        rows, cols = int(rng.integers(1, 30)), int(rng.integers(1, 700))
        a = rng.standard_normal((rows, cols)) * 10 ** rng.uniform(-3, 3)
        a[rng.random((rows, cols)) < rng.random()] = np.nan
        a[0] = np.nan if trial % 4 == 0 else a[0]
        if trial % 5 == 0:
            a[-1, : cols // 2] = np.inf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: numpy warns
            expected = np.nanmedian(a, axis=1)
        assert np.array_equal(nanmedian_rows(a), expected, equal_nan=True)
    # infinities of both signs among finite values, a row of infinities only, no columns
    a = np.array(
        [
            [-np.inf, 1.0, 2.0, np.inf, np.nan],
            [-np.inf, 3.0, np.inf, 5.0, 1.0],
            [np.inf, np.inf, np.inf, np.nan, np.nan],
        ]
    )
    assert np.array_equal(nanmedian_rows(a), np.nanmedian(a, axis=1))
    assert np.array_equal(nanmedian_rows(a), [1.5, 3.0, np.inf])
    assert np.isnan(nanmedian_rows(np.empty((3, 0)))).all()


def test_an_air_leak_from_a_histories_first_sunday_is_found_within_a_day() -> None:
    """A history from a Thursday, as the demo's: steelco's air leaks from its fourth day (a
    Sunday, 11:43), growing to 436 Nm³/h over 2.9 days (the demo's seed 2, missed). No hour of
    the day has three days of its kind before the next Wednesday, and ``gamma``, fitted to
    hour-of-day deviations, learnt the leak growing from a quiet Sunday into a busy Monday;
    the production model (air = a + b · production, from every clean hour, any kind of day)
    holds from the fourth day's midnight and finds it within the day, at once (the zone has
    no sub-meter to tell it apart from), with its excess over the model as the estimate."""
    hour = 3_600_000
    begin = DEMO_START_MS + 3 * 24 * hour  # a Thursday, local midnight
    start = begin + 3 * 24 * hour + int(11.72 * hour)
    leak = Fault(
        FaultKind.AIR_LEAK, start, None, zone="steelco", magnitude=436.0, ramp_s=int(2.9 * 86400)
    )
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, begin, 6, seed=2, faults=[leak])
    engine = ParkEngine(park, [ZoneLeaks])
    events = replay(engine, rows).events
    leaks_found = [e for e in events if e.family is Family.LEAK]
    assert [(e.kind, e.zone) for e in leaks_found] == [("air_leak", "steelco-air")]
    assert start < leaks_found[0].detected_at_ms <= start + 24 * hour
    assert leaks_found[0].estimate is not None
    assert leaks_found[0].estimate.value > 0
    detector = engine.instances[0].detector
    assert isinstance(detector, ZoneLeaks)
    zone = [z.id for z in detector.layout.zones].index("steelco-air")
    assert np.isfinite(detector.model[zone]).all()


def test_the_production_model_by_hand() -> None:
    """Three days of an air zone drawing 100 + 0.5 Nm³/h per kW of production (200 to 1200
    kW over the day), its hours alternately 1 % over and under that: the model is a = 100,
    b = 0.5, and every 12-hour mean of its residuals is 0 (spread 0), so spreads are put by
    hand. At 600 kW (400 Nm³/h expected), four hours 5 Nm³/h over it and then eight 45 over:
    an excess of 31.67, dated from the first hour over the limit, not from the first over the
    model (noise before a leak); a limit of 4.5 × 0.003 × 400 = 5.4 with a relative spread of
    0.3 %, floored at the hourly test's 0.5 × 5 % (the zone's class) × 400 = 10 (and 10 with
    no spread at all), and of 4.5 × 8 = 36 once the absolute spread (8 Nm³/h) is more."""
    park = Park.from_yaml(DEMO_PARK)
    ctx = ParkContext(park)
    detector = ZoneLeaks(ctx, ZoneLeaks.select(ctx))
    zone = [z.id for z in detector.layout.zones].index("autoparts-air")
    first = 24 * 1000
    for k in range(3 * 24):
        h = first + k
        pos = h % detector.ring
        prod = 200.0 + 1000.0 * (h % 24) / 23
        detector.h_id[pos] = h
        detector.h_daytype[pos] = WORKDAY
        detector.h_prod[:, pos] = prod
        detector.h_value[:, pos] = (100.0 + 0.5 * prod) * (1.01 if k % 2 else 0.99)
        detector.h_clean[:, pos] = True
    detector._fit_model()
    a, b, relative, absolute = detector.model[zone]
    assert a == pytest.approx(100.0, abs=2.0)
    assert b == pytest.approx(0.5, rel=0.01)
    assert relative == pytest.approx(0.0, abs=1e-3)
    assert absolute == pytest.approx(0.0, abs=1.0)
    detector.model[zone] = (100.0, 0.5, 0.003, 0.0)
    now = first + 3 * 24 + 12
    for h in range(now - 14, now + 1):
        pos = h % detector.ring
        detector.h_id[pos] = h
        detector.h_prod[:, pos] = 600.0
        detector.h_value[:, pos] = 400.0 + (45.0 if h > now - 8 else 5.0 if h > now - 12 else 0.0)
    excess, limit, onset = detector._model_test(now)
    assert excess[zone] == pytest.approx((8 * 45 + 4 * 5) / 12)
    assert limit[zone] == pytest.approx(10.0)
    assert onset[zone] == now - 7
    detector.model[zone] = (100.0, 0.5, 0.0, 0.0)
    assert detector._model_test(now)[1][zone] == pytest.approx(10.0)
    detector.model[zone] = (100.0, 0.5, 0.003, 8.0)
    assert detector._model_test(now)[1][zone] == pytest.approx(36.0)


def test_a_sub_meter_reading_low_under_a_zones_wide_limits_is_found_by_its_own_drop() -> None:
    """The demo's seed 4: a leak in steelco's pipes from the first Saturday (3.8 m³/h over
    3.2 days, missed: no baseline yet) taught the zone wide limits, and its cooling meter,
    reading 83.4 % from day 13 (16.6 m³/h read as 13.9), added 2.7 m³/h to a zone scattering
    by 1–1.5 an hour: the CUSUM and the window test took 21 hours (missed in the demo's
    history). The balance over the last six hours already blames the meter (its own drop
    stands out from its day-to-day scatter, the inflow did not move), and that opens the
    decision: found within 8 hours (measured: 286 min), the meter's fault, no leak."""
    hour = 3_600_000
    day = 24 * hour
    begin = DEMO_START_MS + 3 * day  # a Thursday, as the demo's histories
    leak = Fault(
        FaultKind.WATER_LEAK,
        begin + 2 * day + int(22.68 * hour),
        begin + 6 * day + int(21.78 * hour),
        zone="steelco-water",
        magnitude=3.84,
        ramp_s=273_888,
    )
    start = begin + 13 * day + int(17.23 * hour)
    under = Fault(
        FaultKind.METER_UNDER_REGISTRATION,
        start,
        start + int(2.6 * day),
        meter="steelco-cooling",
        magnitude=0.834,
    )
    park = Park.from_yaml(DEMO_PARK)
    rows = simulated_rows(park, begin, 16, seed=4, faults=[leak, under])
    events = replay(ParkEngine(park, [ZoneLeaks]), rows).events
    found = [e for e in events if e.kind == "meter_under_registration"]
    assert [e.meter for e in found] == ["steelco-cooling"]
    assert start < found[0].detected_at_ms <= start + 8 * hour
    assert not [e for e in events if e.family is Family.LEAK and e.start_ms >= start - day]


def test_the_production_model_is_not_moved_by_one_hours_demand_peak() -> None:
    """Three days of an air zone drawing 100 + 0.5 Nm³/h per kW (±1 %), and one hour whose
    production meter reads 3000 kW more with the air unchanged (a demand peak on a production
    meter: seed 5's steelco-main). Fitted with it, the slope fell to 0.21 and a rose to 291
    (seed 5: 0.86 to 0.68 for the ring's length, and the leak was found a day late); the hour
    is far off the first line and the refit leaves it out: b = 0.5."""
    park = Park.from_yaml(DEMO_PARK)
    ctx = ParkContext(park)
    detector = ZoneLeaks(ctx, ZoneLeaks.select(ctx))
    zone = [z.id for z in detector.layout.zones].index("steelco-air")
    first = 24 * 1000
    for k in range(3 * 24):
        h = first + k
        pos = h % detector.ring
        prod = 200.0 + 1000.0 * (h % 24) / 23
        detector.h_id[pos] = h
        detector.h_prod[:, pos] = prod + (3000.0 if k == 40 else 0.0)
        detector.h_value[:, pos] = (100.0 + 0.5 * prod) * (1.01 if k % 2 else 0.99)
        detector.h_clean[:, pos] = True
    detector._fit_model()
    a, b, _, _ = detector.model[zone]
    assert b == pytest.approx(0.5, rel=0.01)
    assert a == pytest.approx(100.0, abs=2.0)


def _round_the_clock(
    days: int, seed: int, sunday_less: float, extra: Any = None, plant_read: Any = None
) -> np.ndarray:
    """Rows main, plant, boiler at 5-minute slots from a Monday 00:00: a works running round
    the clock, as the demo's steelco — its own use 24.6 m³/h by day, 2.4 more at night
    (23–07), every day alike but its Sundays, ``sunday_less`` under; days 2 % apart, its
    hours scattering by 0.3 — beside a cooling make-up sub-meter of a steady 15 m³/h.
    ``extra(days)`` adds to the works' use, ``plant_read(days)`` is the share of its flow
    the sub-meter registers (days since the start)."""
    rng = np.random.default_rng(seed)
    slots = days * DAY_SLOTS
    t_days = np.arange(slots) / DAY_SLOTS
    day = t_days.astype(np.int64)
    hour = (t_days - day) * 24
    sunday = (day % 7) == 6
    daily = 1 + 0.02 * rng.standard_normal(days)[day]
    night = (hour >= 23) | (hour < 7)
    use = (24.6 + 2.4 * night - sunday_less * sunday) * daily + rng.standard_normal(slots)
    if extra is not None:
        use = use + extra(t_days)
    plant = (15.0 + 10.0 * ((hour >= 8) & (hour < 20))) * (1 + 0.01 * rng.standard_normal(slots))
    read = plant if plant_read is None else plant * plant_read(t_days)
    steam = 5.0 * (1 + 0.01 * rng.standard_normal(slots))
    return np.vstack([plant + use, read, steam])


def test_a_burst_on_a_round_the_clock_works_second_sunday_is_found() -> None:
    """Seed 5's steelco: an 11.8 m³/h burst on the history's second Sunday, 03:00–10:00. A
    Sunday then had a rest-day baseline of three days (two Saturdays and a Sunday, its
    Sundays under the Saturdays), their spread widened for three days by Student's t: the
    burst scored under 3 and was missed. The works' rest days use what its workdays do
    (``_kinds_alike``), so a kind of day with fewer than three of its own is judged against
    all the kept days: a burst within three hours."""
    start, stop = 13 + 3 / 24, 13 + 10 / 24
    values = _round_the_clock(21, 5, 0.8, extra=lambda d: 11.8 * ((d >= start) & (d < stop)))
    found = [f for f in _site_findings(values) if f.zone == "district" and f.active]
    assert [f.kind for f in found][:1] == ["water_burst"]
    assert _at(start) < found[0].at_ms <= _at(start) + 3 * 3_600_000
    assert len(_openings(found)) == 1


def test_a_round_the_clock_works_stays_quiet_without_a_leak() -> None:
    """The same works over five weeks, nothing wrong: judged against all its kept days in
    its first weeks, it raises nothing."""
    for seed in (1, 2, 3):
        found = [f for f in _site_findings(_round_the_clock(35, seed, 0.8)) if f.active]
        assert [f for f in found if f.zone == "district"] == []


def test_kinds_alike_by_hand() -> None:
    """A zone's kinds of day are alike where every hour's rest-day median sits within
    ``alike_spreads`` of the workdays' scatter of its workday median (the other days may
    use up to twice that more, ``blunt``), and not where its rest days use a third more."""
    ctx = ParkContext(_site_park())
    detector = ZoneLeaks(ctx, ZoneLeaks.select(ctx))
    days = 14
    hours = np.arange(days * 24, dtype=np.int64) + 1000 * 24
    pos = hours % detector.ring
    rest = (hours // 24) % 7 >= 5  # two rest days a week (only the kind of day matters)
    detector.h_id[pos] = hours
    detector.h_daytype[pos] = np.where(rest, SATURDAY, WORKDAY)
    detector.h_clean[:, pos] = True
    detector.h_flow[:, pos] = 40.0
    rng = np.random.default_rng(0)
    wobble = 0.2 * rng.standard_normal(hours.size)  # scatter 0.2: a limit of 3 × floor 0.4
    for rest_over, alike, blunt in (
        (0.3, (True, True), (False, False)),
        (-1.5, (False, True), (False, True)),
        (8.0, (False, False), (False, False)),
    ):
        detector.h_value[0, pos] = 25.0 + wobble + rest_over * rest
        got, got_blunt = detector._kinds_alike(int(hours[-1]) + 1)  # the next day's
        assert tuple(got[:, 0]) == alike, rest_over
        assert tuple(got_blunt[:, 0]) == blunt, rest_over
