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
from analytics.detectors.waste_heat import COOLING, FLUE, RECOVERY, WasteHeat
from analytics.engine.engine import ParkEngine
from analytics.engine.slots import slot_block
from parkwatch.site import Park
from parkwatch_cli.bench_analytics import NaiveDetectors
from simulators import DEMO_PARK
from simulators.faults import Fault, FaultKind
from simulators.model import ParkModel

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


def _heat_state(detector: WasteHeat, points: list[Any]) -> dict[str, Any]:
    """The detector's state after an hour and that hour's recoverable heat, as the loop keeps
    them (fields rounded as the detector writes them)."""
    state = {k: getattr(detector, k).copy() for k in ("cusum", "h_x", "h_y")}
    for name, key in (("open", "open"), ("quiet", "quiet"), ("onset", "onset_ms"),
                      ("h_clean", "h_clean")):  # fmt: skip
        state[name] = getattr(detector, key).tolist()
    state["heat"] = {(p.tags["meter"], p.tags["source"]): p.fields for p in points}
    return state


def _assert_heat_state(naive: NaiveDetectors, kernel: dict[str, Any], where: str) -> None:
    """The loop's waste heat state is the detector's: floats to their last bits' differences
    (numpy's pairwise sums against Python's running ones), the rest exactly, and the hour's
    kW, GJ, tce and ¥ per day as the detector rounds them."""
    w = naive.wh
    np.testing.assert_allclose(w["cusum"], kernel["cusum"], rtol=1e-9, atol=1e-9, err_msg=where)
    for name in ("open", "quiet", "onset", "h_clean"):
        assert w[name] == kernel[name], (where, name)
    for name in ("h_x", "h_y"):
        np.testing.assert_allclose(w[name], kernel[name], rtol=1e-12, err_msg=f"{where} {name}")
    assert w["kw"].keys() == kernel["heat"].keys(), where
    for key, fields in kernel["heat"].items():
        kw, gj, tce, cny = w["kw"][key]
        assert round(kw, 2) == pytest.approx(fields["kw"], abs=0.011), (where, key)
        assert round(gj, 4) == pytest.approx(fields["gj_per_day"], abs=1.1e-4), (where, key)
        assert round(tce, 5) == pytest.approx(fields["tce_per_day"], abs=1.1e-5), (where, key)
        if cny is None:
            assert "cny_per_day" not in fields, (where, key)
        else:
            assert round(cny, 2) == pytest.approx(fields["cny_per_day"], abs=0.011), (where, key)


def _count_judged_events(naive: NaiveDetectors, monkeypatch: Any) -> list[int]:
    """The loop's events opened and closed while it judges hours (its other rules count
    silences in the same total), in a one-item list updated as it runs."""
    judged = [0]
    inner = naive.waste_heat_to

    def judging(hour: int) -> None:
        before = naive.events
        inner(hour)
        judged[0] += naive.events - before

    monkeypatch.setattr(naive, "waste_heat_to", judging)
    return judged


