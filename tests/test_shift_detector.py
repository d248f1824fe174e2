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


def _park(step_s: float = 1.0, interval_s: float | None = None) -> Park:
    meter: dict[str, Any] = {"id": "rig", "utility": "env", "gateway": "gw-rig"}
    if interval_s is not None:
        meter["interval_s"] = interval_s
    return Park.model_validate(
        {
            "park": "p",
            "timezone": "UTC",
            "analytics": {"step_s": step_s},
            "quantities": [{"name": "flow", "unit": "1", "utilities": ["env"]}],
            "meters": [meter],
        }
    )


def _run(values: np.ndarray[Any, Any], park: Park | None = None) -> list[Finding]:
    ctx = ParkContext(park or _park(), reported={"rig": ["flow"]})
    series = ShiftDetector.select(ctx)
    assert series == [SeriesKey("rig", "flow")]
    detector = ShiftDetector(ctx, series)
    row = values[None, :].astype(np.float64)
    block = Block(START_MS, ctx.step_ms, row, np.ones(row.shape, np.int32), row, row)
    return detector.update(block).findings


def test_a_step_and_its_return_by_hand() -> None:
    """Readings 9, 10, 11 repeating (every 30-s window holds ten of each: its median is 10,
    the short medians' range over the reference is [10, 10]; the reference's |x − 10| are
    two-thirds 1: MAD 1, scale 1.4826), then 30 from slot 400 to 519, then the pattern again.
    The short median (30 slots, even: the mean of the 15th and 16th) is 20.5 with 15 new
    readings in it: (20.5 − 10) / 1.4826 = 7.1 ≥ 5 scales, a run from slot 414 (its onset
    estimate half a window back: slot 399); after 10 slots (persist_s) it opens at the end of
    slot 423, the short median 30: (30 − 10) / 1.4826 = 13.49 scales. Back: with 16 pattern
    readings in the window the median is ≤ 11, within 2 scales of 10, from slot 535; the
    tenth such slot, 544, closes it."""
    values = 9.0 + np.arange(1200) % 3
    values[400:520] = 30.0
    findings = _run(values)
    assert [(f.kind, f.active, f.at_ms) for f in findings] == [
        (KIND, True, START_MS + 424_000),
        (KIND, False, START_MS + 545_000),
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
