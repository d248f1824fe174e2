"""The one contract every detector follows, shaped after river's anomaly detectors but for
many meters at once.

A detector declares what it needs (:class:`Needs`: utilities, quantities, roles; or its own
:meth:`Detector.select` for zones and trees), is given the series rows the engine resolved,
and consumes aligned :class:`Block` s — rows × time slots of one step, NaN where no reading came
— for all its rows at once, with numpy. It returns :class:`Output`: findings (an anomaly holds,
or has ended) and derived points for InfluxDB. The engine's event book turns findings into
events with a lifecycle (``parkwatch.events``).

What every detector promises, and ``tests/test_detector_contract.py`` checks for each:

* **state survives a snapshot and restore**: ``state()`` returns plain data (numbers, strings,
  lists, dicts, numpy arrays); a new instance given it with ``restore`` continues exactly as the
  old one would have;
* **input is not mutated** (blocks are read-only);
* **determinism**: the same input gives the same output;
* **chunk-size invariance**: feeding the same slots in blocks of any size gives the same
  findings — so a detector keeps whatever it needs across block boundaries;
* **live and replay agree**: both feed the engine the same way, so they give the same events.

``Scope.METER`` detectors treat each row on its own: a gateway's meters advance with that
gateway's watermark, so one late gateway does not hold back the others' alerts. Such a detector
either takes blocks of any subset of its rows (``row_subsets``; one instance per park, state
indexed by ``Block.row_index``) or gets one instance per gateway. ``Scope.PARK`` detectors compare
rows (balances, zones, coincident peaks) and run once per park, on the park clock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import chain, compress
from typing import Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt

from parkwatch.calendar import day_types, local_ms
from parkwatch.events import Estimate, Family, Severity
from parkwatch.quantities import Kind, Quantity, Utility
from parkwatch.site import MeterTree, Park, Role
from parkwatch.tariffs import unit_price

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DAY_MS = 86_400_000


class Scope(StrEnum):
    METER = "meter"  # rows independent: may run per clock group
    PARK = "park"  # rows compared: one instance on the park clock


@dataclass(frozen=True, slots=True, order=True)
class SeriesKey:
    """One series: a meter's quantity."""

    meter: str
    quantity: str

    def __str__(self) -> str:
        return f"{self.meter}/{self.quantity}"


@dataclass(frozen=True, slots=True)
class Needs:
    """What a detector works on. The default selection takes every meter whose utility and
    role match and gives it one row per listed quantity (rows of a meter are adjacent, in the
    order listed); a detector with structured needs (zones, trees) overrides ``select``."""

    quantities: tuple[str, ...]
    utilities: frozenset[Utility] = frozenset()  # empty: any utility
    roles: frozenset[Role | None] | None = None  # None: any role; include None for "no role"
    virtual: bool = True  # virtual meters (formulas) count too

    def select(self, ctx: ParkContext) -> list[SeriesKey]:
        out: list[SeriesKey] = []
        for meter in ctx.tree.meters.values():
            if self.utilities and meter.utility not in self.utilities:
                continue
            if self.roles is not None and meter.role not in self.roles:
                continue
            if meter.is_virtual and not self.virtual:
                continue
            out.extend(
                SeriesKey(meter.id, q) for q in self.quantities if q in ctx.quantities_of(meter.id)
            )
        return out


@dataclass(frozen=True)
class TransportStats:
    """What the transport did for some gateways (rows), per slot of a block (columns: the slot
    of the data a batch carried, or the first open one when that was closed): for transport
    faults."""

    gateways: tuple[str, ...] = ()
    batches: npt.NDArray[np.int32] = field(default_factory=lambda: _empty(np.int32))
    duplicates: npt.NDArray[np.int32] = field(default_factory=lambda: _empty(np.int32))
    late: npt.NDArray[np.int32] = field(default_factory=lambda: _empty(np.int32))
    # mean (source time − arrival time) of the batches; NaN where none came. A clock ahead
    # shows > 0; late delivery or a clock behind < 0
    offset_ms: FloatArray = field(default_factory=lambda: _empty(np.float64))

    def window(self, first: int, stop: int) -> TransportStats:
        return TransportStats(
            self.gateways,
            self.batches[:, first:stop],
            self.duplicates[:, first:stop],
            self.late[:, first:stop],
            self.offset_ms[:, first:stop],
        )

    def only(self, gateways: Collection[str]) -> TransportStats:
        """The rows of these gateways."""
        # membership tested and kept in C (map, compress), not a Python loop: thousands of
        # gateways' rows an advance at 10,000 meters
        inside = list(map(gateways.__contains__, self.gateways))
        if all(inside):
            return self
        keep = list(compress(range(len(inside)), inside))
        return TransportStats(
            tuple(compress(self.gateways, inside)),
            self.batches[keep],
            self.duplicates[keep],
            self.late[keep],
            self.offset_ms[keep],
        )

    @classmethod
    def joined(cls, parts: Sequence[TransportStats]) -> TransportStats:
        parts = [p for p in parts if p.gateways]
        if not parts:
            return cls()
        if len(parts) == 1:
            return parts[0]
        return cls(
            tuple(chain.from_iterable(p.gateways for p in parts)),
            np.concatenate([p.batches for p in parts]),
            np.concatenate([p.duplicates for p in parts]),
            np.concatenate([p.late for p in parts]),
            np.concatenate([p.offset_ms for p in parts]),
        )