def test_the_naive_loop_does_the_waste_heat_detectors_arithmetic(monkeypatch: Any) -> None:
    """The demo park's heat sources over four simulated days with a recovery unit bypassed and
    a flue fouling (tests/test_leaks_waste_heat.py's case), with three hours without a reading,
    a series silent for an hour, a half-empty hour, an hour below the boilers' and loops'
    minimum load and 2 % of the temperatures' readings NaN or infinite. The detector gets them
    an hour at a time, the loop one reading at a time through ``reading``, so that its hours
    end as in the bench: when the first reading of a later hour arrives. Then it has judged
    every hour before, and its state, recoverable heat and events are the detector's."""
    day, hour = 86_400_000, 3_600_000
    start = 1_795_968_000_000  # a local midnight in Shanghai
    faults = [
        Fault(FaultKind.HEAT_RECOVERY_BYPASS, start + 3 * day + 2 * hour,
              start + 3 * day + 10 * hour, meter="steelco-heat", magnitude=0.9),
        Fault(FaultKind.FLUE_TEMP_RISE, start + 2 * day, None, meter="chemco-boiler",
              magnitude=30.0, ramp_s=86_400),
    ]  # fmt: skip
    park = Park.from_yaml(DEMO_PARK)
    engine = ParkEngine(park, [WasteHeat])
    ctx = engine.ctx
    detector = WasteHeat(ctx, WasteHeat.select(ctx))
    naive = NaiveDetectors(park, engine)
    loop_events = _count_judged_events(naive, monkeypatch)
    keys = [(k.meter, k.quantity) for k in detector.series]
    assert not any(naive.counter[k] for k in keys)  # the loop judges them as instant values
    loads = [naive.sources[0].x, naive.sources[1].x, naive.sources[2].x]
    model = ParkModel(park, 11, faults)
    model.prime(start, STEP_MS)
    cols = [model.series.index(k) for k in keys]
    rng = np.random.default_rng(3)
    kernel: list[dict[str, Any]] = []  # per hour
    kernel_events = loop_hours_open = 0
    for h, first in enumerate(range(start, start + 4 * day, hour)):
        t = first + np.arange(60, dtype=np.int64) * STEP_MS
        frame = model.frame(t)
        values = frame.values[:, cols]
        present = np.isfinite(values)
        if frame.present is not None:
            present &= frame.present[:, cols]
        if 30 <= h < 33:  # no reading at all
            present[:] = False
        elif h == 60:  # the boiler's steam silent
            present[:, 0] = False
        elif h == 61:  # every series silent from the half hour
            present[30:] = False
        elif h == 70:  # a tenth of the usual loads: below min_load, not judged
            values[:, loads] *= 0.1
        # NaN and infinite readings of the temperatures (the loop's baseline, as the bench,
        # gets none)
        bad = present & (rng.random(values.shape) < 0.02)
        bad[:, [k in naive.watched for k in keys]] = False
        values[bad] = rng.choice([np.nan, np.inf, -np.inf], int(bad.sum()))
        slot, row = np.nonzero(present)  # slot by slot, the series in order
        block = slot_block(row.astype(np.int64), t[slot], values[slot, row], len(keys), first,
                           STEP_MS, 60)  # fmt: skip
        out = detector.update(block)
        kernel_events += len(out.findings)
        kernel.append(_heat_state(detector, out.points))
        kernel[-1]["events"] = kernel_events
        for n, (k, s) in enumerate(zip(slot.tolist(), row.tolist(), strict=True)):
            naive.reading(*keys[s], int(t[k]), float(values[k, s]), int(t[k]))
            if n == 0 and h > 0:  # the first reading of this hour ended those before
                _assert_heat_state(naive, kernel[h - 1], f"hour {h - 1}")
                assert loop_events[0] == kernel[h - 1]["events"], f"hour {h - 1}"
                loop_hours_open += any(naive.wh["open"])
    naive.waste_heat_to((start + 4 * day + naive.offset_ms) // hour)  # the last hour ended
    _assert_heat_state(naive, kernel[-1], "the last hour")
    # the bypass and the fouling opened (and the bypass closed): events to compare
    assert loop_events[0] == kernel_events >= 3
    assert loop_hours_open > 0


def test_the_naive_loop_closes_a_recovery_unit_before_judging_its_cooling_water(
    monkeypatch: Any,
) -> None:
    """From a state seeded alike in the detector and the loop (14 days of clean hours on
    each source's line, the recovery unit's event open and quiet for five hours): an hour in
    which the recovery unit closes while its enterprise's cooling water rises (judged after
    the unit, so no longer explained by the bypass: it opens the same hour), an hour below
    min_load, an hour without a reading (its ring slot, clean before, ends unclean) and a
    normal hour. The park prices its heat (the demo park has no heat tariff), and its cooling
    loop runs at a flow that only flickers in its last digits (no slope fitted)."""
    hour = 3_600_000
    start = 1_795_968_000_000  # a local midnight in Shanghai
    demo = Park.from_yaml(DEMO_PARK)
    priced = demo.waste_heat.model_copy(update={"cny_per_gj": 60.0})
    park = demo.model_copy(update={"waste_heat": priced})
    engine = ParkEngine(park, [WasteHeat])
    ctx = engine.ctx
    detector = WasteHeat(ctx, WasteHeat.select(ctx))
    naive = NaiveDetectors(park, engine)
    loop_events = _count_judged_events(naive, monkeypatch)
    keys = [(k.meter, k.quantity) for k in detector.series]
    flue, cooling, recovery = detector.sources
    assert (flue.kind, cooling.kind, recovery.kind) == (FLUE, COOLING, RECOVERY)
    assert cooling.enterprise == recovery.enterprise
    lines = [(180.0, 40.0), (5.0, 5.0), (10.0, 5.0)]  # y = a + b·x per source
    rng = np.random.default_rng(5)
    x = rng.uniform(0.3, 0.9, detector.h_x.shape)
    x[1] = 0.6 + rng.uniform(0.0, 1e-6, x.shape[1])  # a variance below 1e-9: a flat line
    detector.h_x = x
    detector.h_y = np.array([a + b * x[i] for i, (a, b) in enumerate(lines)])
    detector.h_y += rng.normal(0.0, 1.5, x.shape)
    detector.h_clean[:] = True
    first_hour = (start + naive.offset_ms) // hour
    detector.hour = first_hour - 1
    detector.open[2], detector.cusum[2], detector.quiet[2] = True, 2.0, 5
    detector.onset_ms[2] = start - 20 * hour
    w = naive.wh
    w["h_x"], w["h_y"] = detector.h_x.tolist(), detector.h_y.tolist()
    w["h_clean"], w["open"] = detector.h_clean.tolist(), detector.open.tolist()
    w["cusum"], w["quiet"] = detector.cusum.tolist(), detector.quiet.tolist()
    w["onset"] = detector.onset_ms.tolist()

    def hour_of(load: float, rise: tuple[float, float, float]) -> np.ndarray:
        """One reading per series: each source at ``load`` of its rating, ``rise`` K above
        its line."""
        v = np.zeros(len(keys))
        for s, (a, b), r in zip(detector.sources, lines, rise, strict=True):
            v[s.x] = load * s.rated
            y = a + b * load + r
            if s.kind == FLUE:
                v[s.hot] = y
                v[s.fuel] = 80.0 * load * s.rated
            else:
                v[s.cold] = 20.0
                v[s.hot] = 20.0 + y
        return v

    hours = [
        hour_of(0.6, (0.0, 15.0, 0.0)),  # cooling z ≈ 10: its CUSUM over h as the unit closes
        hour_of(0.1, (40.0, 40.0, -40.0)),  # far off the lines but below min_load
        None,  # no reading
        hour_of(0.5, (0.0, 0.0, 0.0)),
    ]
    kernel_events = 0
    kernel: list[dict[str, Any]] = []
    for h, v in enumerate(hours):
        first = start + h * hour
        t = first + np.arange(60, dtype=np.int64) * STEP_MS
        if v is None:
            rows, times, values = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        else:
            rows = np.tile(np.arange(len(keys), dtype=np.int64), 60)
            times, values = np.repeat(t, len(keys)), np.tile(v, 60)
        out = detector.update(slot_block(rows, times, values, len(keys), first, STEP_MS, 60))
        kernel_events += len(out.findings)
        kernel.append(_heat_state(detector, out.points) | {"events": kernel_events})
        for n, (r, ti, vi) in enumerate(zip(rows.tolist(), times.tolist(), values.tolist(),
                                            strict=True)):  # fmt: skip
            naive.reading(*keys[r], ti, vi, ti)
            if n == 0 and h > 0:
                _assert_heat_state(naive, kernel[h - 1], f"hour {h - 1}")
                assert loop_events[0] == kernel[h - 1]["events"], f"hour {h - 1}"
    naive.waste_heat_to(first_hour + len(hours))
    _assert_heat_state(naive, kernel[-1], "the last hour")
    assert loop_events[0] == kernel_events
    # the case it is for: the unit closed and the cooling water opened in the first hour
    assert kernel[0]["events"] == 2
    assert kernel[0]["open"] == [False, True, False]
    assert not kernel[2]["h_clean"][0][(first_hour + 2) % detector.ring]
    assert all("cny_per_day" in fields for fields in kernel[0]["heat"].values())
