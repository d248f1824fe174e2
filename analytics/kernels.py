"""Compiled loops (numba) for the few per-reading recursions of the hot path.

Everything else in the engine and the detectors is vectorised numpy. These are the parts
that are a recursion along each row's slots (run lengths, a sliding window, merging a reading
into its cell), which numpy can only express as a couple of dozen full-array passes per
reading; compiled, each is one pass. Each kernel does exactly the arithmetic of the numpy
code it replaced, in the same order (no fast-math), so the findings are the same to the bit.
Compiled once and cached beside this file (``cache=True``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

F = TypeVar("F", bound=Callable[..., Any])


def _compiled(fn: F) -> F:
    return cast(F, numba.njit(cache=True, nogil=True)(fn))


@_compiled
def add_one_per_cell(
    cell: npt.NDArray[np.int64],
    t_ms: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    total: npt.NDArray[np.float64],
    count: npt.NDArray[np.int32],
    low: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    last_t: npt.NDArray[np.int64],
    last_v: npt.NDArray[np.float64],
    duplicates: npt.NDArray[np.bool_],
) -> None:
    """Readings into their cells (flat indices; no two in one cell): a reading at the time
    already in its cell is a duplicate; the others add to the sum and count, widen the
    extremes (NaN spreads, as with np.minimum) and become the newest where they are."""
    for i in range(cell.size):
        c = cell[i]
        t = t_ms[i]
        if t == last_t[c]:
            duplicates[i] = True
            continue
        v = value[i]
        total[c] += v
        count[c] += 1
        lo = low[c]
        if v != v or (lo == lo and v < lo):
            low[c] = v
        hi = high[c]
        if v != v or (hi == hi and v > hi):
            high[c] = v
        if t > last_t[c]:
            last_t[c] = t
            last_v[c] = v


@_compiled
def stuck_runs(
    v: npt.NDArray[np.float64],
    low: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    prev: npt.NDArray[np.float64],
    equal_run: npt.NDArray[np.int64],
    hist_changed: npt.NDArray[np.int8],
    hist_seen: npt.NDArray[np.int8],
    lively: npt.NDArray[np.bool_],
    main: npt.NDArray[np.bool_],
    stuck_slots: int,
    lively_share: float,
    lively_readings: int,
    long_run: npt.NDArray[np.bool_],
    telling: npt.NDArray[np.bool_],
    live: npt.NDArray[np.bool_],
) -> None:
    """The stuck-value check's per-row recursion over a block's slots (rows × slots), from
    and back into the carried state (``prev``, ``equal_run``, the ``lively_window`` history,
    ``lively``): per slot, whether the row is in a long run of equal slots, whether that run
    tells (it used to change, it is the meter's main quantity, it is not zero) and whether
    the row showed life (a reading that is not a repeat). See ``MeterFaults._stuck``."""
    rows, slots = v.shape
    w = hist_changed.shape[1]
    ch = np.empty(w + slots, dtype=np.int8)
    se = np.empty(w + slots, dtype=np.int8)
    for r in range(rows):
        before = prev[r]
        run = equal_run[r]
        is_lively = lively[r]
        sum_ch = 0
        sum_se = 0
        for j in range(w):
            ch[j] = hist_changed[r, j]
            se[j] = hist_seen[r, j]
            sum_ch += ch[j]
            sum_se += se[j]
        for k in range(slots):
            x = v[r, k]
            seen = np.isfinite(x)
            # a slot repeats when its readings are one value, the previous slot's
            equal = seen and low[r, k] == high[r, k] and x == before
            changed = seen and not equal and np.isfinite(before)
            if seen and not equal:
                run = 0
            elif equal:
                run += 1
            # the window of the last w slots up to this one
            ch[w + k] = 1 if changed else 0
            se[w + k] = 1 if seen else 0
            sum_ch += ch[w + k] - ch[k]
            sum_se += se[w + k] - se[k]
            if changed:
                is_lively = (sum_ch >= lively_share * max(sum_se, 1)) and (
                    sum_se >= lively_readings
                )
            long = run >= stuck_slots
            long_run[r, k] = long
            telling[r, k] = long and is_lively and main[r] and abs(x) > 0
            live[r, k] = seen and not equal
            if seen:
                before = x
        prev[r] = before
        equal_run[r] = run
        lively[r] = is_lively
        for j in range(w):
            hist_changed[r, j] = ch[slots + j]
            hist_seen[r, j] = se[slots + j]


@_compiled
def silence_scan(
    values: npt.NDArray[np.float64],
    meter_start: npt.NDArray[np.int64],
    first_slot: int,
    silence_slots: int,
    first_seen: npt.NDArray[np.int64],
    last_seen: npt.NDArray[np.int64],
    readings: npt.NDArray[np.int64],
    meter_seen: npt.NDArray[np.bool_],
    limit: npt.NDArray[np.float64],
    silent: npt.NDArray[np.bool_],
) -> None:
    """The silence check's per-row recursion over a block's slots: rows grouped by meter
    (``meter_start``: each meter's first row, rows of a meter adjacent), and per meter and
    slot whether any row reported, the silence limit (three of its usual spacings, at least
    ``silence_slots``) and whether it is silent; each row's first and latest slot with a
    reading and count of them carried on. See ``MeterFaults._silence``."""
    rows, slots = values.shape
    spacing = np.empty(slots)
    for mi in range(meter_start.size):
        a = meter_start[mi]
        b = meter_start[mi + 1] if mi + 1 < meter_start.size else rows
        newest_m = -1
        for r in range(a, b):
            newest_m = max(newest_m, last_seen[r])
        for k in range(slots):
            meter_seen[mi, k] = False
            spacing[k] = -np.inf
        for r in range(a, b):
            # each row's usual spacing at each slot, from the readings before it
            count = readings[r]
            newest = last_seen[r]
            first = first_seen[r]
            if first < 0:
                for k in range(slots):
                    if np.isfinite(values[r, k]):
                        first = first_slot + k
                        break
            latest = -1
            for k in range(slots):
                row_spacing = (newest - first) / max(count - 1, 1) if count > 1 else 0.0
                spacing[k] = max(spacing[k], row_spacing)
                if np.isfinite(values[r, k]):
                    meter_seen[mi, k] = True
                    count += 1
                    latest = first_slot + k
                    newest = max(newest, latest)
            if latest >= 0:  # the row reported in the block
                if first_seen[r] < 0:
                    first_seen[r] = first
                last_seen[r] = latest
            readings[r] = count
        for k in range(slots):
            if meter_seen[mi, k]:
                newest_m = max(newest_m, first_slot + k)
            lim = max(float(silence_slots), np.ceil(3 * spacing[k]))
            limit[mi, k] = lim
            silent[mi, k] = newest_m >= 0 and (first_slot + k) - newest_m >= lim
