"""Readings into aligned slots: the one rule the window store, replay and tests share.

A slot of a series is ``[start + k·step, start + (k+1)·step)``. Its value is the mean of an
instant quantity's readings in it, or a counter's last reading (by time); ``count`` is the
number of distinct readings, ``low``/``high`` their extremes. A reading at the same time as one
already in the slot is a duplicate and counts once. Slots without readings are NaN: a gap is
a gap, never a zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.engine.contract import Block, FloatArray, IntArray

BoolArray = npt.NDArray[np.bool_]


@dataclass
class SlotArrays:
    """Accumulators of ``rows × slots`` cells; merged batch by batch, read as a Block."""

    total: FloatArray
    count: npt.NDArray[np.int32]
    low: FloatArray
    high: FloatArray
    last_t: IntArray  # time of the newest reading in the cell (min int64: none)
    last_v: FloatArray  # its value

    @classmethod
    def empty(cls, rows: int, slots: int) -> SlotArrays:
        return cls(
            np.zeros((rows, slots)),
            np.zeros((rows, slots), dtype=np.int32),
            np.full((rows, slots), np.inf),
            np.full((rows, slots), -np.inf),
            np.full((rows, slots), np.iinfo(np.int64).min, dtype=np.int64),
            np.full((rows, slots), np.nan),
        )

    @property
    def slots(self) -> int:
        return int(self.total.shape[1])

    def _arrays(self) -> list[npt.NDArray[Any]]:
        return [self.total, self.count, self.low, self.high, self.last_t, self.last_v]

    def widened(self, before: int, after: int) -> SlotArrays:
        """A copy with ``before`` empty slots in front and ``after`` behind."""
        rows = self.total.shape[0]
        pad_before = SlotArrays.empty(rows, before)._arrays()
        pad_after = SlotArrays.empty(rows, after)._arrays()
        return SlotArrays(
            *(
                np.concatenate([b, a, c], axis=1)
                for a, b, c in zip(self._arrays(), pad_before, pad_after, strict=True)
            )
        )

    def dropped(self, n: int) -> SlotArrays:
        """A copy without the first ``n`` slots."""
        return SlotArrays(*(np.ascontiguousarray(a[:, n:]) for a in self._arrays()))

    def add(
        self,
        row: IntArray,
        slot: IntArray,
        t_ms: IntArray,
        value: FloatArray,
    ) -> BoolArray:
        """Merge readings (any order) into their cells; returns which were duplicates (a time
        already in the cell)."""
        if row.size == 0:
            return np.zeros(0, dtype=bool)
        slots = self.total.shape[1]
        cell = row * slots + slot
        # sort by cell then time, so each cell's readings are adjacent and in time order
        order = np.lexsort((t_ms, cell))
        cell, t_ms, value = cell[order], t_ms[order], value[order]
        flat_last_t = self.last_t.reshape(-1)
        # a duplicate repeats the time of the previous reading of its cell, in this batch or
        # the newest one already stored
        same_as_prev = np.zeros(cell.size, dtype=bool)
        same_as_prev[1:] = (cell[1:] == cell[:-1]) & (t_ms[1:] == t_ms[:-1])
        dup = same_as_prev | (t_ms == flat_last_t[cell])
        duplicates = np.zeros(row.size, dtype=bool)
        duplicates[order[dup]] = True
        if dup.any():
            keep = ~dup
            cell, t_ms, value = cell[keep], t_ms[keep], value[keep]
            if cell.size == 0:
                return duplicates
        starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
        cells = cell[starts]
        ends = np.r_[starts[1:], cell.size] - 1  # index of each cell's newest reading
        total = self.total.reshape(-1)
        count = self.count.reshape(-1)
        total[cells] += np.add.reduceat(value, starts)
        count[cells] += np.diff(np.r_[starts, cell.size]).astype(np.int32)
        low = self.low.reshape(-1)
        high = self.high.reshape(-1)
        low[cells] = np.minimum(low[cells], np.minimum.reduceat(value, starts))
        high[cells] = np.maximum(high[cells], np.maximum.reduceat(value, starts))
        newer = t_ms[ends] > flat_last_t[cells]
        last_v = self.last_v.reshape(-1)
        flat_last_t[cells[newer]] = t_ms[ends][newer]
        last_v[cells[newer]] = value[ends][newer]
        return duplicates

    def block(
        self,
        first: int,
        stop: int,
        start_ms: int,
        step_ms: int,
        counter_rows: BoolArray,
    ) -> Block:
        """Read-only Block of slots ``first:stop`` (``start_ms`` is slot ``first``'s start)."""
        count = self.count[:, first:stop].copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            values = self.total[:, first:stop] / count
        if counter_rows.any():
            values[counter_rows] = self.last_v[counter_rows, first:stop]
        empty = count == 0
        values[empty] = np.nan
        low = self.low[:, first:stop].copy()
        high = self.high[:, first:stop].copy()
        low[empty] = np.nan
        high[empty] = np.nan
        for array in (values, count, low, high):
            array.flags.writeable = False
        return Block(start_ms, step_ms, values, count, low, high)


def slot_block(
    row: IntArray,
    t_ms: IntArray,
    value: FloatArray,
    rows: int,
    start_ms: int,
    step_ms: int,
    slots: int,
    counter_rows: BoolArray | None = None,
) -> Block:
    """One Block from loose readings (for replay's warm-up, harnesses and tests): readings
    outside ``[start_ms, start_ms + slots·step_ms)`` are ignored."""
    k = (t_ms - start_ms) // step_ms
    inside = (k >= 0) & (k < slots)
    arrays = SlotArrays.empty(rows, slots)
    arrays.add(row[inside], k[inside], t_ms[inside], value[inside])
    counters = np.zeros(rows, dtype=bool) if counter_rows is None else counter_rows
    return arrays.block(0, slots, start_ms, step_ms, counters)
