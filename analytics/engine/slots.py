"""Readings into aligned slots: the one rule the window store, replay and tests share.

A slot of a series is ``[start + k·step, start + (k+1)·step)``. Its value is the mean of an
instant quantity's readings in it, or a counter's last reading (by time); ``count`` is the
number of distinct readings, ``low``/``high`` their extremes. A reading at the same time as one
already in the slot is a duplicate and counts once. Slots without readings are NaN: a gap is
a gap, never a zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from analytics.engine.contract import Block, FloatArray, IntArray
from analytics.kernels.feeding import add_one_per_cell

BoolArray = npt.NDArray[np.bool_]


class Columns:
    """``rows × slots`` arrays (one per name in ``FILL``) held in wider buffers: dropping the
    oldest slots moves the start, and new slots at either end reuse the room left there, so
    the window store's steady drop-and-grow copies its data only now and then, not at every
    advance. Each array is a view of its buffer; writes through it land in the buffer.
    Pickled as the plain arrays.

    A buffer is laid out slot-major (its transpose is C-contiguous: a slot's cells of every
    row are adjacent), though indexed ``[row, slot]`` like the arrays: a poll cycle's readings
    (one slot, every row) then merge into one stretch of memory rather than one cache line
    per row, and a block's slots of consecutive rows are read from lines already fetched."""

    FILL: tuple[tuple[str, Any, type[np.generic]], ...] = ()  # name, empty value, dtype
    # arrays whose new slots are not filled with their empty value: a cell of them is read
    # only where the others say it holds data, and set empty when it first gets some
    STALE: frozenset[str] = frozenset()

    def __init__(self, *arrays: npt.NDArray[Any]) -> None:
        self._set(arrays)

    def _set(self, arrays: Sequence[npt.NDArray[Any]]) -> None:
        # slot-major storage (see above); no copy for arrays that already are
        self._buf = [np.ascontiguousarray(a.T).T for a in arrays]
        self._head = 0
        self._n = int(self._buf[0].shape[1])
        self._views()

    def _views(self) -> None:
        h, n = self._head, self._n
        for (name, _, _), buf in zip(self.FILL, self._buf, strict=True):
            setattr(self, name, buf[:, h : h + n])

    @classmethod
    def _empty_arrays(cls, rows: int, slots: int, *, stale: bool = False) -> list[npt.NDArray[Any]]:
        """``rows × slots`` arrays, slot-major (see above); with ``stale``, the ``STALE`` ones
        left unfilled (their cells are set when they first get data)."""
        return [
            np.empty((slots, rows), dtype=dtype).T
            if stale and name in cls.STALE
            else np.full((slots, rows), fill, dtype=dtype).T
            for name, fill, dtype in cls.FILL
        ]

    @property
    def slots(self) -> int:
        return self._n

    @property
    def capacity(self) -> int:
        return int(self._buf[0].shape[1])

    def _arrays(self) -> list[npt.NDArray[Any]]:
        return [getattr(self, name) for name, _, _ in self.FILL]

    def widened(self, before: int, after: int) -> Self:
        """``before`` empty slots in front and ``after`` behind (in place; returns self)."""
        h, n = self._head, self._n
        if before <= h and h + n + after <= self.capacity:
            for (name, fill, _), buf in zip(self.FILL, self._buf, strict=True):
                if name not in self.STALE:
                    buf[:, h - before : h] = fill
                    buf[:, h + n : h + n + after] = fill
            self._head, self._n = h - before, n + before + after
        elif before + n + after <= self.capacity:
            # room enough, but not where it is needed: the slots held move to the front
            for (name, fill, _), buf in zip(self.FILL, self._buf, strict=True):
                buf[:, before : before + n] = buf[:, h : h + n]
                if name not in self.STALE:
                    buf[:, :before] = fill
                    buf[:, before + n : before + n + after] = fill
            self._head, self._n = 0, before + n + after
        else:
            # room for as many slots again behind, where the window grows
            need = before + n + after
            rows = int(self._buf[0].shape[0])
            # the STALE arrays unfilled: filling them wrote (and faulted in) megabytes per
            # table that nothing reads before writing
            bufs = self._empty_arrays(rows, need + max(need, 64), stale=True)
            for old, new in zip(self._arrays(), bufs, strict=True):
                new[:, before : before + n] = old
            self._buf, self._head, self._n = bufs, 0, need
        self._views()
        return self

    def dropped(self, n: int) -> Self:
        """Without the first ``n`` slots (in place; returns self)."""
        n = min(n, self._n)
        self._head += n
        self._n -= n
        self._views()
        return self

    def __getstate__(self) -> dict[str, Any]:
        return {
            name: np.ascontiguousarray(a)
            for (name, _, _), a in zip(self.FILL, self._arrays(), strict=True)
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._set([state[name] for name, _, _ in self.FILL])


class SlotArrays(Columns):
    """Accumulators of ``rows × slots`` cells; merged batch by batch, read as a Block."""

    FILL = (
        ("total", 0.0, np.float64),
        ("count", 0, np.int32),
        ("low", np.inf, np.float64),
        ("high", -np.inf, np.float64),
        ("last_t", np.iinfo(np.int64).min, np.int64),  # time of the cell's newest reading
        ("last_v", np.nan, np.float64),  # its value
    )
    # what a cell holds is known from its count: the rest are set when it gets its first
    # reading (add), or all at once (the engine's virtual meters)
    STALE = frozenset({"total", "low", "high", "last_t", "last_v"})
    total: FloatArray
    count: npt.NDArray[np.int32]
    low: FloatArray
    high: FloatArray
    last_t: IntArray
    last_v: FloatArray

    @classmethod
    def empty(cls, rows: int, slots: int) -> SlotArrays:
        return cls(*cls._empty_arrays(rows, slots))

    def __getstate__(self) -> dict[str, Any]:
        # cells without a reading saved empty, not as whatever their unfilled buffers held
        # (Columns.STALE): the same data gives the same snapshot. Copies, filled: the base's
        # arrays are views of the live buffers where already contiguous (one row or slot)
        state = super().__getstate__()
        empty = state["count"] == 0
        for name, fill, _ in self.FILL:
            if name in self.STALE:
                saved = np.array(state[name], order="C", copy=True)
                saved[empty] = fill
                state[name] = saved
        return state

    def _flat(self, name: str) -> npt.NDArray[Any]:
        """The whole buffer of an array, flat (cells: (head + slot) · rows + row), a view."""
        flat = self._buf[[f[0] for f in self.FILL].index(name)].T.reshape(-1)
        assert flat.base is not None  # writes land in the buffer
        return flat

    @property
    def rows(self) -> int:
        return int(self._buf[0].shape[0])

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
        # cells of the whole buffers (see Columns), where the flat views write through
        return self.add_cells((self._head + slot) * self.rows + row, t_ms, value)

    @property
    def head(self) -> int:
        """Where slot 0 is in the buffers (a flat cell is (head + slot) · rows + row)."""
        return self._head

    def flats(self) -> tuple[FloatArray, npt.NDArray[np.int32], FloatArray, FloatArray, IntArray,
                             FloatArray]:  # fmt: skip
        """Every array's whole buffer, flat (cells as at :attr:`head`), in ``FILL``'s order:
        what the compiled merges write through."""
        return (self._flat("total"), self._flat("count"), self._flat("low"), self._flat("high"),
                self._flat("last_t"), self._flat("last_v"))  # fmt: skip

    def add_cells(self, cell: IntArray, t_ms: IntArray, value: FloatArray) -> BoolArray:
        """:meth:`add` of readings given by their flat cells (see :attr:`head`)."""
        # at most one reading per cell (the usual batch: one per series and poll cycle): no
        # sort needed, each reading merges into its cell alone, in one compiled pass
        duplicates = np.zeros(cell.size, dtype=bool)
        if add_one_per_cell(cell, t_ms, value, *self.flats(), duplicates):
            return duplicates
        # cells still empty start so here (see Columns.STALE)
        flat_last_t = self._flat("last_t")
        self._clear_empty(cell)
        # sort by cell then time, so each cell's readings are adjacent and in time order
        order = np.lexsort((t_ms, cell))
        cell, t_ms, value = cell[order], t_ms[order], value[order]
        # a duplicate repeats the time of the previous reading of its cell, in this batch or
        # the newest one already stored
        same_as_prev = np.zeros(cell.size, dtype=bool)
        same_as_prev[1:] = (cell[1:] == cell[:-1]) & (t_ms[1:] == t_ms[:-1])
        dup = same_as_prev | (t_ms == flat_last_t[cell])
        duplicates = np.zeros(order.size, dtype=bool)
        duplicates[order[dup]] = True
        if dup.any():
            keep = ~dup
            cell, t_ms, value = cell[keep], t_ms[keep], value[keep]
            if cell.size == 0:
                return duplicates
        starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
        cells = cell[starts]
        ends = np.r_[starts[1:], cell.size] - 1  # index of each cell's newest reading
        total = self._flat("total")
        count = self._flat("count")
        total[cells] += np.add.reduceat(value, starts)
        count[cells] += np.diff(np.r_[starts, cell.size]).astype(np.int32)
        low = self._flat("low")
        high = self._flat("high")
        low[cells] = np.minimum(low[cells], np.minimum.reduceat(value, starts))
        high[cells] = np.maximum(high[cells], np.maximum.reduceat(value, starts))
        newer = t_ms[ends] > flat_last_t[cells]
        last_v = self._flat("last_v")
        flat_last_t[cells[newer]] = t_ms[ends][newer]
        last_v[cells[newer]] = value[ends][newer]
        return duplicates

    def _clear_empty(self, cell: IntArray) -> None:
        """Cells (flat) without a reading yet: their accumulators set empty."""
        empty = cell[self._flat("count")[cell] == 0]
        for name, fill, _ in self.FILL:
            if name in self.STALE:
                self._flat(name)[empty] = fill

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
