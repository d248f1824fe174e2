"""Feeding the window store: readings routed to their tables' cells and merged into slots,
a replay's stretches cut by arrival, and the transport facts (batches, duplicates, late)
of a replayed stretch."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from analytics.kernels.common import _compiled


@_compiled
def _mark_cells(cell: npt.NDArray[np.int64], count: npt.NDArray[np.int32]) -> bool:
    """Whether no two readings share a cell; if none does, each cell's count is left marked
    (negated) for ``_merge_one`` to undo, else every count is as it was."""
    # each cell's count is negated as it is met: met again while negated, it is shared
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
    return True


@_compiled
def _merge_marked(
    cell: npt.NDArray[np.int64],
    where: npt.NDArray[np.int64],
    t_ms: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    total: npt.NDArray[np.float64],
    count: npt.NDArray[np.int32],
    low: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    last_t: npt.NDArray[np.int64],
    last_v: npt.NDArray[np.float64],
    duplicate: npt.NDArray[np.bool_],
) -> None:
    """Readings ``where`` (their times and values) into their cells ``cell`` marked by
    ``_mark_cells`` (the marks undone): a reading at the time already in its cell is a
    duplicate (``duplicate[where[j]]``); the others add to the sum and count, widen the
    extremes (NaN spreads, as with np.minimum) and become the newest where they are. A cell
    without a reading yet (count 0) starts empty whatever its other arrays hold. (One call
    for all the readings: a helper called per reading passes each array as a struct and
    counts its references, several times the merge's own work.)"""
    for j in range(cell.size):
        c = cell[j]
        i = where[j]
        t = t_ms[i]
        count[c] = -count[c] - 1
        if count[c] == 0:
            total[c] = 0.0
            low[c] = np.inf
            high[c] = -np.inf
            last_t[c] = np.iinfo(np.int64).min
            last_v[c] = np.nan
        elif t == last_t[c]:
            duplicate[i] = True
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
    if not _mark_cells(cell, count):
        return False
    every = np.arange(cell.size)
    _merge_marked(cell, every, t_ms, value, total, count, low, high, last_t, last_v, duplicates)
    return True


@_compiled
def merge_rows(
    where: npt.NDArray[np.int64],
    series: npt.NDArray[np.int64],
    t_ms: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    slot: npt.NDArray[np.int64],
    series_row: npt.NDArray[np.int64],
    base: int,
    rows: int,
    head: int,
    total: npt.NDArray[np.float64],
    count: npt.NDArray[np.int32],
    low: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    last_t: npt.NDArray[np.int64],
    last_v: npt.NDArray[np.float64],
    duplicate: npt.NDArray[np.bool_],
    cell_buf: npt.NDArray[np.int64],
) -> bool:
    """``table_cells`` then ``add_one_per_cell`` in one kernel: the rows ``where`` of one table
    merged straight from the rows into its flat buffers, a duplicate marked at its row in
    ``duplicate`` (the rows' times and values are not copied out first). Returns False,
    having changed nothing, where two of them share a cell (the caller then merges them as
    ``SlotArrays.add_cells`` does). The cells are worked out in ``cell_buf`` (``where.size``
    at least; its content is of no matter): the caller's, kept from call to call, like the
    walk's per-row arrays (``clocks.feed_clocks``), rather than a table's cells of a stretch
    (150 kB at 10,000 meters) allocated each call."""
    m = where.size
    if cell_buf.size < m:
        raise ValueError("cell_buf shorter than where")  # no bounds checks compiled
    cell = cell_buf[:m]
    for j in range(m):
        i = where[j]
        cell[j] = (head + (slot[i] - base)) * rows + series_row[series[i]]
    if not _mark_cells(cell, count):
        return False
    _merge_marked(cell, where, t_ms, value, total, count, low, high, last_t, last_v, duplicate)
    return True


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
    # n rows give n runs at most; only the runs met are set: zeroing n counters touched
    # 4.6 MB of fresh pages a stretch at 10,000 meters for the 42,000 runs used (33,000
    # page faults in the 6 h bench, 3,200 without; the kernel 118 -> 44 ms, store25)
    run_dup = np.empty(n, dtype=np.int32)
    run_late = np.empty(n, dtype=np.int32)
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
            run_dup[r] = 0
            run_late[r] = 0
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
def _route_rows(
    a: int,
    b: int,
    series: npt.NDArray[np.int64],
    t_ms: npt.NDArray[np.int64],
    threshold: npt.NDArray[np.int64],
    duplicate: npt.NDArray[np.bool_],
    series_table: npt.NDArray[np.int64],
    skip_table: int,
    step_ms: int,
    ahead: int,
    span: npt.NDArray[np.int64],
    slot: npt.NDArray[np.int64],
    late: npt.NDArray[np.bool_],
    late_n: npt.NDArray[np.int64],
    ahead_n: npt.NDArray[np.int64],
    first: npt.NDArray[np.int64],
    last: npt.NDArray[np.int64],
    kept: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64],
) -> None:
    """Rows ``a:b`` routed (``route_readings``): each its slot, and late, refused as ahead, or
    kept (counted for its table's group). ``span`` carries the slot of the row before and
    its span from call to call: a poll cycle's readings share a time, so most readings are
    in it, known without a division (a tenth of the pass). (One call for a range of rows: a
    helper called per row passes each array as a struct and counts its references, several
    times the routing's own work.)"""
    s, s_from, s_to = span[0], span[1], span[2]
    for i in range(a, b):
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
    span[0], span[1], span[2] = s, s_from, s_to


