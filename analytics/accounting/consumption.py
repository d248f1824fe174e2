"""Interval consumption from cumulative counters, vectorised over many meters at once.

A counter is never differenced naively. Between two consecutive readings of one meter (a
*pair*) the increment is, in order of precedence:

* a **recorded replacement** inside the pair (from the meter-fault events or entered through
  the API: the old meter's final reading, the new one's initial reading):
  ``(old_final − previous) + (current − new_initial)`` — exact;
* a **rollover** (the register wrapped at its range ``M``: the meter's own register width when
  the site gives one, otherwise the usual 16/32-bit and decimal widths): ``current + M −
  previous``, when that is close to what the meter's rate predicts or the source flagged it;
* a **reset** (cleared to about zero; flagged, or a fall that no register width explains):
  ``max(current, rate × Δt)`` — an estimate, labelled, since what was counted between the
  previous reading and the reset is lost;
* a **replacement without readings** (flagged ``replaced``, or a fall after a gap): ``rate ×
  Δt``, an estimate, labelled;
* otherwise the plain difference. A fall within the register's resolution (float32 jitter) is
  no event: the cumulative curve is kept non-decreasing, so it is neither consumption nor
  negative.

The corrected increments make one continuous, non-decreasing cumulative curve per meter; the
consumption of any interval is that curve's rise across it, linear between readings (a pair
that straddles an edge is split pro rata). Pairs further apart than the meter's ``max_gap`` are
a *gap*: their total is still measured (the counter kept counting), but how it spreads over the
intervals inside is an estimate — labelled as such, with the interval's *completeness* (the
share of its time covered by readings closer than ``max_gap``) below 1. An interval outside
the meter's readings altogether is unknown (NaN), never zero.

Everything works on whole arrays: one sort, a handful of vector operations and one
``np.interp`` per chunk of meters (meters are laid side by side on one axis).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from analytics.detectors.meter_faults import MODULI

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Int8Array = npt.NDArray[np.int8]

# relative resolution of a register: a fall smaller than this is float32 rounding, not an event
JITTER = 1e-7
# the x axis of the side-by-side interpolation must stay exact in float64 (2**52 ms)
_X_LIMIT = float(2**52)


class Flag(IntEnum):
    """What the source said about a reading (the wire's counter qualities)."""

    NONE = 0
    ROLLOVER = 1
    RESET = 2
    REPLACED = 3


FLAG_OF_QUALITY = {"rollover": Flag.ROLLOVER, "reset": Flag.RESET, "replaced": Flag.REPLACED}


class PairKind(IntEnum):
    NORMAL = 0
    ROLLOVER = 1
    RESET = 2
    REPLACED = 3  # a recorded replacement: exact
    REPLACED_UNKNOWN = 4  # replaced, readings unknown: estimated from the rate


@dataclass(frozen=True)
class Replacement:
    """A meter exchanged at ``t_ms``: the old meter's last and the new one's first reading."""

    series: int
    t_ms: int
    old_final: float
    new_initial: float


@dataclass
class Readings:
    """Counter readings of many series, sorted by (series, time), one reading per time."""

    series: IntArray
    t_ms: IntArray
    values: FloatArray
    flags: Int8Array


@dataclass
class Pairs:
    """One row per pair of consecutive readings of a series (reading ``end - 1`` → ``end``)."""

    end: IntArray  # index of the pair's second reading in the sorted readings
    series: IntArray
    t0: IntArray
    t1: IntArray
    increment: FloatArray
    kind: Int8Array
    estimated: BoolArray  # the increment itself is an estimate
    gap: BoolArray  # the readings are further apart than max_gap: spread is an estimate


@dataclass
class Consumption:
    """Interval consumption of ``n`` series over ``edges`` (k + 1 edges → k intervals)."""

    edges: IntArray
    value: FloatArray  # [n, k]; NaN where the series has no reading around the interval
    completeness: FloatArray  # [n, k]: share of the interval's time covered by readings
    estimated: FloatArray  # [n, k]: the part of ``value`` that is an estimate
    events: IntArray  # [n, k]: counter events (rollover, reset, replacement) in the interval


def prepare(
    series: IntArray,
    t_ms: IntArray,
    values: FloatArray,
    flags: Int8Array | None = None,
) -> Readings:
    """Sort by (series, time) and keep one reading per time (the last one given: a late
    re-send of the same reading changes nothing, a correction wins). Non-finite values are
    dropped (a missing reading is a gap, not a zero)."""
    series = np.asarray(series, dtype=np.int64)
    t_ms = np.asarray(t_ms, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    fl = np.zeros(series.size, np.int8) if flags is None else np.asarray(flags, np.int8)
    finite = np.isfinite(values)
    if not finite.all():
        series, t_ms, values, fl = series[finite], t_ms[finite], values[finite], fl[finite]
    order = np.lexsort((t_ms, series))  # stable: equal keys keep their given order
    series, t_ms, values, fl = series[order], t_ms[order], values[order], fl[order]
    if series.size > 1:
        last = np.r_[(series[1:] != series[:-1]) | (t_ms[1:] != t_ms[:-1]), True]
        if not last.all():
            series, t_ms, values, fl = series[last], t_ms[last], values[last], fl[last]
    return Readings(series, t_ms, values, fl)


def _series_sum(series: IntArray, weights: FloatArray, n: int) -> FloatArray:
    return np.bincount(series, weights=weights, minlength=n).astype(np.float64)


def counter_pairs(
    readings: Readings,
    n_series: int,
    *,
    modulus: FloatArray | None = None,
    max_gap_ms: IntArray | int = 3_600_000,
    replacements: Sequence[Replacement] = (),
) -> Pairs:
    """Classify every pair of consecutive readings and give its true increment."""
    s, t, v, fl = readings.series, readings.t_ms, readings.values, readings.flags
    same = s[1:] == s[:-1]
    end = np.flatnonzero(same) + 1
    ps = s[end]
    t0, t1 = t[end - 1], t[end]
    v0, v1 = v[end - 1], v[end]
    dt = (t1 - t0).astype(np.float64)
    d = v1 - v0
    gap_limit = np.broadcast_to(np.asarray(max_gap_ms, dtype=np.int64), (n_series,))
    gap = (t1 - t0) > gap_limit[ps]
    tol = np.maximum(np.abs(v0) * JITTER, 1e-9)
    flag = fl[end]
    falls = d < -tol
    plain = ~falls & (flag != Flag.REPLACED)
    # each series' usual rate, from its plain pairs: what an estimate and a rollover fit use
    measured = plain & ~gap
    rate = _series_sum(ps[measured], np.maximum(d[measured], 0.0), n_series) / np.maximum(
        _series_sum(ps[measured], dt[measured], n_series), 1.0
    )
    expected = rate[ps] * dt

    kind = np.zeros(end.size, np.int8)
    increment = d.copy()
    estimated = np.zeros(end.size, bool)

    # a counter event: a fall, or a meter exchanged (a new meter may read higher than the
    # old one did); a rollover or reset flag on a reading that did not fall changes nothing
    event = falls | (flag == Flag.REPLACED)
    idx = np.flatnonzero(event)
    if idx.size:
        own = (
            np.full(idx.size, np.nan)
            if modulus is None
            else np.asarray(modulus, np.float64)[ps[idx]]
        )
        cand = np.where(np.isfinite(own)[:, None], own[:, None], MODULI[None, :])
        wrapped = d[idx, None] + cand
        miss = np.abs(wrapped - expected[idx, None])
        ok = wrapped >= 0
        best = np.argmin(np.where(ok, miss, np.inf), axis=1)
        rows = np.arange(idx.size)
        best_wrapped = wrapped[rows, best]
        best_m = cand[rows, best]
        has = ok[rows, best]
        fits = has & (
            np.abs(best_wrapped - expected[idx])
            <= np.maximum(3 * expected[idx], 1e-6 * best_m + 0.01)
        )
        f = flag[idx]
        is_roll = (f == Flag.ROLLOVER) & has | (f == Flag.NONE) & fits & ~gap[idx]
        is_replaced = ~is_roll & ((f == Flag.REPLACED) | (f == Flag.NONE) & gap[idx])
        is_reset = ~is_roll & ~is_replaced
        kind[idx[is_roll]] = PairKind.ROLLOVER
        increment[idx[is_roll]] = best_wrapped[is_roll]
        kind[idx[is_reset]] = PairKind.RESET
        increment[idx[is_reset]] = np.maximum(
            np.maximum(v1[idx[is_reset]], 0.0), expected[idx[is_reset]]
        )
        estimated[idx[is_reset]] = True
        kind[idx[is_replaced]] = PairKind.REPLACED_UNKNOWN
        increment[idx[is_replaced]] = expected[idx[is_replaced]]
        estimated[idx[is_replaced]] = True

    if replacements:
        _apply_replacements(readings, replacements, end, v0, v1, kind, increment, estimated)
    return Pairs(end, ps, t0, t1, increment, kind, estimated, gap)


def _apply_replacements(
    readings: Readings,
    replacements: Sequence[Replacement],
    end: IntArray,
    v0: FloatArray,
    v1: FloatArray,
    kind: Int8Array,
    increment: FloatArray,
    estimated: BoolArray,
) -> None:
    s, t = readings.series, readings.t_ms
    if t.size == 0:
        return
    t_min = int(t.min())
    span = int(t.max()) - t_min + 2
    key = s * span + (t - t_min)
    rs = np.array([r.series for r in replacements], np.int64)
    rt = np.clip(np.array([r.t_ms for r in replacements], np.int64) - t_min, 0, span - 1)
    # the first reading at or after the exchange is the new meter's; the one before, the old's
    at = np.searchsorted(key, rs * span + rt, side="left")
    pair_of_end = np.full(t.size + 1, -1, np.int64)
    pair_of_end[end] = np.arange(end.size)
    for r, a in zip(replacements, at.tolist(), strict=True):
        if a <= 0 or a >= t.size or s[a] != r.series or s[a - 1] != r.series:
            continue  # no reading on one side: nothing to correct inside this window
        j = int(pair_of_end[a])
        kind[j] = PairKind.REPLACED
        increment[j] = max(r.old_final - v0[j], 0.0) + max(v1[j] - r.new_initial, 0.0)
        estimated[j] = False


def interval_consumption(
    readings: Readings,
    pairs: Pairs,
    edges: IntArray,
    n_series: int,
) -> Consumption:
    """Each series' consumption over the intervals between ``edges`` (ascending, ms)."""
    edges = np.asarray(edges, np.int64)
    k = edges.size - 1
    s, t = readings.series, readings.t_ms
    # cumulative curves at every reading: corrected counter, estimated part, measured time
    inc = np.zeros(t.size)
    inc[pairs.end] = pairs.increment
    est = np.zeros(t.size)
    est[pairs.end] = np.where(pairs.estimated | pairs.gap, pairs.increment, 0.0)
    covered = np.zeros(t.size)
    covered[pairs.end] = np.where(pairs.gap, 0.0, (pairs.t1 - pairs.t0).astype(np.float64))
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if s.size else np.zeros(0, np.int64)
    stops = np.r_[starts[1:], s.size] if s.size else starts  # none read: no segments
    curve = _segment_cumsum(inc, starts)
    # kept non-decreasing: a fall inside the jitter is neither consumption nor negative
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        np.maximum.accumulate(curve[a:b], out=curve[a:b])
    est_curve = _segment_cumsum(est, starts)
    cov_curve = _segment_cumsum(covered, starts)
    span = np.zeros(t.size)
    span[pairs.end] = (pairs.t1 - pairs.t0).astype(np.float64)
    span_curve = _segment_cumsum(span, starts)
    del inc, est, covered, span  # memory: a chunk's readings are many

    value = np.full((n_series, k), np.nan)
    completeness = np.zeros((n_series, k))
    estimated = np.zeros((n_series, k))
    events = np.zeros((n_series, k), np.int64)
    if s.size == 0 or k <= 0:
        return Consumption(edges, value, completeness, estimated, events)

    present = s[starts]
    lo = min(int(t.min()), int(edges[0])) - 1
    width = max(int(t.max()), int(edges[-1])) - lo + 2
    per_chunk = max(1, int(_X_LIMIT // width))
    lengths = np.diff(edges).astype(np.float64)[None, :]
    for c0 in range(0, present.size, per_chunk):
        ids = present[c0 : c0 + per_chunk]
        axis = _SideBySide(t, starts[c0 : c0 + per_chunk], stops[c0 : c0 + per_chunk], lo, width)
        at = axis.query(edges)
        overlap = axis.rise(span_curve, at)
        block = axis.rise(curve, at)
        block[overlap <= 0] = np.nan  # no pair of readings around it: unknown, not zero
        value[ids] = block
        estimated[ids] = axis.rise(est_curve, at)
        completeness[ids] = axis.rise(cov_curve, at) / lengths
    estimated = np.clip(np.minimum(estimated, np.nan_to_num(value)), 0.0, None)
    value = np.where(np.isnan(value), np.nan, np.maximum(value, 0.0))
    ev = pairs.kind != PairKind.NORMAL
    if ev.any():
        where = np.searchsorted(edges, pairs.t1[ev], side="right") - 1
        inside = (where >= 0) & (where < k)
        np.add.at(events, (pairs.series[ev][inside], where[inside]), 1)
    return Consumption(edges, value, np.clip(completeness, 0.0, 1.0), estimated, events)


class _SideBySide:
    """Series laid side by side on one time axis, each on its own stretch of ``width`` ms
    with a flat point at both ends, so that one ``np.interp`` evaluates them all."""

    def __init__(self, t: IntArray, a: IntArray, b: IntArray, lo: int, width: int) -> None:
        self.n = n = a.size
        self.a, self.b = a, b
        self.width = float(width)
        self.lo = lo
        counts = b - a
        rank = np.repeat(np.arange(n), counts)
        base = int(a[0])
        sel = np.arange(base, int(b[-1]))
        self.sel = sel
        # where each reading and each series' two flat ends go: readings in order, two extra
        # places per series before them
        self.pos = (sel - base) + 2 * rank + 1
        self.first = (a - base) + 2 * np.arange(n)
        self.last = (b - base) + 2 * np.arange(n) + 1
        self.xs = np.empty(sel.size + 2 * n)
        self.xs[self.pos] = rank * self.width + (t[sel] - lo)
        self.xs[self.first] = np.arange(n) * self.width
        self.xs[self.last] = np.arange(n) * self.width + (width - 1)

    def query(self, edges: IntArray) -> FloatArray:
        x = np.arange(self.n, dtype=np.float64)[:, None] * self.width + (edges - self.lo)[None, :]
        return x.ravel().astype(np.float64)

    def rise(self, curve: FloatArray, xq: FloatArray) -> FloatArray:
        """The curve's rise over each interval, per series: [n, len(edges) − 1]."""
        fs = np.empty(self.xs.size)
        fs[self.pos] = curve[self.sel]
        fs[self.first] = curve[self.a]
        fs[self.last] = curve[self.b - 1]
        at = np.interp(xq, self.xs, fs).reshape(self.n, -1)
        return np.diff(at, axis=1)


def _segment_cumsum(x: FloatArray, starts: IntArray) -> FloatArray:
    """Cumulative sum restarting at each segment start (every segment begins at 0)."""
    total = np.cumsum(x)
    if starts.size == 0:
        return total
    base = total[starts] - x[starts]
    lengths = np.diff(np.r_[starts, x.size])
    return total - np.repeat(base, lengths)


def consumption(
    series: IntArray,
    t_ms: IntArray,
    values: FloatArray,
    edges: IntArray,
    n_series: int,
    *,
    flags: Int8Array | None = None,
    modulus: FloatArray | None = None,
    max_gap_ms: IntArray | int = 3_600_000,
    replacements: Sequence[Replacement] = (),
) -> Consumption:
    """Readings of cumulative counters → consumption per interval between ``edges``."""
    readings = prepare(series, t_ms, values, flags)
    pairs = counter_pairs(
        readings, n_series, modulus=modulus, max_gap_ms=max_gap_ms, replacements=replacements
    )
    return interval_consumption(readings, pairs, edges, n_series)


def affected_span(readings: Readings, series: int, first_ms: int, last_ms: int) -> tuple[int, int]:
    """The time span whose intervals change when readings of ``series`` between ``first_ms``
    and ``last_ms`` arrive late: from the reading before them to the one after (the pairs
    they split), or the late readings themselves where there is none."""
    mine = readings.series == series
    t = readings.t_ms[mine]
    before = t[t < first_ms]
    after = t[t > last_ms]
    return (
        int(before[-1]) if before.size else first_ms,
        int(after[0]) if after.size else last_ms,
    )


def energy_from_power(
    series: IntArray,
    t_ms: IntArray,
    p_kw: FloatArray,
    edges: IntArray,
    n_series: int,
    *,
    max_gap_ms: IntArray | int = 3_600_000,
) -> Consumption:
    """kWh per interval from instantaneous power (trapezoid between readings): the
    counter-independent figure the cross-check compares the energy register with."""
    readings = prepare(series, t_ms, p_kw)
    s, t, p = readings.series, readings.t_ms, readings.values
    same = s[1:] == s[:-1]
    end = np.flatnonzero(same) + 1
    hours = (t[end] - t[end - 1]) / 3_600_000
    increment = np.maximum((p[end] + p[end - 1]) / 2, 0.0) * hours
    gap_limit = np.broadcast_to(np.asarray(max_gap_ms, dtype=np.int64), (n_series,))
    gap = (t[end] - t[end - 1]) > gap_limit[s[end]]
    pairs = Pairs(
        end,
        s[end],
        t[end - 1],
        t[end],
        np.where(gap, 0.0, increment),
        np.zeros(end.size, np.int8),
        np.zeros(end.size, bool),
        gap,
    )
    return interval_consumption(readings, pairs, edges, n_series)


@dataclass
class CrossCheck:
    ratio: FloatArray  # energy register / integrated power, per interval
    disagree: BoolArray  # beyond the tolerance, both well covered


def cross_check(
    energy: Consumption, power: Consumption, *, tolerance: float = 0.05, min_kwh: float = 0.5
) -> CrossCheck:
    """Energy register against integrated power per interval. Both come from the same
    meter, so they agree within the meters' accuracy and the sampling of the power; a
    disagreement beyond ``tolerance`` (where both are well covered and the energy is not
    negligible) says the register, the CT ratio or the scale is wrong."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = energy.value / power.value
    well = (energy.completeness > 0.9) & (power.completeness > 0.9)
    big = np.nan_to_num(np.maximum(energy.value, power.value)) >= min_kwh
    off = np.abs(np.nan_to_num(ratio, nan=1.0) - 1.0) > tolerance
    return CrossCheck(ratio, well & big & off)
