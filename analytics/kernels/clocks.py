"""The park's clock over a replayed stretch: batch times and poll intervals per gateway,
watermarks, each reading's first open slot, and the closing of what is complete."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from analytics.kernels.common import _compiled
from analytics.kernels.feeding import _group_by_table, _no_span, _route_arrays, _route_rows

NONE = np.iinfo(np.int64).min  # a clock's slot not set yet (``feed_clocks``)


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
    duplicate: npt.NDArray[np.bool_],
    series_table: npt.NDArray[np.int64],
    skip_table: int,
    max_ahead_ms: int,
    tables: int,
    slot_buf: npt.NDArray[np.int64],
    late_buf: npt.NDArray[np.bool_],
    kept_buf: npt.NDArray[np.int64],
    order_buf: npt.NDArray[np.int64],
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
    """``ParkEngine.feed_rows``' clock walk over a stretch's arrival slots (``bounds``), in one
    pass: per slot the park clock ticks (closing what is due when it enters a new slot), its
    rows are accounted as batches (``clock_runs``), each row's first open slot is noted
    (``threshold``, as ``_thresholds``) and what is complete closes (``_close``). ``clock``
    holds now_ms, the clock's slot and the park's closed slot (``NONE`` for none yet), in and
    out. Each row is routed to its table's slot as its first open slot is noted, while the
    slot's rows are in cache (``feeding.route_readings``' outputs, with the clock ``ahead``
    of the stretch's end: what the engine's ``_store`` would route after the walk; a pass
    over every row less). The per-row outputs are the first rows of the buffers given
    (``series.size`` long at least: ``_route_arrays``, ``_group_by_table``), the caller's,
    kept from stretch to stretch: allocated afresh, a stretch's ~15 MB at 10,000 meters were
    mapped and faulted in page by page (84,000 page faults in the 6 h bench, 200 without;
    the kernel 329 -> 174 ms, store25)."""
    now_ms = clock[0]
    clock_slot = clock[1]
    park_closed = clock[2]
    # the park clock at the stretch's end (what _store's ``ahead`` is taken from)
    now_end = now_ms
    for c in range(bounds.size - 1):
        now_end = max(now_end, arrival_ms[bounds[c]])
    ahead = (now_end + max_ahead_ms) // step_ms
    n = series.size
    row_slot, late, late_n, ahead_n, first, last, kept, offsets = _route_arrays(
        n, tables, slot_buf, late_buf, kept_buf
    )
    span = _no_span()
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
        # the slot's rows routed while in cache
        _route_rows(a, b, series, t_ms, threshold, duplicate, series_table, skip_table, step_ms,
                    ahead, span, row_slot, late, late_n, ahead_n, first, last, kept,
                    offsets)  # fmt: skip
        park_closed = _close_slots(clock_slot, step_ms, max_hold_ms, silence_ms, last_arrival,
                                   online, online_since, watermark, interval, closed,
                                   park_closed, never)  # fmt: skip
    clock[0] = now_ms
    clock[1] = clock_slot
    clock[2] = park_closed
    order = _group_by_table(kept, offsets, order_buf)
    return row_slot, late, late_n, ahead_n, first, last, order, offsets
