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

NONE = np.iinfo(np.int64).min  # a clock's slot not set yet (``feed_clocks``)


def _compiled(fn: F) -> F:
    # error_model="numpy": x / 0 is inf or NaN, as in the numpy code, not an exception
    return cast(F, numba.njit(cache=True, nogil=True, error_model="numpy")(fn))


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
) -> bool:
    """Readings into their cells (flat indices), where no two share a cell: a reading at the
    time already in its cell is a duplicate; the others add to the sum and count, widen the
    extremes (NaN spreads, as with np.minimum) and become the newest where they are. A cell
    without a reading yet (count 0) starts empty whatever its other arrays hold. Returns
    False, having changed nothing, where two readings do share a cell."""
    # two readings in a cell? Each cell's count is marked (negated) as it is met; the mark
    # is undone as the reading merges (each cell is met once then), or at once if one is
    shared = cell.size
    for i in range(cell.size):
        c = cell[i]
        if count[c] < 0:
            shared = i
            break
        count[c] = -count[c] - 1
    if shared < cell.size:
        for i in range(shared):
            c = cell[i]
            count[c] = -count[c] - 1
        return False
    for i in range(cell.size):
        c = cell[i]
        count[c] = -count[c] - 1
        t = t_ms[i]
        if count[c] == 0:
            total[c] = 0.0
            low[c] = np.inf
            high[c] = -np.inf
            last_t[c] = np.iinfo(np.int64).min
            last_v[c] = np.nan
        elif t == last_t[c]:
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
    return True


@_compiled
def _stuck_row(
    v: npt.NDArray[np.float64],
    low: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    b: int,
    s: int,
    prev: npt.NDArray[np.float64],
    equal_run: npt.NDArray[np.int64],
    hist_changed: npt.NDArray[np.int8],
    hist_seen: npt.NDArray[np.int8],
    lively: npt.NDArray[np.bool_],
    main: npt.NDArray[np.bool_],
    stuck_slots: int,
    lively_share: float,
    lively_readings: int,
    ch: npt.NDArray[np.int8],
    se: npt.NDArray[np.int8],
    long_run: npt.NDArray[np.bool_],
    telling: npt.NDArray[np.bool_],
    live: npt.NDArray[np.bool_],
) -> None:
    """``stuck_runs`` for block row ``b`` (state row ``s``): its slots' flags into the 1-D
    ``long_run``, ``telling``, ``live``; ``ch`` and ``se`` are scratch (window + slots)."""
    slots = v.shape[1]
    w = hist_changed.shape[1]
    before = prev[s]
    run = equal_run[s]
    is_lively = lively[s]
    sum_ch = 0
    sum_se = 0
    for j in range(w):
        ch[j] = hist_changed[s, j]
        se[j] = hist_seen[s, j]
        sum_ch += ch[j]
        sum_se += se[j]
    for k in range(slots):
        x = v[b, k]
        seen = np.isfinite(x)
        # a slot repeats when its readings are one value, the previous slot's
        equal = seen and low[b, k] == high[b, k] and x == before
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
            is_lively = (sum_ch >= lively_share * max(sum_se, 1)) and (sum_se >= lively_readings)
        long = run >= stuck_slots
        long_run[k] = long
        telling[k] = long and is_lively and main[s] and abs(x) > 0
        live[k] = seen and not equal
        if seen:
            before = x
    prev[s] = before
    equal_run[s] = run
    lively[s] = is_lively
    for j in range(w):
        hist_changed[s, j] = ch[slots + j]
        hist_seen[s, j] = se[slots + j]


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
    state_rows: npt.NDArray[np.intp],
) -> None:
    """The stuck-value check's per-row recursion over a block's slots (rows × slots), from
    and back into the carried state (``prev``, ``equal_run``, the ``lively_window`` history,
    ``lively``): per slot, whether the row is in a long run of equal slots, whether that run
    tells (it used to change, it is the meter's main quantity, it is not zero) and whether
    the row showed life (a reading that is not a repeat). Row ``r`` of the block is row
    ``state_rows[r]`` of the state arrays (worked on in place, not gathered and put back).
    See ``MeterFaults._stuck``."""
    rows, slots = v.shape
    w = hist_changed.shape[1]
    ch = np.empty(w + slots, dtype=np.int8)
    se = np.empty(w + slots, dtype=np.int8)
    for r in range(rows):
        _stuck_row(v, low, high, r, state_rows[r], prev, equal_run, hist_changed, hist_seen,
                   lively, main, stuck_slots, lively_share, lively_readings, ch, se,
                   long_run[r], telling[r], live[r])  # fmt: skip


@_compiled
def stuck_meters(
    v: npt.NDArray[np.float64],
    low: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    rows: npt.NDArray[np.int64],
    meter_of: npt.NDArray[np.intp],
    prev: npt.NDArray[np.float64],
    equal_run: npt.NDArray[np.int64],
    hist_changed: npt.NDArray[np.int8],
    hist_seen: npt.NDArray[np.int8],
    lively: npt.NDArray[np.bool_],
    main: npt.NDArray[np.bool_],
    stuck_slots: int,
    lively_share: float,
    lively_readings: int,
    stuck: npt.NDArray[np.bool_],
    live: npt.NDArray[np.bool_],
) -> None:
    """``stuck_runs`` over the block's ``rows`` (block and state rows alike), read in place
    and judged per meter (``meter_of`` each row's; ``stuck`` and ``live``: meters × slots):
    stuck where every reporting row of the meter is in a long run (some reports, none out of
    a run) and one of them tells; live where any row showed life. See
    ``MeterFaults._stuck``."""
    slots = v.shape[1]
    w = hist_changed.shape[1]
    ch = np.empty(w + slots, dtype=np.int8)
    se = np.empty(w + slots, dtype=np.int8)
    long_run = np.empty(slots, dtype=np.bool_)
    telling = np.empty(slots, dtype=np.bool_)
    live_row = np.empty(slots, dtype=np.bool_)
    m = stuck.shape[0]
    seen_any = np.zeros((m, slots), dtype=np.bool_)
    out_of_run = np.zeros((m, slots), dtype=np.bool_)
    tells = np.zeros((m, slots), dtype=np.bool_)
    live[:, :] = False
    for i in range(rows.size):
        r = rows[i]
        _stuck_row(v, low, high, r, r, prev, equal_run, hist_changed, hist_seen, lively, main,
                   stuck_slots, lively_share, lively_readings, ch, se, long_run, telling,
                   live_row)  # fmt: skip
        mi = meter_of[i]
        for k in range(slots):
            seen = np.isfinite(v[r, k])
            seen_any[mi, k] |= seen
            out_of_run[mi, k] |= seen and not long_run[k]
            tells[mi, k] |= telling[k]
            live[mi, k] |= live_row[k]
    for mi in range(m):
        for k in range(slots):
            stuck[mi, k] = seen_any[mi, k] and not out_of_run[mi, k] and tells[mi, k]


@_compiled
def any_by(
    values: npt.NDArray[np.bool_], groups: npt.NDArray[np.intp], out: npt.NDArray[np.bool_]
) -> None:
    """Per group (``out``'s rows) and column: whether any of its rows (``groups``: each
    row's) holds."""
    out[:, :] = False
    for r in range(values.shape[0]):
        g = groups[r]
        for k in range(values.shape[1]):
            out[g, k] |= values[r, k]