def _empty(dtype: type[np.generic]) -> npt.NDArray[Any]:
    return np.zeros((0, 0), dtype=dtype)


@dataclass(frozen=True)
class Block:
    """Aligned slots ``[start_ms + k·step_ms, start_ms + (k+1)·step_ms)`` for a detector's rows.

    ``values`` holds the mean of an instant quantity's readings in the slot, or a counter's last
    reading; NaN where none came. ``count`` is how many distinct readings made the slot;
    ``low``/``high`` their extremes. All arrays are read-only."""

    start_ms: int
    step_ms: int
    values: FloatArray  # [rows, slots]
    count: npt.NDArray[np.int32]
    low: FloatArray
    high: FloatArray
    group: str | None = None  # the gateway when the block holds one gateway's rows
    transport: TransportStats = field(default_factory=TransportStats)
    # which of the detector's rows (indices into its series) the block holds, in order; None:
    # all of them. Only detectors with ``row_subsets`` get blocks of some of their rows.
    row_index: npt.NDArray[np.intp] | None = None

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    @property
    def slots(self) -> int:
        return int(self.values.shape[1])

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.slots * self.step_ms

    def times(self) -> IntArray:
        """Start of every slot (epoch ms)."""
        return self.start_ms + np.arange(self.slots, dtype=np.int64) * self.step_ms

    def take(self, rows: Sequence[int] | npt.NDArray[np.intp]) -> Block:
        """The same slots for a subset of these rows (read-only copies; ``rows`` says which)."""
        idx = np.asarray(rows, dtype=np.intp)
        return Block(
            self.start_ms,
            self.step_ms,
            _frozen(self.values[idx]),
            _frozen(self.count[idx]),
            _frozen(self.low[idx]),
            _frozen(self.high[idx]),
            self.group,
            self.transport,
            idx if self.row_index is None else self.row_index[idx],
        )

    def window(self, first: int, stop: int) -> Block:
        """Slots ``first:stop`` of this block."""
        return Block(
            self.start_ms + first * self.step_ms,
            self.step_ms,
            self.values[:, first:stop],
            self.count[:, first:stop],
            self.low[:, first:stop],
            self.high[:, first:stop],
            self.group,
            self.transport.window(first, stop),
            self.row_index,
        )


