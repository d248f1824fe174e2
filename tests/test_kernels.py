"""The compiled kernels (analytics/kernels/) and the window store's column buffers against
plain, obviously right references: the hot path may be fast only if it stays exact."""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from numba.core.registry import CPUDispatcher

from analytics.detectors.meter_faults import word_swapped
from analytics.engine.slots import SlotArrays
from analytics.kernels.block import gather_block
from analytics.kernels.clocks import feed_clocks
from analytics.kernels.common import CACHE_DIR, CACHE_PREFIX, KERNELS, sources_digest
from analytics.kernels.feeding import add_one_per_cell, merge_rows, route_readings, table_cells
from analytics.kernels.meter_faults import (
    STUCK_TILE,
    _silence_limit,
    counter_scan,
    silence_scan,
    stuck_meters,
    stuck_runs,
    swap_scan,
    window_medians,
)


def test_slot_arrays_reuse_their_buffers_without_stale_cells() -> None:
    """Widening, dropping and adding in any order (the buffers' room reused at either end,
    or the slots moved, or new buffers; old sums left in the room reused) read back as a
    plain array kept the slow way."""
    rng = np.random.default_rng(7)
    cells = SlotArrays.empty(3, 0)
    plain = np.zeros((3, 0))
    counts = np.zeros((3, 0), dtype=np.int32)
    for t in range(3000):
        op = int(rng.integers(3))
        if op == 0:
            before, after = int(rng.integers(0, 5)), int(rng.integers(0, 70))
            cells = cells.widened(before, after)
            plain = np.pad(plain, ((0, 0), (before, after)))
            counts = np.pad(counts, ((0, 0), (before, after)))
        elif op == 1 and cells.slots:
            n = int(rng.integers(0, cells.slots + 1))
            cells = cells.dropped(n)
            plain, counts = plain[:, n:], counts[:, n:]
        elif cells.slots:
            # a few readings, sometimes two in one cell (the sorting path), once each
            k = rng.integers(cells.slots, size=2)
            r = rng.integers(3, size=2)
            x = rng.integers(1, 100, size=2).astype(float)
            cells.add(r, k, np.array([2 * t, 2 * t + 1]), x)
            np.add.at(plain, (r, k), x)
            np.add.at(counts, (r, k), 1)
        # (a cell's sum is read only where its count says it has readings)
        assert cells.total.shape == plain.shape
        np.testing.assert_array_equal(cells.count, counts)
        np.testing.assert_array_equal(np.where(counts > 0, cells.total, 0.0), plain)
        block = cells.block(0, cells.slots, 0, 60_000, np.zeros(3, dtype=bool))
        np.testing.assert_array_equal(
            block.values, np.where(counts > 0, plain / np.maximum(counts, 1), np.nan)
        )


@pytest.mark.parametrize(("first", "stop"), [(0, 1), (3, 20), (5, 5)])
def test_gather_block_reads_what_slot_arrays_block_reads(first: int, stop: int) -> None:
    """gather_block (the engine's shared block, slot-major, each slot's columns read as
    1-D views) against SlotArrays.block (numpy) on a table of slot-major buffers grown in
    place (cells never read unfilled: `total` keeps garbage where no reading came): a
    window of one slot, a part of the table's slots, none; gaps (~6 % of cells: 0.4³ over
    three rounds), cells of several readings, counter rows (their last value), table rows
    read in part into a larger block in a shuffled order, the block's other rows
    untouched."""
    rng = np.random.default_rng(11)
    rows, slots, block_rows = 50, 24, 80
    cells = SlotArrays.empty(rows, 0).widened(0, slots)  # unfilled stale buffers
    for _ in range(3):
        seen = rng.random((rows, slots)) < 0.6
        r, k = np.nonzero(seen)
        cells.add(r, k, np.arange(r.size) + 1_000 * _, rng.normal(10.0, 5.0, r.size).round(2))
    counter_rows = rng.random(rows) < 0.3
    ref = cells.block(first, stop, 0, 60_000, counter_rows)
    src = np.sort(rng.choice(rows, size=37, replace=False)).astype(np.intp)
    dst = rng.choice(block_rows, size=src.size, replace=False).astype(np.intp)
    n = stop - first
    # as the engine lays them out: views of a row more than the block holds, slot-major
    out = (
        np.full((n, block_rows + 1), -7.0)[:, :block_rows],
        np.full((n, block_rows + 1), -7, dtype=np.int32)[:, :block_rows],
        np.full((n, block_rows + 1), -7.0)[:, :block_rows],
        np.full((n, block_rows + 1), -7.0)[:, :block_rows],
    )
    gather_block(
        cells.total[:, first:stop],
        cells.count[:, first:stop],
        cells.low[:, first:stop],
        cells.high[:, first:stop],
        cells.last_v[:, first:stop],
        counter_rows,
        src,
        dst,
        *out,
    )
    values, count, low, high = (a.T for a in out)
    np.testing.assert_array_equal(values[dst], ref.values[src])
    np.testing.assert_array_equal(count[dst], ref.count[src])
    np.testing.assert_array_equal(low[dst], ref.low[src])
    np.testing.assert_array_equal(high[dst], ref.high[src])
    others = np.setdiff1d(np.arange(block_rows), dst)
    for a in (values, count, low, high):
        assert (a[others] == -7).all()
    if n:  # the case is what it says: gaps, counters and readings all read
        assert np.isnan(values[dst]).any()
        assert np.isfinite(values[dst]).any()
        assert counter_rows[src].any()
        assert (ref.count[src] > 1).any()