@_compiled
def _silence_limit(
    count: int,
    spanned: int,
    n: int,
    ew_mean: float,
    ew_sq: float,
    silence_slots: int,
    spread_k: float,
    spread_gaps: int,
) -> float:
    """A row's silence limit in slots, from its ``count`` readings and the slots its counted
    gaps span (three mean gaps), and the recent gaps' weighted mean and mean square (their
    mean plus ``spread_k`` standard deviations, if longer, once ``spread_gaps`` gaps (``n``)
    were seen since the spacing last restarted, the restart's own gaps not counted); at
    least ``silence_slots``."""
    limit = float(silence_slots)
    if count > 1:
        gaps = count - 1
        mean = spanned / gaps
        limit = max(limit, np.ceil(3 * mean))
        # a random-gap meter (one that reports on change) is judged by the spread of its
        # recent gaps, a regular poller (spread ~0) by three spacings: the square root only
        # where the spread term can be the longer (k·spread > 2·mean), as it seldom is
        if n >= spread_gaps:
            var = ew_sq - ew_mean * ew_mean
            if spread_k * spread_k * var > 4 * ew_mean * ew_mean:
                limit = max(limit, np.ceil(ew_mean + spread_k * np.sqrt(var)))
    return limit


@_compiled
def silence_scan(
    values: npt.NDArray[np.float64],
    meter_start: npt.NDArray[np.int64],
    first_slot: int,
    silence_slots: int,
    lasting_gaps: int,
    spread_k: float,
    spread_gaps: int,
    spread_window: int,
    first_seen: npt.NDArray[np.int64],
    last_seen: npt.NDArray[np.int64],
    readings: npt.NDArray[np.int64],
    skipped: npt.NDArray[np.int64],
    gap_mean: npt.NDArray[np.float64],
    gap_sq: npt.NDArray[np.float64],
    gap_n: npt.NDArray[np.int64],
    over_run: npt.NDArray[np.int64],
    over_from: npt.NDArray[np.int64],
    meter_seen: npt.NDArray[np.bool_],
    limit: npt.NDArray[np.float64],
    silent: npt.NDArray[np.bool_],
) -> None:
    """The silence check's per-row recursion over a block's slots: rows grouped by meter
    (``meter_start``: each meter's first row, rows of a meter adjacent), and per meter and
    slot whether any row reported, the silence limit (the largest of its rows': three of the
    row's usual spacings, or, once ``spread_gaps`` gaps were seen since the spacing last
    restarted, its recent mean gap plus ``spread_k`` standard deviations of its recent gaps; at
    least ``silence_slots``) and whether it is silent; each row's first and latest slot with a
    reading, count of them, ``skipped`` slots, and its gaps' mean (``gap_mean``) and mean square
    (``gap_sq``) over the ``gap_n`` gaps since the restart, weighted 1/``spread_window`` per
    reading past that many (they forget: a change of the gaps' spread within the limit fades —
    silences never enter them), carried on: a gap longer than the row's limit adds only the
    limit to its usual spacing, nothing to the moments, the rest is skipped (one long outage
    made a 1 s meter's spacing its mean over the outage, and hid every later silence shorter
    than that; its square in the spread let a flaky link's drops widen the limit until they
    fitted). ``lasting_gaps`` such gaps back to back (``over_run``, counted from the reading at
    ``over_from``) are a new rate: the spacing restarts from them, whole (skipping them all, a
    meter gone from 1 s to 60 s for good was silent at every reading for months), and the spread
    afresh after them (a flapping link's gaps taken for spread hid 10-20 minute outages of the
    1-minute poller it was again for weeks). See
    ``MeterFaults._silence``."""
    rows, slots = values.shape
    meter_limit = np.empty(slots)
    for mi in range(meter_start.size):
        a = meter_start[mi]
        b = meter_start[mi + 1] if mi + 1 < meter_start.size else rows
        newest_m = -1
        for r in range(a, b):
            newest_m = max(newest_m, last_seen[r])
        for k in range(slots):
            meter_seen[mi, k] = False
            meter_limit[k] = float(silence_slots)
        for r in range(a, b):
            # each row's limit at each slot, from the readings before it
            count = readings[r]
            newest = last_seen[r]
            first = first_seen[r]
            if first < 0:
                for k in range(slots):
                    if np.isfinite(values[r, k]):
                        first = first_slot + k
                        break
            latest = -1
            skip = skipped[r]
            ew_m = gap_mean[r]
            sq = gap_sq[r]
            run = over_run[r]
            run_from = over_from[r]
            n = gap_n[r]
            # the limit moves only with a reading: worked out again after each one
            row_limit = _silence_limit(count, newest - first - skip, n, ew_m, sq, silence_slots,
                                       spread_k, spread_gaps)  # fmt: skip
            for k in range(slots):
                meter_limit[k] = max(meter_limit[k], row_limit)
                if np.isfinite(values[r, k]):
                    meter_seen[mi, k] = True
                    if count > 0:
                        gap = first_slot + k - newest
                        excess = max(gap - int(row_limit), 0)
                        restart = False
                        if excess == 0:
                            run = 0
                        else:
                            if run == 0:
                                run_from = newest
                            run += 1
                            skip += excess
                            if run >= lasting_gaps:
                                # the spacing and spread restart from the run's gaps
                                first = run_from
                                count = run  # the run's readings but this one
                                skip = 0
                                restart = True
                        if restart:
                            # the spread starts afresh after the run (a flapping link's
                            # gaps are no spread of the new rate)
                            ew_m = 0.0
                            sq = 0.0
                            n = 0
                            run = 0
                        elif excess == 0:
                            # moments that forget: the mean of the gaps since the restart
                            # until spread_window of them, then weighted 1/spread_window
                            # (a change of the spread within the limit fades); a
                            # silence is no part of the spread (its limit's square, counted,
                            # let a flaky link's drops widen the limit until they fitted)
                            n += 1
                            w = 1.0 / min(n, spread_window)
                            ew_m += w * (gap - ew_m)
                            sq += w * (gap * gap - sq)
                    count += 1
                    latest = first_slot + k
                    newest = max(newest, latest)
                    row_limit = _silence_limit(count, newest - first - skip, n, ew_m, sq,
                                               silence_slots, spread_k, spread_gaps)  # fmt: skip
            if latest >= 0:  # the row reported in the block
                first_seen[r] = first
                last_seen[r] = latest
            readings[r] = count
            skipped[r] = skip
            gap_mean[r] = ew_m
            gap_sq[r] = sq
            gap_n[r] = n
            over_run[r] = run
            over_from[r] = run_from
        for k in range(slots):
            if meter_seen[mi, k]:
                newest_m = max(newest_m, first_slot + k)
            limit[mi, k] = meter_limit[k]
            silent[mi, k] = newest_m >= 0 and (first_slot + k) - newest_m >= meter_limit[k]


@_compiled
def _maximum(a: float, b: float) -> float:
    """np.maximum of two numbers (NaN spreads)."""
    if a != a or b != b:
        return np.nan
    return a if a >= b else b


@_compiled
def _minimum(a: float, b: float) -> float:
    """np.minimum of two numbers (NaN spreads)."""
    if a != a or b != b:
        return np.nan
    return a if a <= b else b


