"""Calendar rollups: hourly consumption → days, months and years of the park's local clock,
per meter and per workshop, enterprise and park.

Edges are instants where the park's wall clock reads a whole hour, midnight, the first of a
month or of a year (Asia/Shanghai by default), never UTC midnight. A day is the sum of its
hours, a month of its days, a year of its months, so every level adds up exactly; each
period keeps its *completeness* (the time-weighted share of its hours covered by readings)
and the *estimated* part of its value.

A group (workshop, enterprise, park) is the sum of its **top meters** for each utility: its
meters whose parent is outside the group (the park's are the roots of the balance trees), so
a parent and its children are never counted twice. Meters that do not measure consumption
are left out of the sums: virtual meters (formulas of real ones), on-site generation and
storage (``pv``, ``battery``: PV is its own quantity, ``pv_kwh``), tank levels, and steam or
heat made on site (a boiler's output, recovered heat: their fuel is already counted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from parkwatch import calendar
from parkwatch.energy import ROLLUP_MEASUREMENTS
from parkwatch.quantities import Utility
from parkwatch.site import PARK_ENTERPRISE, Meter, Park, Role

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

HOUR_MS = 3_600_000
_QUARTER_MS = 900_000

# the counter each utility's consumption is read from
CONSUMPTION_COUNTER: dict[Utility, str] = {
    Utility.ELECTRICITY: "e_kwh",
    Utility.WATER: "vol_m3",
    Utility.GAS: "vol_nm3",
    Utility.AIR: "vol_nm3",
    Utility.STEAM: "steam_t",
    Utility.HEAT: "heat_gj",
}
EXPORT_COUNTER = "e_export_kwh"  # electricity fed back (PV surplus, battery discharge)
PV_QUANTITY = "pv_kwh"  # on-site generation: a PV meter's exported energy
# roles whose meters are not consumption: generation, storage, levels
NOT_CONSUMPTION = frozenset({Role.PV, Role.BATTERY, Role.TANK})
# steam and heat made inside the boundary (a boiler's output, recovered heat) come from fuel or
# electricity already counted: summing them too would count that energy twice (GB/T 2589)
OWN_PRODUCTION = frozenset({Role.BOILER, Role.HEAT_RECOVERY})


class Period(StrEnum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"
    YEAR = "year"


MEASUREMENT: dict[Period, str] = {p: ROLLUP_MEASUREMENTS[p.value] for p in Period}


class Level(StrEnum):
    METER = "meter"
    WORKSHOP = "workshop"
    ENTERPRISE = "enterprise"
    ZONE = "zone"
    PARK = "park"


@dataclass(frozen=True)
class CounterSeries:
    """One counter the accounting reads: a meter's quantity."""

    meter: Meter
    quantity: str  # the counter in InfluxDB (e_kwh, vol_m3, …)

    @property
    def reported_as(self) -> str:
        """The rollup's quantity tag: a PV meter's export is its generation."""
        if self.meter.role is Role.PV and self.quantity == EXPORT_COUNTER:
            return PV_QUANTITY
        return self.quantity


@dataclass(frozen=True)
class Group:
    level: Level
    id: str
    enterprise: str | None
    utility: Utility
    quantity: str
    members: tuple[int, ...]  # indices into the accounting's series
    signs: tuple[float, ...] = ()  # per member, +1 by default; a zone's outflows count −1

    def weights(self) -> tuple[float, ...]:
        return self.signs or (1.0,) * len(self.members)


def accounting_series(park: Park) -> list[CounterSeries]:
    """Every counter the accounting reads, in a stable order."""
    out: list[CounterSeries] = []
    for meter in park.iter_meters():
        if meter.is_virtual or meter.utility not in CONSUMPTION_COUNTER:
            continue
        if meter.role is Role.TANK:
            continue
        if meter.role is Role.PV:
            out.append(CounterSeries(meter, EXPORT_COUNTER))
            continue
        out.append(CounterSeries(meter, CONSUMPTION_COUNTER[meter.utility]))
        if meter.utility is Utility.ELECTRICITY and meter.role is not Role.BATTERY:
            out.append(CounterSeries(meter, EXPORT_COUNTER))
    return out


def groups(park: Park, series: Sequence[CounterSeries]) -> list[Group]:
    """The workshop, enterprise and park sums of ``series`` (see the module docstring)."""
    placement: dict[str, tuple[str, str | None]] = {
        m.id: (m.enterprise, m.workshop) for m in park.iter_meters()
    }
    # a meter already measured by a real meter in the group is no top meter
    covered_by = {m.id: park.tree.covering(m.id) for m in park.iter_meters()}

    def members_of(ids: set[str]) -> dict[tuple[Utility, str], list[int]]:
        out: dict[tuple[Utility, str], list[int]] = {}
        for i, cs in enumerate(series):
            m = cs.meter
            if m.id not in ids:
                continue
            if cs.reported_as == PV_QUANTITY:
                out.setdefault((m.utility, PV_QUANTITY), []).append(i)
                continue
            if m.role in NOT_CONSUMPTION or covered_by[m.id] & ids:
                continue
            if m.role in OWN_PRODUCTION and m.utility in (Utility.STEAM, Utility.HEAT):
                continue
            out.setdefault((m.utility, cs.quantity), []).append(i)
        return out

    found: list[Group] = []

    def add(level: Level, gid: str, enterprise: str | None, ids: set[str]) -> None:
        for (utility, quantity), members in sorted(members_of(ids).items()):
            found.append(Group(level, gid, enterprise, utility, quantity, tuple(members)))

    enterprises = sorted({e for e, _ in placement.values() if e != PARK_ENTERPRISE})
    for ent in enterprises:
        shops = sorted({w for e, w in placement.values() if e == ent and w is not None})
        for shop in shops:
            ids = {m for m, (e, w) in placement.items() if e == ent and w == shop}
            add(Level.WORKSHOP, f"{ent}/{shop}", ent, ids)
        add(Level.ENTERPRISE, ent, ent, {m for m, (e, _) in placement.items() if e == ent})
    add(Level.PARK, park.park, None, set(placement))
    # zones (district metered areas, where the site declares them): Σ inflow − Σ outflow of
    # their meters' counters. A tank's storage change is not taken off here: over a day it is
    # small against a zone's flow, and the leak detector accounts it where it matters
    index = {(cs.meter.id, cs.quantity): i for i, cs in enumerate(series)}
    for zone in park.zones:
        counter = CONSUMPTION_COUNTER.get(zone.utility)
        if counter is None:
            continue
        members: list[int] = []
        signs: list[float] = []
        for side, sign in ((zone.inflow, 1.0), (zone.outflow, -1.0)):
            for meter_id in side:
                i = index.get((meter_id, counter))
                if i is not None:
                    members.append(i)
                    signs.append(sign)
        if members:
            found.append(
                Group(
                    Level.ZONE, zone.id, None, zone.utility, counter, tuple(members), tuple(signs)
                )
            )
    return found