def _frozen(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.flags.writeable = False
    return array


def copy_state(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A detector's state dict for a snapshot: arrays copied, so the snapshot never aliases."""
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in fields.items()}


def restore_state(fields: dict[str, Any], state: Mapping[str, Any], name: str) -> None:
    """Load a snapshot into a detector's state dict; a key it does not hold is an error."""
    for key, value in state.items():
        if key not in fields:
            raise ValueError(f"unknown {name} state {key!r}")
        fields[key] = np.array(value, copy=True) if isinstance(value, np.ndarray) else value


@dataclass(frozen=True, slots=True)
class Finding:
    """An anomaly holds (``active``) or has ended at data time ``at_ms``.

    Exactly one of ``meter`` and ``zone`` is set (a zone may also be ``enterprise:<id>`` or
    ``park``). ``at_ms`` of the finding that opens an event becomes its ``detected_at``: the end
    of the slot whose data raised it, never earlier."""

    kind: str
    family: Family
    at_ms: int
    active: bool
    meter: str | None = None
    zone: str | None = None
    start_ms: int | None = None  # onset estimate (default: at_ms)
    severity: Severity = Severity.MINOR
    estimate: Estimate | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return self.meter if self.meter is not None else (self.zone or "")


class DerivedPoint(NamedTuple):
    """A derived series point for InfluxDB (e.g. ``demand_15m``); tags ``park`` is added.

    A named tuple, not a frozen dataclass: a 10,000-meter park makes about a million a day
    (a demand point per meter and block), and a frozen dataclass's construction cost a
    second of them."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, float | int | str | bool]
    t_ms: int


@dataclass
class Output:
    findings: list[Finding] = field(default_factory=list)
    points: list[DerivedPoint] = field(default_factory=list)

    def extend(self, other: Output) -> None:
        self.findings.extend(other.findings)
        self.points.extend(other.points)


class ParkContext:
    """What detectors know of their park: the site model, its tree, its clock and prices."""

    def __init__(self, park: Park, reported: Mapping[str, Sequence[str]] | None = None) -> None:
        self.park = park
        self.tree: MeterTree = park.tree
        self.zone = park.zone
        self.step_ms = int(park.analytics.step_s * 1000)
        # meter → the quantities it reports; by default every quantity its utility allows
        self._reported = reported

    def quantities_of(self, meter_id: str) -> Sequence[str]:
        if self._reported is not None and meter_id in self._reported:
            return self._reported[meter_id]
        return list(self.tree.meters[meter_id].bounds)

    def quantity(self, name: str) -> Quantity:
        return self.park.quantity_table[name]

    def is_counter(self, name: str) -> bool:
        return self.park.quantity_table[name].kind is Kind.COUNTER

    def local_ms(self, t_ms: IntArray) -> IntArray:
        """Epoch ms shifted to the park's wall clock (for cutting local days and hours)."""
        return local_ms(t_ms, self.zone)

    def day_types(self, t_ms: IntArray) -> npt.NDArray[np.int8]:
        """0 workday, 1 Saturday, 2 Sunday, 3 public holiday — make-up working days (调休)
        count as workdays — on the park's local calendar."""
        return day_types(self.local_ms(t_ms) // DAY_MS)

    def unit_price(self, utility: Utility, t_ms: int) -> float | None:
        """¥ per unit of the utility's main counter at ``t_ms``, where the park has a tariff."""
        return unit_price(self.park.tariffs, self.zone, utility, t_ms)


class Detector(ABC):
    """Base of every detector. Subclasses set the class attributes and implement the three
    abstract methods; ``params`` overrides their documented defaults (fixed for all inputs:
    tune on public data and the simulator, never per file)."""

    name: ClassVar[str]  # the detector family, e.g. "peaks"
    kinds: ClassVar[tuple[str, ...]]  # the event kinds it raises
    scope: ClassVar[Scope] = Scope.METER
    needs: ClassVar[Needs]
    # a meter-scope detector that takes blocks of any subset of its rows (``row_index``): the
    # engine then runs one instance for the whole park, vectorised across every meter, and
    # feeds each gateway's rows as they complete. Without it, one instance per gateway.
    row_subsets: ClassVar[bool] = False
    # a detector that reads its blocks' arrays only by ``[row, slot]`` in compiled kernels
    # (never a numpy reduction, whose rounding can follow the memory layout): the engine may
    # then hand it views of the shared block, laid out slot-major like the window store's
    # tables; the others get C-contiguous arrays
    any_layout: ClassVar[bool] = False
    # a detector that reads its blocks' ``values`` alone: the engine then copies only them
    # out of the shared block, and ``count``, ``low`` and ``high`` come empty (0 × 0), so
    # a read of them fails loudly rather than silently
    values_only: ClassVar[bool] = False

    def __init__(
        self,
        ctx: ParkContext,
        series: Sequence[SeriesKey],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.ctx = ctx
        self.series = list(series)
        self.row = {key: i for i, key in enumerate(self.series)}
        self.params = dict(params or {})

    @classmethod
    def select(cls, ctx: ParkContext) -> list[SeriesKey]:
        """The rows this detector wants in ``ctx``'s park (empty: it has nothing to do)."""
        return cls.needs.select(ctx)

    @abstractmethod
    def update(self, block: Block) -> Output:
        """Consume the next slots (they follow the previous block's without a hole)."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Everything needed to continue, as plain data and numpy arrays."""

    @abstractmethod
    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state()`` of an instance with the same series."""
