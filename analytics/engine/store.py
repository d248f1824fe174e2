"""The window store: recent slots of many series as numpy arrays, in a few tables.

A table holds the rows of some gateways (whole gateways, up to a couple of thousand rows, so a
park with thousands of small gateways is still a handful of array operations) or, apart, the
virtual meters. Each keeps ``rows × open slots`` accumulators
(:class:`~analytics.engine.slots.SlotArrays`) from the oldest slot some consumer still needs to
the newest reading, growing as data runs ahead and dropping slots every consumer has read. A
gateway that lags (a backlog being held for) keeps only its own table wide. A reading for a
slot its gateway has closed is *late*: it is counted (and reported, for the accounting to
recompute what it touches), never written into the past.

Per gateway, transport facts are kept per slot: batches, duplicate readings, late readings, and
the offset between source time and arrival (clock skew, late delivery).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from analytics.engine.contract import Block, FloatArray, IntArray, TransportStats
from analytics.engine.slots import BoolArray, Columns, SlotArrays

# slots added at a time when data runs ahead: widening in place writes only the new slots'
# counts (slot-major, one stretch of memory), so a small step costs little, while a large one
# made every table's first buffer several times the window it holds (megabytes per table)
_GROW = 16
MAX_AHEAD_MS = 2 * 86_400_000  # a reading this far ahead of the park's clock is refused


class Transport(Columns):
    """Per gateway of a table (rows) and slot (columns): transport counters."""

    FILL = (
        ("batches", 0, np.int32),
        ("duplicates", 0, np.int32),
        ("late", 0, np.int32),
        ("offset_sum", 0.0, np.float64),
    )
    batches: npt.NDArray[np.int32]
    duplicates: npt.NDArray[np.int32]
    late: npt.NDArray[np.int32]
    offset_sum: FloatArray

    @classmethod
    def empty(cls, gateways: int, slots: int) -> Transport:
        return cls(*cls._empty_arrays(gateways, slots))


@dataclass
class Table:
    """Some gateways' rows over open slots: column 0 is slot ``base`` (absolute number)."""

    name: str
    counter_rows: BoolArray
    gateways: list[str]  # the gateways whose rows it holds (empty for virtual meters)
    base: int | None = None
    cells: SlotArrays = field(init=False)
    transport: Transport = field(init=False)
    late_readings: int = 0
    refused_ahead: int = 0

    def __post_init__(self) -> None:
        self.cells = SlotArrays.empty(int(self.counter_rows.size), 0)
        self.transport = Transport.empty(len(self.gateways), 0)

    @property
    def stop(self) -> int:
        """One past the newest slot held."""
        assert self.base is not None
        return self.base + self.cells.slots

    def ensure(self, first: int, last: int) -> None:
        """Hold slots ``first..last`` (absolute), growing the table as needed."""
        if self.base is None:
            self.base = first
        if first < self.base:
            n = self.base - first
            self.cells = self.cells.widened(n, 0)
            self.transport = self.transport.widened(n, 0)
            self.base = first
        if last >= self.stop:
            n = last - self.stop + 1 + _GROW
            self.cells = self.cells.widened(0, n)
            self.transport = self.transport.widened(0, n)

    def drop_before(self, slot: int) -> None:
        """Forget slots before ``slot`` (every consumer has read them)."""
        if self.base is None or slot <= self.base:
            return
        n = min(slot - self.base, self.cells.slots)
        self.cells = self.cells.dropped(n)
        self.transport = self.transport.dropped(n)
        self.base = slot if self.cells.slots == 0 else self.base + n

    def block(self, first: int, stop: int, step_ms: int) -> Block:
        """Slots ``first:stop`` (absolute) of every row, read-only."""
        self.ensure(first, max(first, stop - 1))
        assert self.base is not None
        i, j = first - self.base, stop - self.base
        return self.cells.block(i, j, first * step_ms, step_ms, self.counter_rows)

    def stats(self, first: int, stop: int) -> TransportStats:
        """Transport facts of its gateways over slots ``first:stop``."""
        assert self.base is not None
        i, j = first - self.base, stop - self.base
        t = self.transport
        batches = t.batches[:, i:j].copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            offset = np.where(batches > 0, t.offset_sum[:, i:j] / batches, np.nan)
        return TransportStats(
            tuple(self.gateways),
            batches,
            t.duplicates[:, i:j].copy(),
            t.late[:, i:j].copy(),
            offset,
        )

    def add(
        self,
        row: IntArray,
        slot: IntArray,
        t_ms: IntArray,
        value: FloatArray,
        open_from: IntArray,
        ahead_from: int,
    ) -> tuple[BoolArray, BoolArray]:
        """Readings into their slots; for each, slots before its ``open_from`` are closed.
        Returns which readings were duplicates and which were late (not stored). A reading for
        slot ``ahead_from`` or later is absurdly far ahead of the park's clock: refused and
        counted (it would stretch the table)."""
        late = slot < open_from
        ahead = slot >= ahead_from
        dup = np.zeros(row.size, dtype=bool)
        keep = ~(late | ahead)
        if not keep.all():
            self.late_readings += int(late.sum())
            self.refused_ahead += int(ahead.sum())
        where = np.flatnonzero(keep)
        if where.size == 0:
            return dup, late
        self.ensure(int(slot[where].min()), int(slot[where].max()))
        assert self.base is not None
        dup[where] = self.cells.add(row[where], slot[where] - self.base, t_ms[where], value[where])
        return dup, late
