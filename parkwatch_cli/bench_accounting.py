"""``parkwatch bench accounting``: a year of 15-minute counters for 1,000 meters, rolled up.

A synthetic park (20 enterprises × 5 workshops × 10 electricity meters: a workshop main and
nine sub-meters under it) reads every meter's energy register every 15 minutes for a year,
with the faults the accounting must handle: 32-bit registers that wrap, resets, meters
replaced, readings lost. The counters are built before the clock starts, in chunks of
meters (a chunk is what the rollup job would read at once), and each chunk goes through the
accounting: counters → local hours (Asia/Shanghai) → days → months → year per meter, and the
workshop, enterprise and park sums. Memory stays bounded by the chunk.

In the same run, the reference: the naive roll-up a dashboard query does — difference
consecutive readings and add them into UTC hours (``np.diff`` + ``np.bincount``), wrong at
every reset, rollover and local midnight — over the same chunks, to show what the
correct handling costs. Peak memory is the process' peak resident set size. The last line
printed is one JSON object.
"""

from __future__ import annotations

import gc
import json
import resource
import time
from typing import Any

import numpy as np

from analytics.accounting.consumption import Flag, consumption
from analytics.accounting.rollup import (
    Group,
    Period,
    Rolled,
    accounting_series,
    coarser,
    groups,
    local_edges,
)
from parkwatch.site import Park

QUARTER_MS = 900_000
START_MS = 1_735_660_800_000  # 2025-01-01 00:00 in Shanghai


def bench_park(enterprises: int, workshops: int, per_workshop: int) -> Park:
    doc: dict[str, Any] = {"park": "bench", "meters": [{"id": "main", "utility": "electricity"}]}
    ents = []
    for e in range(enterprises):
        shops = []
        for w in range(workshops):
            head = f"e{e}-w{w}-m0"
            meters = [{"id": head, "utility": "electricity", "parent": "main"}]
            meters += [
                {"id": f"e{e}-w{w}-m{m}", "utility": "electricity", "parent": head}
                for m in range(1, per_workshop)
            ]
            shops.append({"id": f"w{w}", "meters": meters})
        ents.append({"id": f"e{e}", "workshops": shops})
    doc["enterprises"] = ents
    return Park.model_validate(doc)


