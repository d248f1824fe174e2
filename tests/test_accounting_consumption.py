"""Counters → interval consumption: each rule with a hand-computed case, then properties."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.accounting.consumption import (
    Consumption,
    Flag,
    Replacement,
    affected_span,
    consumption,
    cross_check,
    energy_from_power,
    prepare,
)

H = 3_600_000
Q = H // 4
HOURS = np.arange(0, 5 * H + 1, H)  # four hours and one more


def one(t: list[int], v: list[float], **kw: Any) -> Consumption:
    n = len(t)
    return consumption(
        np.zeros(n, np.int64),
        np.array(t, np.int64),
        np.array(v, np.float64),
        kw.pop("edges", HOURS),
        1,
        **kw,
    )


def test_plain_counter_every_quarter_hour() -> None:
    # 100, 110, …, 260 at 0:00, 0:15, … 4:00: 4 pairs of 10 kWh in each hour = 40;
    # after 4:00 there is no reading: unknown, not zero
    t = list(range(0, 4 * H + 1, Q))
    c = one(t, [100 + 10 * i for i in range(len(t))])
    assert c.value[0, :4].tolist() == [40, 40, 40, 40]
    assert np.isnan(c.value[0, 4])
    assert c.completeness[0].tolist() == [1, 1, 1, 1, 0]
    assert c.estimated[0].tolist() == [0, 0, 0, 0, 0]


def test_pair_straddling_an_edge_is_split_pro_rata() -> None:
    # 0:30 → 0 kWh, 1:30 → 60 kWh: 30 before 1:00, 30 after; each hour half covered
    c = one([H // 2, 3 * H // 2], [0.0, 60.0], edges=np.array([0, H, 2 * H]))
    assert c.value[0].tolist() == [30, 30]
    assert c.completeness[0].tolist() == [0.5, 0.5]


def test_16_bit_rollover() -> None:
    # 65504, 65520, (65536 wraps to) 0, 16 at 0:00, :15, :30, :45:
    # increments 16, 0 + 65536 − 65520 = 16, 16 → 48 in hour 0, one counter event
    c = one([0, Q, 2 * Q, 3 * Q], [65504, 65520, 0, 16], edges=np.array([0, H]))
    assert c.value[0].tolist() == [48]
    assert c.events[0].tolist() == [1]
    assert c.estimated[0].tolist() == [0]


def test_meter_own_register_width() -> None:
    # a 5-digit register with one decimal wraps at 50 000.0 (no standard width): 49 990 →
    # 5 is 5 + 50 000 − 49 990 = 15 with the site's width, a reset without it
    t, v = [0, Q, 2 * Q], [49_975.0, 49_990.0, 5.0]
    own = one(t, v, edges=np.array([0, H]), modulus=np.array([50_000.0]))
    assert own.value[0].tolist() == [15 + 15]
    assert own.estimated[0].tolist() == [0]
    unknown = one(t, v, edges=np.array([0, H]))
    # reset: max(new reading 5, the usual 15 per pair) = 15, labelled an estimate
    assert unknown.value[0].tolist() == [30]
    assert unknown.estimated[0].tolist() == [15]


def test_reset_is_counted_from_zero_and_labelled() -> None:
    # 500, 510, 520, then cleared: 30, 40. The reset pair: max(30, usual 10) = 30 (estimate);
    # hour: 10 + 10 + 30 + 10 = 60, of which 30 estimated
    c = one([0, Q, 2 * Q, 3 * Q, 4 * Q], [500, 510, 520, 30, 40], edges=np.array([0, H]))
    assert c.value[0].tolist() == [60]
    assert c.estimated[0].tolist() == [30]


def test_recorded_replacement_is_exact() -> None:
    # old meter: 1000 at 0:00, 1010 at 0:15, final reading 1015 when taken out at 0:20; the
    # new meter starts at 0 and reads 5 at 0:30, 15 at 0:45:
    # 10 + ((1015 − 1010) + (5 − 0)) + 10 = 30, nothing estimated
    record = Replacement(series=0, t_ms=20 * 60_000, old_final=1015.0, new_initial=0.0)
    c = one(
        [0, Q, 2 * Q, 3 * Q],
        [1000, 1010, 5, 15],
        edges=np.array([0, H]),
        replacements=[record],
    )
    assert c.value[0].tolist() == [30]
    assert c.estimated[0].tolist() == [0]


def test_replacement_without_readings_is_estimated_from_the_rate() -> None:
    # flagged "replaced" at 0:30 without a record: that pair is the usual 10, estimated
    flags = np.array([0, 0, Flag.REPLACED, 0], np.int8)
    c = one([0, Q, 2 * Q, 3 * Q], [1000, 1010, 3, 13], edges=np.array([0, H]), flags=flags)
    assert c.value[0].tolist() == [30]
    assert c.estimated[0].tolist() == [10]


def test_a_new_meter_reading_higher_than_the_old_one() -> None:
    # exchanged at 0:30 for a meter that already read 5 000 (flagged "replaced" at the source):
    # not 5 000 − 1 010 kWh of consumption, but the usual 10, estimated
    flags = np.array([0, 0, Flag.REPLACED, 0], np.int8)
    c = one([0, Q, 2 * Q, 3 * Q], [1000, 1010, 5000, 5010], edges=np.array([0, H]), flags=flags)
    assert c.value[0].tolist() == [30]
    assert c.estimated[0].tolist() == [10]


def test_gap_total_is_kept_its_spread_is_an_estimate() -> None:
    # 0:00 → 0, 0:30 → 30, 3:30 → 330, 4:00 → 360; the 3-hour pair (max gap 1 h) carries
    # 300 = 100 an hour, spread linearly:
    # hour 0: 30 measured + 50 estimated = 80, completeness 0.5
    # hours 1, 2: 100 estimated each, completeness 0
    # hour 3: 50 estimated + 30 measured = 80, completeness 0.5
    c = one([0, H // 2, 7 * H // 2, 4 * H], [0, 30, 330, 360], edges=np.arange(0, 4 * H + 1, H))
    assert c.value[0].tolist() == [80, 100, 100, 80]
    assert c.estimated[0].tolist() == [50, 100, 100, 50]
    assert c.completeness[0].tolist() == [0.5, 0, 0, 0.5]
    assert np.nansum(c.value) == 360


def test_an_outage_of_hours_keeps_its_rise_once_only_with_the_reading_before_it() -> None:
    # a reading every 15 minutes at 60 an hour: 0:00 → 0 … 1:00 → 60, silent until 9:30 →
    # 570 (8.5 h × 60 = 510 across the outage), then 9:45 → 585, 10:00 → 600.
    # hour 0: 60 measured; hours 1-8: 60 estimated each (completeness 0); hour 9: 30
    # estimated + 30 measured = 60, completeness 0.5; total 600 = the register's rise.
    t = [0, Q, 2 * Q, 3 * Q, H, 9 * H + 2 * Q, 9 * H + 3 * Q, 10 * H]
    v = [0, 15, 30, 45, 60, 570, 585, 600]
    edges = np.arange(0, 10 * H + 1, H)
    c = one(t, v, edges=edges, max_gap_ms=H)
    assert c.value[0].tolist() == [60] * 10
    assert c.estimated[0].tolist() == [0] + [60] * 8 + [30]
    assert c.completeness[0].tolist() == [1] + [0] * 8 + [0.5]
    assert np.sum(c.value) == 600  # the 510 once: neither lost nor counted twice
    # a window cut after the reading before the outage (what the rollup job read when the
    # outage was longer than its margin) has no pair across it: 9:00-10:00 keeps only its 30
    # measured, the rise is gone. The job now looks that reading up (_with_previous).
    cut = one(t[5:], v[5:], edges=edges[9:], max_gap_ms=H)
    assert cut.value[0].tolist() == [30]


def test_jitter_is_neither_an_event_nor_negative() -> None:
    # a float register reading 1e6 re-read a hair lower: no event, no negative hour.
    # hour 0: 0 → +1 → (+0.99999 held at +1) → +2, then half of the 0:45 → 1:15 pair (+1):
    # 2 + 0.5 = 2.5
    c = one(
        [0, Q, 2 * Q, 3 * Q, H + Q],
        [1e6, 1e6 + 1, 1e6 + 0.99999, 1e6 + 2, 1e6 + 3],
        edges=np.array([0, H, 2 * H]),
    )
    assert c.events.sum() == 0
    assert c.value[0, 0] == pytest.approx(2.5)
    assert (c.value >= 0).all()


def test_order_and_duplicates_do_not_matter() -> None:
    t = np.arange(0, 4 * H + 1, Q)
    v = 100.0 + 10 * np.arange(t.size)
    base = consumption(np.zeros(t.size, np.int64), t, v, HOURS, 1)
    rng = np.random.default_rng(3)
    order = rng.permutation(np.r_[np.arange(t.size), np.arange(t.size)[::3]])
    shuffled = consumption(np.zeros(order.size, np.int64), t[order], v[order], HOURS, 1)
    np.testing.assert_array_equal(base.value, shuffled.value)


def test_a_late_reading_changes_only_the_intervals_between_its_neighbours() -> None:
    # every 15 min for 4 h with a varying rate; the 1:15 reading arrives late. Before it
    # arrived, 1:00 → 1:30 was one pair; with it, only intervals inside [1:00, 1:30] change
    t = np.arange(0, 4 * H + 1, Q)
    rate = np.array([5, 9, 1, 7] * 4)
    v = np.r_[0.0, np.cumsum(rate)]
    fine = np.arange(0, 4 * H + 1, Q // 3)  # 5-minute intervals
    late = 5  # index of 1:15
    keep = np.arange(t.size) != late
    before = consumption(np.zeros(keep.sum(), np.int64), t[keep], v[keep], fine, 1)
    after = consumption(np.zeros(t.size, np.int64), t, v, fine, 1)
    readings = prepare(np.zeros(t.size, np.int64), t, v)
    lo, hi = affected_span(readings, 0, int(t[late]), int(t[late]))
    assert (lo, hi) == (H, H + 2 * Q)
    changed = np.flatnonzero(~np.isclose(before.value[0], after.value[0]))
    assert changed.size > 0
    assert fine[changed].min() >= lo
    assert fine[changed + 1].max() <= hi


def test_many_meters_at_once_match_one_at_a_time() -> None:
    rng = np.random.default_rng(7)
    series, times, values = [], [], []
    for s in range(5):
        t = np.sort(rng.choice(np.arange(0, 5 * H, 60_000), size=40, replace=False))
        v = np.cumsum(rng.uniform(0, 3, t.size)) + 1000 * s
        series.append(np.full(t.size, s))
        times.append(t)
        values.append(v)
    together = consumption(
        np.concatenate(series), np.concatenate(times), np.concatenate(values), HOURS, 5
    )
    for s in range(5):
        alone = consumption(np.zeros(times[s].size, np.int64), times[s], values[s], HOURS, 1)
        np.testing.assert_allclose(together.value[s], alone.value[0], equal_nan=True)


def test_power_and_energy_cross_check() -> None:
    # 40 kW for an hour, sampled every 15 min: 40 kWh from the power; a register that
    # counted 40 kWh agrees, one that counted 60 (a wrong CT ratio) does not
    t = np.arange(0, H + 1, Q)
    power = energy_from_power(
        np.zeros(t.size, np.int64), t, np.full(t.size, 40.0), np.array([0, H]), 1
    )
    assert power.value[0].tolist() == [40]
    good = consumption(
        np.zeros(t.size, np.int64), t, np.linspace(0, 40, t.size), np.array([0, H]), 1
    )
    bad = consumption(
        np.zeros(t.size, np.int64), t, np.linspace(0, 60, t.size), np.array([0, H]), 1
    )
    assert not cross_check(good, power).disagree.any()
    check = cross_check(bad, power)
    assert check.disagree[0, 0]
    assert check.ratio[0, 0] == pytest.approx(1.5)


# --- properties -----------------------------------------------------------------------------


@st.composite
def messy_counter(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A counter with random increments, random wraps at 16 bits, resets, missing readings,
    duplicated and shuffled deliveries."""
    n = draw(st.integers(2, 60))
    steps = np.array(draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))) * 60_000
    t = np.cumsum(steps)
    inc = np.array(draw(st.lists(st.floats(0, 500), min_size=n, max_size=n)))
    v = draw(st.floats(0, 65_000)) + np.cumsum(inc)
    v = v % 65_536.0
    flags = np.zeros(n, np.int8)
    for i in draw(st.lists(st.integers(0, n - 1), max_size=3)):
        v[i:] = v[i:] - v[i] + draw(st.floats(0, 5))  # a reset
        flags[i] = Flag.RESET
    keep = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))) | (np.arange(n) < 2)
    order = np.random.default_rng(draw(st.integers(0, 1000))).permutation(int(keep.sum()))
    return t[keep][order], v[keep][order], flags[keep][order]


