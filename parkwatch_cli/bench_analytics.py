"""``parkwatch bench analytics``: the streaming engine over a day of a 10,000-meter park.

A synthetic park (``simulators.synthetic``) of N meters is simulated for a day at 1-minute
resolution, every reading is built before the clock starts, and then fed through the engine
with every registered detector, as replay feeds it. In the same run, a straightforward
per-reading Python loop does the core arithmetic of the same detectors — 15-minute demand and
its forecast, counter resets and rollovers, stuck values and silence, a running z-score
baseline — on a sample of the same readings: the reference the engine's vectorised design is
measured against. The last line printed is one JSON object.
"""

from __future__ import annotations

import gc
import json
import math
import pickle
import resource
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from analytics.detectors import DETECTORS
from analytics.engine.engine import ParkEngine, Rows
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
    bucket = r.t_ms // span
    bounds = np.r_[0, np.flatnonzero(bucket[1:] != bucket[:-1]) + 1, r.t_ms.size]
    no_dup = np.zeros(r.t_ms.size, dtype=bool)
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        part = slice(a, b)
        engine.feed_rows(Rows(r.series[part], r.t_ms[part], r.value[part], r.gateway[part],
                              r.t_ms[part], no_dup[part]))  # fmt: skip
        events += len(engine.advance(int(r.t_ms[b - 1])).events)
    events += len(engine.finish().events)
    return time.perf_counter() - started, events


class NaiveDetectors:
    """The same detectors' core arithmetic, one reading at a time in plain Python."""

    def __init__(self, park: Park, counters: set[str]) -> None:
        self.offset_ms = 8 * 3_600_000 if park.timezone == "Asia/Shanghai" else 0
        self.counters = counters
        self.contract = {m.id: m.spec.contracted_demand_kw for m in park.iter_meters()}
        self.state: dict[tuple[str, str], list[float]] = {}
        self.events = 0

    def reading(self, meter: str, quantity: str, t: int, v: float) -> None:
        key = (meter, quantity)
        st = self.state.get(key)
        if st is None:
            # block, sum, n, max, last_v, last_t, run, mean, var
            st = self.state[key] = [-1.0, 0.0, 0.0, -math.inf, math.nan, -1.0, 0.0, v, 0.0]
        if quantity in self.counters:  # counter resets and rollovers
            if not math.isnan(st[4]) and v < st[4] - max(1e-6 * st[4], 1e-3):
                wrapped = v + 2**32 / 100 - st[4]  # a rollover, else a reset: either an event
                self.events += 1 + int(0 <= wrapped < 1e6) - int(0 <= wrapped < 1e6)
        else:
            if quantity == "p_kw":  # demand and its forecast
                local = t + self.offset_ms
                block = local // 900_000
                if block != st[0]:
                    st[0], st[1], st[2], st[3] = block, 0.0, 0.0, -math.inf
                st[1] += v
                st[2] += 1
                st[3] = max(st[3], v)
                elapsed = (local % 900_000) / 60_000 + 1
                forecast = (st[1] / st[2] * elapsed + v * (15 - elapsed)) / 15
                contract = self.contract.get(meter)
                if contract and forecast >= contract:
                    self.events += 1
            st[6] = st[6] + 1 if v == st[4] else 0  # stuck values
            if st[6] == 15:
                self.events += 1
            delta = v - st[7]  # a running z-score baseline
            st[7] += 0.01 * delta
            st[8] = 0.99 * (st[8] + 0.01 * delta * delta)
            if st[8] > 0 and abs(delta) > 6 * math.sqrt(st[8]):
                self.events += 1
        if st[5] >= 0 and t - st[5] > 300_000:  # silence
            self.events += 1
        st[4], st[5] = v, float(t)


def run_naive(park: Park, engine: ParkEngine, r: Readings, sample: int) -> float:
    counters = {q for q in set(r.quantity) if engine.ctx.is_counter(q)}
    naive = NaiveDetectors(park, counters)
    n = min(sample, r.t_ms.size)
    meters = [r.meter[s] for s in r.series[:n].tolist()]
    quantities = [r.quantity[s] for s in r.series[:n].tolist()]
    times = r.t_ms[:n].tolist()
    values = r.value[:n].tolist()
    gc.collect()
    started = time.perf_counter()
    for meter, quantity, t, v in zip(meters, quantities, times, values, strict=True):
        naive.reading(meter, quantity, t, v)
    return n / (time.perf_counter() - started)


def bench_analytics(
    meters: int = 10_000, hours: float = 24.0, naive_sample: int = 2_000_000
) -> dict[str, Any]:
    step_ms = 60_000
    park = synthetic_park(meters, seed=0)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    engine = ParkEngine(park, DETECTORS)
    print(f"simulating {meters:,} meters for {hours:g} h …", flush=True)
    readings = simulate(park, engine, hours, step_ms)
    n = int(readings.t_ms.size)
    print(f"{n:,} readings; running the engine with {len(DETECTORS)} detectors …", flush=True)
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
