"""One park's streaming engine: readings in; events and derived series out.

Live (the analytics service) and replay drive it the same way — :meth:`ParkEngine.feed` for a
gateway's message, :meth:`ParkEngine.feed_rows` for a stretch of replayed rows,
:meth:`ParkEngine.advance` to run the detectors over what is complete — so they give the same
events.

Wiring, set up once from the site model: every registered detector selects its series; each
series lives in its gateway's table (a clock group; virtual meters are computed on the park's
clock). Closing is decided per gateway, slot by slot of the park's clock (``clocks``): one late
gateway does not hold back the others' alerts. On advance, the gateways whose slots closed are
taken together where they closed the same slots (normally all of them), and ``Scope.METER``
detectors get those rows as one block — one instance for the whole park, vectorised across all
its meters. Then the park clock (the slowest gateway heard from) closes the slots every gateway
has, virtual meters are computed for them, and ``Scope.PARK`` detectors run. Findings go
through the event book.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.engine.clocks import NEVER, ClockRules, Clocks
from analytics.engine.contract import (
    Block,
    DerivedPoint,
    Detector,
    Finding,
    FloatArray,
    IntArray,
    Output,
    ParkContext,
    Scope,
    SeriesKey,
    TransportStats,
)
from analytics.engine.events import EventBook, EventRules
from analytics.engine.slots import BoolArray
from analytics.engine.store import MAX_AHEAD_MS, Table
from analytics.kernels.block import gather_block
from analytics.kernels.clocks import NONE, feed_clocks
from analytics.kernels.feeding import (
    add_transport,
    merge_rows,
    route_readings,
    span_bounds,
    table_cells,
    transport_runs,
)
from parkwatch.events import Event
from parkwatch.formula import Formula, parse_formula
from parkwatch.site import Park

log = logging.getLogger(__name__)

VIRTUAL = "_virtual"  # the table of virtual meters: computed on the park's clock
TABLE_ROWS = 2048  # gateways are packed into tables of about this many rows
UNSET = -(2**62)  # a slot number before any
MAX_BLOCK_SLOTS = 1440  # the most slots detectors are given at once (a day of minutes)


@dataclass
class Batch:
    """Readings of one gateway that arrived together: one message (live)."""

    gateway: str
    seq: int | None
    series: IntArray  # engine series index of each value (see ParkEngine.index)
    t_ms: IntArray
    value: FloatArray
    arrival_ms: int


@dataclass
class Rows:
    """Readings in arrival order, of any gateways: a stretch of a replay. Consecutive rows of
    one gateway with one time are one batch, as that gateway's message would have been."""

    series: IntArray
    t_ms: IntArray
    value: FloatArray
    gateway: IntArray  # number in ParkEngine.gateways
    arrival_ms: IntArray
    duplicate: BoolArray  # seen before (same series and time): counted, not stored


@dataclass
class Advanced:
    """What feeding or advancing produced."""

    events: list[Event] = field(default_factory=list)
    points: list[DerivedPoint] = field(default_factory=list)
    # (meter, first, last) data times of late readings: closed slots they would have touched
    late: list[tuple[str, int, int]] = field(default_factory=list)
    # how many readings those are (a backlog batch carries many times of one series: the
    # ranges above do not count them)
    late_readings: int = 0


@dataclass
class _Gather:
    """Where an instance's rows live: per table, its rows there, their positions in the
    instance's series and their gateways (engine numbers; −1 for virtual meters)."""

    table: str
    src: npt.NDArray[np.intp]
    dst: npt.NDArray[np.intp]
    gateway: IntArray


@dataclass
class _Plan:
    """How an instance's rows of some gateways are gathered: per part (a table's rows), the
    rows to read there and where they go in the block; the block's ``row_index``; the
    gateways' names."""

    parts: list[tuple[_Gather, npt.NDArray[np.intp], npt.NDArray[np.intp]]]
    rows: int
    row_index: npt.NDArray[np.intp] | None
    names: set[str]


@dataclass
class _Layout:
    """A block shared by some instances (see ParkEngine._layout): per table, the rows read
    and their places in it; its rows; per instance (key), its rows in it — a stretch (its
    block is a view) or their places."""

    parts: list[tuple[str, npt.NDArray[np.intp], npt.NDArray[np.intp]]]
    rows: int
    places: dict[str, slice | npt.NDArray[np.intp]]


_Arrays = tuple[FloatArray, npt.NDArray[np.int32], FloatArray, FloatArray]  # a block's
# route_readings' outputs: slot, late, late_n, ahead_n, first, last, order, offsets
_Routed = tuple[IntArray, BoolArray, IntArray, IntArray, IntArray, IntArray, IntArray, IntArray]


