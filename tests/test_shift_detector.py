"""The level-shift detector (``analytics.detectors.shift``): a hand-computed step and its
return, and where it applies (fast-sampled meters only)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from analytics.detectors.shift import KIND, ShiftDetector
from analytics.engine.contract import Block, Finding, ParkContext, SeriesKey
from parkwatch.site import Park

START_MS = 1_700_000_000_000


def _park(
    step_s: float = 1.0,
    interval_s: float | None = None,
    quantities: tuple[str, ...] = ("flow",),
    opted: tuple[str, ...] | None = None,
) -> Park:
    meter: dict[str, Any] = {"id": "rig", "utility": "env", "gateway": "gw-rig"}
    if interval_s is not None:
        meter["interval_s"] = interval_s
    return Park.model_validate(
        {
            "park": "p",
            "timezone": "UTC",
            "analytics": {
                "step_s": step_s,
                "level_shift": list(quantities if opted is None else opted),
            },
            "quantities": [{"name": q, "unit": "1", "utilities": ["env"]} for q in quantities],
            "meters": [meter],
        }
    )


def _run(values: np.ndarray[Any, Any], park: Park | None = None) -> list[Finding]:
    park = park or _park()
    names = [q.name for q in park.quantities]
    ctx = ParkContext(park, reported={"rig": names})
    series = ShiftDetector.select(ctx)
    assert series == [SeriesKey("rig", q) for q in names]
    detector = ShiftDetector(ctx, series)
    rows = np.atleast_2d(values).astype(np.float64)
    block = Block(START_MS, ctx.step_ms, rows, np.ones(rows.shape, np.int32), rows, rows)
    return detector.update(block).findings


def _seconds(findings: list[Finding]) -> list[tuple[bool, int]]:
    return [(f.active, (f.at_ms - START_MS) // 1000) for f in findings]


def test_a_step_and_its_return_by_hand() -> None:
    """Readings 9, 10, 11 repeating (every 30-s window holds ten of each: its median is 10,
    the short medians' range over the reference is [10, 10]; the reference's |x − 10| are
    two-thirds 1: MAD 1, scale 1.4826), then 30 from slot 400 to 519, then the pattern again.
    The short median (30 slots, even: the mean of the 15th and 16th) is 20.5 with 15 new
    readings in it: (20.5 − 10) / 1.4826 = 7.1 ≥ 5 scales, a run from slot 414 (its onset
    estimate half a window back: slot 399); after 10 slots (persist_s) it opens at the end of
    slot 423, the short median 30: (30 − 10) / 1.4826 = 13.49 scales. Back: with 16 pattern
    readings in the window the median is ≤ 11, within 2 scales of 10, from slot 535; the
    thirtieth such slot (short_s), 564, closes it."""
    values = 9.0 + np.arange(1200) % 3
    values[400:520] = 30.0
    findings = _run(values)
    assert [(f.kind, f.active, f.at_ms) for f in findings] == [
        (KIND, True, START_MS + 424_000),
        (KIND, False, START_MS + 565_000),
    ]
    opened = findings[0]
    assert opened.start_ms == START_MS + 399_000
    assert opened.meter == "rig"
    assert opened.evidence["quantity"] == "flow"
    assert opened.evidence["direction"] == "high"
    assert opened.evidence["value"] == 30.0
    assert opened.evidence["expected"] == 10.0
    assert opened.evidence["scales"] == pytest.approx(20 / 1.4826, abs=0.01)
    assert opened.estimate is not None
    assert opened.estimate.value == 20.0
    assert findings[1].evidence["ended"] == "level_back"


def test_a_level_back_for_under_short_s_is_the_same_event() -> None:
    """The step of the test above comes back for 25 s and steps again: the meter closes
    only when back for short_s (30 s), so it is one event (at persist_s, 10 s, it closed at
    545 and reopened at 569); back for 40 s, two."""
    for back, expected in (
        (25, [(True, 424), (False, 745)]),
        (40, [(True, 424), (False, 565), (True, 584), (False, 745)]),
    ):
        values = 9.0 + np.arange(1500) % 3
        values[400:520] = 30.0
        values[520 + back : 700] = 30.0
        assert _seconds(_run(values)) == expected, back


def test_a_steady_drift_is_no_shift() -> None:
    """A level drifting at a steady rate leaves the range its short medians wandered in over
    the reference by a fraction of that range each minute: no event."""
    rng = np.random.default_rng(3)
    values = 50.0 + 0.002 * np.arange(3600) + rng.normal(0, 0.1, 3600)
    assert _run(values) == []


def test_a_shift_that_lasts_is_the_new_normal_after_settle_s() -> None:
    values = 9.0 + np.arange(1500) % 3
    values[400:] = 30.0
    findings = _run(values)
    assert [(f.active, f.at_ms) for f in findings] == [
        (True, START_MS + 424_000),
        (False, START_MS + 1_024_000),  # 600 slots after the opening slot
    ]
    assert findings[1].evidence["ended"] == "new_level"


def test_no_rows_where_readings_come_every_minute() -> None:
    """The demo's and NAB's meters (a step of a minute or more), and a meter declared to read
    every 10 s in a 1-s park, give the detector nothing to watch."""
    for park in (_park(step_s=60.0), _park(interval_s=10.0)):
        assert ShiftDetector.select(ParkContext(park, reported={"rig": ["flow"]})) == []


def test_a_meter_reading_every_minute_in_a_fast_park_is_never_judged() -> None:
    """Its windows hold one reading in 60 slots, under min_share: the same step is nothing."""
    values = np.full(3000, np.nan)
    values[::60] = 10.0
    values[1800::60] = 30.0
    assert _run(values) == []


def test_a_meter_read_every_3_s_in_a_1_s_park_is_judged_on_its_own_readings() -> None:
    """A window's coverage is judged against the readings expected in it: a meter declared
    to read every 3 s fills a third of a 1-s park's slots, and every 2 s, half, losing one
    reading in 20; each finds the same +30 step (600 s to 1000 s) as a meter read every
    second."""
    steady = 9.0 + np.arange(1500) % 3
    steady[600:1000] += 30.0
    for every, lost in ((1, 0), (3, 0), (2, 40)):
        values = np.full(1500, np.nan)
        values[::every] = steady[::every]
        if lost:
            values[::lost] = np.nan
        findings = _run(values, _park(interval_s=every))
        opened, closed = _seconds(findings)
        assert opened[0], (every, findings)
        assert 620 <= opened[1] <= 625, (every, findings)
        assert not closed[0], (every, findings)
        assert 1040 <= closed[1] <= 1050, (every, findings)
        assert findings[1].evidence["ended"] == "level_back"


def test_an_opening_always_names_a_row_shifted_against_its_reference() -> None:
    """Row a (every 2 s) starts a run and loses a reading; row b, valid only after the run
    began, carries it on. Judged against the reference frozen as the run began, no row has
    shifted: no event opens then (it did, with no row, NaN expected and an instant close)."""
    n = 1400
    a = np.full(n, np.nan)
    a[::2] = (9.0 + np.arange(n) % 3)[::2]
    a[600:] += 30.0
    a[616] = np.nan
    b = np.full(n, np.nan)
    b[436:] = 5.0 + (np.arange(n - 436) % 2)
    b[600:] += 50.0
    findings = _run(np.stack([a, b]), _park(quantities=("a", "b")))
    opened = [f for f in findings if f.active]
    assert opened  # the steps are found, each opening with its shifted row
    for f in opened:
        assert f.evidence["rows_shifted"] >= 1
        assert np.isfinite(f.evidence["expected"])
        assert (f.evidence["value"] - f.evidence["expected"]) * (
            1 if f.evidence["direction"] == "high" else -1
        ) > 0


def test_a_second_closing_soon_after_the_first_is_found() -> None:
    """A valve closes (32 → 29) for 200 s and, 180 s after reopening, closes again for
    420 s. After the first close the meter is judged against the event's reference widened
    by the levels since: the second closing opens a low event and its reopening closes it
    (it used to be missed, and its reopening raised as a high shift)."""
    rng = np.random.default_rng(2)
    k = np.arange(2400)
    closed = ((k >= 600) & (k < 800)) | ((k >= 980) & (k < 1400))
    values = np.round(32 + rng.normal(0, 0.4, k.size)) - 3 * closed
    findings = _run(values)
    assert _seconds(findings) == [(True, 624), (False, 845), (True, 1004), (False, 1448)]
    assert [f.evidence.get("direction") for f in findings if f.active] == ["low", "low"]
    assert [f.evidence.get("ended") for f in findings if not f.active] == ["level_back"] * 2


def test_a_row_warmed_while_the_valve_was_shut_is_no_event_of_its_own() -> None:
    """The valve closes twice (flow 32 → 29 for 200 s, 6 min apart); the temperature rises
    0.003 /s while it is shut and relaxes back (τ 120 s) after. Only the flow shifted in the
    event: after its close the temperature is judged against its own moving range, not the
    event's (it used to open a "high" event 10 s after each close, the first of which held
    the meter through the second closing)."""
    rng = np.random.default_rng(4)
    k = np.arange(3000)
    shut = ((k >= 600) & (k < 800)) | ((k >= 1160) & (k < 1360))
    flow = np.round(32 + rng.normal(0, 0.4, k.size)) - 3 * shut
    warm = np.zeros(k.size)
    for i in range(1, k.size):
        warm[i] = warm[i - 1] + (0.003 if shut[i] else -warm[i - 1] / 120)
    temp = 70 + rng.normal(0, 0.05, k.size) + warm
    findings = _run(np.stack([flow, temp]), _park(quantities=("flow", "temp")))
    assert _seconds(findings) == [(True, 625), (False, 845), (True, 1184), (False, 1406)]
    assert [f.evidence["quantity"] for f in findings if f.active] == ["flow", "flow"]


def test_only_the_quantities_the_park_names_and_a_duty_cycle_is_not_watched() -> None:
    """A load switching 0 → 5 for 2 minutes every 8 (a machine's duty cycle) on a quantity
    the park does not name in ``analytics.level_shift``: no rows, no events (named, each
    start would open one)."""
    k = np.arange(7200)
    values = np.where((k % 480) < 120, 5.0, 0.0)
    assert ShiftDetector.select(ParkContext(_park(opted=()), reported={"rig": ["flow"]})) == []
    assert sum(f.active for f in _run(values)) >= 10  # named: every start after the first


def test_the_evidence_gives_the_range_and_scale_behind_its_scales() -> None:
    """scales = (value − the range's nearer end) / scale, capped at 1000 (a reference of an
    exact 0 has the float's resolution as its scale)."""
    noisy = 9.0 + np.arange(1200) % 3
    noisy[400:520] = 30.0
    flat = np.zeros(1200)
    flat[400:520] = 5.0
    for values in (noisy, flat):
        ev = _run(values)[0].evidence
        assert ev["range_low"] <= ev["expected"] <= ev["range_high"]
        raw = (ev["value"] - ev["range_high"]) / ev["scale"]
        assert ev["scales"] == pytest.approx(min(raw, 1000.0), abs=0.01)
    assert _run(flat)[0].evidence["scales"] == 1000.0


@pytest.mark.parametrize(
    "params",
    [
        {"min_rows": 0},
        {"min_share": 0.0},
        {"min_share": 1.5},
        {"z_close": 5.0},
        {"short_s": 300.0},
        {"settle_s": 100.0},
        {"short_s": float("nan")},
        {"persist_s": float("nan")},
        {"resolution": 0.0, "abs_resolution": 0.0},
        {"resolution": -1.0},
        {"min_rows": 1.5},
    ],
)
def test_parameters_that_make_no_sense_are_refused(params: dict[str, Any]) -> None:
    ctx = ParkContext(_park(), reported={"rig": ["flow"]})
    with pytest.raises(ValueError, match="shift: "):
        ShiftDetector(ctx, ShiftDetector.select(ctx), params)


def test_a_meters_rows_need_not_be_adjacent() -> None:
    """The kernel visits each meter's rows by offsets into an order sorted by meter: the same
    readings with the rows interleaved across two meters give the same findings."""
    park = Park.model_validate(
        {
            "park": "p",
            "timezone": "UTC",
            "analytics": {"step_s": 1, "level_shift": ["a", "b"]},
            "quantities": [{"name": q, "unit": "1", "utilities": ["env"]} for q in "ab"],
            "meters": [{"id": m, "utility": "env", "gateway": "gw"} for m in ("m1", "m2")],
        }
    )
    ctx = ParkContext(park, reported={"m1": ["a", "b"], "m2": ["a", "b"]})
    adjacent = ShiftDetector.select(ctx)
    assert [(k.meter, k.quantity) for k in adjacent] == [
        ("m1", "a"), ("m1", "b"), ("m2", "a"), ("m2", "b")
    ]  # fmt: skip
    steady = 9.0 + np.arange(1500) % 3
    values = np.stack([steady + 30.0 * ((k >= s) & (k < s + 300)) for s in (400, 500, 700, 900)
                       for k in [np.arange(1500)]])  # fmt: skip

    def findings(order: list[int]) -> list[tuple[Any, ...]]:
        detector = ShiftDetector(ctx, [adjacent[i] for i in order])
        rows = values[order]
        block = Block(START_MS, 1000, rows, np.ones(rows.shape, np.int32), rows, rows)
        return [
            (f.meter, f.active, f.at_ms, f.evidence.get("quantity"))
            for f in detector.update(block).findings
        ]

    found = findings([0, 1, 2, 3])
    assert {m for m, *_ in found} == {"m1", "m2"}
    assert findings([0, 2, 1, 3]) == found


def test_a_park_names_only_quantities_it_has() -> None:
    with pytest.raises(ValueError, match="level_shift: unknown quantity 'nope'"):
        _park(opted=("nope",))
    with pytest.raises(ValueError, match="level_shift: 'vol_m3' is a counter: name its rate"):
        _park(opted=("vol_m3",))
    with pytest.raises(ValueError, match="level_shift: a quantity is listed twice"):
        _park(opted=("flow", "flow"))
