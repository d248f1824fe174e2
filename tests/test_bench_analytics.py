"""``parkwatch bench analytics`` compares the engine with a per-reading Python loop: the loop's
baseline must do the kernel's arithmetic, or the ratio compares unlike work."""

from __future__ import annotations

import gc
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from analytics.detectors.baseline import BaselineDetector
from analytics.engine.engine import ParkEngine
from analytics.engine.slots import slot_block
from parkwatch.site import Park
from parkwatch_cli.bench_analytics import NaiveDetectors

STEP_MS = 60_000  # the naive loop's rates are those of 1-minute readings
DAY = 1440
# three weeks without a holiday, from Saturday 7 or Monday 9 June 2025: from the Monday, the
# first Saturday and Sunday are met with the workdays' profile trusted (the cold-start band
# is what the other types' trusted profiles explain)
STARTS = [
    int(datetime(2025, 6, d, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000) for d in (7, 9)
]

# the kernel's float state row → the loop's key
FLOATS = {
    "level": "level", "lo": "lo", "hi": "hi", "scale": "scale", "level_scale": "level_scale",
    "feat_level": "f_level", "scale_slow": "scale_slow", "level_lo": "lvl_lo",
    "level_hi": "lvl_hi", "prev_x": "prev", "jump_hi": "jump_hi", "feat_dev": "f_dev",
    "dev_hi": "dev_hi", "quantum": "quantum", "quantum_cand": "q_cand", "record": "record",
    "record_cold": "record_cold", "record_open": "record_open", "dev": "dev",
    "expected": "expected",
}  # fmt: skip
# the kernel's integer state row → the loop's key
INTS = {"seen": "seen", "quiet": "quiet", "own_seen": "own_seen", "hold": "hold",
        "quantum_n": "q_n"}  # fmt: skip
# the kernel's per-type and per-bin state → the loop's
TABLES = {
    "profile": "profile", "profile_n": "count", "offsets": "offsets", "days_seen": "days",
    "recent": "recent", "ref_then": "ref_then", "own_then": "own_then",
}  # fmt: skip


def _plant(ctx: Any, t: np.ndarray) -> np.ndarray:
    """A plant's demand: a workday and a lighter Saturday profile over a base, with noise and
    three deviations."""
    slots = t.size
    hour = (ctx.local_ms(t) % 86_400_000) / 3_600_000
    kinds = ctx.day_types(t)
    amplitude = np.select([kinds == 0, kinds == 1], [300.0, 100.0], 0.0)
    plant = 100.0 + amplitude * np.clip(np.minimum(hour - 7.5, 18.5 - hour), 0.0, 1.0)
    plant += np.random.default_rng(0).normal(0.0, 2.0, slots)
    # on day 16 from 02:00, +60 for 2 h ramped over 15 min: inside the range seen, so not an
    # extreme; it opens as a deviation and starts the day of quiet
    d = 16 * DAY + 120
    plant[d : d + 15] += np.linspace(0.0, 60.0, 15)
    plant[d + 15 : d + 120] += 60.0
    plant[d + 120 : d + 135] += np.linspace(60.0, 0.0, 15)
    # a smaller one from 14:00 the same day, in that quiet: silenced (no event; the record
    # grows no further than the open record allows)
    d = 16 * DAY + 840
    plant[d : d + 15] += np.linspace(0.0, 40.0, 15)
    plant[d + 15 : d + 60] += 40.0
    plant[d + 60 : d + 75] += np.linspace(40.0, 0.0, 15)
    # +400 for 3 h from 10:00 on day 17: a new extreme (an extreme sets no quiet)
    plant[17 * DAY + 600 : 17 * DAY + 780] += 400.0
    return plant


@pytest.mark.parametrize("start_ms", STARTS, ids=["saturday", "monday"])
def test_the_naive_loop_does_the_baseline_kernels_arithmetic(start_ms: int) -> None:
    """Every state row after each day, and the slots where events open and close, are the
    kernel's."""
    park = Park.model_validate(
        {
            "park": "bench",
            "analytics": {"step_s": STEP_MS / 1000},
            "meters": [{"id": m, "utility": "electricity"} for m in ("plant", "net")],
        }
    )
    engine = ParkEngine(park, [BaselineDetector])
    ctx = engine.ctx
    detector = BaselineDetector(ctx, BaselineDetector.select(ctx))
    naive = NaiveDetectors(park, engine)
    slots = 21 * DAY
    t = start_ms + np.arange(slots, dtype=np.int64) * STEP_MS
    plant = _plant(ctx, t)
    # a plant and a net meter crossing 0 (its profiles follow a change as a difference)
    values = np.stack([plant, plant - 250.0])
    meters = ("plant", "net")
    states: list[dict[str, Any]] = [{}, {}]
    kernel_events, loop_events = [], []
    for first in range(0, slots, DAY):
        rows = np.repeat(np.arange(2, dtype=np.int64), DAY)
        times = np.tile(t[first : first + DAY], 2)
        block_values = values[:, first : first + DAY].reshape(-1)
        block = slot_block(rows, times, block_values, 2, int(t[first]), STEP_MS, DAY)
        kernel_events += [(f.meter, f.at_ms, f.active) for f in detector.update(block).findings]
        for row, meter in enumerate(meters):
            st = states[row]
            day_t, day_v = (
                t[first : first + DAY].tolist(),
                values[row, first : first + DAY].tolist(),
            )
            for ti, vi in zip(day_t, day_v, strict=True):
                was_open = st["bl"]["open"] if st else False
                naive._baseline(st, meter, ti, vi)
                if st["bl"]["open"] != was_open:  # an event's finding: at the slot's end
                    loop_events.append((meter, ti + STEP_MS, st["bl"]["open"]))
            b = st["bl"]
            s = detector.s
            where = f"{meter}, day {first // DAY}"
            for name, key in FLOATS.items():
                np.testing.assert_array_equal(s[name][row], b[key], err_msg=f"{where} {name}")
            for name, key in INTS.items():
                assert s[name][row] == b[key], (where, name)
            for name, key in TABLES.items():
                mine = s[name][..., row]
                np.testing.assert_array_equal(mine, np.array(b[key]), err_msg=f"{where} {name}")
            assert b["open"] == s["open"][row], where
    for row in range(2):
        # the profiles met again after a while have followed the workdays (the path compared)
        assert np.isfinite(detector.s["ref_then"][1:3, :, row]).all(), meters[row]
    # the same events opened and closed at the same slots (from the Saturday the first
    # Monday's ramps are new extremes; the deviations on days 16 and 17)
    assert sorted(loop_events) == sorted(kernel_events)
    assert naive.events == len(kernel_events) > 0


def test_the_bench_runs_frozen_as_the_service_and_leaves_the_callers_gc_as_it_was(
    monkeypatch: Any,
) -> None:
    """The engine is timed with start-up frozen (``warm.freeze_start_up``), as the service
    runs; called inside another process (this one, as tests do), the bench leaves that
    process's collector as it was."""
    import parkwatch_cli.bench_analytics as bench

    frozen_during: list[int] = []
    run_engine = bench.run_engine

    def recording(*args: Any) -> tuple[float, int]:
        frozen_during.append(gc.get_freeze_count())
        return run_engine(*args)

    monkeypatch.setattr(bench, "run_engine", recording)
    before = gc.get_freeze_count()
    result = bench.bench_analytics(meters=100, hours=1.0, naive_sample=1000)
    assert result["readings"] > 0
    [during] = frozen_during
    assert during > before
    assert gc.get_freeze_count() == before
