"""``parkwatch bench analytics``: the streaming engine over a day of a 10,000-meter park.

A synthetic park (``simulators.synthetic``) of N meters is simulated for a day at 1-minute
resolution, every reading is built before the clock starts, and then fed through the engine
with every registered detector, as replay feeds it. In the same run, a straightforward
per-reading Python loop does the core arithmetic of the same detectors — 15-minute demand and
its forecast, counter resets and rollovers, stuck values and silence, the baseline's
recursion — on a sample of the same readings: the reference the engine's vectorised design is
measured against. The last line printed is one JSON object.
"""

from __future__ import annotations

import gc
import json
import math
import pickle
import resource
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from analytics.detectors import DETECTORS
from analytics.detectors.baseline import DAY_TYPES, BaselineDetector, BaselineParams
from analytics.detectors.meter_faults import MODULI
from analytics.detectors.peaks import CEILING_SHARE, contracted_demands, enterprise_intakes
from analytics.engine.engine import ParkEngine, Rows
from analytics.kernels.feeding import span_bounds
from analytics.warm import frozen_start_up, warm_up
from parkwatch.calendar import local_ms
from parkwatch.site import Park
from simulators.model import ParkModel
from simulators.synthetic import synthetic_park

DAY_MS = 86_400_000
START_MS = 1_795_968_000_000  # a local midnight in Shanghai


@dataclass
class Readings:
    series: np.ndarray[Any, np.dtype[np.int64]]
    t_ms: np.ndarray[Any, np.dtype[np.int64]]
    value: np.ndarray[Any, np.dtype[np.float64]]
    gateway: np.ndarray[Any, np.dtype[np.int64]]
    meter: list[str]
    quantity: list[str]


