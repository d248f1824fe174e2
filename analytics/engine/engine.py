"""One park's streaming engine: readings in; events and derived series out.

Live (the analytics service) and replay drive it the same way — :meth:`ParkEngine.feed` for
each batch of one gateway, :meth:`ParkEngine.advance` to close what is complete — so they give
the same events.

Wiring, set up once from the site model: every registered detector selects its series; each
series lives in its gateway's clock group (virtual meters in the park's); ``Scope.METER``
detectors get one instance per group, ``Scope.PARK`` detectors one for the park. On advance,
each gateway group's complete slots go to its instances as one block; then the park clock (the
slowest gateway) closes the slots every group has, virtual meters are computed for them, and
the park-scope detectors run. Findings go through the event book.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.engine.clocks import NEVER, ClockRules, GatewayClock
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

VIRTUAL = "_virtual"  # the clock group of virtual meters: the park's clock


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
    """What one advance produced."""

    events: list[Event] = field(default_factory=list)
    points: list[DerivedPoint] = field(default_factory=list)
    # (meter, first, last) data times of late readings: slots already closed that they touch
    late: list[tuple[str, int, int]] = field(default_factory=list)


@dataclass
class _Instance:
    detector: Detector
    group: str | None  # None: park scope
    rows: npt.NDArray[np.intp] | None = None  # group scope: rows of the group's table
    # park scope: per source group, (rows in that group, positions in the detector's block)
    gather: list[tuple[str, npt.NDArray[np.intp], npt.NDArray[np.intp]]] = field(
        default_factory=list
    )

    @property
    def key(self) -> str:
        return f"{self.detector.name}@{self.group or 'park'}"


@dataclass
class _Virtual:
    key: SeriesKey
    row: int  # row in the virtual group
    formula: Formula
    quantity: str
    sources: list[tuple[str, int]]  # (group, row) of each formula meter, in formula order


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
        self.clock_rules = clock_rules or ClockRules()
        self.clocks: dict[str, GatewayClock] = {}
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

        # one row per series in its group; the engine's series index is global
        self.series: list[SeriesKey] = sorted(wanted)
        self.index: dict[SeriesKey, int] = {k: i for i, k in enumerate(self.series)}
        by_group: dict[str, list[SeriesKey]] = {}
        for key in self.series:
            meter = tree.meters[key.meter]
            by_group.setdefault(VIRTUAL if meter.is_virtual else meter.gateway, []).append(key)
        self.place: dict[SeriesKey, tuple[str, int]] = {}
        for name, keys in by_group.items():
            counters = np.array([self.ctx.is_counter(k.quantity) for k in keys], dtype=bool)
            self.store.add_group(name, counters)
            for row, key in enumerate(keys):
                self.place[key] = (name, row)
            if name != VIRTUAL:
                self.clocks[name] = GatewayClock(self.clock_rules)
        # engine series index → group number and row, for routing a batch without a loop
        self._group_names = sorted(by_group)
        group_no = {g: i for i, g in enumerate(self._group_names)}
        self._series_group = np.array(
            [group_no[self.place[k][0]] for k in self.series], dtype=np.int64
        )
        self._series_row = np.array([self.place[k][1] for k in self.series], dtype=np.int64)
        self._virtuals = [
            _Virtual(
                k,
                self.place[k][1],
                formulas[k.meter],
                k.quantity,
                [self.place[SeriesKey(m, k.quantity)] for m in formulas[k.meter].meters],
            )
            for k in virtual_keys
        ]

        self.instances: list[_Instance] = []
        for cls, keys in selections.items():
            if not keys:
                continue
            opts = (params or {}).get(cls.name)
            if cls.scope is Scope.PARK:
                inst = _Instance(cls(self.ctx, keys, opts), None)
                positions: dict[str, tuple[list[int], list[int]]] = {}
                for pos, key in enumerate(keys):
                    g, row = self.place[key]
                    src, dst = positions.setdefault(g, ([], []))
                    src.append(row)
                    dst.append(pos)
                inst.gather = [
                    (g, np.array(src, dtype=np.intp), np.array(dst, dtype=np.intp))
                    for g, (src, dst) in sorted(positions.items())
                ]
                self.instances.append(inst)
                continue
            per_group: dict[str, list[SeriesKey]] = {}
            for key in keys:
                per_group.setdefault(self.place[key][0], []).append(key)
            for g, group_keys in sorted(per_group.items()):
                rows = np.array([self.place[k][1] for k in group_keys], dtype=np.intp)
                self.instances.append(_Instance(cls(self.ctx, group_keys, opts), g, rows))

        # every gateway of the park, numbered (rows of a replay carry the number)
        self.gateways = sorted({m.gateway for m in tree.meters.values() if not m.is_virtual})
        self.gateway_no = {g: i for i, g in enumerate(self.gateways)}
        # per gateway group: slots before ``closed`` are complete (a reading for them is late);
        # before ``emitted`` the detectors have had them. The park clock: the slowest group.
        self.closed: dict[str, int] = {}
        self.emitted: dict[str, int] = {}
        self.park_closed: int | None = None
        self.park_emitted: int | None = None
        self.clock_slot: int | None = None  # the park clock's slot (arrival time)
        self.now_ms = NEVER

    # --- input ---------------------------------------------------------------------------

    def series_of(self, meter: str, quantity: str) -> int | None:
        return self.index.get(SeriesKey(meter, quantity))

    def gateway_status(self, gateway: str, online: bool) -> None:
        clock = self.clocks.get(gateway)
        if clock is not None:
            clock.online = online

    def feed(self, batch: Batch) -> Advanced:
        """Store one live batch; returns the late readings it carried."""
        self._tick(batch.arrival_ms)
        if batch.t_ms.size == 0:
            return Advanced()
        clock = self.clocks.get(batch.gateway)
        if clock is not None:
            clock.batch(batch.seq, int(batch.t_ms.min()), int(batch.t_ms.max()), batch.arrival_ms)
        n = batch.t_ms.size
        gateway = self.gateway_no.get(batch.gateway, -1)
        threshold = self._thresholds(self._series_group[batch.series])
        self._close()
        return self._store(
            batch.series,
            batch.t_ms,
            batch.value,
            np.full(n, gateway, dtype=np.int64),
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
        groups = self._series_group[rows.series]
        threshold = np.empty(rows.t_ms.size, dtype=np.int64)
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            self._tick(int(rows.arrival_ms[a]))
            gw = rows.gateway[a:b]
            for g in np.unique(gw):
                clock = self.clocks.get(self.gateways[int(g)]) if g >= 0 else None
                if clock is None:
                    continue
                times = rows.t_ms[a:b][gw == g]
                run_times = times[np.r_[True, times[1:] != times[:-1]]]
                clock.runs(run_times.tolist(), int(rows.arrival_ms[b - 1]))
            threshold[a:b] = self._thresholds(groups[a:b])
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

    def _thresholds(self, groups: IntArray) -> IntArray:
        """Per reading: the first slot still open in its group (earlier ones are late)."""
        table = np.array(
            [self.closed.get(name, -(2**62)) for name in self._group_names], dtype=np.int64
        )
        return table[groups]

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
        at_ms = self.clock_slot * self.step_ms
        for name, clock in self.clocks.items():
            if clock.last_arrival_ms <= NEVER:
                # never heard from: nothing to close (its meters cannot fall silent), and it
                # must not hold the park clock; its first data opens it wherever it starts
                continue
            until = clock.complete_until(at_ms)
            if until <= NEVER:
                continue
            close = until // self.step_ms
            if close > self.closed.get(name, -(2**62)):
                self.closed[name] = close
        if self.closed:
            park = min(self.closed.values())
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
        groups = self._series_group[series]
        for g in np.unique(groups[fresh]):
            name = self._group_names[int(g)]
            if name == VIRTUAL:
                continue  # virtual meters are computed, never fed
            where = np.flatnonzero(fresh & (groups == g))
            dup_in, late_in = self.store.add(
                self.store.groups[name],
                self._series_row[series[where]],
                t_ms[where],
                value[where],
                threshold[where],
                (self.now_ms + MAX_AHEAD_MS) // self.step_ms,
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
            name = self.gateways[int(g)]
            group = self.store.groups.get(name)
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
        for name, close in self.closed.items():
            start = self.emitted.get(name)
            if start is None:
                first = self.store.groups[name].base
                start = close if first is None else min(first, close)
            if close <= start:
                self.emitted[name] = start
                continue
            block = self._group_block(name, start, close)
            for inst in self.instances:
                if inst.group == name:
                    assert inst.rows is not None
                    findings.extend(inst.detector.update(block.take(inst.rows)))
            self.emitted[name] = close
        if self.park_closed is not None:
            start = self.park_emitted
            if start is None:
                start = min([self.park_closed, *self.emitted.values()])
            if self.park_closed > start:
                findings.extend(self._park_step(start, self.park_closed))
            self.park_emitted = max(start, self.park_closed)
        self._forget()
        return Advanced(self.events.apply(findings.findings), findings.points)

    def finish(self) -> Advanced:
        """No more data will come (the end of a replay): close every slot that has data."""
        newest = max((c.newest_ms for c in self.clocks.values()), default=NEVER)
        if newest <= NEVER:
            return Advanced()
        end = (newest // self.step_ms + 1) * self.step_ms  # the end of the newest slot
        for clock in self.clocks.values():
            clock.final_ms = end
        return self.advance(end)

    def _group_block(self, name: str, start: int, stop: int) -> Block:
        group = self.store.groups[name]
        block = group.block(start, stop, self.step_ms)
        stats = {name: group.stats(name, start, stop)} if name in self.clocks else {}
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

    def _park_step(self, start: int, stop: int) -> Output:
        out = Output()
        cache: dict[str, Block] = {}

        def group_block(name: str) -> Block:
            if name not in cache:
                cache[name] = self._group_block(name, start, stop)
            return cache[name]

        if self._virtuals:
            self._compute_virtuals(start, stop, group_block)
            cache.pop(VIRTUAL, None)
            vblock = group_block(VIRTUAL)
            out.points.extend(self._virtual_points(vblock))
            for inst in self.instances:
                if inst.group == VIRTUAL:
                    assert inst.rows is not None
                    out.extend(inst.detector.update(vblock.take(inst.rows)))
        transport: dict[str, GatewayStats] = {}
        for inst in self.instances:
            if inst.group is not None:
                continue
            n = len(inst.detector.series)
            slots = stop - start
            values = np.full((n, slots), np.nan)
            count = np.zeros((n, slots), dtype=np.int32)
            low = np.full((n, slots), np.nan)
            high = np.full((n, slots), np.nan)
            for g, src, dst in inst.gather:
                b = group_block(g)
                values[dst] = b.values[src]
                count[dst] = b.count[src]
                low[dst] = b.low[src]
                high[dst] = b.high[src]
                transport.update(b.transport)
            for array in (values, count, low, high):
                array.flags.writeable = False
            block = Block(
                start * self.step_ms, self.step_ms, values, count, low, high, None, dict(transport)
            )
            out.extend(inst.detector.update(block))
        return out

    def _compute_virtuals(self, start: int, stop: int, group_block: Any) -> None:
        vgroup = self.store.groups[VIRTUAL]
        vgroup.ensure(start, stop - 1)
        assert vgroup.base is not None
        i, j = start - vgroup.base, stop - vgroup.base
        cells = vgroup.cells
        for v in self._virtuals:
            parts = {}
            counts = []
            for meter, (g, row) in zip(v.formula.meters, v.sources, strict=True):
                b = group_block(g)
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
                out.append(
                    DerivedPoint(
                        meter.utility.value, tags, {v.quantity: float(row[k])}, int(times[k])
                    )
                )
        return out

    def _forget(self) -> None:
        """Drop slots every consumer has read."""
        if self.park_emitted is None:
            return
        keep_from = min([self.park_emitted, *self.emitted.values()])
        for group in self.store.groups.values():
            group.drop_before(keep_from)

    # --- snapshot ----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "version": 1,
            "series": [str(k) for k in self.series],
            "now_ms": self.now_ms,
            "closed": dict(self.closed),
            "emitted": dict(self.emitted),
            "park_closed": self.park_closed,
            "park_emitted": self.park_emitted,
            "clock_slot": self.clock_slot,
            "clocks": {g: c.state() for g, c in self.clocks.items()},
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
        if state.get("series") != [str(k) for k in self.series]:
            raise ValueError("snapshot was taken with another site model or detector set")
        self.now_ms = int(state["now_ms"])
        self.closed = dict(state["closed"])
        self.emitted = dict(state["emitted"])
        self.park_closed = state["park_closed"]
        self.park_emitted = state["park_emitted"]
        self.clock_slot = state["clock_slot"]
        for g, clock_state in state["clocks"].items():
            self.clocks[g].restore(clock_state)
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

    def memory_bytes(self) -> int:
        total = 0
        for g in self.store.groups.values():
            c = g.cells
            total += sum(a.nbytes for a in (c.total, c.count, c.low, c.high, c.last_t, c.last_v))
        return total