@_compiled
def _fmax(a: float, b: float) -> float:
    """np.fmax of two numbers (NaN passed over)."""
    if a != a:
        return b
    if b != b:
        return a
    return a if a >= b else b


@_compiled
def _fmin(a: float, b: float) -> float:
    """np.fmin of two numbers (NaN passed over)."""
    if a != a:
        return b
    if b != b:
        return a
    return a if a <= b else b


@_compiled
def _clip(a: float, low: float, high: float) -> float:
    """np.clip of a number."""
    return _minimum(_maximum(a, low), high)


@_compiled
def _remeet(
    kind: int,
    r: int,
    after_a_while: bool,
    ref_trusted: bool,
    current: bool,
    least: float,
    reach: float,
    lowest: float,
    profile: npt.NDArray[np.float64],
    offsets: npt.NDArray[np.float64],
    recent: npt.NDArray[np.float64],
    ref_then: npt.NDArray[np.float64],
    own_then: npt.NDArray[np.float64],
) -> None:
    """A day type's profile (``kind`` > 0) met on a new day. After a while (not the day
    before), each bin's prediction (profile + offset) follows the change the workdays'
    recent level (``recent``) saw in that bin since this type's last day began
    (``ref_then``): as a ratio for a row that has never read well below 0 (its lowest reading
    ``lowest`` not below −``least``, decided per row, not per bin: a plant stepping to 0 or
    to half keeps no trace of its old shape; one CT offset glitch of −0.001 is no net meter)
    where that level was well above the row's scale (over ``least``: a ratio off a near-0
    workday bin is noise, 100 → 4755; below it nothing is followed: after a shutdown the
    workdays' restart is no weekend's), and no further than the workdays' own change or
    ``reach`` (a few scales); a row seen well below 0 (a net meter) as a difference. On
    either path never below ``lowest``: a difference after a shutdown took a Saturday to
    −107 kW, the scale grew and the restart went unseen. What this type learnt itself on its
    last day (``own_then``: its prediction as that day began) in the same direction counts as
    followed already (a step on a holiday is learnt by the holiday's profile that day, then by
    the workdays': not twice). Then both are taken anew for this day; the workdays' level for
    the whole day, or not at all: only if it explained the day's first reading
    (``current``)."""
    off = offsets[kind, r]
    # the offset is folded into the profile: it starts again at 0 from what is predicted
    # (kept beside a moved profile, both learnt the same miss and overshot)
    fold = after_a_while and ref_trusted
    rate_like = lowest >= -least
    for b in range(profile.shape[1]):
        own = profile[kind, b, r]
        ref = recent[b, r]
        then, start = ref_then[kind, b, r], own_then[kind, b, r]
        now = own + off
        if fold and not np.isnan(own):
            if np.isnan(start):
                # learnt from nothing that day: it followed nothing yet (begun at the workdays'
                # level, a Sunday unlike the workdays learnt their change as its own)
                start = now
            if np.isnan(ref) or np.isnan(then) or (rate_like and not then > least):
                # (a rate's workday bin near 0 then: nothing to scale by, and the workdays'
                # difference is no weekend's: after a shutdown, a weekend's restart is learnt)
                pass
            elif rate_like and ref >= 0 and now >= 0:
                g = ref / then
                g_own = now / start if start > 0 else (1.0 if now == 0 else np.inf)
                if g < 1 and g_own < 1:
                    g = 1.0 if g_own <= g else g / g_own
                elif g > 1 and g_own > 1:
                    g = 1.0 if g_own >= g else g / g_own
                # a profile far above the workdays' bin (a weekend load) is moved no further
                # than the workdays' own change, or a few scales
                most = _maximum(abs(ref - then), reach)
                now = now + _clip(now * (g - 1.0), -most, most)
            else:
                d = ref - then
                d_own = now - start
                if d < 0 and d_own < 0:
                    d = 0.0 if d_own <= d else d - d_own
                elif d > 0 and d_own > 0:
                    d = 0.0 if d_own >= d else d - d_own
                now = now + d
            if now < lowest:
                now = lowest  # what the meter never read is not expected
            profile[kind, b, r] = now
        ref_then[kind, b, r] = ref if current else np.nan
        own_then[kind, b, r] = now
    if fold:
        offsets[kind, r] = 0.0