@_compiled
def _route_arrays(
    n: int,
    tables: int,
    slot_buf: npt.NDArray[np.int64],
    late_buf: npt.NDArray[np.bool_],
    kept_buf: npt.NDArray[np.int64],
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
    """``route_readings``' outputs, empty: slot, late, late_n, ahead_n, first, last, and the
    kept readings' tables (−1: not kept) and per-table counts (shifted by one). The per-row
    ones are the first ``n`` of the buffers given (``n`` long at least), set here where
    they must start set (late: none; kept: none); a slot is set only where a row is
    routed."""
    if slot_buf.size < n or late_buf.size < n or kept_buf.size < n:
        raise ValueError("a row buffer shorter than the rows")  # no bounds checks compiled
    late = late_buf[:n]
    late[:] = False
    kept = kept_buf[:n]
    kept[:] = -1
    return (
        slot_buf[:n],
        late,
        np.zeros(tables, dtype=np.int64),
        np.zeros(tables, dtype=np.int64),
        np.full(tables, np.iinfo(np.int64).max, dtype=np.int64),
        np.full(tables, np.iinfo(np.int64).min, dtype=np.int64),
        kept,
        np.zeros(tables + 1, dtype=np.int64),
    )


@_compiled
def _no_span() -> npt.NDArray[np.int64]:
    """``_route_rows``' carried slot before any row: none (its span empty)."""
    return np.array([0, np.iinfo(np.int64).max, np.iinfo(np.int64).min], dtype=np.int64)


@_compiled
def _group_by_table(
    kept: npt.NDArray[np.int64], offsets: npt.NDArray[np.int64], order_buf: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """The kept readings' positions grouped by table, in their order within each (a counting
    sort: one pass), in the first of ``order_buf`` (``kept.size`` long at least); ``offsets``
    (per-table counts, shifted by one) become the groups' starts."""
    tables = offsets.size - 1
    for t in range(tables):
        offsets[t + 1] += offsets[t]
    if order_buf.size < offsets[tables]:
        raise ValueError("order_buf shorter than the rows kept")  # no bounds checks compiled
    order = order_buf[: offsets[tables]]
    fill = offsets[:tables].copy()
    for i in range(kept.size):
        tb = kept[i]
        if tb >= 0:
            order[fill[tb]] = i
            fill[tb] += 1
    return order


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
    ``order[offsets[t]:offsets[t + 1]]``). Replay's clock walk (``clocks.feed_clocks``)
    routes its readings in its own pass, the same way."""
    n = series.size
    slot, late, late_n, ahead_n, first, last, kept, offsets = _route_arrays(
        n, tables, np.empty(n, dtype=np.int64), np.empty(n, dtype=np.bool_),
        np.empty(n, dtype=np.int64),
    )  # fmt: skip
    span = _no_span()
    _route_rows(0, n, series, t_ms, threshold, duplicate, series_table, skip_table, step_ms,
                ahead, span, slot, late, late_n, ahead_n, first, last, kept, offsets)  # fmt: skip
    order = _group_by_table(kept, offsets, np.empty(n, dtype=np.int64))
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
