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
    FloatArray,
    GatewayStats,
    IntArray,
    Output,
    ParkContext,
    Scope,
    SeriesKey,
)
from analytics.engine.events import EventBook, EventRules
from analytics.engine.slots import BoolArray
from analytics.engine.store import MAX_AHEAD_MS, Group, WindowStore
from parkwatch.events import Event
from parkwatch.formula import Formula, parse_formula
from parkwatch.site import Park

log = logging.getLogger(__name__)

VIRTUAL = "_virtual"  # the table of virtual meters: computed on the park's clock
UNSET = -(2**62)  # a slot number before any


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


@dataclass
class _Gather:
    """Where an instance's rows live: per table, its rows there and their positions."""

    table: str
    src: npt.NDArray[np.intp]
    dst: npt.NDArray[np.intp]


@dataclass
class _Instance:
    detector: Detector
    group: str | None  # a table, for detectors run per gateway; None: one for the park
    gather: list[_Gather] = field(default_factory=list)

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
        self.store = WindowStore(self.step_ms)
        self.events = EventBook(park.park, event_rules)
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

        # one row per series in its table; the engine's series index is global
        self.series: list[SeriesKey] = sorted(wanted)
        self.index: dict[SeriesKey, int] = {k: i for i, k in enumerate(self.series)}
        by_table: dict[str, list[SeriesKey]] = {}
        for key in self.series:
            meter = tree.meters[key.meter]
            by_table.setdefault(VIRTUAL if meter.is_virtual else meter.gateway, []).append(key)
        self.place: dict[SeriesKey, tuple[str, int]] = {}
        for name, keys in by_table.items():
            counters = np.array([self.ctx.is_counter(k.quantity) for k in keys], dtype=bool)
            self.store.add_group(name, counters)
            for row, key in enumerate(keys):
                self.place[key] = (name, row)
        self._tables = sorted(by_table)
        table_no = {t: i for i, t in enumerate(self._tables)}
        # engine series index → table number and row, for routing readings without a loop
        self._series_table = np.array(
            [table_no[self.place[k][0]] for k in self.series], dtype=np.int64
        )
        self._series_row = np.array([self.place[k][1] for k in self.series], dtype=np.int64)
        # table number → gateway number (−1: the virtual table)
        self._table_gateway = np.array(
            [self.gateway_no.get(t, -1) for t in self._tables], dtype=np.int64
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
            # a detector that needs whole blocks of its rows: one instance per table
            per_table: dict[str, list[SeriesKey]] = {}
            for key in keys:
                per_table.setdefault(self.place[key][0], []).append(key)
            for t, table_keys in sorted(per_table.items()):
                self.instances.append(
                    _Instance(cls(self.ctx, table_keys, opts), t, self._gather(table_keys))
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

    def _gather(self, keys: Sequence[SeriesKey]) -> list[_Gather]:
        tables: dict[str, tuple[list[int], list[int]]] = {}
        for pos, key in enumerate(keys):
            table, row = self.place[key]
            src, dst = tables.setdefault(table, ([], []))
            src.append(row)
            dst.append(pos)
        return [
            _Gather(t, np.array(src, dtype=np.intp), np.array(dst, dtype=np.intp))
            for t, (src, dst) in sorted(tables.items())
        ]

    # --- input ---------------------------------------------------------------------------

    def series_of(self, meter: str, quantity: str) -> int | None:
        return self.index.get(SeriesKey(meter, quantity))

    def gateway_status(self, gateway: str, online: bool) -> None:
        g = self.gateway_no.get(gateway)
        if g is not None:
            self.clocks.online[g] = online

    def feed(self, batch: Batch) -> Advanced:
        """Store one live batch; returns the late readings it carried."""
        self._tick(batch.arrival_ms)
        if batch.t_ms.size == 0:
            return Advanced()
        g = self.gateway_no.get(batch.gateway, -1)
        if g >= 0:
            self.clocks.batch(
                g, batch.seq, int(batch.t_ms.min()), int(batch.t_ms.max()), batch.arrival_ms
            )
        n = batch.t_ms.size
        threshold = self._thresholds(self._series_table[batch.series])
        self._close()
        return self._store(
            batch.series,
            batch.t_ms,
            batch.value,
            np.full(n, g, dtype=np.int64),
            np.full(n, batch.arrival_ms, dtype=np.int64),
            np.zeros(n, dtype=bool),
            threshold,
            whole_batch=True,
        )

    def feed_rows(self, rows: Rows) -> Advanced:
        """Store a stretch of replayed rows (see :class:`Rows`), in arrival order.

        Closing is decided slot by slot of the arrival clock, exactly as a live service would
        decide it batch by batch, so how a replay is cut into stretches changes nothing."""
        if rows.t_ms.size == 0:
            return Advanced()
        arrival_slot = rows.arrival_ms // self.step_ms
        bounds = np.r_[0, np.flatnonzero(arrival_slot[1:] != arrival_slot[:-1]) + 1, rows.t_ms.size]
        tables = self._series_table[rows.series]
        threshold = np.empty(rows.t_ms.size, dtype=np.int64)
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            self._tick(int(rows.arrival_ms[a]))
            gw, t = rows.gateway[a:b], rows.t_ms[a:b]
            run = np.r_[True, (gw[1:] != gw[:-1]) | (t[1:] != t[:-1])] & (gw >= 0)
            if run.any():
                self.clocks.runs(gw[run], t[run], int(rows.arrival_ms[b - 1]))
            threshold[a:b] = self._thresholds(tables[a:b])
            self._close()
        return self._store(
            rows.series,
            rows.t_ms,
            rows.value,
            rows.gateway,
            rows.arrival_ms,
            rows.duplicate,
            threshold,
            whole_batch=False,
        )

    def _thresholds(self, tables: IntArray) -> IntArray:
        """Per reading: the first slot still open in its gateway (earlier ones are late)."""
        gw = self._table_gateway[tables]
        return np.where(gw >= 0, self.closed[np.maximum(gw, 0)], UNSET)

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
        until = self.clocks.complete_until(self.clock_slot * self.step_ms)
        heard = until > NEVER
        self.closed = np.where(heard, np.maximum(self.closed, until // self.step_ms), self.closed)
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
    ) -> Advanced:
        out = Advanced()
        late = np.zeros(series.size, dtype=bool)
        dup = duplicate.copy()
        fresh = ~duplicate
        tables = self._series_table[series]
        ahead = (self.now_ms + MAX_AHEAD_MS) // self.step_ms
        for tb in np.unique(tables[fresh]):
            name = self._tables[int(tb)]
            if name == VIRTUAL:
                continue  # virtual meters are computed, never fed
            where = np.flatnonzero(fresh & (tables == tb))
            dup_in, late_in = self.store.add(
                self.store.groups[name],
                self._series_row[series[where]],
                t_ms[where],
                value[where],
                threshold[where],
                ahead,
            )
            late[where[late_in]] = True
            dup[where[dup_in]] = True
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
        if whole_batch:
            starts = np.array([0])
        else:
            starts = np.flatnonzero(
                np.r_[True, (gateway[1:] != gateway[:-1]) | (t_ms[1:] != t_ms[:-1])]
            )
        run_gw = gateway[starts]
        run_dup = np.add.reduceat(dup.astype(np.int64), starts)
        run_late = np.add.reduceat(late.astype(np.int64), starts)
        run_offset = (
            np.array([np.median(t_ms)]) if whole_batch else t_ms[starts].astype(np.float64)
        ) - arrival_ms[starts]
        # facts go to the slot of the data they came with (the first open slot when that one
        # is closed), so that a backlog arriving late does not stretch the tables to today
        run_t = np.maximum.reduceat(t_ms, starts)
        run_slot = np.maximum(run_t // self.step_ms, threshold[starts])
        for g in np.unique(run_gw):
            if g < 0:
                continue
            group = self.store.groups.get(self.gateways[int(g)])
            if group is None:
                continue
            mine = run_gw == g
            slots = run_slot[mine]
            group.ensure(int(slots.min()), int(slots.max()))
            assert group.base is not None
            k = slots - group.base
            t = group.transport
            np.add.at(t.batches, k, 1)
            np.add.at(t.duplicates, k, run_dup[mine].astype(np.int32))
            np.add.at(t.late, k, run_late[mine].astype(np.int32))
            np.add.at(t.offset_sum, k, run_offset[mine])

    # --- running the detectors ---------------------------------------------------------------

    def advance(self, now_ms: int | None = None) -> Advanced:
        """Close what is complete at park clock ``now_ms`` and run the detectors over it."""
        if now_ms is not None:
            self._tick(now_ms)
        self._close()
        findings = Output()
        blocks: dict[tuple[str, int, int], Block] = {}

        def table_block(name: str, start: int, stop: int) -> Block:
            key = (name, start, stop)
            if key not in blocks:
                blocks[key] = self._table_block(name, start, stop)
            return blocks[key]

        # gateways that closed the same slots go to the detectors together
        heard = self.closed > UNSET
        first = np.where(self.emitted > UNSET, self.emitted, self._first_slots())
        first = np.minimum(first, self.closed)
        spans: dict[tuple[int, int], list[str]] = {}
        for g in np.flatnonzero(heard & (self.closed > first)):
            name = self.gateways[int(g)]
            if name in self.store.groups:
                spans.setdefault((int(first[g]), int(self.closed[g])), []).append(name)
        for (start, stop), names in sorted(spans.items()):
            for inst in self.instances:
                if inst.detector.scope is Scope.PARK:
                    continue
                block = self._instance_block(inst, names, start, stop, table_block)
                if block is not None:
                    findings.extend(inst.detector.update(block))
        self.emitted = np.where(heard, self.closed, self.emitted)

        if self.park_closed is not None:
            start = (
                int(min(self.park_closed, first[heard].min()))
                if self.park_emitted is None
                else self.park_emitted
            )
            if self.park_closed > start:
                findings.extend(self._park_step(start, self.park_closed, table_block))
            self.park_emitted = max(start, self.park_closed)
        self._forget()
        return Advanced(self.events.apply(findings.findings), findings.points)

    def _first_slots(self) -> IntArray:
        """Per gateway, the oldest slot its table holds (where a never-run gateway starts)."""
        out = np.full(len(self.gateways), UNSET, dtype=np.int64)
        for g, name in enumerate(self.gateways):
            group = self.store.groups.get(name)
            if group is not None and group.base is not None:
                out[g] = group.base
        return np.where(out > UNSET, out, self.closed)

    def _instance_block(
        self,
        inst: _Instance,
        tables: Sequence[str],
        start: int,
        stop: int,
        table_block: Any,
    ) -> Block | None:
        """The instance's rows held in ``tables``, slots ``start:stop``, as one block (for
        a detector that takes row subsets, ``rows`` says which of its rows they are)."""
        wanted = set(tables)
        parts = [g for g in inst.gather if g.table in wanted]
        if not parts:
            return None
        blocks = [table_block(g.table, start, stop) for g in parts]
        values = np.concatenate([b.values[g.src] for b, g in zip(blocks, parts, strict=True)])
        count = np.concatenate([b.count[g.src] for b, g in zip(blocks, parts, strict=True)])
        low = np.concatenate([b.low[g.src] for b, g in zip(blocks, parts, strict=True)])
        high = np.concatenate([b.high[g.src] for b, g in zip(blocks, parts, strict=True)])
        rows = np.concatenate([g.dst for g in parts])
        order = np.argsort(rows, kind="stable")
        arrays = [a[order] for a in (values, count, low, high)]
        for a in arrays:
            a.flags.writeable = False
        transport: dict[str, GatewayStats] = {}
        for b in blocks:
            transport.update(b.transport)
        whole = rows.size == len(inst.detector.series)
        return Block(
            start * self.step_ms,
            self.step_ms,
            arrays[0],
            arrays[1],
            arrays[2],
            arrays[3],
            tables[0] if len(tables) == 1 else None,
            transport,
            None if whole else rows[order].astype(np.intp),
        )

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
        group = self.store.groups[name]
        block = group.block(start, stop, self.step_ms)
        stats = {name: group.stats(name, start, stop)} if name in self.gateway_no else {}
        return Block(
            block.start_ms,
            block.step_ms,
            block.values,
            block.count,
            block.low,
            block.high,
            name,
            stats,
        )

    def _park_step(self, start: int, stop: int, table_block: Any) -> Output:
        out = Output()
        if self._virtuals:
            self._compute_virtuals(start, stop, table_block)
            vblock = self._table_block(VIRTUAL, start, stop)
            out.points.extend(self._virtual_points(vblock))
            cached: dict[tuple[str, int, int], Block] = {(VIRTUAL, start, stop): vblock}
            for inst in self.instances:
                if inst.detector.scope is Scope.PARK:
                    continue
                block = self._instance_block(
                    inst,
                    [VIRTUAL],
                    start,
                    stop,
                    lambda n, a, b: cached[(n, a, b)] if n == VIRTUAL else table_block(n, a, b),
                )
                if block is not None:
                    out.extend(inst.detector.update(block))
        for inst in self.instances:
            if inst.detector.scope is not Scope.PARK:
                continue
            tables = [g.table for g in inst.gather]
            block = self._instance_block(
                inst,
                tables,
                start,
                stop,
                lambda n, a, b: (
                    self._table_block(n, a, b) if n == VIRTUAL else table_block(n, a, b)
                ),
            )
            if block is not None:
                out.extend(inst.detector.update(block))
        return out

    def _compute_virtuals(self, start: int, stop: int, table_block: Any) -> None:
        vgroup = self.store.groups[VIRTUAL]
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

    def _forget(self) -> None:
        """Drop slots every consumer has read."""
        if self.park_emitted is None:
            return
        for g, name in enumerate(self.gateways):
            group = self.store.groups.get(name)
            if group is not None and self.emitted[g] > UNSET:
                group.drop_before(min(self.park_emitted, int(self.emitted[g])))
        if VIRTUAL in self.store.groups:
            self.store.groups[VIRTUAL].drop_before(self.park_emitted)

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
            "groups": {
                name: {
                    "base": group.base,
                    "cells": group.cells,
                    "transport": group.transport,
                    "late": group.late_readings,
                    "ahead": group.refused_ahead,
                }
                for name, group in self.store.groups.items()
            },
            "detectors": {inst.key: inst.detector.state() for inst in self.instances},
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
        for name, g_state in state["groups"].items():
            group: Group = self.store.groups[name]
            group.base = g_state["base"]
            group.cells = g_state["cells"]
            group.transport = g_state["transport"]
            group.late_readings = int(g_state["late"])
            group.refused_ahead = int(g_state["ahead"])
        for inst in self.instances:
            inst.detector.restore(state["detectors"][inst.key])
        self.events.restore(state["events"])

    # --- metrics -------------------------------------------------------------------------------

    def late_readings(self) -> int:
        return sum(g.late_readings for g in self.store.groups.values())

    def open_slots(self) -> int:
        return sum(g.cells.slots for g in self.store.groups.values())