@_compiled
def baseline_slots(
    values: npt.NDArray[np.float64],
    ids: npt.NDArray[np.int64],
    day: npt.NDArray[np.int64],
    kinds: npt.NDArray[np.int64],
    bins: npt.NDArray[np.int64],
    rates: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    fs: npt.NDArray[np.float64],
    ints: npt.NDArray[np.int64],
    days_seen: npt.NDArray[np.int64],
    last_day: npt.NDArray[np.int64],
    profile: npt.NDArray[np.float64],
    profile_n: npt.NDArray[np.int32],
    offsets: npt.NDArray[np.float64],
    recent: npt.NDArray[np.float64],
    ref_then: npt.NDArray[np.float64],
    own_then: npt.NDArray[np.float64],
    row_open: npt.NDArray[np.bool_],
    meter_open: npt.NDArray[np.bool_],
    meter_of: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """The baseline detector's recursion (``BaselineDetector``), slot after slot of a block
    (``values``: block rows × slots; ``ids``: the detector row of each block row), on its
    state in place: ``fs`` the float state rows (``baseline._FLOAT_ROWS``), ``ints`` the
    integer ones (``baseline._INT_ROWS``); ``rates`` and ``counts`` as ``baseline._kernel_args``
    orders them; ``ref_then`` and ``own_then`` what ``_remeet`` keeps of each day type's last
    day. Returns the meters whose event opened, one row each (slot, row that opened
    it — the first —, deviation, expected, scales, reason), and those whose event closed
    (slot, meter)."""
    level_rate, offset_rate, scale_rate, a_f, decay, slow_rate = (
        rates[0],
        rates[1],
        rates[2],
        rates[3],
        rates[4],
        rates[5],
    )
    season_rate, record_margin, z_min, z_close = rates[6], rates[7], rates[8], rates[9]
    margin, peak_margin, record_growth, clip, range_floor, resolution, quantum_scales = (
        rates[10],
        rates[11],
        rates[12],
        rates[13],
        rates[14],
        rates[15],
        rates[16],
    )
    abs_resolution, quantum_share, recent_rate, extreme_scales = (
        rates[17],
        rates[18],
        rates[19],
        rates[20],
    )
    warm_slots, hold_slots, quiet_slots, near = counts[0], counts[1], counts[2], counts[3]
    season_bins, season_days, warmup_min_slots, record_skip, quantum_repeats = (
        counts[4],
        counts[5],
        counts[6],
        counts[7],
        counts[8],
    )
    peak = 1.0 + peak_margin
    rows, slots = values.shape
    fired = np.empty((16, 6))
    closed = np.empty((16, 2), dtype=np.int64)
    n_fired = 0
    n_closed = 0
    # the rows that opened an event in the slot: (row, scales, reason)
    opened = np.empty((rows, 3))
    for k in range(slots):
        kind, b, today = kinds[k], bins[k], day[k]
        b_prev = (b - near) % season_bins
        b_next = (b + near) % season_bins
        any_change = False
        n_opened = 0
        for i in range(rows):
            r = ids[i]
            fs[0, r] *= decay  # record
            fs[1, r] *= decay  # record_cold
            ints[1, r] = max(ints[1, r] - 1, 0)  # quiet
            x = values[i, k]
            if np.isnan(x):
                continue
            seen = ints[0, r] + 1
            ints[0, r] = seen
            first = seen == 1
            if last_day[kind, r] != today:
                # a profile met again after a while (a Saturday, a holiday weeks on) follows
                # the lasting change the workdays saw meanwhile, and keeps its own shape and
                # level otherwise: a step for good is not remarked there, a plant run like a
                # workday through a holiday is flagged (learnt afresh, none was found)
                if kind > 0:
                    # the workdays' recent level is a base to follow a change from only where
                    # it explains this first reading (within z_min scales): else they have not
                    # seen a change this day type sees already (a plant started on a Saturday,
                    # its workdays still at standby)
                    tol = z_min * _maximum(fs[5, r], fs[8, r])
                    # the row's scale, floored by its resolution: a ratio is taken off a
                    # workday level well above it only, and moves a few of it at most
                    eps = _maximum(resolution * abs(fs[2, r]), abs_resolution)
                    res = _maximum(
                        _maximum(fs[5, r], fs[8, r]), _maximum(eps, fs[18, r] / quantum_scales)
                    )
                    _remeet(kind, r, today - last_day[kind, r] > 1, days_seen[0, r] > season_days,
                            abs(x - recent[b, r]) <= tol, z_min * res, clip * res, fs[3, r],
                            profile, offsets, recent, ref_then, own_then)  # fmt: skip
                days_seen[kind, r] += 1
            last_day[kind, r] = today
            level = x if first else fs[2, r]
            lo, hi = fs[3, r], fs[4, r]
            span = hi - lo
            if not np.isfinite(span):
                span = 0.0
            near_prev = profile[kind, b_prev, r]
            own_v = profile[kind, b, r]
            near_next = profile[kind, b_next, r]
            own_n = profile_n[kind, b, r]
            own = days_seen[kind, r] > season_days and own_n > 0
            # the offset is the day type's own: a shared one carried the workday profile's lag
            # after a step onto a Saturday profile already at the new level
            offset = offsets[kind, r]
            if own:
                band_lo = _fmin(_fmin(near_prev, own_v), near_next) + offset
                band_hi = _fmax(_fmax(near_prev, own_v), near_next) + offset
            else:
                # what the trusted profiles of the other day types and the level explain
                band_lo = level
                band_hi = level
                for t in range(days_seen.shape[0]):
                    if days_seen[t, r] > season_days and not np.isnan(profile[t, b, r]):
                        p0, p1, p2 = profile[t, b_prev, r], profile[t, b, r], profile[t, b_next, r]
                        band_lo = _minimum(band_lo, _fmin(_fmin(p0, p1), p2))
                        band_hi = _maximum(band_hi, _fmax(_fmax(p0, p1), p2))
            if x > band_hi:
                dev = x - band_hi
            elif x < band_lo:
                dev = x - band_lo
            else:
                dev = 0.0
            scale = fs[5, r]
            level_scale = fs[6, r]
            scale_slow = fs[8, r]
            # the slower scale is a floor: after a calm day the usual swings are no deviation
            unit = _maximum(scale if own else _maximum(scale, level_scale), scale_slow)
            # the range floor counts this reading: the first change of a series that has read
            # one value is then 1 / range_floor scales, not |dev| / 1e-12; and no scale is
            # below the float's resolution (a share of the level of the order of its rounding,
            # and an absolute epsilon where the level is 0: a virtual meter's a − b residue)
            # nor below a step of the series' own quantum / quantum_scales. The share is no
            # meter's accuracy: 0.25 % hid 30-scale dips of a steady 50 Hz or 10 MW series
            quantum = fs[18, r]
            eps = _maximum(resolution * abs(level), abs_resolution)
            res = _maximum(eps, quantum / quantum_scales)
            floor = _maximum(range_floor * (_maximum(hi, x) - _minimum(lo, x)), res)
            z = 0.0 if first else abs(dev) / (unit + 1e-12 + floor)
            own_seen_prev = ints[2, r]
            f_level = x if first else fs[7, r]
            f_level_new = f_level + a_f * (x - f_level)
            lvl_lo, lvl_hi = fs[9, r], fs[10, r]
            lvl_span = lvl_hi - lvl_lo
            jump = abs(x - fs[11, r])
            if np.isnan(jump):
                jump = 0.0
            jump_hi = fs[12, r]
            # one step of the series' own (repeated) quantum off its band, reached by one
            # step, is a quantised sensor's flicker: nothing, neither a deviation nor a record
            # (under 1.5 steps: the band, learnt from quantised readings, lies off their grid)
            within = quantum > 0 and _maximum(abs(dev), jump) < 1.5 * quantum
            if within:
                z = 0.0
            f_dev = fs[13, r]
            f_dev_new = f_dev + a_f * (abs(dev) - f_dev) if own else f_dev
            dev_hi = fs[14, r]
            # one reason per new extreme, in the order the evidence names them
            reason = -1
            # beyond the old extreme by a share of the range and by extreme_scales scales:
            # a noisy series' range grows with its noise, by less than its scale
            past = extreme_scales * (unit + floor)
            if (x > hi + _maximum(margin * span, past)) or (x < lo - _maximum(margin * span, past)):
                reason = 0
            elif lvl_span > 0 and (
                (f_level_new > lvl_hi + _maximum(margin * lvl_span, past))
                or (f_level_new < lvl_lo - _maximum(margin * lvl_span, past))
            ):
                reason = 1
            elif jump_hi > 0 and jump > jump_hi * peak:
                reason = 2
            elif own and own_seen_prev > warm_slots and dev_hi > 0 and f_dev_new > dev_hi * peak:
                reason = 3
            if reason >= 0 and (within or _maximum(abs(dev), jump) <= z_min * res):
                reason = -1  # within the resolution or a quantum: no extreme
            extreme = reason >= 0
            warm = seen > warm_slots
            record_own, record_cold = fs[0, r], fs[1, r]
            own_seen = own_seen_prev + (1 if own else 0)
            ints[2, r] = own_seen
            if own:
                record = record_own if own_seen > warm_slots else _maximum(record_own, record_cold)
            else:
                record = record_cold
            quiet = ints[1, r]
            z_ok = own and z > _maximum(record * record_margin, z_min) and quiet == 0
            fire = warm and (z_ok or extreme)
            was_open = row_open[r]
            opening = fire and not was_open
            hold = hold_slots if opening else max(ints[3, r] - 1, 0)
            closing = was_open and not fire and hold <= 0 and z < z_close
            is_open = (was_open or opening) and not closing
            if opening and not extreme:
                ints[1, r] = quiet_slots
            row_open[r] = is_open
            ints[3, r] = hold
            rec_open = _maximum(record, z_min) if opening else fs[15, r]
            fs[15, r] = rec_open
            settled = seen > record_skip
            # a deviation silenced by the day of quiet is one the operator heard of today, as
            # one that opened: it takes the record no further than an open one could (else a
            # repeat two days on must beat the silenced one by record_margin, and does not)
            silenced = own and warm and quiet > 0 and z > _maximum(record * record_margin, z_min)
            z_rec = _minimum(z, record_growth * rec_open) if is_open or silenced else z
            if settled and own:
                fs[0, r] = _maximum(record_own, z_rec)
            if settled and not own:
                fs[1, r] = _maximum(record_cold, z_rec)
            fs[16, r] = dev
            fs[17, r] = band_hi if dev > 0 else band_lo
            # learn: scale, level, offset, profile, ranges
            grown = seen > warmup_min_slots
            rate_scale = _maximum(1.0 / seen, scale_rate)
            if not first and unit <= floor:
                # a flat series (its scale under the floor: it has read one value, or nearly)
                # that changes: its scale is what the change says (as if it had been a clip's
                # worth of misses), not 0 regrown from the floor over days while its event
                # stays open and hides what comes next
                seed = abs(x - level) / clip
                scale = _maximum(scale, seed)
                level_scale = _maximum(level_scale, seed)
            # misses are clipped at clip scales, but never at 0 scales: a series that has read
            # one value (a meter at 0 until its plant starts) has learnt a scale of 0, and
            # clipped at 0 it would learn nothing from any miss ever after (nor its profile
            # move); the range floor, this reading in the range, is not 0 once it has changed
            bound = clip * _maximum(scale, floor)
            resid = x - (own_v + offset) if own else x - level
            if grown:
                resid = _clip(resid, -bound, bound)
            fs[5, r] = scale + rate_scale * (abs(resid) - scale)
            fs[8, r] = scale_slow + _maximum(1.0 / seen, slow_rate) * (abs(resid) - scale_slow)
            miss = x - level
            if grown:
                level_bound = clip * _maximum(level_scale, floor)
                miss = _clip(miss, -level_bound, level_bound)
            fs[6, r] = level_scale + rate_scale * (abs(miss) - level_scale)
            fs[2, r] = level + level_rate * (x - level)
            if own and not is_open:
                offsets[kind, r] = offset + offset_rate * ((x - own_v) - offset)
            known = own_n > 0
            step = x - own_v if known else x
            bound += abs(offset)
            if known and grown:
                step = _clip(step, -bound, bound)
            rate = _maximum(1.0 / (own_n + 1), season_rate) if known else 1.0
            profile[kind, b, r] = own_v + rate * step if known else x
            if kind == 0:
                # the workdays' recent level per bin (a couple of days): what a day type met
                # again after a while follows (the profile itself lags a change for weeks)
                # (unclipped: clipped at the scale before a step it lagged a shutdown or a
                # restart for weeks, and a profile met again followed that lag)
                last = recent[b, r]
                recent[b, r] = x if np.isnan(last) else last + recent_rate * (x - last)
            profile_n[kind, b, r] = own_n + 1
            fs[3, r] = _minimum(lo, x)
            fs[4, r] = _maximum(hi, x)
            fs[7, r] = f_level_new
            if settled:
                fs[9, r] = _minimum(lvl_lo, f_level_new)
                fs[10, r] = _maximum(lvl_hi, f_level_new)
                fs[12, r] = _maximum(jump_hi, jump)
            fs[11, r] = x
            if jump > eps:
                # the quantum is a step size seen quantum_repeats times (the smallest such),
                # and at most quantum_share of the largest value seen: a first change off a
                # constant (0 → 500), a load's stage (25/50 kW, pumps 1/2) or a load switching
                # on and off is no sensor's step, and one stage's change for good is alerted
                cand, cand_n = fs[19, r], ints[4, r]
                if cand > 0 and abs(jump - cand) <= 1e-6 * cand:
                    cand_n += 1
                elif cand == 0 or jump < cand:
                    cand, cand_n = jump, 1
                fs[19, r] = cand
                ints[4, r] = cand_n
                top = _maximum(abs(fs[3, r]), abs(fs[4, r]))
                if cand_n >= quantum_repeats and cand <= quantum_share * top:
                    fs[18, r] = cand if quantum == 0 else _minimum(quantum, cand)
            fs[13, r] = f_dev_new
            if settled and own:
                fs[14, r] = _maximum(dev_hi, f_dev_new)
            if opening or closing:
                any_change = True
            if opening:
                opened[n_opened, 0] = r
                opened[n_opened, 1] = z
                opened[n_opened, 2] = reason
                n_opened += 1
        if not any_change:
            continue
        # meters: one event per meter, open while any of its rows is
        now = np.zeros(meter_open.size, dtype=np.bool_)
        for r in range(row_open.size):
            if row_open[r]:
                now[meter_of[r]] = True
        for m in range(meter_open.size):
            if now[m] and not meter_open[m]:
                for j in range(n_opened):
                    r = int(opened[j, 0])
                    if meter_of[r] == m:
                        if n_fired == fired.shape[0]:
                            fired = np.concatenate((fired, np.empty_like(fired)))
                        fired[n_fired, 0] = k
                        fired[n_fired, 1] = r
                        fired[n_fired, 2] = fs[16, r]
                        fired[n_fired, 3] = fs[17, r]
                        fired[n_fired, 4] = opened[j, 1]
                        fired[n_fired, 5] = opened[j, 2]
                        n_fired += 1
                        break
        for m in range(meter_open.size):
            if meter_open[m] and not now[m]:
                if n_closed == closed.shape[0]:
                    closed = np.concatenate((closed, np.empty_like(closed)))
                closed[n_closed, 0] = k
                closed[n_closed, 1] = m
                n_closed += 1
            meter_open[m] = now[m]
    return fired[:n_fired], closed[:n_closed]


@_compiled
def swap_scan(
    v: npt.NDArray[np.float64],
    good: npt.NDArray[np.float64],
    suspect: npt.NDArray[np.bool_],
    far: float,
    near: float,
    flagged: npt.NDArray[np.bool_],
    clear: npt.NDArray[np.bool_],
) -> None:
    """The word-swap check's per-row recursion (``MeterFaults._swaps``): a reading far from
    the row's last good value whose 32-bit float with its 16-bit words swapped back is near
    it is flagged; any other reading becomes the good value. Rows whose readings never go
    ``far`` from the one before (nor the carried good value), and whose meter is not in a
    swap episode (``suspect``), cannot flag one: their good value is their last reading."""
    rows, slots = v.shape
    inv_far = 1 / far
    f32 = np.empty(1, dtype=np.float32)
    u32 = f32.view(np.uint32)
    for i in range(rows):
        # a candidate: a value ten times off its forward-filled previous one
        candidate = suspect[i]
        previous = good[i]
        last = np.nan
        for k in range(slots):
            x = v[i, k]
            flagged[i, k] = False
            clear[i, k] = False
            if not np.isfinite(x):
                continue
            ratio = abs(x) / abs(previous)
            if ratio > far or ratio < inv_far:
                candidate = True
            previous = x
            last = abs(x)
        if not candidate:
            if last == last:
                good[i] = last
            for k in range(slots):
                clear[i, k] = np.isfinite(v[i, k])
            continue
        g = good[i]
        for k in range(slots):
            if not np.isfinite(v[i, k]):
                continue
            x = abs(v[i, k])
            hit = False
            if np.isfinite(g) and g > 0 and (x > far * g or x < g / far):
                f32[0] = v[i, k]
                bits = u32[0]
                u32[0] = ((bits << np.uint32(16)) | (bits >> np.uint32(16))) & np.uint32(0xFFFFFFFF)
                b = abs(np.float64(f32[0]))
                hit = g / near <= b <= g * near
            if hit:
                flagged[i, k] = True
            else:
                clear[i, k] = True
                g = x
        good[i] = g


@_compiled
def counter_scan(
    v: npt.NDArray[np.float64],
    first_slot: int,
    prev: npt.NDArray[np.float64],
    prev_slot: npt.NDArray[np.int64],
    prev_inc: npt.NDArray[np.float64],
    jump_factor: float,
    gap_slots: int,
) -> npt.NDArray[np.float64]:
    """The counter check's per-row recursion (``MeterFaults._counters``): each reading
    against the row's previous one (carried across blocks and gaps) and its usual increment
    per slot (the last non-negative one before it). Returns the readings that go back or
    leap, one row each: row, slot, old and new reading, slots since the old one, leap (1) or
    not (0), usual increment, expected increment; in row order, then slot order."""
    rows, slots = v.shape
    found = np.empty((16, 8))
    n = 0
    huge = np.finfo(np.float64).max
    for i in range(rows):
        before = prev[i]
        before_slot = prev_slot[i]
        usual = prev_inc[i]
        for k in range(slots):
            x = v[i, k]
            if not np.isfinite(x):
                continue
            gap = (first_slot + k) - before_slot
            inc = x - before
            valid = np.isfinite(before)
            rate = np.nan
            if valid and inc >= 0:
                rate = inc / max(gap, 1)
            tol = _maximum(1e-6 * abs(before), 1e-3)
            back = valid and inc < -tol
            # the usual increment as a number (np.nan_to_num: NaN 0, ±inf the largest)
            u = 0.0 if usual != usual else (huge if usual == np.inf else usual)
            if u == -np.inf:
                u = -huge
            expected = u * gap
            leap = (
                valid
                and inc > jump_factor * _maximum(expected, tol)
                and gap < gap_slots
                and np.isfinite(usual)
                and usual > 0
            )
            if back or leap:
                if n == found.shape[0]:
                    found = np.concatenate((found, np.empty_like(found)))
                found[n, 0] = i
                found[n, 1] = k
                found[n, 2] = before
                found[n, 3] = x
                found[n, 4] = gap
                found[n, 5] = 1.0 if leap else 0.0
                found[n, 6] = usual
                found[n, 7] = expected
                n += 1
            if np.isfinite(rate):
                usual = rate
            before = x
            before_slot = first_slot + k
        prev[i] = before
        prev_slot[i] = before_slot
        prev_inc[i] = usual
    return found[:n]


@_compiled
def demand_running(
    values: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    low: npt.NDArray[np.float64],
    count: npt.NDArray[np.int32],
    a: int,
    b: int,
    ceiling: npt.NDArray[np.float64],
    same: npt.NDArray[np.bool_],
    carry_psum: npt.NDArray[np.float64],
    carry_slots: npt.NDArray[np.int64],
    carry_pmax: npt.NDArray[np.float64],
    carry_samples: npt.NDArray[np.int64],
    carry_last: npt.NDArray[np.float64],
    psum: npt.NDArray[np.float64],
    slots: npt.NDArray[np.int64],
    pmax: npt.NDArray[np.float64],
    samples: npt.NDArray[np.int64],
    last: npt.NDArray[np.float64],
) -> None:
    """A demand block's running sums over a block's slots ``a:b`` in one pass (``peaks.
    segments``' numpy code, its arithmetic in its order): per row and slot the Σ of slot means
    with data, their number, the highest reading, the readings and the latest mean, each
    continued from the carried block where the row is still in it (``same``). A slot whose
    extreme is above the row's ``ceiling`` (none where empty) counts as empty."""
    rows = values.shape[0]
    bounded = ceiling.size > 0
    for r in range(rows):
        c_psum = carry_psum[r] if same[r] else 0.0
        c_slots = carry_slots[r] if same[r] else 0
        c_pmax = carry_pmax[r] if same[r] else -np.inf
        c_samples = carry_samples[r] if same[r] else 0
        held = carry_last[r] if same[r] else np.nan
        run_sum = 0.0
        run_slots = 0
        run_max = -np.inf
        run_samples = 0
        for k in range(b - a):
            x = values[r, a + k]
            if bounded:
                hi = abs(high[r, a + k])
                lo = abs(low[r, a + k])
                # np.fmax: the other where one is NaN
                extreme = lo if hi != hi else (hi if lo != lo else _maximum(hi, lo))
                if extreme > ceiling[r]:
                    x = np.nan
            seen = np.isfinite(x)
            # np.cumsum starts from the first value itself, then adds in order
            y = x if seen else 0.0
            run_sum = y if k == 0 else run_sum + y
            psum[r, k] = run_sum + c_psum
            if seen:
                run_slots += 1
                run_samples += count[r, a + k]
                held = x
            slots[r, k] = run_slots + c_slots
            samples[r, k] = run_samples + c_samples
            m = _maximum(high[r, a + k] if seen else -np.inf, c_pmax)
            run_max = m if k == 0 else _maximum(run_max, m)
            pmax[r, k] = run_max
            last[r, k] = held


@_compiled
def gather_block(
    total: npt.NDArray[np.float64],
    count: npt.NDArray[np.int32],
    low: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    last_v: npt.NDArray[np.float64],
    counter_rows: npt.NDArray[np.bool_],
    src: npt.NDArray[np.intp],
    dst: npt.NDArray[np.intp],
    values: npt.NDArray[np.float64],
    out_count: npt.NDArray[np.int32],
    out_low: npt.NDArray[np.float64],
    out_high: npt.NDArray[np.float64],
) -> None:
    """Rows ``src`` of a table's slot accumulators (rows × the block's slots) read as a
    block's rows ``dst``: the mean of an instant quantity's readings or a counter's last,
    their count and extremes, NaN where no reading came (``SlotArrays.block``)."""
    slots = total.shape[1]
    for j in range(src.size):
        s = src[j]
        d = dst[j]
        for k in range(slots):
            n = count[s, k]
            out_count[d, k] = n
            if n == 0:
                values[d, k] = np.nan
                out_low[d, k] = np.nan
                out_high[d, k] = np.nan
            else:
                values[d, k] = last_v[s, k] if counter_rows[s] else total[s, k] / n
                out_low[d, k] = low[s, k]
                out_high[d, k] = high[s, k]


@_compiled
def window_medians(
    known: npt.NDArray[np.float64], n: int, least: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Per row, over every window of ``n`` columns: whether it holds at least ``least``
    finite values, and their median where it does (0 where not) — as ``np.nanmedian``
    computes it: the mean of the low and high middle values, (low + high) / 2."""
    rows, cols = known.shape
    out = np.zeros((rows, cols - n + 1))
    enough = np.zeros((rows, cols - n + 1), dtype=np.bool_)
    buf = np.empty(n)
    for r in range(rows):
        for w in range(cols - n + 1):
            c = 0
            for j in range(n):
                x = known[r, w + j]
                if np.isfinite(x):
                    # insertion into the sorted finite values so far
                    p = c
                    while p > 0 and buf[p - 1] > x:
                        buf[p] = buf[p - 1]
                        p -= 1
                    buf[p] = x
                    c += 1
            if c >= least:
                enough[r, w] = True
                high = c // 2
                low = high if c % 2 == 1 else high - 1
                out[r, w] = (buf[low] + buf[high]) / 2.0
    return out, enough


@_compiled
def note_times(
    gateway: npt.NDArray[np.int64],
    t_ms: npt.NDArray[np.int64],
    times: npt.NDArray[np.int64],
    interval: npt.NDArray[np.int64],
) -> None:
    """Each gateway's new distinct batch times appended (in time order) to its row of recent
    ``times`` (the oldest shifted out), and its interval renewed where a time was appended:
    the shortest spacing of its row once it has two spacings at least (``Clocks``)."""
    n = gateway.size
    order = np.arange(n)
    for i in range(1, n):
        if t_ms[i] < t_ms[i - 1]:
            # a gateway's times in order; gateways are independent, so by time is enough
            order = np.argsort(t_ms, kind="mergesort")
            break
    k = times.shape[1]
    never = times.dtype.type(-(2**62))
    changed = np.zeros(n, dtype=np.int64)
    c = 0
    for i in range(n):
        g = gateway[order[i]]
        t = t_ms[order[i]]
        if t > times[g, k - 1]:
            for j in range(k - 1):
                times[g, j] = times[g, j + 1]
            times[g, k - 1] = t
            changed[c] = g
            c += 1
    for i in range(c):
        g = changed[i]
        found = 0
        shortest = np.inf
        for j in range(k - 1):
            if times[g, j] > never:
                s = float(times[g, j + 1] - times[g, j])
                found += 1
                if s < shortest:
                    shortest = s
        if found >= 2:
            interval[g] = np.int64(shortest)


@_compiled
def clock_runs(
    gateway: npt.NDArray[np.int64],
    t_ms: npt.NDArray[np.int64],
    arrival_ms: int,
    last_arrival: npt.NDArray[np.int64],
    online: npt.NDArray[np.bool_],
    watermark: npt.NDArray[np.int64],
    newest: npt.NDArray[np.int64],
    times: npt.NDArray[np.int64],
    interval: npt.NDArray[np.int64],
) -> None:
    """Rows of one arrival slot (gateway numbers, −1 for none; data times) accounted as
    batches without seq: a run of one gateway and time is one batch (``Clocks.runs``)."""
    starts = np.zeros(gateway.size, dtype=np.bool_)
    for i in range(gateway.size):
        g = gateway[i]
        if g < 0 or (i > 0 and g == gateway[i - 1] and t_ms[i] == t_ms[i - 1]):
            continue
        starts[i] = True
        if arrival_ms > last_arrival[g]:
            last_arrival[g] = arrival_ms
        online[g] = True
        if t_ms[i] > watermark[g]:
            watermark[g] = t_ms[i]
        if t_ms[i] > newest[g]:
            newest[g] = t_ms[i]
    note_times(gateway[starts], t_ms[starts], times, interval)


@_compiled
def transport_runs(
    gateway: npt.NDArray[np.int64],
    t_ms: npt.NDArray[np.int64],
    arrival_ms: npt.NDArray[np.int64],
    dup: npt.NDArray[np.bool_],
    late: npt.NDArray[np.bool_],
    threshold: npt.NDArray[np.int64],
    step_ms: int,
    gateway_table: npt.NDArray[np.int64],
    gateway_index: npt.NDArray[np.int64],
    tables: int,
) -> tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int32],
    npt.NDArray[np.int32],
    npt.NDArray[np.float64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
]:
    """Replayed rows' runs (one gateway and time: one batch) as transport facts: per run its
    table (−1: no gateway), the gateway's place in it, slot, duplicate and late readings and
    clock offset; and per table the first and last slot its runs touch
    (``ParkEngine._note_transport``)."""
    n = gateway.size
    run_table = np.empty(n, dtype=np.int64)
    run_k = np.empty(n, dtype=np.int64)
    run_dup = np.zeros(n, dtype=np.int32)
    run_late = np.zeros(n, dtype=np.int32)
    run_offset = np.empty(n)
    run_slot = np.empty(n, dtype=np.int64)
    first = np.full(tables, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(tables, np.iinfo(np.int64).min, dtype=np.int64)
    r = -1
    newest = 0
    for i in range(n):
        if i == 0 or gateway[i] != gateway[i - 1] or t_ms[i] != t_ms[i - 1]:
            if r >= 0:
                run_slot[r] = max(newest // step_ms, run_slot[r])
            r += 1
            g = gateway[i]
            run_table[r] = gateway_table[max(g, 0)] if g >= 0 else -1
            run_k[r] = gateway_index[max(g, 0)]
            run_offset[r] = float(t_ms[i]) - float(arrival_ms[i])
            run_slot[r] = threshold[i]  # the run's newest time's slot, where not closed
            newest = t_ms[i]
        elif t_ms[i] > newest:
            newest = t_ms[i]
        run_dup[r] += dup[i]
        run_late[r] += late[i]
    if r >= 0:
        run_slot[r] = max(newest // step_ms, run_slot[r])
    m = r + 1
    for i in range(m):
        tb = run_table[i]
        if tb >= 0:
            first[tb] = min(first[tb], run_slot[i])
            last[tb] = max(last[tb], run_slot[i])
    return (
        run_table[:m],
        run_k[:m],
        run_dup[:m],
        run_late[:m],
        run_offset[:m],
        run_slot[:m],
        first,
        last,
    )


@_compiled
def add_transport(
    run_table: npt.NDArray[np.int64],
    run_k: npt.NDArray[np.int64],
    run_dup: npt.NDArray[np.int32],
    run_late: npt.NDArray[np.int32],
    run_offset: npt.NDArray[np.float64],
    run_slot: npt.NDArray[np.int64],
    table: int,
    base: int,
    batches: npt.NDArray[np.int32],
    duplicates: npt.NDArray[np.int32],
    late: npt.NDArray[np.int32],
    offset_sum: npt.NDArray[np.float64],
) -> None:
    """The runs of one table (``transport_runs``) added to its transport counters, in run
    order."""
    for i in range(run_table.size):
        if run_table[i] != table:
            continue
        k = run_k[i]
        s = run_slot[i] - base
        batches[k, s] += 1
        duplicates[k, s] += run_dup[i]
        late[k, s] += run_late[i]
        offset_sum[k, s] += run_offset[i]


@_compiled
def route_readings(
    series: npt.NDArray[np.int64],
    t_ms: npt.NDArray[np.int64],
    threshold: npt.NDArray[np.int64],
    duplicate: npt.NDArray[np.bool_],
    series_table: npt.NDArray[np.int64],
    skip_table: int,
    step_ms: int,
    ahead: int,
    tables: int,
) -> tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.bool_],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
]:
    """Readings (not already known duplicates, not of table ``skip_table``) to their tables'
    slots (``Table.add``): per reading its slot and whether it is late (its slot before its
    ``threshold``); per table its late readings, those refused as ``ahead`` of the clock, and
    the first and last slot of the others (first > last: none); and the others' positions
    grouped by table, in their order within each (table ``t``'s are
    ``order[offsets[t]:offsets[t + 1]]``)."""
    n = series.size
    slot = np.empty(n, dtype=np.int64)
    late = np.zeros(n, dtype=np.bool_)
    late_n = np.zeros(tables, dtype=np.int64)
    ahead_n = np.zeros(tables, dtype=np.int64)
    first = np.full(tables, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(tables, np.iinfo(np.int64).min, dtype=np.int64)
    kept = np.full(n, -1, dtype=np.int64)
    offsets = np.zeros(tables + 1, dtype=np.int64)
    # the slot of the reading before, and its span: a poll cycle's readings share a time, so
    # most readings are in it, known without a division (a tenth of the pass)
    s = np.int64(0)
    s_from = np.iinfo(np.int64).max
    s_to = np.iinfo(np.int64).min
    for i in range(n):
        if duplicate[i]:
            continue
        tb = series_table[series[i]]
        if tb == skip_table:
            continue
        t = t_ms[i]
        if t < s_from or t >= s_to:
            s = t // step_ms
            s_from = s * step_ms
            s_to = s_from + step_ms
        slot[i] = s
        is_late = s < threshold[i]
        is_ahead = s >= ahead
        if is_late:
            late[i] = True
            late_n[tb] += 1
        if is_ahead:
            ahead_n[tb] += 1
        if is_late or is_ahead:
            continue
        first[tb] = min(first[tb], s)
        last[tb] = max(last[tb], s)
        kept[i] = tb
        offsets[tb + 1] += 1
    # the kept readings grouped by table (a counting sort: one pass, order kept within)
    for t in range(tables):
        offsets[t + 1] += offsets[t]
    order = np.empty(offsets[tables], dtype=np.int64)
    fill = offsets[:tables].copy()
    for i in range(n):
        tb = kept[i]
        if tb >= 0:
            order[fill[tb]] = i
            fill[tb] += 1
    return slot, late, late_n, ahead_n, first, last, order, offsets


@_compiled
def span_bounds(times: npt.NDArray[np.int64], span: int) -> npt.NDArray[np.int64]:
    """Where runs of consecutive ``times`` in one span (``t // span``) start, with 0 first and
    ``times.size`` last — ``np.r_[0, np.flatnonzero(b[1:] != b[:-1]) + 1, n]`` of
    ``b = times // span`` in one pass, dividing only where a time leaves the span before it."""
    n = times.size
    out = np.empty(n + 2, dtype=np.int64)  # no rows: [0, 0], as numpy gives
    out[0] = 0
    m = 1
    if n > 0:
        s = times[0] // span
        lo = s * span
        hi = lo + span
        for i in range(1, n):
            t = times[i]
            if t < lo or t >= hi:  # another span: a run starts
                out[m] = i
                m += 1
                s = t // span
                lo = s * span
                hi = lo + span
    out[m] = n
    return out[: m + 1]


@_compiled
def table_cells(
    where: npt.NDArray[np.int64],
    series: npt.NDArray[np.int64],
    t_ms: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    slot: npt.NDArray[np.int64],
    series_row: npt.NDArray[np.int64],
    base: int,
    rows: int,
    head: int,
) -> tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.float64],
]:
    """The readings ``route_readings`` kept for one table (``where``, in their order): their
    flat cells in the table's buffers ((head + slot − base) · rows + row), times, values."""
    m = where.size
    cell = np.empty(m, dtype=np.int64)
    t = np.empty(m, dtype=np.int64)
    v = np.empty(m)
    for j in range(m):
        i = where[j]
        cell[j] = (head + (slot[i] - base)) * rows + series_row[series[i]]
        t[j] = t_ms[i]
        v[j] = value[i]
    return cell, t, v


@_compiled
def _close_slots(
    clock_slot: int,
    step_ms: int,
    max_hold_ms: int,
    silence_ms: int,
    last_arrival: npt.NDArray[np.int64],
    online: npt.NDArray[np.bool_],
    online_since: npt.NDArray[np.int64],
    watermark: npt.NDArray[np.int64],
    interval: npt.NDArray[np.int64],
    closed: npt.NDArray[np.int64],
    park_closed: int,
    never: int,
) -> int:
    """``ParkEngine._close`` with ``Clocks.complete_until`` (no seq gap pending, no final
    time) for park clock slot ``clock_slot``: ``closed`` moved on in place; returns the park's
    closed slot (``NONE``: none yet)."""
    now = clock_slot * step_ms
    horizon = (now - max_hold_ms) // step_ms
    any_heard = False
    park = 0
    for g in range(closed.size):
        complete = watermark[g] + interval[g] if watermark[g] > never else never
        held = not online[g]
        silent_for = now - max(max(last_arrival[g], watermark[g]), online_since[g])
        silent = not held and silent_for > silence_ms + interval[g]
        until = max(complete, now - max_hold_ms) if held else complete
        if silent:
            until = max(complete, now - silence_ms)
        if not last_arrival[g] > never:
            until = never
        if until > never:
            closed[g] = max(closed[g], max(until // step_ms, horizon))
            park = closed[g] if not any_heard else min(park, closed[g])
            any_heard = True
    if any_heard and (park_closed == NONE or park > park_closed):
        return park
    return park_closed


@_compiled
def feed_clocks(
    series: npt.NDArray[np.int64],
    gateway: npt.NDArray[np.int64],
    t_ms: npt.NDArray[np.int64],
    arrival_ms: npt.NDArray[np.int64],
    bounds: npt.NDArray[np.int64],
    series_gateway: npt.NDArray[np.int64],
    step_ms: int,
    max_hold_ms: int,
    silence_ms: int,
    clock: npt.NDArray[np.int64],
    closed: npt.NDArray[np.int64],
    last_arrival: npt.NDArray[np.int64],
    online: npt.NDArray[np.bool_],
    online_since: npt.NDArray[np.int64],
    watermark: npt.NDArray[np.int64],
    newest: npt.NDArray[np.int64],
    times: npt.NDArray[np.int64],
    interval: npt.NDArray[np.int64],
    never: int,
    unset: int,
    threshold: npt.NDArray[np.int64],
) -> None:
    """``ParkEngine.feed_rows``' clock walk over a stretch's arrival slots (``bounds``), in one
    pass: per slot the park clock ticks (closing what is due when it enters a new slot), its
    rows are accounted as batches (``clock_runs``), each row's first open slot is noted
    (``threshold``, as ``_thresholds``) and what is complete closes (``_close``). ``clock``
    holds now_ms, the clock's slot and the park's closed slot (``NONE`` for none yet), in and
    out."""
    now_ms = clock[0]
    clock_slot = clock[1]
    park_closed = clock[2]
    for c in range(bounds.size - 1):
        a = bounds[c]
        b = bounds[c + 1]
        now_ms = max(now_ms, arrival_ms[a])
        slot = now_ms // step_ms
        if clock_slot == NONE or slot > clock_slot:
            clock_slot = slot
            park_closed = _close_slots(clock_slot, step_ms, max_hold_ms, silence_ms,
                                       last_arrival, online, online_since, watermark,
                                       interval, closed, park_closed, never)  # fmt: skip
        clock_runs(gateway[a:b], t_ms[a:b], arrival_ms[b - 1], last_arrival, online, watermark,
                   newest, times, interval)  # fmt: skip
        horizon = (now_ms - max_hold_ms) // step_ms
        for i in range(a, b):
            g = series_gateway[series[i]]
            threshold[i] = max(closed[g], horizon) if g >= 0 else unset
        park_closed = _close_slots(clock_slot, step_ms, max_hold_ms, silence_ms, last_arrival,
                                   online, online_since, watermark, interval, closed,
                                   park_closed, never)  # fmt: skip
    clock[0] = now_ms
    clock[1] = clock_slot
    clock[2] = park_closed
