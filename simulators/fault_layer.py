"""The fault layer: meter and transport faults applied to the model's output.

:class:`FaultLayer` applies them to one time-ordered :class:`~simulators.model.Frame` after the
other and keeps what it must remember between frames (the value a stuck meter froze at, the
reading a counter was reset from, the true counter where an under-registering meter began to
read low). Late and duplicated batches come back as :class:`Delivery` objects: the readings of
one gateway at one moment and the time they arrive, for the publisher to send or the history
writer to place in the file. Process faults are not here: the model applies them to the
physics (see :mod:`simulators.faults`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from simulators.faults import (
    PROCESS_KINDS,
    RATES,
    TRANSPORT_KINDS,
    Fault,
    FaultKind,
    word_swap,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

K = FaultKind


@dataclass(frozen=True)
class SeriesLayout:
    """What the fault layer needs to know about the model's columns (one per meter and
    quantity)."""

    meters: Sequence[str]  # per column
    quantities: Sequence[str]  # per column
    counters: BoolArray  # per column: a cumulative register
    gateways: Mapping[str, str]  # meter id -> gateway
    sources: Sequence[str | None] = ()  # per column: the quantity a counter integrates


@dataclass
class Delivery:
    """Readings of one gateway at one source time, arriving at ``arrival_ms``: a late batch or
    a duplicate. ``columns`` index the model's series; ``t_offset_ms`` is any clock skew."""

    arrival_ms: int
    t_ms: int
    gateway: str
    columns: IntArray
    values: FloatArray
    t_offset_ms: IntArray
    duplicate: bool


class FrameLike(Protocol):
    """The parts of a model frame the layer reads and changes (see simulators.model.Frame)."""

    t_ms: IntArray
    values: FloatArray
    present: BoolArray | None
    t_offset_ms: IntArray | None


@dataclass
class _Compiled:
    index: int
    fault: Fault
    columns: IntArray
    counter_columns: IntArray