def test_swap_scan_flags_what_a_plain_loop_flags() -> None:
    """On the shared block's layout (slot-major, as the detector passes it)."""
    rng = np.random.default_rng(1)
    n, slots = 400, 20
    v = rng.normal(100.0, 30.0, (n, slots))
    v[rng.random((n, slots)) < 0.1] = np.nan
    swapped = rng.random((n, slots)) < 0.05
    v[swapped] = word_swapped(v[swapped])
    v[rng.random((n, slots)) < 0.02] = 0.0
    good = np.abs(rng.normal(100.0, 30.0, n))
    good[::7] = np.nan
    good_before = good.copy()
    flagged = np.zeros((n, slots), dtype=bool)
    clear = np.zeros((n, slots), dtype=bool)
    kept = good.copy()
    rows = np.arange(n)  # each row a meter of its own
    v_sm = np.ascontiguousarray(v.T).T
    swap_scan(v_sm, rows, kept, np.zeros(n, dtype=bool), 10.0, 1.5, flagged, clear)

    expected = np.zeros((n, slots), dtype=bool)
    with np.errstate(all="ignore"):
        back = np.abs(word_swapped(np.nan_to_num(v)))
    for i in range(n):
        g = good[i]
        for k in np.flatnonzero(np.isfinite(v[i])):
            x = abs(v[i, k])
            far = np.isfinite(g) and g > 0 and (x > 10 * g or x < g / 10)
            if far and g / 1.5 <= back[i, k] <= g * 1.5:
                expected[i, k] = True
                continue
            g = x
        good[i] = g
    assert expected.sum() > 50  # the data does hold swapped readings
    np.testing.assert_array_equal(flagged, expected)
    np.testing.assert_array_equal(clear, np.isfinite(v) & ~expected)
    np.testing.assert_array_equal(kept, good)
    # rows judged by meter (four a meter): any row's flag or clear reading is the meter's
    on = np.ones((n // 4, slots), dtype=bool)
    off = np.ones((n // 4, slots), dtype=bool)
    swap_scan(v_sm, rows // 4, good_before, np.zeros(n, dtype=bool), 10.0, 1.5, on, off)
    np.testing.assert_array_equal(on, expected.reshape(n // 4, 4, slots).any(axis=1))
    np.testing.assert_array_equal(off, clear.reshape(n // 4, 4, slots).any(axis=1))


def test_counter_scan_finds_resets_and_leaps_across_gaps_and_blocks() -> None:
    # one counter: steady +1 per slot, a gap, a reset to 0 and a leap of 10,000
    v = np.array([[10.0, 11.0, np.nan, np.nan, 14.0, 0.0, 1.0, 10_001.0]])
    prev = np.array([9.0])
    prev_slot = np.array([99], dtype=np.int64)
    prev_inc = np.array([np.nan])
    one = np.zeros(1, dtype=np.int64)  # the block's rows the scan reads: its only one
    found = counter_scan(v, one, 100, prev, prev_slot, prev_inc, 1000.0, 3)
    rows = [tuple(r) for r in found.tolist()]
    # (row, slot, old, new, gap, leap, usual, expected)
    assert rows == [
        (0.0, 5.0, 14.0, 0.0, 1.0, 0.0, 1.0, 1.0),
        (0.0, 7.0, 1.0, 10_001.0, 1.0, 1.0, 1.0, 1.0),
    ]
    assert (prev[0], prev_slot[0], prev_inc[0]) == (10_001.0, 107, 10_000.0)
    # the same readings in two blocks: the same findings, from the carried state
    prev, prev_slot, prev_inc = np.array([9.0]), np.array([99]), np.array([np.nan])
    first = counter_scan(v[:, :5], one, 100, prev, prev_slot, prev_inc, 1000.0, 3)
    second = counter_scan(v[:, 5:], one, 105, prev, prev_slot, prev_inc, 1000.0, 3)
    assert first.shape[0] == 0
    second[:, 1] += 5
    np.testing.assert_array_equal(second, found)
    # read in place as row 1 of a slot-major block whose row 0 would leap: the same findings
    block = np.ascontiguousarray(np.vstack([v * 1e6, v]).T).T
    prev, prev_slot, prev_inc = np.array([9.0]), np.array([99]), np.array([np.nan])
    in_place = counter_scan(block, np.array([1]), 100, prev, prev_slot, prev_inc, 1000.0, 3)
    np.testing.assert_array_equal(in_place, found)
    # two of a slot-major block's rows out of order (rows [2, 0]): the state is the scan's
    # position i, the block's row rows[i] (review: one row could not tell them apart)
    block = np.ascontiguousarray(np.vstack([v + 100.0, v * 1e6, v]).T).T
    prev, prev_slot = np.array([9.0, 109.0]), np.array([99, 99])
    prev_inc = np.array([np.nan, np.nan])
    both = counter_scan(block, np.array([2, 0]), 100, prev, prev_slot, prev_inc, 1000.0, 3)
    np.testing.assert_array_equal(both[both[:, 0] == 0], found)
    at_one = both[both[:, 0] == 1]
    at_one[:, 0] = 0
    at_one[:, 2:4] -= 100.0  # row 0 of the block is the counter 100 higher
    np.testing.assert_array_equal(at_one, found)
    assert (prev[1], prev_slot[1]) == (10_101.0, 107)


def test_window_medians_are_numpys_nanmedian() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        known = rng.normal(0.0, 1e5, (30, 20)).round(int(rng.integers(0, 3)))
        known[rng.random(known.shape) < rng.random()] = np.nan
        windows = np.lib.stride_tricks.sliding_window_view(known, 5, axis=1)
        enough = np.isfinite(windows).sum(axis=2) >= 3
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(np.where(enough[..., None], windows, 0.0), axis=2)
        got, got_enough = window_medians(known, 5, 3)
        np.testing.assert_array_equal(got_enough, enough)
        np.testing.assert_array_equal(got, median)


def _stuck_reference(
    v: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    state: list[np.ndarray],
    stuck_slots: int,
    lively_share: float,
    lively_readings: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stuck check's recursion for every row, in plain Python from its description
    (``MeterFaults._stuck``), sharing no code with the kernels: per slot, a long run of
    equal slots, whether it tells, whether the row showed life; the state in place."""
    prev, equal_run, hist_changed, hist_seen, lively, main = state
    rows, slots = v.shape
    long_run, telling, live = (np.zeros((rows, slots), dtype=bool) for _ in range(3))
    for r in range(rows):
        before, run, is_lively = float(prev[r]), int(equal_run[r]), bool(lively[r])
        changed_hist = [int(c) for c in hist_changed[r]]
        seen_hist = [int(c) for c in hist_seen[r]]
        for k in range(slots):
            x = float(v[r, k])
            seen = not np.isnan(x)
            equal = seen and low[r, k] == high[r, k] and x == before
            changed = seen and not equal and not np.isnan(before)
            run = run + 1 if equal else 0 if seen else run
            changed_hist = [*changed_hist[1:], int(changed)]
            seen_hist = [*seen_hist[1:], int(seen)]
            if changed:
                n_seen = sum(seen_hist)
                is_lively = sum(changed_hist) >= lively_share * max(n_seen, 1)
                is_lively = is_lively and n_seen >= lively_readings
            long_run[r, k] = run >= stuck_slots
            telling[r, k] = long_run[r, k] and is_lively and bool(main[r]) and seen and x != 0
            live[r, k] = seen and not equal
            if seen:
                before = x
        prev[r], equal_run[r], lively[r] = before, run, is_lively
        hist_changed[r], hist_seen[r] = changed_hist, seen_hist
    return long_run, telling, live


@pytest.mark.parametrize("slots", [40, 80])
def test_stuck_meters_judges_what_stuck_runs_and_a_reduction_by_meter_judge(slots: int) -> None:
    """The meter faults' stuck check per meter in one kernel, on the block's shared rows
    (slot-major, as the shared block is; read through row-major tiles), against the per-row kernel
    (also the leaks') and a plain reference that shares no code with them (review: the reference was
    the kernels' own ``_stuck_row``); blocks shorter and longer than the liveliness window, with
    more rows than ``stuck_meters`` copies a tile at a time (two whole tiles and a part)."""
    rng = np.random.default_rng(3)
    n, w = 700, 60
    # values that repeat for long stretches (some zero), rows that keep changing, gaps
    v = np.repeat(rng.integers(0, 5, (n, 2)).astype(float), slots // 2, axis=1)
    changing = rng.random(n) < 0.3
    v[changing] = rng.normal(size=(int(changing.sum()), slots))
    v[rng.random((n, slots)) < 0.1] = np.nan
    low, high = v.copy(), v.copy()
    high[rng.random((n, slots)) < 0.05] += 1.0
    # and rows whose readings reach below their value, not above (only low == high is one
    # value: a kernel taking the value for low would call their repeats equal)
    low[rng.random(n) < 0.1] -= 1.0
    meter_of = np.sort(rng.integers(0, 80, n)).astype(np.intp)
    rows = np.flatnonzero(rng.random(n) < 0.8)
    assert 2 * STUCK_TILE < rows.size < 3 * STUCK_TILE

    def state() -> list[np.ndarray]:
        r = np.random.default_rng(5)
        return [
            np.where(r.random(n) < 0.5, np.nan, r.integers(0, 4, n).astype(float)),
            r.integers(0, 20, n).astype(np.int64),
            (r.random((n, w)) < 0.9).astype(np.int8),
            (r.random((n, w)) < 0.95).astype(np.int8),
            r.random(n) < 0.5,
            r.random(n) < 0.7,
        ]

    per_row = state()
    long_run, telling, live_row = (np.empty((rows.size, slots), dtype=bool) for _ in range(3))
    stuck_runs(v[rows], low[rows], high[rows], *per_row, 15, 0.8, 10, long_run, telling,
               live_row, rows)  # fmt: skip
    # the plain reference, on the rows' own state
    plain = [a[rows].copy() for a in state()]
    ref_long, ref_telling, ref_live = _stuck_reference(
        v[rows], low[rows], high[rows], plain, 15, 0.8, 10
    )
    np.testing.assert_array_equal(long_run, ref_long)
    np.testing.assert_array_equal(telling, ref_telling)
    np.testing.assert_array_equal(live_row, ref_live)
    assert ref_telling.any()
    assert ref_live.any()
    assert (~ref_long).any()
    seen = np.isfinite(v[rows])
    groups = meter_of[rows]

    def any_of(x: np.ndarray) -> np.ndarray:
        out = np.zeros((80, slots), dtype=bool)
        np.logical_or.at(out, groups, x)
        return out

    expected = any_of(seen) & ~any_of(seen & ~long_run) & any_of(telling)
    per_meter = state()
    stuck = np.empty((80, slots), dtype=bool)
    live = np.empty((80, slots), dtype=bool)
    v_sm, low_sm, high_sm = (np.ascontiguousarray(a.T).T for a in (v, low, high))
    stuck_meters(v_sm, low_sm, high_sm, rows, groups, *per_meter, 15, 0.8, 10, stuck, live)
    assert expected.any()
    assert (any_of(seen) & ~expected).any()
    np.testing.assert_array_equal(stuck, expected)
    np.testing.assert_array_equal(live, any_of(live_row))
    for a, b in zip(per_meter, per_row, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(per_row, plain, strict=True):
        np.testing.assert_array_equal(a[rows], b)


def test_stuck_meters_counts_liveliness_past_the_window_in_blocks_of_any_length() -> None:
    """The liveliness window's running sum once a block runs past the window's length (review:
    a wrong sum past slot w passed the test above): one row changing for 60 slots, equal for
    30, then equal again for 60, fed whole and in blocks shorter than, as long as and longer
    than the 60-slot window, with the state carried — against the plain reference."""
    w = 60
    v = np.r_[np.arange(1.0, 61.0), np.full(30, 7.0), np.full(60, 9.0)][None, :]

    def state() -> list[np.ndarray]:
        flags = np.zeros((1, w), dtype=np.int8)
        return [np.array([np.nan]), np.zeros(1, dtype=np.int64), flags, flags.copy(),
                np.zeros(1, dtype=bool), np.ones(1, dtype=bool)]  # fmt: skip

    ref_long, ref_telling, ref_live = _stuck_reference(v, v, v, state(), 15, 0.8, 10)
    # one row per meter: stuck where it reports in a long run that tells
    expected = np.isfinite(v) & ref_long & ref_telling
    assert np.flatnonzero(expected[0]).tolist() == list(range(75, 90))
    for cuts in ([150], [1, 59, 61, 29], [60, 60, 30], [61, 89]):
        carried = state()
        stuck, live = [], []
        start = 0
        for size in cuts:
            part = np.ascontiguousarray(v[:, start : start + size])
            out_stuck = np.empty((1, size), dtype=bool)
            out_live = np.empty((1, size), dtype=bool)
            stuck_meters(part, part, part, np.array([0]), np.array([0], dtype=np.intp),
                         *carried, 15, 0.8, 10, out_stuck, out_live)  # fmt: skip
            stuck.append(out_stuck)
            live.append(out_live)
            start += size
        np.testing.assert_array_equal(np.hstack(stuck), expected, err_msg=str(cuts))
        np.testing.assert_array_equal(np.hstack(live), ref_live, err_msg=str(cuts))


def test_routing_takes_every_reading_to_its_slot_whatever_the_order_of_times() -> None:
    """``route_readings`` keeps the slot of the reading before and its span (no division
    while times stay in it): readings that step back and forth across slot edges, times
    before 1970 and runs of one time all get ``t // step`` and their lateness, grouped by
    table in their order."""
    rng = np.random.default_rng(5)
    step = 60_000
    t_ms = np.repeat(rng.integers(-5 * step, 5 * step, size=300), rng.integers(1, 4, size=300))
    t_ms[rng.random(t_ms.size) < 0.2] += step - 1  # to the edges
    edges = np.array([-1, 0, step - 1, step, 2 * step, 2 * step - 1, -step, -step - 1])
    t_ms = np.concatenate([t_ms, np.tile(edges, 5), edges[::-1]])
    n = t_ms.size
    series = rng.integers(0, 8, size=n).astype(np.int64)
    series_table = np.array([0, 1, 2, 0, 1, 2, 0, 1], dtype=np.int64)
    threshold = rng.integers(-6, 2, size=n).astype(np.int64)
    duplicate = rng.random(n) < 0.1
    slot, late, late_n, ahead_n, first, last, order, offsets = route_readings(
        series, t_ms, threshold, duplicate, series_table, 2, step, 3, 3
    )
    live = ~duplicate & (series_table[series] != 2)
    want = t_ms // step
    np.testing.assert_array_equal(slot[live], want[live])
    np.testing.assert_array_equal(late, live & (want < threshold))
    kept = live & (want >= threshold) & (want < 3)
    for tb in range(3):
        mine = kept & (series_table[series] == tb)
        np.testing.assert_array_equal(order[offsets[tb] : offsets[tb + 1]], np.flatnonzero(mine))
        assert late_n[tb] == (late & (series_table[series] == tb)).sum()
        if mine.any():
            assert (first[tb], last[tb]) == (want[mine].min(), want[mine].max())
    assert ahead_n.sum() == (live & (want >= 3)).sum()


def _flats(cells: SlotArrays) -> list[npt.NDArray[Any]]:
    """``cells.flats()`` as a list of arrays (its tuple's types differ)."""
    return list(cells.flats())


@pytest.mark.parametrize("shared", [False, True])
def test_merge_rows_merges_what_table_cells_then_add_one_per_cell_merge(shared: bool) -> None:
    """``merge_rows`` (a table's rows merged straight from the rows) against the two kernels
    it fuses: the same buffers to the bit (NaN readings, duplicates of the newest time, cells
    new and old), the same duplicates at the same rows; with two readings in one cell, both
    refuse and change nothing."""
    rng = np.random.default_rng(11)
    rows, slots, base = 7, 5, 100
    merged = [SlotArrays.empty(rows, 0).widened(2, slots) for _ in range(2)]
    for cells in merged:
        cells.dropped(1)  # head 1: cells are (head + slot − base) · rows + row
    for ref, fused in zip(_flats(merged[0]), _flats(merged[1]), strict=True):
        fused[:] = ref  # the same bytes in the cells never filled (Columns.STALE) too
    n_series = 9
    series_row = rng.integers(0, rows, size=n_series).astype(np.int64)
    series_row[:rows] = np.arange(rows)  # series 0..6 each a row of their own
    dups = 0
    for round_ in range(6):
        n = 40
        series = rng.integers(0, n_series, size=n).astype(np.int64)
        t_ms = rng.integers(base, base + slots, size=n).astype(np.int64) * 60_000
        t_ms += rng.integers(0, 3, size=n) * 20_000
        value = rng.normal(size=n)
        value[rng.random(n) < 0.1] = np.nan
        slot = t_ms // 60_000
        # one reading per cell, some of them at the time already in the cell
        keys = series_row[series] * 1000 + slot
        _, first = np.unique(keys, return_index=True)
        where = np.sort(first).astype(np.int64)
        if shared:
            where = np.r_[where, where[:1]]  # the first cell twice
        flats = [_flats(cells) for cells in merged]
        before = [[f.copy() for f in fl] for fl in flats]
        cells = merged[0]
        cell, t, v = table_cells(where, series, t_ms, value, slot, series_row, base, rows,
                                 cells.head)  # fmt: skip
        dup_ref = np.zeros(where.size, dtype=bool)
        ok_ref = add_one_per_cell(cell, t, v, *flats[0], dup_ref)
        dup = np.zeros(n, dtype=bool)
        ok = merge_rows(where, series, t_ms, value, slot, series_row, base, rows,
                        merged[1].head, *flats[1], dup, np.full(where.size + 3, 7))  # fmt: skip
        assert ok == ok_ref == (not shared)
        for a, b, old in zip(flats[0], flats[1], before[1], strict=True):
            np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8), str(round_))
            if shared:
                np.testing.assert_array_equal(b.view(np.uint8), old.view(np.uint8))
        want = np.zeros(n, dtype=bool)
        want[where[dup_ref]] = True
        np.testing.assert_array_equal(dup, want)
        dups += int(dup.sum())
    if not shared:
        assert merged[1].count.sum() > 0
        assert dups > 0  # the time already in a cell met again


def test_silence_limit_skips_the_division_only_where_it_cannot_matter() -> None:
    """``_silence_limit``'s integer shortcut (three mean gaps at most ``silence_slots`` − 1:
    no division) against the float formula it stands for, at and around the shortcut's edge
    and with the spread term on and off."""
    checked = 0
    for silence_slots in (1, 2, 5, 10, 60):
        for count in range(0, 400, 7):
            gaps = max(count - 1, 1)
            edge = (silence_slots - 1) * gaps // 3
            for spanned in {0, 1, gaps, edge - 1, edge, edge + 1, edge + 2, 5 * gaps}:
                for n, ew_mean, ew_sq in ((0, 0.0, 0.0), (12, 1.0, 1.0), (12, 3.0, 40.0)):
                    limit = float(silence_slots)
                    if count > 1:
                        limit = max(limit, np.ceil(3 * (spanned / gaps)))
                        var = ew_sq - ew_mean * ew_mean
                        if n >= 10 and 9.0 * var > 4 * ew_mean * ew_mean:
                            limit = max(limit, np.ceil(ew_mean + 3.0 * np.sqrt(var)))
                    got = _silence_limit(count, spanned, n, ew_mean, ew_sq, silence_slots, 3.0, 10)
                    assert got == limit, (silence_slots, count, spanned, n)
                    checked += 1
    assert checked > 1000


def test_silence_scan_judges_a_park_block_as_each_meter_alone() -> None:
    """``silence_scan`` on a slot-major block of many meters (1-5 rows each), blocks after
    blocks with the state carried, gives what it gives each meter's rows alone (row-major):
    a meter's outputs and carried state depend on its own rows only, whatever the layout."""
    rng = np.random.default_rng(11)
    n, slots, blocks = 700, 40, 4
    sizes = rng.integers(1, 6, n)
    meter_of = np.repeat(np.arange(n), sizes)[:n]
    m = int(meter_of[-1]) + 1
    starts = np.flatnonzero(np.r_[True, meter_of[1:] != meter_of[:-1]])
    # rows that poll every 1-4 slots (some at random), drop readings, go quiet for a while
    every = rng.integers(1, 5, n)
    cols = np.arange(slots * blocks)
    seen = (cols[None, :] % every[:, None] == 0) & (rng.random((n, cols.size)) < 0.9)
    seen |= (rng.random(n) < 0.2)[:, None] & (rng.random((n, cols.size)) < 0.3)
    for r in np.flatnonzero(rng.random(n) < 0.3):
        a = int(rng.integers(0, cols.size - 20))
        seen[r, a : a + int(rng.integers(5, 40))] = False
    values = np.where(seen, rng.normal(50.0, 5.0, seen.shape), np.nan)

    def state(rows: int) -> list[np.ndarray]:
        i64 = np.int64
        return [np.full(rows, -1, dtype=i64), np.full(rows, -1, dtype=i64),
                np.zeros(rows, dtype=i64), np.zeros(rows, dtype=i64), np.zeros(rows),
                np.zeros(rows), np.zeros(rows, dtype=i64), np.zeros(rows, dtype=i64),
                np.full(rows, -1, dtype=i64)]  # fmt: skip

    whole = state(n)
    alone = [state(int(b - a)) for a, b in zip(starts, np.r_[starts[1:], n], strict=True)]
    silent_any = 0
    for blk in range(blocks):
        part = values[:, blk * slots : (blk + 1) * slots]
        out = [np.empty((m, slots), dtype=bool), np.empty((m, slots)),
               np.empty((m, slots), dtype=bool)]  # fmt: skip
        silence_scan(np.ascontiguousarray(part.T).T, starts, 1000 + blk * slots, 5, 3, 3.0, 10,
                     20, *whole, *out)  # fmt: skip
        for mi, (a, b) in enumerate(zip(starts, np.r_[starts[1:], n], strict=True)):
            own = [np.empty((1, slots), dtype=bool), np.empty((1, slots)),
                   np.empty((1, slots), dtype=bool)]  # fmt: skip
            silence_scan(np.ascontiguousarray(part[a:b]), np.zeros(1, dtype=np.int64),
                         1000 + blk * slots, 5, 3, 3.0, 10, 20, *alone[mi], *own)  # fmt: skip
            for x, y in zip(out, own, strict=True):
                np.testing.assert_array_equal(x[mi], y[0], f"block {blk}, meter {mi}")
        silent_any += int(out[2].sum())
    assert silent_any > 0  # silences found
    assert (whole[3] > 0).any()  # some skipped past a row's limit
    for mi, (a, b) in enumerate(zip(starts, np.r_[starts[1:], n], strict=True)):
        for x, y in zip(whole, alone[mi], strict=True):
            np.testing.assert_array_equal(x[a:b], y)


def test_the_kernels_cache_folder_is_named_by_all_their_sources(tmp_path: Path) -> None:
    """numba checks a cached kernel against its own file only, while a helper from another
    kernel file is compiled into it: the cache folder's name changes with any kernel file's
    bytes, and every kernel is cached in it."""
    copy = tmp_path / "kernels"
    copy.mkdir()
    for path in KERNELS.glob("*.py"):
        shutil.copy(path, copy / path.name)
    assert (
        CACHE_DIR.name
        == CACHE_PREFIX + sources_digest(KERNELS)
        == CACHE_PREFIX + sources_digest(copy)
    )
    seen = {sources_digest(copy)}
    for name in ("feeding.py", "common.py", "clocks.py"):
        source = copy / name
        source.write_bytes(source.read_bytes() + b"\n")  # a blank line: no other change
        seen.add(sources_digest(copy))
    (copy / "notes.txt").write_text("not a kernel")
    seen.add(sources_digest(copy))
    assert len(seen) == 4  # each edit a new name; the non-Python file none

    dispatchers = [
        d
        for m in pkgutil.iter_modules([str(KERNELS)])
        for d in vars(importlib.import_module(f"analytics.kernels.{m.name}")).values()
        if isinstance(d, CPUDispatcher)
    ]
    assert any(d is feed_clocks for d in dispatchers)
    for d in dispatchers:
        assert Path(d._cache._cache_path).is_relative_to(CACHE_DIR)