def synthetic_counters(
    rows: np.ndarray[Any, Any], steps: int, seed: int
) -> tuple[np.ndarray[Any, Any], ...]:
    """15-minute readings of ``rows`` meters: random load, 32-bit wraps (0.01 kWh scale),
    resets and meters exchanged for ones reading higher (2 % of meters each), 0.5 % of readings
    lost."""
    rng = np.random.default_rng(seed)
    n = rows.size
    t = START_MS + np.arange(steps + 1, dtype=np.int64) * QUARTER_MS
    kwh = rng.gamma(2.0, 5.0, (n, steps))
    register = np.concatenate([rng.uniform(0, 4e7, (n, 1)), kwh], axis=1).cumsum(axis=1)
    register %= 2**32 * 0.01  # a 32-bit register at 0.01 kWh wraps at 42 949 672.96
    flags = np.zeros(register.shape, np.int8)
    for r in rng.choice(n, size=max(1, n // 50), replace=False):
        k = int(rng.integers(1, steps))
        register[r, k:] -= register[r, k] - rng.uniform(0, 5)  # reset
        flags[r, k] = Flag.RESET
    for r in rng.choice(n, size=max(1, n // 50), replace=False):
        k = int(rng.integers(1, steps))
        register[r, k:] += 1e5  # exchanged for a meter that already read 100 000 kWh more
        flags[r, k] = Flag.REPLACED
    keep = rng.random(register.shape) > 0.005
    keep[:, 0] = keep[:, -1] = True
    series = np.repeat(rows, steps + 1).reshape(n, steps + 1)
    times = np.broadcast_to(t, (n, steps + 1))
    return series[keep], times[keep], register[keep], flags[keep]


def main(meters: int = 1000, days: int = 365, chunk: int = 100) -> str:
    per_workshop = 10
    enterprises = max(1, meters // (5 * per_workshop))
    park = bench_park(enterprises, 5, per_workshop)
    series = [cs for cs in accounting_series(park) if cs.quantity == "e_kwh"][:meters]
    found: list[Group] = groups(park, series)
    n = len(series)
    steps = days * 96
    zone = park.zone
    end = START_MS + steps * QUARTER_MS
    hours = local_edges(START_MS, end, zone, Period.HOUR)
    day_edges = local_edges(START_MS, end, zone, Period.DAY)
    month_edges = local_edges(START_MS, end, zone, Period.MONTH)
    year_edges = local_edges(START_MS, end, zone, Period.YEAR)
    if year_edges.size < 2:  # a shorter run: its whole months stand in for the year
        year_edges = month_edges[[0, -1]] if month_edges.size >= 2 else day_edges[[0, -1]]

    group_hours = np.zeros((len(found), hours.size - 1))
    group_completeness = np.ones((len(found), hours.size - 1))
    member = np.zeros((len(found), n), bool)
    for g, group in enumerate(found):
        member[g, list(group.members)] = True
    readings = 0
    seconds = 0.0
    reference_s = 0.0
    total_kwh = 0.0
    naive_kwh = 0.0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for c0 in range(0, n, chunk):
        rows = np.arange(c0, min(c0 + chunk, n))
        s, t, v, f = synthetic_counters(rows, steps, seed=c0)
        gc.collect()
        started = time.perf_counter()
        c = consumption(
            s - c0, t, v, hours, rows.size, flags=f, modulus=np.full(rows.size, 2**32 * 0.01)
        )
        hourly = Rolled(hours, c.value, c.completeness, c.estimated)
        daily = coarser(hourly, day_edges)
        monthly = coarser(daily, month_edges)
        yearly = coarser(monthly, year_edges)
        # group sums accumulate chunk by chunk (sums add; a group is as complete as its worst)
        mine = member[:, rows]
        group_hours += mine.astype(float) @ np.nan_to_num(c.value)
        has = mine.any(axis=1)
        group_completeness[has] = np.minimum(
            group_completeness[has],
            np.array([c.completeness[m].min(axis=0) for m in mine[has]]),
        )
        seconds += time.perf_counter() - started
        readings += int(s.size)
        total_kwh += float(np.nansum(yearly.value))

        started = time.perf_counter()
        same = s[1:] == s[:-1]
        d = np.diff(v)
        hour = (t[1:] - START_MS) // 3_600_000
        naive = np.bincount(
            (s[1:] - c0)[same] * (hours.size - 1) + hour[same],
            weights=np.maximum(d[same], 0.0),
            minlength=rows.size * (hours.size - 1),
        )
        reference_s += time.perf_counter() - started
        naive_kwh += float(naive.sum())
        del s, t, v, f, c, hourly, daily, monthly, yearly
    # the groups' days, months and year from their hours, as the job does
    started = time.perf_counter()
    g_hourly = Rolled(hours, group_hours, group_completeness, np.zeros_like(group_hours))
    g_year = coarser(coarser(coarser(g_hourly, day_edges), month_edges), year_edges)
    seconds += time.perf_counter() - started
    group_mwh = float(np.nansum(g_year.value[[g.level.value == "enterprise" for g in found]]))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "meters": n,
        "days": days,
        "readings": readings,
        "groups": len(found),
        "seconds": round(seconds, 2),
        "readings_per_s": round(readings / seconds),
        "reference_naive_seconds": round(reference_s, 2),
        "reference_naive_readings_per_s": round(readings / reference_s),
        "peak_rss_mb": round(peak_mb),
        "rss_before_mb": round(rss_before / 1024),
        "chunk_meters": chunk,
        "total_mwh": round(total_kwh / 1000, 1),
        "enterprises_mwh": round(group_mwh / 1000, 1),
        "naive_mwh": round(naive_kwh / 1000, 1),
    }
    lines = [
        f"{n} meters × {days} days at 15 min: {readings:,} readings",
        f"accounting (hours → days → months → year, {len(found)} groups): {seconds:.2f} s, "
        f"{readings / seconds:,.0f} readings/s",
        f"reference, naive diff + bincount into UTC hours: {reference_s:.2f} s, "
        f"{readings / reference_s:,.0f} readings/s (it counts every exchange as consumption and "
        f"loses every wrap: {naive_kwh / 1000:,.0f} MWh against {total_kwh / 1000:,.0f} MWh)",
        f"peak resident memory {peak_mb:,.0f} MB (chunks of {chunk} meters)",
    ]
    return "\n".join(lines) + "\n" + json.dumps(result)
