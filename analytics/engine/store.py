"""The window store: recent slots of many series as numpy arrays, one table per clock group.

A clock group is one gateway's series (they complete together, see ``clocks``) or, for
virtual meters, the park. Each group keeps ``rows × open slots`` accumulators
(:class:`~analytics.engine.slots.SlotArrays`) from the oldest slot some consumer still needs
to the newest reading, growing as data runs ahead and dropping slots every consumer has read.
A reading for a slot that is already gone is *late*: it is counted (and reported, for the
accounting to recompute what it touches), never written into the past.

Per gateway, transport facts are kept per slot of their arrival: batches, duplicate readings,
late readings, and the offset between source time and arrival (clock skew, late delivery).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.engine.contract import Block, FloatArray, GatewayStats, IntArray
from analytics.engine.slots import BoolArray, SlotArrays

_GROW = 64  # slots added at a time when data runs ahead
MAX_AHEAD_MS = 2 * 86_400_000  # a reading this far ahead of the park's clock is refused


@dataclass
class Transport:
    """Per-slot transport counters of one gateway (slot of arrival)."""

    batches: npt.NDArray[np.int32]
    duplicates: npt.NDArray[np.int32]
    late: npt.NDArray[np.int32]
    offset_sum: FloatArray

    @classmethod
    def empty(cls, slots: int) -> Transport:
        return cls(
            np.zeros(slots, dtype=np.int32),
            np.zeros(slots, dtype=np.int32),
            np.zeros(slots, dtype=np.int32),
            np.zeros(slots),
        )

    def widened(self, before: int, after: int) -> Transport:
        def pad(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return np.pad(a, (before, after))

        return Transport(
            pad(self.batches), pad(self.duplicates), pad(self.late), pad(self.offset_sum)
        )

    def dropped(self, n: int) -> Transport:
        return Transport(
            self.batches[n:].copy(),
            self.duplicates[n:].copy(),
            self.late[n:].copy(),
            self.offset_sum[n:].copy(),
        )


@dataclass
class Group:
    """One clock group's open slots: column 0 is slot ``base`` (absolute slot number)."""

    name: str
    rows: int
    counter_rows: BoolArray
    base: int | None = None
    cells: SlotArrays = field(init=False)
    transport: Transport = field(init=False)
    late_readings: int = 0
    refused_ahead: int = 0

    def __post_init__(self) -> None:
        self.cells = SlotArrays.empty(self.rows, 0)
        self.transport = Transport.empty(0)

    @property
    def stop(self) -> int:
        """One past the newest slot held."""
        assert self.base is not None
        return self.base + self.cells.slots

    def ensure(self, first: int, last: int) -> None:
        """Hold slots ``first..last`` (absolute), growing the tables as needed."""
        if self.base is None:
            self.base = first
        if first < self.base:
            self._prepend(self.base - first)
        if last >= self.stop:
            self._append(last - self.stop + 1 + _GROW)

    def _append(self, n: int) -> None:
        self.cells = self.cells.widened(0, n)
        self.transport = self.transport.widened(0, n)

    def _prepend(self, n: int) -> None:
        self.cells = self.cells.widened(n, 0)
        self.transport = self.transport.widened(n, 0)
        assert self.base is not None
        self.base -= n

    def drop_before(self, slot: int) -> None:
        """Forget slots before ``slot`` (every consumer has read them)."""
        if self.base is None or slot <= self.base:
            return
        n = min(slot - self.base, self.cells.slots)
        self.cells = self.cells.dropped(n)
        self.transport = self.transport.dropped(n)
        self.base += n
        if self.cells.slots == 0:
            self.base = slot

    def block(self, first: int, stop: int, step_ms: int) -> Block:
        """Slots ``first:stop`` (absolute) of every row, read-only."""
        self.ensure(first, max(first, stop - 1))
        assert self.base is not None
        i, j = first - self.base, stop - self.base
        return self.cells.block(i, j, first * step_ms, step_ms, self.counter_rows)

    def stats(self, gateway: str, first: int, stop: int) -> GatewayStats:
        assert self.base is not None
        i, j = first - self.base, stop - self.base
        t = self.transport
        batches = t.batches[i:j].copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            offset = np.where(batches > 0, t.offset_sum[i:j] / batches, np.nan)
        return GatewayStats(gateway, batches, t.duplicates[i:j].copy(), t.late[i:j].copy(), offset)


class WindowStore:
    """The groups of one park, and where each group's readings go."""

    def __init__(self, step_ms: int) -> None:
        self.step_ms = step_ms
        self.groups: dict[str, Group] = {}

    def add_group(self, name: str, counter_rows: BoolArray) -> Group:
        group = Group(name, int(counter_rows.size), counter_rows)
        self.groups[name] = group
        return group

    def add(
        self,
        group: Group,
        row: IntArray,
        t_ms: IntArray,
        value: FloatArray,
        open_from: IntArray,
        ahead_from: int,
    ) -> tuple[BoolArray, BoolArray]:
        """Readings of one group; for each, slots before its ``open_from`` are closed. Returns
        which readings were duplicates and which were late (they touch closed slots and are
        not stored). A reading for slot ``ahead_from`` or later is absurdly far ahead of the
        park's clock: refused and counted (it would stretch the tables)."""
        slot = t_ms // self.step_ms
        late = slot < open_from
        ahead = slot >= ahead_from
        dup = np.zeros(row.size, dtype=bool)
        keep = ~(late | ahead)
        if not keep.all():
            group.late_readings += int(late.sum())
            group.refused_ahead += int(ahead.sum())
        where = np.flatnonzero(keep)
        if where.size == 0:
            return dup, late
        group.ensure(int(slot[where].min()), int(slot[where].max()))
        assert group.base is not None
        dup[where] = group.cells.add(
            row[where], slot[where] - group.base, t_ms[where], value[where]
        )
        return dup, late