def _read_only(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.flags.writeable = False
    return array


# a values-only detector's count, low and high (Detector.values_only): empty, read-only
_NO_COUNT = _read_only(np.zeros((0, 0), dtype=np.int32))
_NO_FLOAT = _read_only(np.zeros((0, 0)))


def _c_copy(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The array read-only and C-contiguous: copied only where it is not (rows taken by an
    index array are; so is a one-slot block's stretch of rows, left a view)."""
    if not array.flags.c_contiguous:
        array = np.array(array, order="C")
    return _read_only(array)


# Row buffers up to this size are kept whatever the stretch (~2.7 MB): shrinking below it
# would reallocate for every small live batch after a larger one.
_KEEP_ROWS = 1 << 16


class _RowBuffers:
    """A stretch's per-row work arrays (first open slots, routed slots, late marks, the routed
    rows' tables and their grouping; a table's cells too, there for merge_rows), kept from
    stretch to stretch: arrays of a stretch's size allocated afresh every stretch were
    mapped and faulted in page by page (~19 MB a stretch at 10,000 meters). Only what one
    ``feed_rows`` call uses: no array of them outlives the call (the caller keeps none)."""

    def __init__(self) -> None:
        self.threshold = np.empty(0, dtype=np.int64)
        self.slot = np.empty(0, dtype=np.int64)
        self.late = np.empty(0, dtype=bool)
        self.kept = np.empty(0, dtype=np.int64)
        self.order = np.empty(0, dtype=np.int64)
        self.cell = np.empty(0, dtype=np.int64)

    def fit(self, n: int) -> None:
        """Room for ``n`` rows at least (grown by a quarter over: stretches vary a little);
        shrunk when over four times ``n`` and over ``_KEEP_ROWS``, so that a rebuild's or a
        backlog's large stretches are not held for the engine's life (41 B a row: ~30 MB
        after a 580,000-row stretch) while a live service feeds batches of a few thousand."""
        size = self.slot.size
        if n <= size and (size <= 4 * n or size <= _KEEP_ROWS):
            return
        size = n + n // 4
        self.threshold = np.empty(size, dtype=np.int64)
        self.slot = np.empty(size, dtype=np.int64)
        self.late = np.empty(size, dtype=bool)
        self.kept = np.empty(size, dtype=np.int64)
        self.order = np.empty(size, dtype=np.int64)
        self.cell = np.empty(size, dtype=np.int64)


@dataclass
class _Instance:
    detector: Detector
    group: str | None  # its gateway, for detectors run per gateway; None: one for the park
    gather: list[_Gather] = field(default_factory=list)
    # the last gateway set's gather plan (see ParkEngine._plan): every block of a steady
    # stream asks for the same set
    plan: tuple[bytes, _Plan | None] | None = None
    # why it stopped: a detector that raised is run no more (its state may be half updated)
    failed: str | None = None

    @property
    def key(self) -> str:
        return f"{self.detector.name}@{self.group or 'park'}"


@dataclass
class _Virtual:
    key: SeriesKey
    row: int  # row in the virtual table
    formula: Formula
    sources: list[tuple[str, int]]  # (table, row) of each formula meter, in formula order


class ParkEngine:
    def __init__(
        self,
        park: Park,
        detectors: Sequence[type[Detector]],
        params: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        extra_series: Sequence[SeriesKey] = (),
        clock_rules: ClockRules | None = None,
        event_rules: EventRules | None = None,
    ) -> None:
        self.park = park
        self.ctx = ParkContext(park)
        self.step_ms = self.ctx.step_ms
        self.events = EventBook(park.park, event_rules)
        self._just_stopped: list[tuple[_Instance, int]] = []  # failed in this advance, at data time
        tree = self.ctx.tree

        selections = {cls: cls.select(self.ctx) for cls in detectors}
        wanted: set[SeriesKey] = set(extra_series)
        for keys in selections.values():
            wanted.update(keys)
        # virtual meters read their formula's meters: those series are wanted too
        virtual_keys = sorted(k for k in wanted if tree.meters[k.meter].is_virtual)
        formulas: dict[str, Formula] = {}
        for key in virtual_keys:
            spec = tree.meters[key.meter].spec
            assert spec.formula is not None
            formula = formulas.setdefault(key.meter, parse_formula(spec.formula, tree.meters))
            wanted.update(SeriesKey(m, key.quantity) for m in formula.meters)

        # every gateway of the park, numbered (rows of a replay carry the number)
        self.gateways = sorted({m.gateway for m in tree.meters.values() if not m.is_virtual})
        self.gateway_no = {g: i for i, g in enumerate(self.gateways)}
        self.clocks = Clocks(len(self.gateways), clock_rules)

        # one row per series in its table; the engine's series index is global. Gateways are
        # packed whole into tables of about TABLE_ROWS rows; virtual meters have their own.
        self.series: list[SeriesKey] = sorted(wanted)
        self.index: dict[SeriesKey, int] = {k: i for i, k in enumerate(self.series)}
        by_gateway: dict[str, list[SeriesKey]] = {}
        for key in self.series:
            meter = tree.meters[key.meter]
            by_gateway.setdefault(VIRTUAL if meter.is_virtual else meter.gateway, []).append(key)
        packs: list[list[str]] = []
        size = TABLE_ROWS
        for gateway in sorted(g for g in by_gateway if g != VIRTUAL):
            if size + len(by_gateway[gateway]) > TABLE_ROWS:
                packs.append([])
                size = 0
            packs[-1].append(gateway)
            size += len(by_gateway[gateway])
        self.tables: dict[str, Table] = {}
        self.place: dict[SeriesKey, tuple[str, int]] = {}
        self.table_of_gateway: dict[str, tuple[str, int]] = {}  # → table, gateway's row in it
        named = [(f"t{i}", pack) for i, pack in enumerate(packs)]
        if VIRTUAL in by_gateway:
            named.append((VIRTUAL, [VIRTUAL]))
        for name, pack in named:
            keys = [k for g in pack for k in by_gateway[g]]
            counters = np.array([self.ctx.is_counter(k.quantity) for k in keys], dtype=bool)
            self.tables[name] = Table(name, counters, [] if name == VIRTUAL else list(pack))
            for row, key in enumerate(keys):
                self.place[key] = (name, row)
            if name != VIRTUAL:
                for k, g in enumerate(pack):
                    self.table_of_gateway[g] = (name, k)
        self._tables = sorted(self.tables)
        table_no = {t: i for i, t in enumerate(self._tables)}
        # engine series index → table number, row, gateway number: routing without a loop
        self._series_table = np.array(
            [table_no[self.place[k][0]] for k in self.series], dtype=np.int64
        )
        self._series_row = np.array([self.place[k][1] for k in self.series], dtype=np.int64)
        self._buffers = _RowBuffers()
        # gateway number → its table's number and its place among the table's gateways
        self._gateway_table = np.array(
            [
                table_no[self.table_of_gateway[g][0]] if g in self.table_of_gateway else 0
                for g in self.gateways
            ],
            dtype=np.int64,
        )
        self._gateway_index = np.array(
            [
                self.table_of_gateway[g][1] if g in self.table_of_gateway else 0
                for g in self.gateways
            ],
            dtype=np.int64,
        )
        self._series_gateway = np.array(
            [
                -1
                if tree.meters[k.meter].is_virtual
                else self.gateway_no[tree.meters[k.meter].gateway]
                for k in self.series
            ],
            dtype=np.int64,
        )
        self._virtuals = [
            _Virtual(
                k,
                self.place[k][1],
                formulas[k.meter],
                [self.place[SeriesKey(m, k.quantity)] for m in formulas[k.meter].meters],
            )
            for k in virtual_keys
        ]

        self.instances: list[_Instance] = []
        for cls, keys in selections.items():
            if not keys:
                continue
            opts = (params or {}).get(cls.name)
            if cls.scope is Scope.PARK or cls.row_subsets:
                self.instances.append(
                    _Instance(cls(self.ctx, keys, opts), None, self._gather(keys))
                )
                continue
            # a detector that needs whole blocks of its rows: one instance per gateway
            per_gateway: dict[str, list[SeriesKey]] = {}
            for key in keys:
                meter = tree.meters[key.meter]
                per_gateway.setdefault(VIRTUAL if meter.is_virtual else meter.gateway, []).append(
                    key
                )
            for g, gateway_keys in sorted(per_gateway.items()):
                self.instances.append(
                    _Instance(cls(self.ctx, gateway_keys, opts), g, self._gather(gateway_keys))
                )

        # per gateway: slots before ``closed`` are complete (a reading for them is late);
        # before ``emitted`` the detectors have had them. The park clock: the slowest gateway.
        n = len(self.gateways)
        self.closed = np.full(n, UNSET, dtype=np.int64)
        self.emitted = np.full(n, UNSET, dtype=np.int64)
        self.park_closed: int | None = None
        self.park_emitted: int | None = None
        self.clock_slot: int | None = None  # the park clock's slot (arrival time)
        self.now_ms = NEVER
        # one block shared by the instances of a scope: where their rows go in it, per set of
        # gateways (see _layout); per advance, its arrays and transport facts
        self._meter_instances = [i for i in self.instances if i.detector.scope is not Scope.PARK]
        self._park_instances = [i for i in self.instances if i.detector.scope is Scope.PARK]
        self._layouts: dict[tuple[str, bytes], _Layout] = {}
        self._shared: dict[tuple[str, bytes, int, int], _Arrays] = {}
        self._stats: dict[tuple[str, int, int], TransportStats] = {}
        self._transports: dict[tuple[bytes, int, int, tuple[str, ...]], TransportStats] = {}

    def _gather(self, keys: Sequence[SeriesKey]) -> list[_Gather]:
        tables: dict[str, tuple[list[int], list[int], list[int]]] = {}
        for pos, key in enumerate(keys):
            table, row = self.place[key]
            src, dst, gw = tables.setdefault(table, ([], [], []))
            src.append(row)
            dst.append(pos)
            gw.append(int(self._series_gateway[self.index[key]]))
        return [
            _Gather(
                t,
                np.array(src, dtype=np.intp),
                np.array(dst, dtype=np.intp),
                np.array(gw, dtype=np.int64),
            )
            for t, (src, dst, gw) in sorted(tables.items())
        ]

    # --- input ---------------------------------------------------------------------------

    def series_of(self, meter: str, quantity: str) -> int | None:
        return self.index.get(SeriesKey(meter, quantity))

    def gateway_status(
        self, gateway: str, online: bool, now_ms: int | None = None, dropped: int | None = None
    ) -> None:
        """A gateway's status message, received at ``now_ms`` (default: the park clock), with
        the number of batches its edge has dropped so far when it says."""
        g = self.gateway_no.get(gateway)
        if g is not None:
            self.clocks.status(g, online, self.now_ms if now_ms is None else now_ms, dropped)

    def listening_from(self, now_ms: int) -> None:
        """The worker starts to listen live at ``now_ms`` (after its refill from history): a
        gateway's silence counts from then, not from its last reading read back — a worker
        started hours after it, or a gateway catching up on its backlog, would otherwise see
        those hours as silence and close them as gaps before their data comes in."""
        self.clocks.online_since = np.maximum(self.clocks.online_since, now_ms)

    def feed(self, batch: Batch) -> Advanced:
        """Store one live batch; returns the late readings it carried."""
        self._tick(batch.arrival_ms)
        if batch.t_ms.size == 0:
            return Advanced()
        g = self.gateway_no.get(batch.gateway, -1)
        n = batch.t_ms.size
        # a batch sent again (its seq seen before) repeats readings: they count once, even
        # where newer readings of their slot came in between (the slot keeps only the newest
        # time, which catches a repeat only when it is that one)
        again = np.zeros(n, dtype=bool)
        if g >= 0:
            newest = int(self.clocks.newest[g])
            verdict = self.clocks.batch(
                g, batch.seq, int(batch.t_ms.min()), int(batch.t_ms.max()), batch.arrival_ms
            )
            if self.clocks.sent_again(g, batch.seq, verdict):
                again = batch.t_ms <= newest
        threshold = self._thresholds(batch.series)
        self._close()
        return self._store(
            batch.series,
            batch.t_ms,
            batch.value,
            np.full(n, g, dtype=np.int64),
            np.full(n, batch.arrival_ms, dtype=np.int64),
            again,
            threshold,
            whole_batch=True,
        )

    def feed_rows(self, rows: Rows) -> Advanced:
        """Store a stretch of replayed rows (see :class:`Rows`), in arrival order.

        Closing is decided slot by slot of the arrival clock, exactly as a live service would
        decide it batch by batch, so how a replay is cut into stretches changes nothing."""
        if rows.t_ms.size == 0:
            return Advanced()
        bounds = span_bounds(rows.arrival_ms, self.step_ms)  # the arrival slots' runs
        self._buffers.fit(rows.t_ms.size)
        threshold = self._buffers.threshold[: rows.t_ms.size]
        routed: _Routed | None = None
        if self.clocks.final_ms is None and not self.clocks.pending:
            routed = self._walk_compiled(rows, bounds, threshold)
        else:  # a seq gap waiting (live batches fed too) or a final time: the walk itself
            self._walk(rows, bounds, threshold)
        return self._store(
            rows.series,
            rows.t_ms,
            rows.value,
            rows.gateway,
            rows.arrival_ms,
            rows.duplicate,
            threshold,
            whole_batch=False,
            routed=routed,
        )

    def _walk(self, rows: Rows, bounds: IntArray, threshold: IntArray) -> None:
        """The park clock walked through a stretch's arrival slots (``bounds``): per slot it
        ticks, the slot's rows are its gateways' batches, each row's first open slot is noted
        in ``threshold`` and what is complete closes."""
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            self._tick(int(rows.arrival_ms[a]))
            self.clocks.runs(rows.gateway[a:b], rows.t_ms[a:b], int(rows.arrival_ms[b - 1]))
            threshold[a:b] = self._thresholds(rows.series[a:b])
            self._close()

    def _walk_compiled(self, rows: Rows, bounds: IntArray, threshold: IntArray) -> _Routed:
        """:meth:`_walk` in one compiled pass (kernels.feed_clocks: its arithmetic in its
        order; a Python loop over the minutes of a stretch was a tenth of the feeding), for
        clocks without a seq gap waiting or a final time; it routes the rows to their tables
        in the same pass (``_store``'s routing, while a minute's rows are in cache)."""
        clocks = self.clocks
        self._buffers.fit(rows.t_ms.size)
        clock = np.array([self.now_ms, NONE if self.clock_slot is None else self.clock_slot,
                          NONE if self.park_closed is None else self.park_closed])  # fmt: skip
        routed = feed_clocks(
            rows.series, rows.gateway, rows.t_ms, rows.arrival_ms, bounds, self._series_gateway,
            self.step_ms, clocks.rules.max_hold_ms, clocks.rules.silence_ms, clock, self.closed,
            clocks.last_arrival, clocks.online, clocks.online_since, clocks.watermark,
            clocks.newest, clocks.times, clocks.interval, NEVER, UNSET, threshold,
            rows.duplicate, self._series_table, self._skip_table(), MAX_AHEAD_MS,
            len(self._tables), self._buffers.slot, self._buffers.late, self._buffers.kept,
            self._buffers.order,
        )  # fmt: skip
        now_ms, clock_slot, park_closed = clock.tolist()
        self.now_ms = now_ms
        self.clock_slot = None if clock_slot == NONE else clock_slot
        self.park_closed = None if park_closed == NONE else park_closed
        return routed

    def _skip_table(self) -> int:
        """The table readings are never routed to (the virtual meters', computed): −1, none."""
        return self._tables.index(VIRTUAL) if VIRTUAL in self.tables else -1

    def _thresholds(self, series: IntArray) -> IntArray:
        """Per reading: the first slot still open in its gateway (earlier ones are late). Slots
        older than the longest any window is held for (``max_hold_ms`` behind the park clock)
        are closed for every gateway, even one whose first batch this is: a clock reset to
        2000 or a year-old backlog would otherwise stretch its table back to that time."""
        gw = self._series_gateway[series]
        horizon = (self.now_ms - self.clocks.rules.max_hold_ms) // self.step_ms
        return np.where(gw >= 0, np.maximum(self.closed[np.maximum(gw, 0)], horizon), UNSET)

    def _tick(self, now_ms: int) -> None:
        """The park clock moves on: when it enters a new slot, close what is due by then."""
        self.now_ms = max(self.now_ms, now_ms)
        slot = self.now_ms // self.step_ms
        if self.clock_slot is None or slot > self.clock_slot:
            self.clock_slot = slot
            self._close()

    def _close(self) -> None:
        """Decide which slots are complete, at the start of the park clock's slot (silence is
        judged there, so when within a slot a decision is made does not matter)."""
        if self.clock_slot is None:
            return
        now = self.clock_slot * self.step_ms
        until = self.clocks.complete_until(now)
        heard = until > NEVER
        # nothing is held longer than the longest hold, not even by a gateway whose clock is
        # days behind or stopped: it would hold the park clock, and every table, forever
        horizon = (now - self.clocks.rules.max_hold_ms) // self.step_ms
        until_slot = np.maximum(until // self.step_ms, horizon)
        self.closed = np.where(heard, np.maximum(self.closed, until_slot), self.closed)
        if heard.any():
            park = int(self.closed[heard].min())
            if self.park_closed is None or park > self.park_closed:
                self.park_closed = park

    def _store(
        self,
        series: IntArray,
        t_ms: IntArray,
        value: FloatArray,
        gateway: IntArray,
        arrival_ms: IntArray,
        duplicate: BoolArray,
        threshold: IntArray,
        *,
        whole_batch: bool,
        routed: _Routed | None = None,
    ) -> Advanced:
        """Readings into their tables' slots (``routed``: already routed by the clock walk,
        as ``route_readings`` would)."""
        out = Advanced()
        dup = duplicate.copy()
        self._buffers.fit(series.size)  # merge_rows' cells (a live batch's rows too)
        # per table, its fresh readings in their order, merged straight from the rows in
        # compiled passes (kernels.route_readings, merge_rows: what Table.add does); the rows
        # are grouped by table once, not scanned whole for every table
        if routed is None:
            ahead = (self.now_ms + MAX_AHEAD_MS) // self.step_ms
            routed = route_readings(
                series, t_ms, threshold, duplicate, self._series_table, self._skip_table(),
                self.step_ms, ahead, len(self._tables),
            )  # fmt: skip
        slot, late, late_n, ahead_n, first, last, order, offsets = routed
        out.late_readings = int(late_n.sum())
        for tb in np.flatnonzero((late_n > 0) | (ahead_n > 0) | (first <= last)).tolist():
            table = self.tables[self._tables[tb]]
            table.late_readings += int(late_n[tb])
            table.refused_ahead += int(ahead_n[tb])
            if first[tb] > last[tb]:
                continue
            table.ensure(int(first[tb]), int(last[tb]))
            assert table.base is not None
            where = order[offsets[tb] : offsets[tb + 1]]
            cells = table.cells
            if not merge_rows(where, series, t_ms, value, slot, self._series_row, table.base,
                              cells.rows, cells.head, *cells.flats(), dup,
                              self._buffers.cell):  # fmt: skip
                # readings sharing a cell (several in a slot): merged sorted, as add_cells does
                cell, t, v = table_cells(
                    where, series, t_ms, value, slot, self._series_row, table.base,
                    cells.rows, cells.head,
                )  # fmt: skip
                dup[where[cells.add_cells(cell, t, v)]] = True
        if late.any():
            late_series, late_times = series[late], t_ms[late]
            order = np.lexsort((late_times, late_series))
            late_series, late_times = late_series[order], late_times[order]
            starts = np.flatnonzero(np.r_[True, late_series[1:] != late_series[:-1]])
            stops = np.r_[starts[1:], late_series.size] - 1
            for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
                meter = self.series[int(late_series[a])].meter
                out.late.append((meter, int(late_times[a]), int(late_times[b])))
        self._note_transport(gateway, t_ms, arrival_ms, dup, late, threshold, whole_batch)
        return out

    def _note_transport(
        self,
        gateway: IntArray,
        t_ms: IntArray,
        arrival_ms: IntArray,
        dup: BoolArray,
        late: BoolArray,
        threshold: IntArray,
        whole_batch: bool,
    ) -> None:
        """Per gateway and slot: batches, duplicates, late readings, clock offset."""
        if not whole_batch:
            # a replay's stretch: its runs in one compiled pass (kernels.transport_runs, the
            # arithmetic of the numpy code below) rather than a dozen array passes
            runs = transport_runs(
                gateway,
                t_ms,
                arrival_ms,
                dup,
                late,
                threshold,
                self.step_ms,
                self._gateway_table,
                self._gateway_index,
                len(self._tables),
            )
            first, last = runs[-2], runs[-1]
            for tb in np.flatnonzero(first <= last).tolist():
                table = self.tables[self._tables[tb]]
                table.ensure(int(first[tb]), int(last[tb]))
                assert table.base is not None
                tr = table.transport
                add_transport(*runs[:-2], tb, table.base, tr.batches, tr.duplicates, tr.late,
                              tr.offset_sum)  # fmt: skip
            return
        starts = np.array([0])
        run_gw = gateway[starts]
        run_dup = np.add.reduceat(dup.astype(np.int64), starts)
        run_late = np.add.reduceat(late.astype(np.int64), starts)
        run_offset = np.array([np.median(t_ms)]) - arrival_ms[starts]
        # facts go to the slot of the data they came with (the first open slot when that one
        # is closed), so that a backlog arriving late does not stretch the tables to today
        run_t = np.maximum.reduceat(t_ms, starts)
        run_slot = np.maximum(run_t // self.step_ms, threshold[starts])
        known = run_gw >= 0
        run_table = self._gateway_table[np.maximum(run_gw, 0)]
        run_k = self._gateway_index[np.maximum(run_gw, 0)]
        for tb in np.unique(run_table[known]):
            table = self.tables[self._tables[int(tb)]]
            mine = known & (run_table == tb)
            slots = run_slot[mine]
            table.ensure(int(slots.min()), int(slots.max()))
            assert table.base is not None
            at = (run_k[mine], slots - table.base)
            t = table.transport
            np.add.at(t.batches, at, 1)
            np.add.at(t.duplicates, at, run_dup[mine].astype(np.int32))
            np.add.at(t.late, at, run_late[mine].astype(np.int32))
            np.add.at(t.offset_sum, at, run_offset[mine])

    # --- running the detectors ---------------------------------------------------------------

    def advance(self, now_ms: int | None = None) -> Advanced:
        """Close what is complete at park clock ``now_ms`` and run the detectors over it, at
        most ``MAX_BLOCK_SLOTS`` slots at a time (what a long gap closes at once — weeks a
        logger was off, a restart after days — is walked through in bounded blocks, and the
        tables forget each block once read)."""
        if now_ms is not None:
            self._tick(now_ms)
        self._close()
        out = Advanced()
        more = True
        while more:
            step, more = self._advance_some(MAX_BLOCK_SLOTS)
            out.events.extend(step.events)
            out.points.extend(step.points)
        return out

    def _advance_some(self, limit: int) -> tuple[Advanced, bool]:
        """Run the detectors over at most ``limit`` closed slots of each gateway and of the
        park clock; returns what they raised and whether closed slots remain."""
        findings = Output()
        blocks: dict[tuple[str, int, int], Block] = {}
        self._stats.clear()
        self._shared.clear()
        self._transports.clear()

        def table_block(name: str, start: int, stop: int) -> Block:
            key = (name, start, stop)
            if key not in blocks:
                blocks[key] = self._table_block(name, start, stop)
            return blocks[key]

        # gateways that closed the same slots go to the detectors together
        heard = self.closed > UNSET
        first = np.where(self.emitted > UNSET, self.emitted, self._first_slots())
        first = np.minimum(first, self.closed)
        until = np.minimum(self.closed, first + limit)
        more = bool((heard & (until < self.closed)).any())
        spans: dict[tuple[int, int], list[int]] = {}
        for g in np.flatnonzero(heard & (until > first)).tolist():
            spans.setdefault((int(first[g]), int(until[g])), []).append(g)
        meter_scope = ("meter", self._meter_instances)
        for (start, stop), gateways in sorted(spans.items()):
            members = np.array(gateways, dtype=np.int64)
            for inst in self._meter_instances:
                block = self._instance_block(inst, members, start, stop, meter_scope)
                if block is not None:
                    findings.extend(self._update(inst, block))
        self.emitted = np.where(heard, until, self.emitted)

        if self.park_closed is not None:
            start = (
                int(min(self.park_closed, first[heard].min()))
                if self.park_emitted is None
                else self.park_emitted
            )
            stop = min(self.park_closed, start + limit)
            if stop > start:
                findings.extend(self._park_step(start, stop, table_block))
            self.park_emitted = max(start, stop)
            more |= stop < self.park_closed
        self._forget()
        events = self.events.apply(findings.findings)
        # after the findings: an event the detector opened earlier in this call is closed too
        closings = [f for inst, at in self._just_stopped for f in self._stopped_findings(inst, at)]
        self._just_stopped.clear()
        events.extend(self.events.apply(closings))
        return Advanced(events, findings.points), more

    def _first_slots(self) -> IntArray:
        """Per gateway, the oldest slot its table holds (where a never-run gateway starts)."""
        bases = np.array(
            [UNSET if t.base is None else t.base for t in (self.tables[n] for n in self._tables)],
            dtype=np.int64,
        )
        out = bases[self._gateway_table]
        return np.where(out > UNSET, out, self.closed)

    def _instance_block(
        self,
        inst: _Instance,
        gateways: IntArray,
        start: int,
        stop: int,
        group: tuple[str, Sequence[_Instance]],
    ) -> Block | None:
        """The instance's rows of these gateways (−1: virtual meters), slots ``start:stop``,
        as one block (for a detector that takes row subsets, ``row_index`` says which): rows
        of the block ``group`` (its name, its instances) share — a view of it where they
        are a stretch of it in their order and the detector takes ``any_layout``, a
        C-contiguous copy of them where not."""
        key = gateways.tobytes()
        if inst.plan is None or inst.plan[0] != key:
            inst.plan = (key, self._plan(inst, gateways))
        plan = inst.plan[1]
        if plan is None:
            return None
        layout = self._layout(group, gateways)
        shared = self._shared_arrays(group[0], key, layout, start, stop)
        place = layout.places[inst.key]
        v, n, lo, hi = shared
        if isinstance(place, slice) and inst.detector.any_layout:
            values, count, low, high = v[place], n[place], lo[place], hi[place]
        else:
            # C-contiguous copies, as the detector's numpy code has always had them
            values = _c_copy(v[place])
            if inst.detector.values_only:  # the rest is never read: not copied
                count, low, high = _NO_COUNT, _NO_FLOAT, _NO_FLOAT
            else:
                count = _c_copy(n[place])
                low, high = _c_copy(lo[place]), _c_copy(hi[place])
        tables = tuple(g.table for g, _, _ in plan.parts)
        span = (key, start, stop, tables)
        transport = self._transports.get(span)
        if transport is None:
            transports = []
            for table_name in tables:
                # a table's facts over these slots, read once for all the instances that read
                # its rows in this advance (per gateway, an instance each): read-only
                at = (table_name, start, stop)
                if at not in self._stats:
                    stats = self._stats[at] = self.tables[table_name].stats(start, stop)
                    for a in (stats.batches, stats.duplicates, stats.late, stats.offset_ms):
                        a.flags.writeable = False
                transports.append(self._stats[at])
            transport = TransportStats.joined(transports).only(plan.names)
            self._transports[span] = transport
        return Block(
            start * self.step_ms,
            self.step_ms,
            values,
            count,
            low,
            high,
            next(iter(plan.names)) if len(plan.names) == 1 else None,
            transport,
            plan.row_index,
        )

    def _layout(self, group: tuple[str, Sequence[_Instance]], gateways: IntArray) -> _Layout:
        """Where the rows of these gateways that the group's instances read go in the block
        they share: the largest instance's first, in its order (its block can be a view),
        then each other's not placed yet, in its order. Set up once per gateway set."""
        key = (group[0], gateways.tobytes())
        layout = self._layouts.get(key)
        if layout is not None:
            return layout
        plans = []
        for inst in group[1]:
            if inst.plan is None or inst.plan[0] != key[1]:
                inst.plan = (key[1], self._plan(inst, gateways))
            if inst.plan[1] is not None:
                plans.append((inst, inst.plan[1]))
        plans.sort(key=lambda ip: -ip[1].rows)  # stable: ties in the instances' order
        where = {name: np.full(t.counter_rows.size, -1, dtype=np.intp) for name, t in
                 self.tables.items()}  # fmt: skip
        n = 0
        places: dict[str, slice | npt.NDArray[np.intp]] = {}
        for inst, plan in plans:
            fresh = [(g.table, src[where[g.table][src] < 0], dst[where[g.table][src] < 0])
                     for g, src, dst in plan.parts]  # fmt: skip
            order = np.argsort(np.concatenate([d for _, _, d in fresh]), kind="stable")
            at = np.empty(order.size, dtype=np.intp)
            at[order] = n + np.arange(order.size)
            k = 0
            for table, src, _ in fresh:
                where[table][src] = at[k : k + src.size]
                k += src.size
            n += order.size
            idx = np.empty(plan.rows, dtype=np.intp)
            for g, src, dst in plan.parts:
                idx[dst] = where[g.table][src]
            if idx.size and bool((np.diff(idx) == 1).all()):
                places[inst.key] = slice(int(idx[0]), int(idx[0]) + idx.size)
            else:
                places[inst.key] = idx
        parts = []
        for name, pos in where.items():
            rows = np.flatnonzero(pos >= 0)
            if rows.size:
                parts.append((name, rows.astype(np.intp), pos[rows]))
        if len(self._layouts) >= 64:  # gateway sets seen lately, not every one ever
            self._layouts.clear()
        layout = self._layouts[key] = _Layout(parts, n, places)
        return layout

    def _shared_arrays(
        self, name: str, key: bytes, layout: _Layout, start: int, stop: int
    ) -> _Arrays:
        """The shared block's arrays (values, count, low, high), read once per advance from
        the tables' accumulators (kernels.gather_block: what Table.block gives, straight into
        place); read-only. Laid out slot-major like the tables (indexed ``[row, slot]``, the
        transposes of C-contiguous arrays): read slot by slot, a table's rows are runs of
        adjacent cells in and out, where a row-major block was a transpose of ~25 MB an
        advance at 10,000 meters, the largest cost of the engine."""
        span = (name, key, start, stop)
        arrays = self._shared.get(span)
        if arrays is not None:
            return arrays
        slots = stop - start
        # a row more than the block holds (never read): a view of a block of several slots
        # is then never contiguous, whatever rows it covers, so numba compiles one version
        # of a kernel for it (layout "A"), not an "F" one too where a view takes every row —
        # the warm-up's replay and a live feed's gateway sets may differ (one-slot blocks
        # are "C", as ever)
        slot_major = (
            np.empty((slots, layout.rows + 1))[:, : layout.rows],
            np.empty((slots, layout.rows + 1), dtype=np.int32)[:, : layout.rows],
            np.empty((slots, layout.rows + 1))[:, : layout.rows],
            np.empty((slots, layout.rows + 1))[:, : layout.rows],
        )
        for table_name, src, dst in layout.parts:
            table = self.tables[table_name]
            table.ensure(start, max(start, stop - 1))
            assert table.base is not None
            i, j = start - table.base, stop - table.base
            cells = table.cells
            gather_block(
                cells.total[:, i:j],
                cells.count[:, i:j],
                cells.low[:, i:j],
                cells.high[:, i:j],
                cells.last_v[:, i:j],
                table.counter_rows,
                src,
                dst,
                *slot_major,
            )
        arrays = (slot_major[0].T, slot_major[1].T, slot_major[2].T, slot_major[3].T)
        for a in arrays:
            a.flags.writeable = False
        self._shared[span] = arrays
        return arrays

    def _plan(self, inst: _Instance, gateways: IntArray) -> _Plan | None:
        """Where the instance's rows of these gateways are, and where they go in its block
        (in the order of its series)."""
        picked = []
        for g in inst.gather:
            mask = np.isin(g.gateway, gateways)
            if mask.any():
                picked.append((g, mask))
        if not picked:
            return None
        rows = np.sort(np.concatenate([g.dst[m] for g, m in picked]))
        whole = rows.size == len(inst.detector.series)
        parts = [
            (g, g.src[m], g.dst[m] if whole else np.searchsorted(rows, g.dst[m])) for g, m in picked
        ]
        names = {self.gateways[int(g)] for g in gateways if g >= 0}
        row_index = rows.astype(np.intp)
        row_index.flags.writeable = False  # one array for every block of the plan
        return _Plan(parts, int(rows.size), None if whole else row_index, names)

    def finish(self) -> Advanced:
        """No more data will come (the end of a replay): close every slot that has data."""
        heard = self.clocks.heard()
        if not heard.any():
            return Advanced()
        newest = int(self.clocks.newest[heard].max())
        end = (newest // self.step_ms + 1) * self.step_ms  # the end of the newest slot
        self.clocks.final_ms = end
        return self.advance(end)

    def _table_block(self, name: str, start: int, stop: int) -> Block:
        table = self.tables[name]
        block = table.block(start, stop, self.step_ms)
        stats = table.stats(start, stop)
        return Block(block.start_ms, block.step_ms, block.values, block.count, block.low,
                     block.high, None, stats)  # fmt: skip

    def _park_step(self, start: int, stop: int, table_block: Any) -> Output:
        out = Output()
        if self._virtuals:
            self._compute_virtuals(start, stop, table_block)
            vblock = self._table_block(VIRTUAL, start, stop)
            out.points.extend(self._virtual_points(vblock))
            virtual = np.array([-1], dtype=np.int64)
            meter_scope = ("meter", self._meter_instances)
            for inst in self._meter_instances:
                block = self._instance_block(inst, virtual, start, stop, meter_scope)
                if block is not None:
                    out.extend(self._update(inst, block))
        everyone = np.arange(-1, len(self.gateways), dtype=np.int64)
        park_scope = ("park", self._park_instances)
        for inst in self._park_instances:
            block = self._instance_block(inst, everyone, start, stop, park_scope)
            if block is not None:
                out.extend(self._update(inst, block))
        return out

    def _update(self, inst: _Instance, block: Block) -> Output:
        """One detector's update; one that raises is stopped, not the engine and its other
        detectors (a bug in one detector must not blind the park), and says so in
        :attr:`failed_detectors` (the service's /health and metrics, replay's summary)."""
        if inst.failed is not None:
            return Output()
        try:
            return inst.detector.update(block)
        except Exception as exc:
            inst.failed = f"{type(exc).__name__}: {exc}"[:300]
            log.exception("park %s: detector %s failed and is stopped", self.park.park, inst.key)
            self._just_stopped.append((inst, block.start_ms))
            return Output()

    def _stopped_findings(self, inst: _Instance, at_ms: int) -> list[Finding]:
        """Closings for the open events of a detector that stopped at data time ``at_ms``.

        Left open, they would never be updated or closed again, and an open meter fault
        would hold back every other finding about its meter until a restart."""
        kinds = set(inst.detector.kinds)
        # one instance per gateway: only the events about that gateway and its meters are its
        subjects = (
            None
            if inst.group is None
            else {key.meter for key in inst.detector.series} | {f"gateway:{inst.group}"}
        )
        return [
            Finding(
                kind=event.kind,
                family=event.family,
                at_ms=max(at_ms, event.detected_at_ms),
                active=False,
                meter=event.meter,
                zone=event.zone,
                evidence={"closed_because": f"detector {inst.key} stopped: {inst.failed}"},
            )
            for event in self.events.open.values()
            if event.kind in kinds and (subjects is None or event.subject in subjects)
        ]

    @property
    def failed_detectors(self) -> dict[str, str]:
        """Detector instance → the error that stopped it."""
        return {i.key: i.failed for i in self.instances if i.failed is not None}

    def _compute_virtuals(self, start: int, stop: int, table_block: Any) -> None:
        vgroup = self.tables[VIRTUAL]
        vgroup.ensure(start, stop - 1)
        assert vgroup.base is not None
        i, j = start - vgroup.base, stop - vgroup.base
        cells = vgroup.cells
        for v in self._virtuals:
            parts = {}
            counts = []
            for meter, (table, row) in zip(v.formula.meters, v.sources, strict=True):
                b = table_block(table, start, stop)
                parts[meter] = b.values[row]
                counts.append(b.count[row])
            result = v.formula.evaluate(parts)
            valid = np.isfinite(result)
            n = np.where(valid, np.min(np.stack(counts), axis=0), 0).astype(np.int32)
            cells.count[v.row, i:j] = n
            cells.total[v.row, i:j] = np.where(valid, result * n, 0.0)
            cells.low[v.row, i:j] = np.where(valid, result, np.inf)
            cells.high[v.row, i:j] = np.where(valid, result, -np.inf)
            cells.last_v[v.row, i:j] = result
            cells.last_t[v.row, i:j] = (np.arange(start, stop) + 1) * self.step_ms - 1

    def _virtual_points(self, block: Block) -> list[DerivedPoint]:
        """Virtual meters' slots as points of their utility's measurement, so that the API and
        the boards read them like a real meter's."""
        out: list[DerivedPoint] = []
        times = block.times()
        for v in self._virtuals:
            meter = self.ctx.tree.meters[v.key.meter]
            tags = {"enterprise": meter.enterprise, "meter": meter.id}
            row = block.values[v.row]
            for k in np.flatnonzero(np.isfinite(row)):
                fields = {v.key.quantity: float(row[k])}
                out.append(DerivedPoint(meter.utility.value, tags, fields, int(times[k])))
        return out

    def analysed_ms(self) -> int | None:
        """The data time up to which the detectors have had every heard gateway's readings
        (None before the park clock emitted anything): the slowest of
        :meth:`analysed_by_gateway` (the park clock's emitted slots when none is heard)."""
        each = self.analysed_by_gateway()
        if each is None:
            return None
        assert self.park_emitted is not None
        return min(each.values(), default=self.park_emitted * self.step_ms)

    def analysed_by_gateway(self) -> dict[str, int] | None:
        """Per gateway heard, the data time up to which the detectors have had its readings
        (None before the park clock emitted anything): the older of its watermark (its newest
        contiguous data) and the end of the slots it emitted — a silent gateway's slots are
        closed by its silence, not by its data, which may still come (an edge backlog); but
        never more than ``max_hold_ms`` behind the park clock's emitted slots, since data that
        old is late live too (``_thresholds``), nor past them; a gateway silent that long
        whose status is ``online`` counts as analysed to the park clock (its slots closed by
        silence: a dead one would hold the mark a day back for good, and every restart
        rewrite that day) — an ``offline`` one is buffering at its edge and holds it. A
        gateway never heard is not in it: none of its data has been analysed."""
        if self.park_emitted is None:
            return None
        through = self.park_emitted * self.step_ms
        floor = through - self.clocks.rules.max_hold_ms
        heard = (self.clocks.last_arrival > NEVER) & (self.emitted > UNSET)
        watermark = self.clocks.watermark
        dead = self.clocks.online & (watermark <= floor) & (self.emitted * self.step_ms > watermark)
        each = np.minimum(watermark, self.emitted * self.step_ms)
        # (and no further than the park's own detectors have run)
        each = np.minimum(np.maximum(each, floor), through)
        each = np.where(dead, through, each)
        return {self.gateways[g]: int(each[g]) for g in np.flatnonzero(heard).tolist()}

    def _forget(self) -> None:
        """Drop slots every consumer has read."""
        if self.park_emitted is None:
            return
        for name, table in self.tables.items():
            if name == VIRTUAL:
                table.drop_before(self.park_emitted)
                continue
            # gateways never heard from have nothing here to keep (their first batch widens
            # the table back to its data again, at most the longest hold)
            emitted = self.emitted[[self.gateway_no[g] for g in table.gateways]]
            emitted = emitted[emitted > UNSET]
            if emitted.size:
                table.drop_before(min(self.park_emitted, int(emitted.min())))

    # --- snapshot ----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "version": 2,
            "series": [str(k) for k in self.series],
            "now_ms": self.now_ms,
            "closed": self.closed.copy(),
            "emitted": self.emitted.copy(),
            "park_closed": self.park_closed,
            "park_emitted": self.park_emitted,
            "clock_slot": self.clock_slot,
            "clocks": self.clocks.state(),
            "tables": {
                name: {
                    "base": table.base,
                    "cells": table.cells,
                    "transport": table.transport,
                    "late": table.late_readings,
                    "ahead": table.refused_ahead,
                }
                for name, table in self.tables.items()
            },
            # a stopped detector's state may be half updated (or not even readable): none is
            # kept, and a restart (the bug fixed, say) runs it from a fresh state
            "detectors": {
                inst.key: None if inst.failed is not None else inst.detector.state()
                for inst in self.instances
            },
            "events": self.events.state(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        if state.get("series") != [str(k) for k in self.series] or state.get("version") != 2:
            raise ValueError("snapshot was taken with another site model or detector set")
        self.now_ms = int(state["now_ms"])
        self.closed = np.array(state["closed"], dtype=np.int64)
        self.emitted = np.array(state["emitted"], dtype=np.int64)
        self.park_closed = state["park_closed"]
        self.park_emitted = state["park_emitted"]
        self.clock_slot = state["clock_slot"]
        self.clocks.restore(state["clocks"])
        for name, t_state in state["tables"].items():
            table = self.tables[name]
            table.base = t_state["base"]
            table.cells = t_state["cells"]
            table.transport = t_state["transport"]
            table.late_readings = int(t_state["late"])
            table.refused_ahead = int(t_state["ahead"])
        for inst in self.instances:
            saved = state["detectors"][inst.key]
            if saved is not None:  # None: it had failed, it starts afresh
                inst.detector.restore(saved)
        self.events.restore(state["events"])

    # --- metrics -------------------------------------------------------------------------------

    def late_readings(self) -> int:
        return sum(t.late_readings for t in self.tables.values())

    def open_slots(self) -> int:
        return sum(t.cells.slots for t in self.tables.values())
