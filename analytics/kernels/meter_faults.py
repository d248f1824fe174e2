"""The meter faults' scans along each row: stuck runs, silence, word-swapped registers,
counter resets and rollovers, and the window medians they compare with. ``stuck_runs``
is the leaks' too (a flow stuck at a value)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from analytics.kernels.common import _compiled, _maximum

STUCK_TILE = 256  # rows of a block ``stuck_meters`` copies into row-major scratch at a time


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
    ``long_run``, ``telling``, ``live``; ``ch`` and ``se`` are scratch (window + slots).
    ``stuck_meters`` repeats this recursion inline (through row-major tiles, judged by meter): a
    change to the rule goes into both, and tests/test_kernels.py holds both to one plain
    reference."""
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
    """``stuck_runs`` over the block's ``rows`` (block and state rows alike), taken as the
    shared slot-major view and read through a row-major tile of ``STUCK_TILE`` rows, judged
    per meter (``meter_of`` each row's; ``stuck`` and ``live``: meters × slots):
    stuck where every reporting row of the meter is in a long run (some reports, none out of
    a run) and one of them tells; live where any row showed life. See
    ``MeterFaults._stuck``.

    ``_stuck_row``'s recursion with the judging by meter folded into its slot loop (no row
    of flags written and read again), and the ``lively_window`` history read in place: its
    sums once a row, then shifted on by the block's slots (``_stuck_row`` copies it into and
    out of a scratch window, twice the bytes). Slot by slot over the rows, with the rows'
    recursion in arrays (the block is slot-major), was no faster (2026-12-05)."""
    slots = v.shape[1]
    w = hist_changed.shape[1]
    m = stuck.shape[0]
    # this block's flags, for the window's sums past w slots and the history's new end
    ch = np.empty(slots, dtype=np.int8)
    se = np.empty(slots, dtype=np.int8)
    seen_any = np.zeros((m, slots), dtype=np.bool_)
    out_of_run = np.zeros((m, slots), dtype=np.bool_)
    tells = np.zeros((m, slots), dtype=np.bool_)
    live[:, :] = False
    # the block's rows read a tile at a time into row-major scratch: read in place, a row's
    # slots are one cell in each of 3 × slots slot rows far apart (more streams than the
    # prefetcher follows); a tile's copy reads each slot row in runs of adjacent cells
    tile = min(STUCK_TILE, max(rows.size, 1))  # a small park's block needs no full tile
    tv = np.empty((tile, slots))
    tlo = np.empty((tile, slots))
    thi = np.empty((tile, slots))
    for i in range(rows.size):
        t = i % tile
        if t == 0:
            for k in range(slots):
                # the slot's columns as 1-D views: one index a cell (as in gather_block)
                v_k = v[:, k]
                low_k = low[:, k]
                high_k = high[:, k]
                for j in range(min(tile, rows.size - i)):
                    q = rows[i + j]
                    tv[j, k] = v_k[q]
                    tlo[j, k] = low_k[q]
                    thi[j, k] = high_k[q]
        r = rows[i]
        mi = meter_of[i]
        hc = hist_changed[r]
        hs = hist_seen[r]
        before = prev[r]
        run = equal_run[r]
        is_lively = lively[r]
        is_main = main[r]
        sum_ch = 0
        sum_se = 0
        for j in range(w):
            sum_ch += hc[j]
            sum_se += hs[j]
        for k in range(slots):
            x = tv[t, k]
            seen = np.isfinite(x)
            # a slot repeats when its readings are one value, the previous slot's
            equal = seen and tlo[t, k] == thi[t, k] and x == before
            changed = seen and not equal and np.isfinite(before)
            if seen and not equal:
                run = 0
            elif equal:
                run += 1
            # the window of the last w slots up to this one: slot k pushes out the
            # history's slot k (or this block's k - w)
            c = 1 if changed else 0
            e = 1 if seen else 0
            ch[k] = c
            se[k] = e
            if k < w:
                sum_ch += c - hc[k]
                sum_se += e - hs[k]
            else:
                sum_ch += c - ch[k - w]
                sum_se += e - se[k - w]
            if changed:
                is_lively = (sum_ch >= lively_share * max(sum_se, 1)) and (
                    sum_se >= lively_readings
                )
            long = run >= stuck_slots
            seen_any[mi, k] |= seen
            out_of_run[mi, k] |= seen and not long
            tells[mi, k] |= long and is_lively and is_main and abs(x) > 0
            live[mi, k] |= seen and not equal
            if seen:
                before = x
        prev[r] = before
        equal_run[r] = run
        lively[r] = is_lively
        # the history moves on by the block's slots (its last w of old and new)
        kept = max(w - slots, 0)
        for j in range(kept):
            hc[j] = hc[j + slots]
            hs[j] = hs[j + slots]
        for j in range(kept, w):
            hc[j] = ch[slots - w + j]
            hs[j] = se[slots - w + j]
    for mi in range(m):
        for k in range(slots):
            stuck[mi, k] = seen_any[mi, k] and not out_of_run[mi, k] and tells[mi, k]


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
        # worked out after every reading (a tenth of the scan in its division): where three
        # mean gaps are at most silence_slots − 1 in integers, ceil(3 · mean) in floats is at
        # most silence_slots (rounding moves it by far less than 1), so the limit stays
        if 3 * spanned > (silence_slots - 1) * gaps:
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
def swap_scan(
    v: npt.NDArray[np.float64],
    meter_of: npt.NDArray[np.intp],
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
    swap episode (``suspect``), cannot flag one: their good value is their last reading.
    Judged per meter (``meter_of`` each row's; ``flagged`` and ``clear``: meters × slots,
    whether any of its rows' readings was flagged, or not), in the same pass (no row of
    flags written and read again)."""
    rows, slots = v.shape
    inv_far = 1 / far
    f32 = np.empty(1, dtype=np.float32)
    u32 = f32.view(np.uint32)
    flagged[:, :] = False
    clear[:, :] = False
    for i in range(rows):
        mi = meter_of[i]
        # a candidate: a value ten times off its forward-filled previous one
        candidate = suspect[i]
        previous = good[i]
        last = np.nan
        for k in range(slots):
            x = v[i, k]
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
                clear[mi, k] |= np.isfinite(v[i, k])
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
                flagged[mi, k] = True
            else:
                clear[mi, k] = True
                g = x
        good[i] = g


@_compiled
def counter_scan(
    v: npt.NDArray[np.float64],
    rows: npt.NDArray[np.int64],
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
    not (0), usual increment, expected increment; in row order, then slot order. Row ``i``
    is the block's row ``rows[i]``, read in place (the rows copied out of the slot-major
    block first cost more than the scan), and row ``i`` of the state arrays."""
    slots = v.shape[1]
    found = np.empty((16, 8))
    n = 0
    huge = np.finfo(np.float64).max
    for i in range(rows.size):
        r = rows[i]
        before = prev[i]
        before_slot = prev_slot[i]
        usual = prev_inc[i]
        for k in range(slots):
            x = v[r, k]
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