@dataclass
class FaultLayer:
    """Applies meter and transport faults to frames, in time order.

    Defaults when a fault names no ``quantity``: ``counter_reset`` and ``meter_replacement``
    act on every counter of the meter, ``counter_rollover`` on its first counter (``e_kwh``,
    ``vol_m3``, ...), ``stuck_value`` and ``word_swap`` on every quantity of the meter,
    ``meter_under_registration`` on every flow or power (``RATES``) and the counters that
    integrate them (with a ``quantity``: that rate and its counters). It acts first, on what
    the meter measures, and the other meter faults act on what it shows.
    A rollover needs the true counter value at its start before the simulation reaches it
    (the register wraps at ``ROLLOVER_MODULUS`` exactly then): the model supplies it through
    :attr:`anchors` (see ``ParkModel.prime``).
    """

    layout: SeriesLayout
    faults: Sequence[Fault]
    anchors: dict[int, tuple[float, float]] = field(default_factory=dict)  # true at, before
    details: dict[int, dict[str, Any]] = field(default_factory=dict)  # facts for ground truth
    _compiled: list[_Compiled] = field(default_factory=list, init=False)
    _captured: dict[int, FloatArray] = field(default_factory=dict, init=False)
    _ends: dict[int, FloatArray] = field(default_factory=dict, init=False)  # under-registration
    _last: FloatArray | None = field(default=None, init=False)  # previous frame's last row

    def __post_init__(self) -> None:
        lay = self.layout
        meters = np.array(lay.meters, dtype=object)
        quantities = np.array(lay.quantities, dtype=object)
        gateways = np.array([lay.gateways[m] for m in lay.meters], dtype=object)
        order = {
            K.METER_UNDER_REGISTRATION: -1,
            K.COUNTER_ROLLOVER: 0,
            K.METER_REPLACEMENT: 1,
            K.COUNTER_RESET: 2,
            K.STUCK_VALUE: 3,
            K.WORD_SWAP: 4,
            K.COMM_LOSS: 5,
            K.CLOCK_SKEW: 6,
            K.LATE_BATCHES: 7,
            K.DUPLICATE_BATCHES: 8,
        }
        chosen = [(i, f) for i, f in enumerate(self.faults) if f.kind not in PROCESS_KINDS]
        chosen.sort(key=lambda item: (order[item[1].kind], item[1].start_ms))
        for index, fault in chosen:
            if fault.kind in TRANSPORT_KINDS and fault.gateway is not None:
                mask = gateways == fault.gateway
            else:
                mask = meters == fault.meter
            if fault.quantity is not None:
                mask &= quantities == fault.quantity
            if fault.kind is K.METER_UNDER_REGISTRATION:
                mask = self._under_registered(mask, meters == fault.meter)
            if not mask.any():
                raise ValueError(f"{fault.kind}: nothing to apply it to ({fault.target!r})")
            counters = mask & lay.counters
            if fault.kind is K.COUNTER_ROLLOVER:
                counters = np.zeros_like(mask)
                counters[np.flatnonzero(mask & lay.counters)[:1]] = True
            if fault.kind in (K.COUNTER_RESET, K.COUNTER_ROLLOVER) and not counters.any():
                raise ValueError(f"{fault.kind}: meter {fault.meter!r} has no counter")
            self._compiled.append(
                _Compiled(index, fault, np.flatnonzero(mask), np.flatnonzero(counters))
            )

    def _under_registered(self, chosen: BoolArray, meter: BoolArray) -> BoolArray:
        """The rates among ``chosen`` columns, and the meter's counters that integrate them."""
        lay = self.layout
        rates = chosen & np.array([q in RATES for q in lay.quantities], dtype=bool)
        scaled = {lay.quantities[int(k)] for k in np.flatnonzero(rates)}
        sources = lay.sources or [None] * len(lay.quantities)
        integrating = meter & lay.counters & np.array([s in scaled for s in sources], dtype=bool)
        out: BoolArray = rates | integrating
        return out

    @property
    def rollovers(self) -> list[tuple[int, Fault, int]]:
        """(fault index, fault, column) of every rollover: what ``ParkModel.prime`` computes."""
        return [
            (c.index, c.fault, int(c.counter_columns[0]))
            for c in self._compiled
            if c.fault.kind is K.COUNTER_ROLLOVER
        ]

    def apply(self, frame: FrameLike, *, transport: bool = True) -> list[Delivery]:
        """Changes ``frame`` in place; returns the late and duplicated deliveries it produced
        (with ``transport=False`` late and duplicated batches are left out entirely)."""
        t = frame.t_ms
        if not self._compiled or t.size == 0:
            return []
        values = frame.values
        if frame.present is None:
            frame.present = np.ones(values.shape, dtype=bool)
        present = frame.present
        deliveries: list[Delivery] = []
        for c in self._compiled:
            f = c.fault
            rows = f.active(t)
            if f.kind is K.COUNTER_ROLLOVER:
                self._rollover(c, values)
                continue
            if f.kind is K.METER_REPLACEMENT:
                self._replacement(c, t, values, present)
                continue
            if f.kind is K.METER_UNDER_REGISTRATION:
                self._under_registration(c, t, values)
                continue
            if not rows.any():
                continue
            r = np.flatnonzero(rows)
            first = int(r[0])
            cols = c.columns
            if f.kind is K.COUNTER_RESET:
                cc = c.counter_columns
                if c.index not in self._captured:
                    self._captured[c.index] = values[first, cc].copy()
                    before = self._before(values, first, cc)
                    self.details[c.index] = {"reading_before": _first(before)}
                values[np.ix_(r, cc)] -= self._captured[c.index] - f.magnitude
            elif f.kind is K.STUCK_VALUE:
                if c.index not in self._captured:
                    self._captured[c.index] = values[first, cols].copy()
                values[np.ix_(r, cols)] = self._captured[c.index]
            elif f.kind is K.WORD_SWAP:
                values[np.ix_(r, cols)] = word_swap(values[np.ix_(r, cols)])
            elif f.kind is K.COMM_LOSS:
                present[np.ix_(r, cols)] = False
            elif f.kind is K.CLOCK_SKEW:
                if frame.t_offset_ms is None:
                    frame.t_offset_ms = np.zeros(values.shape, dtype=np.int64)
                frame.t_offset_ms[np.ix_(r, cols)] += round(f.magnitude * 1000)
            elif transport and f.kind in (K.LATE_BATCHES, K.DUPLICATE_BATCHES):
                late = f.kind is K.LATE_BATCHES
                delay_ms = round((f.magnitude if late else f.delay_s) * 1000)
                copies = 1 if late else max(1, round(f.magnitude))
                for row in r:
                    sent = cols[present[row, cols]]
                    if sent.size == 0:
                        continue
                    offsets = (
                        np.zeros(sent.size, dtype=np.int64)
                        if frame.t_offset_ms is None
                        else frame.t_offset_ms[row, sent].copy()
                    )
                    for _ in range(copies):
                        deliveries.append(
                            Delivery(
                                int(t[row]) + delay_ms,
                                int(t[row]),
                                self._gateway(f),
                                sent,
                                values[row, sent].copy(),
                                offsets,
                                duplicate=not late,
                            )
                        )
                    if late:
                        present[row, sent] = False
        self._last = values[-1].copy()
        return deliveries

    def _gateway(self, fault: Fault) -> str:
        if fault.gateway is not None:
            return fault.gateway
        return self.layout.gateways[fault.meter or ""]

    def _before(self, values: FloatArray, row: int, cols: IntArray) -> FloatArray | None:
        if row > 0:
            previous: FloatArray = values[row - 1, cols]
            return previous
        if self._last is None:
            return None
        last: FloatArray = self._last[cols]
        return last

    def _rollover(self, c: _Compiled, values: FloatArray) -> None:
        if c.index not in self.anchors:
            raise RuntimeError("a counter rollover needs ParkModel.prime() before the first frame")
        at, before = self.anchors[c.index]
        # the wrap falls halfway between the last sample before the start and the first after
        anchor = at - (at - before) / 2
        col = int(c.counter_columns[0])
        modulus = c.fault.magnitude
        values[:, col] = np.mod(values[:, col] - anchor, modulus)
        self.details.setdefault(
            c.index,
            {
                "reading_before": modulus - (anchor - before),
                "reading_after": at - anchor,
                "counter": self.layout.quantities[col],
            },
        )

    def _replacement(
        self, c: _Compiled, t: IntArray, values: FloatArray, present: BoolArray
    ) -> None:
        f = c.fault
        gap = f.active(t)
        if gap.any():
            present[np.ix_(np.flatnonzero(gap), c.columns)] = False
            first = int(np.flatnonzero(gap)[0])
            if c.index not in self.details:
                before = self._before(values, first, c.counter_columns)
                self.details[c.index] = {"old_reading": _first(before)}
        after = np.flatnonzero(t >= f.end_ms) if f.end_ms is not None else np.empty(0, np.int64)
        if after.size == 0 or c.counter_columns.size == 0:
            return
        cc = c.counter_columns
        if c.index not in self._captured:
            self._captured[c.index] = values[int(after[0]), cc].copy()
            self.details.setdefault(c.index, {})
            self.details[c.index]["new_reading"] = f.magnitude
        values[np.ix_(after, cc)] += f.magnitude - self._captured[c.index]

    def _under_registration(self, c: _Compiled, t: IntArray, values: FloatArray) -> None:
        """Rates read ``magnitude`` × true inside the window; counters advance by that share
        of the true increments from the window's first sample on, and keep the shortfall
        after it (so they never step back)."""
        f = c.fault
        share = f.magnitude
        rows = f.active(t)
        rates = np.setdiff1d(c.columns, c.counter_columns)
        cc = c.counter_columns
        if rows.any():
            r = np.flatnonzero(rows)
            values[np.ix_(r, rates)] *= share
            if c.index not in self._captured:
                self._captured[c.index] = values[int(r[0]), cc].copy()  # true, at the start
        start = self._captured.get(c.index)
        if start is None or cc.size == 0:
            return
        after = np.flatnonzero(t >= f.end_ms) if f.end_ms is not None else np.empty(0, np.int64)
        if after.size and c.index not in self._ends:
            self._ends[c.index] = values[int(after[0]), cc].copy()  # true, at the end
        if rows.any():
            r = np.flatnonzero(rows)
            values[np.ix_(r, cc)] = start + share * (values[np.ix_(r, cc)] - start)
        if after.size:
            values[np.ix_(after, cc)] -= (1 - share) * (self._ends[c.index] - start)


def _first(values: FloatArray | None) -> float | None:
    return None if values is None or values.size == 0 else float(values[0])