def simulate(park: Park, engine: ParkEngine, hours: float, step_ms: int) -> Readings:
    """Every value the engine analyses, poll cycle after poll cycle (not timed)."""
    model = ParkModel(park, 0, [])
    times = START_MS + np.arange(int(hours * 3_600_000 // step_ms), dtype=np.int64) * step_ms
    model.prime(int(times[0]), step_ms)
    columns = [(i, engine.series_of(m, q)) for i, (m, q) in enumerate(model.series)]
    used = np.array([i for i, s in columns if s is not None], dtype=np.int64)
    series_of_col = np.array([s for _, s in columns if s is not None], dtype=np.int64)
    gateway_of = {
        m.id: engine.gateway_no[m.gateway] for m in park.iter_meters() if not m.is_virtual
    }
    gw_of_col = np.array([gateway_of[model.series[i][0]] for i in used], dtype=np.int64)
    parts = []
    for first in range(0, times.size, 120):
        chunk = times[first : first + 120]
        values = model.frame(chunk).values[:, used]
        parts.append((np.repeat(chunk, used.size), np.tile(series_of_col, chunk.size),
                      values.ravel(), np.tile(gw_of_col, chunk.size)))  # fmt: skip
    t, s, v, g = (np.concatenate([p[k] for p in parts]) for k in range(4))
    # one gateway's readings of one cycle together, as its message would carry them
    order = np.lexsort((g, t))
    return Readings(
        s[order], t[order], v[order], g[order],
        [engine.series[i].meter for i in range(len(engine.series))],
        [engine.series[i].quantity for i in range(len(engine.series))],
    )  # fmt: skip


def run_engine(engine: ParkEngine, r: Readings, step_ms: int) -> tuple[float, int]:
    """Feed in stretches of 15 minutes of arrival, as replay does; returns seconds, events."""
    events = 0
    gc.collect()
    started = time.perf_counter()
    span = 15 * 60_000
    bounds = span_bounds(r.t_ms, span)  # as replay cuts its stretches
    no_dup = np.zeros(r.t_ms.size, dtype=bool)
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        part = slice(a, b)
        engine.feed_rows(Rows(r.series[part], r.t_ms[part], r.value[part], r.gateway[part],
                              r.t_ms[part], no_dup[part]))  # fmt: skip
        events += len(engine.advance(int(r.t_ms[b - 1])).events)
    events += len(engine.finish().events)
    return time.perf_counter() - started, events


class NaiveDetectors:
    """The same detectors' rules, one reading at a time in plain Python, the way one would
    write them without arrays: demand blocks with the forecast and its events (peaks),
    coincident park peaks, counter rollovers/replacements/resets/jumps with their episodes,
    stuck values with the liveliness window, word-swap checks, silence and transport, and the
    baseline's recursion on the rates it watches, as its kernel steps a row (cold-start and
    profile bands, robust scales, records, new extremes, hold, the day of quiet, one event
    per meter). Not done: the waste heat's hourly rules (its few meters' readings), the
    series the engine derives (a tank's flow)."""

    def __init__(self, park: Park, engine: ParkEngine) -> None:
        # the park's offset at the bench's start (the demand blocks' local clock)
        self.offset_ms = int(local_ms(np.array([START_MS]), park.zone)[0]) - START_MS
        ctx = engine.ctx
        self.counter = {(k.meter, k.quantity): ctx.is_counter(k.quantity) for k in engine.series}
        self.contract: dict[str, float | None] = {}
        self.ceiling: dict[str, float] = {}  # the power no reading is believed above
        every = list(park.iter_meters())
        for meter, contract in zip(every, contracted_demands(ctx, every), strict=True):
            self.contract[meter.id] = contract
            limits = [x for x in (contract, meter.spec.rated) if x]
            self.ceiling[meter.id] = CEILING_SHARE * max(limits) if limits else math.inf
        self.roots = {m.id: m.enterprise for m in enterprise_intakes(ctx)}
        self.gateway = {m.id: m.gateway for m in park.iter_meters()}
        self.row: dict[tuple[str, str], dict[str, Any]] = {}
        self.meter_seen: dict[str, int] = {}
        self.meter_open: dict[str, bool] = {}
        self.meter_rows_open: dict[str, int] = {}  # the baseline's rows open, per meter
        self.block_finals: dict[int, dict[str, float]] = {}
        self.park_max = -math.inf
        self.gw: dict[str, dict[str, Any]] = {}
        self.events = 0
        self.watched = {(k.meter, k.quantity) for k in BaselineDetector.select(ctx)}
        self.day_type: dict[int, int] = {}
        self.ctx = ctx
        self.bp = BaselineParams()
        hour = 3_600_000
        self.rates = {
            "level": min(1.0, 60_000 / (self.bp.level_tau_h * hour)),
            "offset": min(1.0, 60_000 / (self.bp.offset_tau_h * hour)),
            "scale": min(1.0, 60_000 / (self.bp.scale_tau_h * hour)),
            "scale_slow": min(1.0, 60_000 / (self.bp.scale_slow_tau_h * hour)),
            "feature": min(1.0, 60_000 / (self.bp.feature_tau_h * hour)),
            "recent": min(1.0, 60_000 * self.bp.season_bins / (self.bp.recent_d * DAY_MS)),
            "decay": 0.5 ** (60_000 / (self.bp.record_half_life_d * DAY_MS)),
            "warm": max(int(self.bp.warmup_d * DAY_MS / 60_000), self.bp.warmup_min_slots),
            "hold": max(1, round(self.bp.hold_h * hour / 60_000)),
            "quiet": round(self.bp.deviation_quiet_h * hour / 60_000),
        }

    def reading(self, meter: str, quantity: str, t: int, v: float, arrival: int) -> None:
        st = self.row.get((meter, quantity))
        if st is None:
            st = self.row[(meter, quantity)] = {
                "prev": math.nan, "slot": -1, "inc": math.nan, "run": 0,
                "changes": deque(maxlen=60), "good": math.nan, "block": -1, "sum": 0.0,
                "n": 0, "max": -math.inf, "open": False, "critical": False,
                "episode": -(10**9),
            }  # fmt: skip
        slot = t // 60_000
        if self.counter[(meter, quantity)]:
            self._counter(st, meter, slot, v)
        else:
            self._instant(st, meter, quantity, t, v)
            if (meter, quantity) in self.watched:
                self._baseline(st, meter, t, v)
        self._silence(meter, slot)
        self._transport(self.gateway[meter], t, arrival)
        st["prev"], st["slot"] = v, slot

    def _counter(self, st: dict[str, Any], meter: str, slot: int, v: float) -> None:
        prev = st["prev"]
        if math.isnan(prev):
            return
        gap = slot - st["slot"]
        inc = v - prev
        tol = max(1e-6 * abs(prev), 1e-3)
        usual = st["inc"]
        if inc >= 0:
            st["inc"] = inc / max(gap, 1)
        kind = None
        if inc < -tol:
            expected = (0.0 if math.isnan(usual) else usual) * gap
            wraps = any(0 <= v + mod - prev <= max(3 * expected, 1e-6 * mod + 0.01)
                        for mod in MODULI_LIST)  # fmt: skip
            kind = "rollover" if wraps and gap < 3 else "replacement" if gap >= 3 else "reset"
        elif not math.isnan(usual) and usual > 0 and inc > 1000 * max(usual * gap, tol):
            kind = "jump"
        if kind is not None:
            if slot - st["episode"] > 60:
                self.events += 1
            st["episode"] = slot

    def _instant(self, st: dict[str, Any], meter: str, quantity: str, t: int, v: float) -> None:
        prev = st["prev"]
        equal = v == prev
        st["run"] = st["run"] + 1 if equal else 0
        st["changes"].append(0 if equal else 1)
        if st["run"] == 15 and sum(st["changes"]) >= 0.8 * len(st["changes"]) and v != 0:
            self.events += 1  # stuck
        good = st["good"]
        if not math.isnan(good) and good > 0 and (abs(v) > 10 * good or abs(v) < good / 10):
            swapped = struct.unpack("<f", struct.pack("<I", _swap_words(v)))[0]
            if good / 1.5 <= abs(swapped) <= good * 1.5:
                self.events += 1  # word swap
            else:
                st["good"] = abs(v)
        else:
            st["good"] = abs(v)
        if quantity != "p_kw" or abs(v) > self.ceiling[meter]:
            return
        local = t + self.offset_ms
        block = local // 900_000
        if block != st["block"]:
            st["block"], st["sum"], st["n"], st["max"] = block, 0.0, 0, -math.inf
        st["sum"] += v
        st["n"] += 1
        st["max"] = max(st["max"], v)
        elapsed = (local % 900_000) / 60_000 + 1
        mean = st["sum"] / st["n"]
        forecast = (mean * elapsed + v * (15 - elapsed)) / 15
        contract = self.contract.get(meter)
        if contract and elapsed >= 2:
            over = forecast >= contract
            critical = forecast > 1.05 * contract
            if over and (not st["open"] or critical != st["critical"]):
                st["open"], st["critical"] = True, critical
                self.events += 1
        if elapsed >= 15:
            if contract and st["open"] and mean < contract:
                st["open"] = False
                self.events += 1
            if meter in self.roots:
                finals = self.block_finals.setdefault(block, {})
                finals[self.roots[meter]] = mean
                if len(finals) == len(set(self.roots.values())):
                    park = sum(finals.values())
                    if park > self.park_max and sum(1 for x in finals.values() if x > 0) >= 2:
                        self.events += 1
                    self.park_max = max(self.park_max, park)
                    del self.block_finals[block]

    def _baseline(self, st: dict[str, Any], meter: str, t: int, v: float) -> None:
        """The baseline detector's recursion for one reading, as ``kernels.baseline_slots``
        steps one row: its cold-start band (the level and the other day types' trusted
        profiles) and its records (cold and own), its scales, clips and floors, profiles,
        offset, quantum, the day of quiet after a deviation, the evidence it keeps, and one
        event per meter (open while any of its rows is)."""
        p, r = self.bp, self.rates
        b = st.get("bl")
        if b is None:
            b = st["bl"] = {
                "seen": 0, "quiet": 0, "hold": 0, "own_seen": 0, "open": False,
                "level": math.nan, "offsets": [0.0] * DAY_TYPES, "scale": 0.0,
                "level_scale": 0.0, "scale_slow": 0.0, "record": 0.0, "record_cold": 0.0,
                "record_open": 0.0, "lo": math.inf, "hi": -math.inf, "f_level": math.nan,
                "lvl_lo": math.inf, "lvl_hi": -math.inf, "prev": math.nan, "jump_hi": 0.0,
                "f_dev": 0.0, "dev_hi": 0.0, "dev": math.nan, "expected": math.nan,
                "quantum": 0.0, "q_cand": 0.0, "q_n": 0,
                "days": [0] * DAY_TYPES, "last_day": [-1] * DAY_TYPES,
                "profile": [[math.nan] * p.season_bins for _ in range(DAY_TYPES)],
                "count": [[0] * p.season_bins for _ in range(DAY_TYPES)],
                "recent": [math.nan] * p.season_bins,
                "ref_then": [[math.nan] * p.season_bins for _ in range(DAY_TYPES)],
                "own_then": [[math.nan] * p.season_bins for _ in range(DAY_TYPES)],
            }  # fmt: skip
        local = t + self.offset_ms
        day = local // DAY_MS
        kind = self.day_type.get(day)
        if kind is None:
            kind = self.day_type[day] = int(self.ctx.day_types(np.array([t]))[0])
        bins = p.season_bins
        bin_ = (local % DAY_MS) * bins // DAY_MS
        b["record"] *= r["decay"]
        b["record_cold"] *= r["decay"]
        b["quiet"] = max(b["quiet"] - 1, 0)
        seen = b["seen"] = b["seen"] + 1
        first = seen == 1
        days = b["days"]
        if b["last_day"][kind] != day:
            if kind > 0:  # a profile met again after a while follows the workdays' change
                both = max(b["scale"], b["scale_slow"])
                current = abs(v - b["recent"][bin_]) <= p.z_min * both
                eps = max(p.resolution * abs(b["level"]), p.abs_resolution)
                unit = max(both, max(eps, b["quantum"] / p.quantum_scales))
                self._remeet(b, kind, day - b["last_day"][kind] > 1, current, unit)
            days[kind] += 1
        b["last_day"][kind] = day
        level = v if first else b["level"]
        lo, hi = b["lo"], b["hi"]
        span = hi - lo if math.isfinite(hi - lo) else 0.0
        prof, count, offset = b["profile"][kind], b["count"][kind], b["offsets"][kind]
        own_v, own_n = prof[bin_], count[bin_]
        own = days[kind] > p.season_days and own_n > 0
        band_lo = band_hi = level
        if own:
            near = [x for x in (prof[bin_ - 1], own_v, prof[(bin_ + 1) % bins]) if x == x]
            band_lo, band_hi = min(near) + offset, max(near) + offset
        else:  # what the trusted profiles of the other day types and the level explain
            for seen_k, other in zip(days, b["profile"], strict=True):
                if seen_k > p.season_days and other[bin_] == other[bin_]:
                    near = [x for x in (other[bin_ - 1], other[bin_], other[(bin_ + 1) % bins])
                            if x == x]  # fmt: skip
                    band_lo, band_hi = min(band_lo, min(near)), max(band_hi, max(near))
        dev = v - band_hi if v > band_hi else v - band_lo if v < band_lo else 0.0
        scale, level_scale, scale_slow = b["scale"], b["level_scale"], b["scale_slow"]
        unit = max(scale if own else max(scale, level_scale), scale_slow)
        # the range floor counts this reading; the resolution (a float's share of the level,
        # an absolute epsilon, a share of the series' quantum) floors it
        quantum = b["quantum"]
        eps = max(p.resolution * abs(level), p.abs_resolution)
        res = max(eps, quantum / p.quantum_scales)
        floor = max(p.range_floor * (max(hi, v) - min(lo, v)), res)
        z = 0.0 if first else abs(dev) / (unit + 1e-12 + floor)
        f_level = v if first else b["f_level"]
        f_level_new = f_level + r["feature"] * (v - f_level)
        lvl_lo, lvl_hi = b["lvl_lo"], b["lvl_hi"]
        lvl_span = lvl_hi - lvl_lo
        jump = 0.0 if math.isnan(b["prev"]) else abs(v - b["prev"])
        # one step of the series' quantum off its band is nothing
        within = quantum > 0 and max(abs(dev), jump) < 1.5 * quantum
        z = 0.0 if within else z
        f_dev = b["f_dev"] + r["feature"] * (abs(dev) - b["f_dev"]) if own else b["f_dev"]
        m, peak = p.extreme_margin, 1 + p.peak_margin
        past = p.extreme_scales * (unit + floor)  # a new extreme passes the old by as much
        own_seen = b["own_seen"]
        extreme = (
            v > hi + max(m * span, past)
            or v < lo - max(m * span, past)
            or (lvl_span > 0 and (f_level_new > lvl_hi + max(m * lvl_span, past)
                                  or f_level_new < lvl_lo - max(m * lvl_span, past)))
            or (b["jump_hi"] > 0 and jump > b["jump_hi"] * peak)
            or (own and own_seen > r["warm"] and b["dev_hi"] > 0 and f_dev > b["dev_hi"] * peak)
        ) and not within and max(abs(dev), jump) > p.z_min * res  # fmt: skip
        warm = seen > r["warm"]
        own_seen = b["own_seen"] = own_seen + (1 if own else 0)
        if own:
            record = b["record"] if own_seen > r["warm"] else max(b["record"], b["record_cold"])
        else:
            record = b["record_cold"]
        quiet = b["quiet"]
        beyond = z > max(record * p.record_margin, p.z_min)
        fire = warm and ((own and beyond and quiet == 0) or extreme)
        was_open = b["open"]
        opening = fire and not was_open
        hold = r["hold"] if opening else max(b["hold"] - 1, 0)
        closing = was_open and not fire and hold <= 0 and z < p.z_close
        is_open = b["open"] = (was_open or opening) and not closing
        b["hold"] = hold
        if opening and not extreme:
            b["quiet"] = r["quiet"]  # a day of quiet after a deviation
        if opening:
            b["record_open"] = max(record, p.z_min)
        if opening or closing:  # the meter's one event: open while any of its rows is
            rows_open = self.meter_rows_open.get(meter, 0) + (1 if opening else -1)
            self.meter_rows_open[meter] = rows_open
            if rows_open == (1 if opening else 0):
                self.events += 1
        settled = seen > p.record_skip_slots
        if settled:  # a silenced deviation takes the record no further than an open one
            silenced = own and warm and quiet > 0 and beyond
            z_rec = min(z, p.record_growth * b["record_open"]) if is_open or silenced else z
            if own:
                b["record"] = max(b["record"], z_rec)
            else:
                b["record_cold"] = max(b["record_cold"], z_rec)
        b["dev"], b["expected"] = dev, band_hi if dev > 0 else band_lo  # the evidence
        grown = seen > p.warmup_min_slots
        rate_scale = max(1.0 / seen, r["scale"])
        if not first and unit <= floor:  # a flat series that changes: its scale from the change
            seed = abs(v - level) / p.clip
            scale, level_scale = max(scale, seed), max(level_scale, seed)
        bound = p.clip * max(scale, floor)
        resid = v - (own_v + offset) if own else v - level
        if grown:
            resid = min(max(resid, -bound), bound)
        b["scale"] = scale + rate_scale * (abs(resid) - scale)
        b["scale_slow"] = scale_slow + max(1.0 / seen, r["scale_slow"]) * (abs(resid) - scale_slow)
        miss = v - level
        if grown:
            level_bound = p.clip * max(level_scale, floor)
            miss = min(max(miss, -level_bound), level_bound)
        b["level_scale"] = level_scale + rate_scale * (abs(miss) - level_scale)
        b["level"] = level + r["level"] * (v - level)
        if own and not is_open:
            b["offsets"][kind] = offset + r["offset"] * ((v - own_v) - offset)
        if own_n > 0:
            step = v - own_v
            bound += abs(offset)
            if grown:
                step = min(max(step, -bound), bound)
            prof[bin_] = own_v + max(1.0 / (own_n + 1), p.season_rate) * step
        else:
            prof[bin_] = v
        if kind == 0:  # the workdays' recent level
            last = b["recent"][bin_]
            if math.isnan(last):
                b["recent"][bin_] = v
            else:  # unclipped: a shutdown or a restart is followed in days
                b["recent"][bin_] = last + r["recent"] * (v - last)
        count[bin_] = own_n + 1
        b["lo"], b["hi"] = min(lo, v), max(hi, v)
        b["f_level"], b["prev"] = f_level_new, v
        if settled:
            b["lvl_lo"], b["lvl_hi"] = min(lvl_lo, f_level_new), max(lvl_hi, f_level_new)
            b["jump_hi"] = max(b["jump_hi"], jump)
        if jump > eps:  # the quantum: a step size seen quantum_repeats times, not too large
            if b["q_cand"] > 0 and abs(jump - b["q_cand"]) <= 1e-6 * b["q_cand"]:
                b["q_n"] += 1
            elif b["q_cand"] == 0 or jump < b["q_cand"]:
                b["q_cand"], b["q_n"] = jump, 1
            top = max(abs(b["lo"]), abs(b["hi"]))
            if b["q_n"] >= p.quantum_repeats and b["q_cand"] <= p.quantum_share * top:
                q = b["q_cand"]
                b["quantum"] = q if quantum == 0 else min(quantum, q)
        b["f_dev"] = f_dev
        if settled and own:
            b["dev_hi"] = max(b["dev_hi"], f_dev)

    def _remeet(
        self, b: dict[str, Any], kind: int, after_a_while: bool, current: bool, unit: float
    ) -> None:
        """kernels._remeet: a day type's profile met after a while follows the workdays'
        recent change per bin, less what it learnt of it itself on its last day (a ratio for
        a row never well below 0, off a level well above its scale ``unit``; never below the
        lowest reading)."""
        lowest = b["lo"]
        rate_like = lowest >= -self.bp.z_min * unit
        prof, off = b["profile"][kind], b["offsets"][kind]
        ref_then, own_then = b["ref_then"][kind], b["own_then"][kind]
        fold = after_a_while and b["days"][0] > self.bp.season_days
        for i, own in enumerate(prof):
            ref, then, start = b["recent"][i], ref_then[i], own_then[i]
            now = own + off
            if fold and not math.isnan(own):
                start = now if math.isnan(start) else start
                if (
                    math.isnan(ref)
                    or math.isnan(then)
                    or (rate_like and not then > self.bp.z_min * unit)
                ):
                    pass
                elif rate_like and ref >= 0 and now >= 0:
                    g = ref / then
                    g_own = now / start if start > 0 else (1.0 if now == 0 else math.inf)
                    if g < 1 and g_own < 1:
                        g = 1.0 if g_own <= g else g / g_own
                    elif g > 1 and g_own > 1:
                        g = 1.0 if g_own >= g else g / g_own
                    most = max(abs(ref - then), self.bp.clip * unit)
                    now = now + min(max(now * (g - 1.0), -most), most)
                else:
                    d, d_own = ref - then, now - start
                    if d < 0 and d_own < 0:
                        d = 0.0 if d_own <= d else d - d_own
                    elif d > 0 and d_own > 0:
                        d = 0.0 if d_own >= d else d - d_own
                    now = now + d
                if now < lowest:
                    now = lowest
                prof[i] = now
            ref_then[i] = ref if current else math.nan
            own_then[i] = now
        if fold:
            b["offsets"][kind] = 0.0

    def _silence(self, meter: str, slot: int) -> None:
        last = self.meter_seen.get(meter)
        if last is not None and slot - last >= 5 and not self.meter_open.get(meter):
            self.events += 1
        self.meter_open[meter] = False
        self.meter_seen[meter] = slot

    def _transport(self, gateway: str, t: int, arrival: int) -> None:
        g = self.gw.get(gateway)
        if g is None:
            g = self.gw[gateway] = {"offsets": deque(maxlen=5), "kind": ""}
        g["offsets"].append(t - arrival)
        if len(g["offsets"]) == 5:
            median = sorted(g["offsets"])[2]
            kind = "clock_skew" if median > 60_000 else "late" if median < -120_000 else ""
            if kind != g["kind"]:
                g["kind"] = kind
                self.events += 1


MODULI_LIST = [float(m) for m in MODULI]


def _swap_words(value: float) -> int:
    bits: int = struct.unpack("<I", struct.pack("<f", value))[0]
    return ((bits << 16) | (bits >> 16)) & 0xFFFFFFFF


def run_naive(park: Park, engine: ParkEngine, r: Readings, sample: int) -> float:
    naive = NaiveDetectors(park, engine)
    n = min(sample, r.t_ms.size)
    meters = [r.meter[s] for s in r.series[:n].tolist()]
    quantities = [r.quantity[s] for s in r.series[:n].tolist()]
    times = r.t_ms[:n].tolist()
    values = r.value[:n].tolist()
    gc.collect()
    started = time.perf_counter()
    for meter, quantity, t, v in zip(meters, quantities, times, values, strict=True):
        naive.reading(meter, quantity, t, v, t)
    return n / (time.perf_counter() - started)


def bench_analytics(
    meters: int = 10_000, hours: float = 24.0, naive_sample: int = 2_000_000
) -> dict[str, Any]:
    step_ms = 60_000
    # the kernels compiled (or loaded) before the clock starts, as the service does at start
    seconds = warm_up(synthetic_park(100, seed=1))
    print(f"compiling the engine's kernels: {seconds:.1f} s", flush=True)
    park = synthetic_park(meters, seed=0)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    engine = ParkEngine(park, DETECTORS)
    print(f"simulating {meters:,} meters for {hours:g} h …", flush=True)
    readings = simulate(park, engine, hours, step_ms)
    n = int(readings.t_ms.size)
    print(f"{n:,} readings; running the engine with {len(DETECTORS)} detectors …", flush=True)
    # frozen as the service is once started, for the engine and the loop alike; the caller's
    # process (tests) gets its collector back as it was
    with frozen_start_up() as freeze:
        freeze()
        seconds, events = run_engine(engine, readings, step_ms)
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        state_bytes = len(pickle.dumps(engine.state(), protocol=pickle.HIGHEST_PROTOCOL))
        print("running the per-reading Python loop on a sample …", flush=True)
        naive = run_naive(park, engine, readings, naive_sample)
    rate = n / seconds
    return {
        "meters": meters,
        "hours": hours,
        "readings": n,
        "detectors": [d.name for d in DETECTORS],
        "seconds": round(seconds, 2),
        "readings_per_s": round(rate),
        "naive_readings_per_s": round(naive),
        "ratio": round(rate / naive, 1),
        "events": events,
        "state_bytes_per_meter": round(state_bytes / meters),
        "peak_rss_mb": round(rss_after / 1024),
        "rss_growth_mb": round((rss_after - rss_before) / 1024),
    }


def main(meters: int, hours: float) -> str:
    result = bench_analytics(meters, hours)
    print(
        f"{result['readings']:,} readings through {len(result['detectors'])} detectors in "
        f"{result['seconds']} s: {result['readings_per_s']:,} readings/s; per-reading Python "
        f"loop {result['naive_readings_per_s']:,} readings/s (ratio {result['ratio']}); "
        f"{result['state_bytes_per_meter']:,} bytes of state per meter"
    )
    return json.dumps(result)