@settings(max_examples=150, deadline=None)
@given(messy_counter())
def test_consumption_is_never_negative(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    t, v, flags = data
    edges = np.arange(0, int(t.max()) + 2 * Q, Q)
    c = consumption(np.zeros(t.size, np.int64), t, v, edges, 1, flags=flags)
    known = np.isfinite(c.value)
    assert (c.value[known] >= 0).all()
    assert (c.estimated <= np.nan_to_num(c.value) + 1e-9).all()
    assert ((c.completeness >= 0) & (c.completeness <= 1)).all()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(0.5, 400), min_size=1, max_size=6),
    st.floats(0.0, 0.05),
    st.integers(0, 10_000),
)
def test_parent_is_children_plus_losses_within_accuracy(
    rates: list[float], loss: float, seed: int
) -> None:
    """Children draw constant power; the parent meter counts their sum plus its losses. Each
    meter is read at its own random times, rounded to its register's 0.01 kWh, some
    readings lost, the parent's register wrapping at 100 000 kWh: per hour the parent's
    consumption is Σ children × (1 + loss) within the registers' resolution."""
    rng = np.random.default_rng(seed)
    n = len(rates)
    series, times, values = [], [], []
    totals = np.array([*rates, sum(rates) * (1 + loss)])  # kW; the parent last
    start = rng.uniform(0, 99_000)
    for s, kw in enumerate(totals):
        t = np.sort(rng.choice(np.arange(0, 6 * H, 60_000), size=200, replace=False))
        t = np.r_[0, t[t > 0], 6 * H]
        v = np.round(start + kw * t / H, 2)
        if s == n:
            v = v % 100_000.0
        series.append(np.full(t.size, s))
        times.append(t)
        values.append(v)
    modulus = np.r_[np.full(n, np.nan), 100_000.0]
    c = consumption(
        np.concatenate(series),
        np.concatenate(times),
        np.concatenate(values),
        np.arange(0, 6 * H + 1, H),
        n + 1,
        modulus=modulus,
    )
    children = c.value[:n].sum(axis=0)
    parent = c.value[n]
    # each register's rounding is ±0.005 at both ends of an hour, interpolated
    np.testing.assert_allclose(parent, children * (1 + loss), atol=0.02 * (n + 2))


def test_no_readings_at_all_are_unknown_hours_not_an_error() -> None:
    """A pass over hours in which no series has a reading (a park whose meters report power
    only, say) leaves every hour unknown; it used to raise on the empty segment list."""
    empty = np.zeros(0, np.int64)
    c = consumption(empty, empty, np.zeros(0), HOURS, 2)
    assert np.isnan(c.value).all()
    assert c.value.shape == (2, HOURS.size - 1)  # series × hours
    assert (c.completeness == 0).all()