def local_edges(start_ms: int, end_ms: int, zone: ZoneInfo, period: Period) -> IntArray:
    """The instants in [start, end] where the zone's wall clock starts a ``period``."""
    if period in (Period.HOUR, Period.DAY):
        step = HOUR_MS if period is Period.HOUR else calendar.DAY_MS
        first = -(-start_ms // _QUARTER_MS) * _QUARTER_MS
        t = np.arange(first, end_ms + 1, _QUARTER_MS, dtype=np.int64)
        local = calendar.local_ms(t, zone)
        # a whole hour or midnight on the wall clock, or the first instant of a new one where
        # the clock jumps over it (Santiago, Cairo, Beirut start summer time at midnight: that
        # day begins at 01:00)
        before = np.r_[calendar.local_ms(t[:1] - _QUARTER_MS, zone), local[:-1]]
        edges: IntArray = t[(local % step == 0) | (local // step > before // step)]
        return edges
    start = datetime.fromtimestamp(start_ms / 1000, tz=UTC).astimezone(zone)
    year, month = start.year, (start.month if period is Period.MONTH else 1)
    out: list[int] = []
    while True:
        edge = int(datetime(year, month, 1, tzinfo=zone).timestamp() * 1000)
        if edge > end_ms:
            break
        if edge >= start_ms:
            out.append(edge)
        if period is Period.MONTH:
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        else:
            year += 1
    return np.array(out, dtype=np.int64)


@dataclass
class Rolled:
    """Values per row and period: ``edges`` has one more entry than the columns."""

    edges: IntArray
    value: FloatArray
    completeness: FloatArray
    estimated: FloatArray


def coarser(fine: Rolled, edges: IntArray) -> Rolled:
    """Sum fine periods into the coarser periods between ``edges`` (every coarse edge must
    be a fine edge; fine periods outside are ignored). Unknown (NaN) fine periods count as
    nothing measured; a coarse period with no known fine period is unknown."""
    starts = np.searchsorted(fine.edges, edges)
    if not np.array_equal(fine.edges[np.minimum(starts, fine.edges.size - 1)], edges):
        raise ValueError("coarse edges must fall on fine edges")
    rows = fine.value.shape[0]
    k = edges.size - 1
    value = np.full((rows, k), np.nan)
    completeness = np.zeros((rows, k))
    estimated = np.zeros((rows, k))
    if k <= 0:
        return Rolled(edges, value, completeness, estimated)
    lengths = np.diff(fine.edges).astype(np.float64)
    known = np.isfinite(fine.value)
    a, b = starts[:-1], starts[1:]
    bounds = np.r_[a, b[-1]]

    def per_period(x: FloatArray) -> FloatArray:
        # reduceat over each coarse period's fine columns; a zero column makes the last
        # bound valid, and empty periods are masked below
        padded = np.concatenate([x, np.zeros((rows, 1))], axis=1)
        out: FloatArray = np.add.reduceat(padded, bounds, axis=1)[:, :k]
        return out

    sums = per_period(np.where(known, fine.value, 0.0))
    n_known = per_period(known.astype(np.float64))
    est = per_period(fine.estimated)
    cov = per_period(fine.completeness * lengths[None, :])
    empty = (b <= a)[None, :]
    span = np.diff(edges).astype(np.float64)[None, :]
    value = np.where((n_known > 0) & ~empty, sums, np.nan)
    completeness = np.where(empty, 0.0, cov / span)
    estimated = np.where(empty, 0.0, est)
    return Rolled(edges, value, completeness, estimated)


def group_sums(meters: Rolled, found: Sequence[Group]) -> Rolled:
    """Each group's sum of its members. A group's period is as complete as its least complete
    member (an auditor's reading: the sum is only as good as its worst part); unknown when
    every member is."""
    k = meters.value.shape[1]
    value = np.full((len(found), k), np.nan)
    completeness = np.zeros((len(found), k))
    estimated = np.zeros((len(found), k))
    for g, group in enumerate(found):
        m = np.array(group.members, dtype=np.int64)
        w = np.array(group.weights())[:, None]
        v = meters.value[m]
        known = np.isfinite(v)
        total = (np.where(known, v, 0.0) * w).sum(axis=0)
        value[g] = np.where(known.any(axis=0), total, np.nan)
        completeness[g] = meters.completeness[m].min(axis=0)
        estimated[g] = meters.estimated[m].sum(axis=0)
    return Rolled(meters.edges, value, completeness, estimated)
