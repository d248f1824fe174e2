"""The rollup job: the platform's own downsampling, written back to InfluxDB.

Every ``interval_s`` the analytics service runs it per park: the hours that the last
``recent_s`` touch (the running hour, so boards show today so far, and the last one for a while
after it ended; after a start, everything since ``catch_up_s`` ago) are turned into hourly
consumption per meter (:mod:`analytics.accounting.consumption`), and the local days, months
and years those hours fall in are summed again from the stored hours, days and months, per
meter and per workshop, enterprise and park (:mod:`analytics.accounting.rollup`). Readings that
reach the engine after their slot closed (late, replayed backlogs) are reported by the engine;
for each, only the hours between the readings around them are recomputed, per meter and from
that meter's own readings (those around them looked up however far away, so that a backlog
ending long before the meter resumed re-splits the outage), then the periods above them. A
meter resuming after an outage of any length (up to ``outage_lookback_s``) keeps the register's
rise across it: its last reading before is looked up wherever it lies, and the rise is spread
over the outage's hours as an estimate (completeness 0 there), never lost or counted twice.

Points (one measurement per period, ``consumption_hourly`` … ``consumption_yearly``; at the
period's local start): tags ``park``, ``level`` (meter, workshop, enterprise, park), ``id``,
``utility``, ``quantity``, ``enterprise``; fields ``value`` (in the counter's unit),
``completeness``, ``estimated``, and where the utility is an energy carrier ``kgce`` (the
park's convention) and ``co2_kg`` (the grid or fuel factor in force for the period's year); a
meter's hours also ``events`` (counter events in the hour) and, for an electricity meter that
reports power too, ``power_kwh`` (its integrated power) and ``power_mismatch`` (the register and
the power disagree by more than 5 %).
An unknown period is not written: a missing point is unknown, never zero.

Retention, portably: the rollups go to their own retention policy (``rollups``, kept
indefinitely) on InfluxDB 1.x, and raw data keeps the default policy, whose duration
``raw_retention`` sets. On 2.x/3.x a policy name maps to a bucket through its DBRP mapping,
which the administrator sets; creating it there fails once, is logged, and the job goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from analytics.accounting.consumption import (
    FLAG_OF_QUALITY,
    Flag,
    Readings,
    Replacement,
    affected_span,
    consumption,
    cross_check,
    energy_from_power,
    prepare,
)
from analytics.accounting.rollup import (
    HOUR_MS,
    MEASUREMENT,
    Group,
    Level,
    Period,
    Rolled,
    accounting_series,
    coarser,
    group_sums,
    groups,
    local_edges,
)
from parkwatch.energy import REPLACEMENT_MEASUREMENT, ROLLUP_RETENTION_POLICY, conversion
from parkwatch.influx import InfluxError, InfluxReader, InfluxWriter, chunks, quote_ident
from parkwatch.influx import quote_string as qs
from parkwatch.lineprotocol import encode_point
from parkwatch.quantities import Utility
from parkwatch.site import Park

log = logging.getLogger(__name__)

_COARSER = {Period.DAY: Period.HOUR, Period.MONTH: Period.DAY, Period.YEAR: Period.MONTH}


@dataclass
class _Raw:
    """Raw counter readings (series index into the job's series) and, for electricity
    meters, their power readings under the index of their energy counter."""

    series: Any
    t_ms: Any
    values: Any
    flags: Any
    p_series: Any
    p_t_ms: Any
    p_kw: Any


@dataclass(frozen=True)
class RollupConfig:
    interval_s: float = 60.0
    # recomputed every run: the running hour, and the last one for this long after it ended
    recent_s: float = 900.0
    # the first run (after a start or a restart) looks this far back, and a run after failed
    # ones from the last good run: hours nobody computed are caught up
    catch_up_s: float = 6 * 3600.0
    # a catch-up from further back (a new worker from an earlier one's mark, days ago) goes
    # this far at a time: each pass reads its span of raw data in one query
    catch_up_step_s: float = 86_400.0
    margin_s: float = 6 * 3600.0  # raw data read around hours recomputed for late readings
    retention_policy: str | None = (
        ROLLUP_RETENTION_POLICY  # where rollups go (None: the default policy)
    )
    raw_retention: str | None = None  # e.g. "400d": the default policy's duration
    # meter exchanges entered through the API are usually entered after the fact: a run looks
    # this far back for ones it has not seen and recomputes the hours around them
    replacement_lookback_s: float = 400 * 86_400.0
    # a meter resuming after an outage (or readings arriving late after one): its last reading
    # before is looked up this far back, however long the outage, so that the register's rise
    # across it is kept (an estimate spread over the outage), not lost with the margin
    outage_lookback_s: float = 400 * 86_400.0


def _empty_raw() -> _Raw:
    i, f, b = np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, np.int8)
    return _Raw(i, i, f, b, i, i, f)


def _only(raw: _Raw, rows: Sequence[int]) -> _Raw:
    """The readings of ``raw`` of the series ``rows``."""
    keep = np.asarray(rows, np.int64)
    c, p = np.isin(raw.series, keep), np.isin(raw.p_series, keep)
    return _Raw(
        raw.series[c],
        raw.t_ms[c],
        raw.values[c],
        raw.flags[c],
        raw.p_series[p],
        raw.p_t_ms[p],
        raw.p_kw[p],
    )


def _joined(a: _Raw, b: _Raw) -> _Raw:
    return _Raw(
        *(
            np.concatenate([getattr(a, f), getattr(b, f)])
            for f in ("series", "t_ms", "values", "flags", "p_series", "p_t_ms", "p_kw")
        )
    )


def rollup_source(rp: str | None, period: Period) -> str:
    """The FROM clause of a rollup measurement."""
    m = quote_ident(MEASUREMENT[period])
    return m if rp is None else f"{quote_ident(rp)}.{m}"


async def ensure_retention(
    reader: InfluxReader, config: RollupConfig, logger: logging.Logger = log
) -> None:
    """Create the rollups' policy (kept forever) and set the raw data's duration (1.x)."""
    db = quote_ident(reader.settings.database)
    try:
        if config.retention_policy is not None:
            await reader.execute(
                f"CREATE RETENTION POLICY {quote_ident(config.retention_policy)} ON {db} "
                "DURATION INF REPLICATION 1"
            )
        if config.raw_retention is not None:
            policies = await reader.query(f"SHOW RETENTION POLICIES ON {db}")
            default = next(
                (row[0] for s in policies for row in s.values if row[-1] is True), "autogen"
            )
            await reader.execute(
                f"ALTER RETENTION POLICY {quote_ident(default)} ON {db} "
                f"DURATION {config.raw_retention}"
            )
    except InfluxError as exc:
        logger.warning("retention policies not set (not InfluxDB 1.x?): %s", exc)


class RollupJob:
    """One park's rollups (see the module docstring)."""

    def __init__(
        self, park: Park, reader: InfluxReader, writer: InfluxWriter, config: RollupConfig
    ) -> None:
        self.park = park
        self.reader = reader
        self.writer = writer
        self.config = config
        self.series = accounting_series(park)
        self.groups: list[Group] = groups(park, self.series)
        self.index = {(cs.meter.id, cs.quantity): i for i, cs in enumerate(self.series)}
        # the rollups' own quantity tag (a PV meter's export is stored as its generation)
        self.rolled_index = {(cs.meter.id, cs.reported_as): i for i, cs in enumerate(self.series)}
        self.of_meter: dict[str, list[int]] = {}
        for i, cs in enumerate(self.series):
            self.of_meter.setdefault(cs.meter.id, []).append(i)
        opts = park.accounting
        self.modulus = np.array(
            [opts.register_max.get(cs.meter.id, np.nan) for cs in self.series], np.float64
        )
        # readings further apart than this are a gap: the park's setting, or three of the
        # meter's own poll intervals for a meter read less often
        self.max_gap = np.array(
            [
                int(max(opts.max_gap_s, 3 * (cs.meter.spec.interval_s or 0.0)) * 1000)
                for cs in self.series
            ],
            np.int64,
        )
        self.max_gap_ms = int(self.max_gap.max()) if self.max_gap.size else 900_000
        self.late: list[tuple[str, int, int]] = []
        # (meter, quantity, time) → (old final, new initial) as last applied: an exchange
        # entered again with corrected readings overwrites its point and is applied again
        # (one entry per exchange, as many as the store holds)
        self.seen_replacements: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.seen_resumed: set[tuple[str, int]] = set()  # (meter, first reading after a gap)
        self.points_written = 0
        self.runs = 0
        self.done_ms: int | None = None  # the last good run's time

    def mark_late(self, meter: str, first_ms: int, last_ms: int) -> None:
        if meter in self.of_meter:
            self.late.append((meter, first_ms, last_ms))

    async def run(self, now_ms: int) -> int:
        """One pass (a catch-up from longer ago than ``catch_up_step_s``: one per step, so
        no read spans more than a step of raw data); returns the points written."""
        step_ms = max(1, int(self.config.catch_up_step_s * 1000))
        since = (
            now_ms - int(self.config.catch_up_s * 1000) if self.done_ms is None else self.done_ms
        )
        written = 0
        while now_ms - since > step_ms:
            written += await self._pass(since, since + step_ms)
            since += step_ms
        written += await self._pass(since, now_ms)
        self.runs += 1
        return written

    async def _pass(self, since: int, now_ms: int) -> int:
        """The hours from ``since`` (the last pass's time) to ``now_ms``, and late spans."""
        written = 0
        recent = int(now_ms - self.config.recent_s * 1000)
        # from the pair across the last pass's time: a reading stamped at or just after it that
        # arrived after it closes a pair that began before it (the hour ending at a pass kept
        # its last minute's consumption out when passes were recent_s or more apart)
        recent = min(recent, since - self.max_gap_ms)
        # (series, from, to, late): the recent past for every series, and what arrived late
        touched = [(list(range(len(self.series))), recent, now_ms, False)]
        for meter, t_ms in await self._new_replacements(now_ms):
            self.mark_late(meter, t_ms, t_ms)  # the hours around an exchange entered late
        late, self.late = self.late, []
        touched.extend((rows, a, b, True) for rows, a, b in self._coalesce(late))
        lo, hi = now_ms, now_ms
        for rows, a, b, exact in touched:
            if not rows:
                continue
            span = await self._hours(rows, a, b, exact=exact)
            if span is not None:
                lo, hi = min(lo, span[0]), max(hi, span[1])
                written += span[2]
        written += await self._upper(lo, hi)
        self.points_written += written
        self.done_ms = now_ms
        return written

    def _coalesce(self, late: list[tuple[str, int, int]]) -> list[tuple[list[int], int, int]]:
        """Late spans that overlap (a replayed backlog: every meter of a gateway over the same
        hours) become one recomputation of all their meters."""
        out: list[tuple[list[int], int, int]] = []
        for meter, first, last in sorted(late, key=lambda x: x[1]):
            if out and first <= out[-1][2]:
                rows, a, b = out[-1]
                out[-1] = (sorted({*rows, *self.of_meter[meter]}), a, max(b, last))
            else:
                out.append((list(self.of_meter[meter]), first, last))
        return out

    # --- hours from raw counters -----------------------------------------------------------

    async def _hours(
        self, rows: Sequence[int], a_ms: int, b_ms: int, *, exact: bool
    ) -> tuple[int, int, int] | None:
        # the pair across the first edge is all the regular pass needs (one further apart is a
        # gap); a late reading's neighbours may be further away
        pair = self.max_gap_ms + 60_000
        margin = int(self.config.margin_s * 1000) if exact else pair
        zone = self.park.zone
        # the readings of the first hour recomputed from its start on (and the pair across
        # it): an hour recomputed from a later reading on is rewritten with its last minutes
        lo = min(a_ms - margin, self._hour_start(a_ms) - pair)
        hi = b_ms + margin
        raw = await self._raw(rows, lo, hi)
        if raw is None and not exact:
            return None
        raw = raw or _empty_raw()
        # an exchange entered for the span changes its meter's pair across it even when no
        # reading lies anywhere near (a long outage): that pair is looked up all the same
        exchanged: list[int] = []
        only_own: dict[int, tuple[int, int]] = {}  # series written over their own span only
        if exact:
            entered = {x.series for x in await self._replacements(a_ms, b_ms)}
            exchanged = sorted(entered & set(rows))
        else:
            self._mark_resumed(raw, lo)
        raw = await self._with_previous(raw, lo, self._first_edge(a_ms, exact), exchanged)
        if exact:
            # a late reading changes only the hours between the readings around it, the one
            # after looked up however far on: a backlog that ends long before the meter
            # resumed re-splits the pair the estimate came from (backlog end → resume)
            readings = prepare(raw.series, raw.t_ms, raw.values, raw.flags)
            changed = sorted(set(raw.series.tolist()))
            if not changed:
                return None
            after = await self._next_after(changed, readings, b_ms, hi)
            spans = [affected_span(readings, r, a_ms, b_ms) for r in changed]
            a_ms = min(s0 for s0, _ in spans)
            b_ms = max(max(s1, after.get(r, s1)) for r, (_, s1) in zip(changed, spans, strict=True))
            # each series' hours are written over its own span only, computed from its raw
            # data read over them whole (and the pairs across both ends): a series whose span
            # outgrew what was read (a meter back from a long outage) is read again, alone,
            # so one meter's outage does not re-read every meter of the park over it
            only_own = {
                r: (s0, max(s1, after.get(r, s1)))
                for r, (s0, s1) in zip(changed, spans, strict=True)
            }
            order = np.lexsort((raw.t_ms, raw.series))
            s_sorted, t_sorted = raw.series[order], raw.t_ms[order]
            wide = [
                r
                for r, (s0, s1) in only_own.items()
                if t_sorted[np.searchsorted(s_sorted, r)] > self._hour_start(s0)
                or t_sorted[np.searchsorted(s_sorted, r, side="right") - 1] < self._hour_end(s1)
            ]
            if wide:
                kept = sorted(set(changed) - set(wide))
                lo_wide = min(lo, self._hour_start(a_ms) - pair)
                hi_wide = max(hi, b_ms + margin)
                again = await self._raw(wide, lo_wide, hi_wide, by_meter=True) or _empty_raw()
                again = await self._with_previous(
                    again, lo_wide, self._first_edge(a_ms, True), sorted(set(exchanged) & {*wide})
                )
                raw = _joined(_only(raw, kept), again)
        series, t, v, flags = raw.series, raw.t_ms, raw.values, raw.flags
        edges = local_edges(a_ms - HOUR_MS, b_ms + HOUR_MS, zone, Period.HOUR)
        first = edges[edges <= a_ms][-1:]
        last = edges[edges >= b_ms][:1]
        edges = (
            edges[(edges >= first[0]) & (edges <= last[0])] if first.size and last.size else edges
        )
        if edges.size < 2:
            return None
        replacements = await self._replacements(edges[0] - margin, edges[-1] + margin)
        c = consumption(
            series,
            t,
            v,
            edges,
            len(self.series),
            flags=flags,
            modulus=self.modulus,
            max_gap_ms=self.max_gap,
            replacements=replacements,
        )
        for r, (s0, s1) in only_own.items():
            # hours outside the series' own span were not read whole: not rewritten
            outside = (edges[1:] <= s0) | (edges[:-1] >= s1)
            c.value[r, outside] = np.nan
        rolled = Rolled(edges, c.value, c.completeness, c.estimated)
        extra: dict[str, Any] = {}
        if raw.p_series.size:
            # the register against the integrated power, per hour (same meter)
            power = energy_from_power(
                raw.p_series,
                raw.p_t_ms,
                raw.p_kw,
                edges,
                len(self.series),
                max_gap_ms=self.max_gap,
            )
            check = cross_check(c, power)
            known = np.isfinite(power.value)
            extra = {
                "power_kwh": power.value,
                "power_mismatch": np.where(known, check.disagree.astype(float), np.nan),
            }
        lines = self._meter_lines(Period.HOUR, rolled, rows, c.events, extra)
        await self._write(lines)
        return int(edges[0]), int(edges[-1]), len(lines)

    def _hour_start(self, t_ms: int) -> int:
        """The start of the park's local hour ``t_ms`` is in."""
        edges = local_edges(t_ms - HOUR_MS, t_ms, self.park.zone, Period.HOUR)
        return int(edges[-1]) if edges.size else t_ms

    def _hour_end(self, t_ms: int) -> int:
        """The end of the park's local hour ``t_ms`` is in (``t_ms`` itself on an edge)."""
        edges = local_edges(t_ms, t_ms + HOUR_MS, self.park.zone, Period.HOUR)
        return int(edges[0]) if edges.size else t_ms + HOUR_MS

    def _first_edge(self, a_ms: int, exact: bool) -> int:
        """The time after which a series' first reading read needs the reading before it: the
        first hour recomputed, and for a late span also its first time (the span's pairs start
        at the reading before it: a backlog starting exactly on a local hour re-splits the
        outage before it too)."""
        edge = self._hour_start(a_ms)
        return min(edge, a_ms - 1) if exact else edge

    def _mark_resumed(self, raw: _Raw, lo: int) -> None:
        """A series whose first reading since ``lo`` comes after a gap has resumed after an
        outage: the pair across the outage (the register's rise while nobody read it) lies
        before this pass's window, so the hours since the reading before it are recomputed
        as if the first reading had come late (that reading looked up however far back:
        :meth:`_with_previous`)."""
        if raw.series.size == 0:
            return
        order = np.lexsort((raw.t_ms, raw.series))
        s, t = raw.series[order], raw.t_ms[order]
        first = np.r_[True, s[1:] != s[:-1]]
        for r, t0 in zip(s[first].tolist(), t[first].tolist(), strict=True):
            gap = int(self.max_gap[r])
            meter = self.series[r].meter.id
            if t0 - lo > gap and (meter, t0) not in self.seen_resumed:
                self.seen_resumed.add((meter, t0))
                # from a gap before it: meters resuming together are recomputed together
                self.mark_late(meter, t0 - gap, t0)

    async def _with_previous(
        self, raw: _Raw, lo: int, first_edge: int, rows: Sequence[int] = ()
    ) -> _Raw:
        """``raw`` (read from ``lo`` on) with the last earlier reading of each series whose
        first reading in it comes after ``first_edge``, the first hour recomputed: that series
        resumed after an outage (or is new), and the pair across the outage (however long:
        ``outage_lookback_s``) is what the hours from ``first_edge`` on owe it. Without it,
        an hour the outage ended in lost the outage's share, and an outage longer than the
        margin read around late readings lost its whole rise. Series of ``rows`` without any
        reading in ``raw`` are looked up too (a late span's meter silent all around it)."""
        order = np.lexsort((raw.t_ms, raw.series))
        s, t = raw.series[order], raw.t_ms[order]
        first = np.r_[True, s[1:] != s[:-1]] if s.size else np.zeros(0, bool)
        resumed = [
            r for r, t0 in zip(s[first].tolist(), t[first].tolist(), strict=True) if t0 > first_edge
        ]
        present = set(s.tolist())
        resumed += [r for r in rows if r not in present]
        if not resumed:
            return raw
        since = lo - int(self.config.outage_lookback_s * 1000)
        before = await self._nearest(resumed, f"time >= {since}ms AND time < {lo}ms", "DESC")
        found: dict[str, list[Any]] = {
            "s": list(before),
            "t": [t for t, _ in before.values()],
            "v": [v for _, v in before.values()],
        }
        if not found["s"]:
            return raw
        n = len(found["s"])
        return _Raw(
            np.r_[raw.series, np.array(found["s"], np.int64)],
            np.r_[raw.t_ms, np.array(found["t"], np.int64)],
            np.r_[raw.values, np.array(found["v"], np.float64)],
            # the flag of the reading before the outage belongs to the pair ending at it,
            # which is not recomputed here
            np.r_[raw.flags, np.full(n, Flag.NONE, np.int8)],
            raw.p_series,
            raw.p_t_ms,
            raw.p_kw,
        )

    async def _next_after(
        self, rows: Sequence[int], readings: Readings, b_ms: int, hi: int
    ) -> dict[int, int]:
        """The time of each series' first reading after ``hi`` (up to ``outage_lookback_s``
        on), for the series of ``rows`` with none in ``readings`` after ``b_ms``: the end of
        the pair a late span's last reading opens, when the meter stayed silent past the raw
        data read."""
        later = set(readings.series[readings.t_ms > b_ms].tolist())
        until = hi + int(self.config.outage_lookback_s * 1000)
        after = await self._nearest(
            [r for r in rows if r not in later], f"time > {hi}ms AND time <= {until}ms", "ASC"
        )
        return {r: t for r, (t, _) in after.items()}

    async def _nearest(
        self, rows: Sequence[int], within: str, order: str
    ) -> dict[int, tuple[int, float]]:
        """Each series' first reading (``order`` ASC) or last (DESC) ``within`` a time clause:
        one query per utility and quantity, for just these series' meters."""
        wanted: dict[tuple[Utility, str], list[int]] = {}
        for r in rows:
            cs = self.series[r]
            wanted.setdefault((cs.meter.utility, cs.quantity), []).append(r)
        out: dict[int, tuple[int, float]] = {}
        for (utility, quantity), of in wanted.items():
            by_meter = {self.series[r].meter.id: r for r in of}
            meters = " OR ".join(f"meter = {qs(m)}" for m in sorted(by_meter))
            statement = (
                f"SELECT {quote_ident(quantity)} FROM {quote_ident(utility.value)} "
                f"WHERE park = {qs(self.park.park)} AND ({meters}) AND {within} "
                f"GROUP BY meter ORDER BY time {order} LIMIT 1"
            )
            for series in await self.reader.query(statement):
                row = by_meter.get(series.tags.get("meter", ""))
                if row is not None and series.values and series.values[0][1] is not None:
                    out[row] = (int(series.values[0][0]), float(series.values[0][1]))
        return out

    async def _raw(
        self, rows: Sequence[int], a_ms: int, b_ms: int, *, by_meter: bool = False
    ) -> _Raw | None:
        """The readings of the series ``rows`` in [a_ms, b_ms]; ``by_meter``: only their
        meters' read (a few meters over a long span), else every meter of their utilities
        (all or most of the park's meters over a short one: no long list of meters)."""
        by_utility: dict[Utility, set[str]] = {}
        meters_of: dict[Utility, set[str]] = {}
        for r in rows:
            cs = self.series[r]
            by_utility.setdefault(cs.meter.utility, set()).add(cs.quantity)
            meters_of.setdefault(cs.meter.utility, set()).add(cs.meter.id)
        wanted = set(rows)
        parts: dict[str, list[Any]] = {k: [] for k in ("s", "t", "v", "f", "ps", "pt", "pv")}
        replaced = await self._replacement_events(a_ms, b_ms)
        for utility, quantities in by_utility.items():
            names = sorted(quantities)
            if utility is Utility.ELECTRICITY and "e_kwh" in quantities:
                names.append("p_kw")  # for the cross-check of power and energy
            fields = ", ".join(quote_ident(q) for q in names)
            only = ""
            if by_meter:
                meters = " OR ".join(f"meter = {qs(m)}" for m in sorted(meters_of[utility]))
                only = f"AND ({meters}) "
            statement = (
                f'SELECT {fields}, "quality" FROM {quote_ident(utility.value)} '
                f"WHERE park = {qs(self.park.park)} {only}"
                f"AND time >= {a_ms}ms AND time <= {b_ms}ms GROUP BY meter"
            )
            for s in await self.reader.query(statement):
                if not s.values:
                    continue
                meter = s.tags.get("meter", "")
                table = np.array(s.values, dtype=object)
                times = table[:, 0].astype(np.int64)
                quality = table[:, s.columns.index("quality")]
                flags = np.array(
                    [FLAG_OF_QUALITY.get(q, Flag.NONE) if q else Flag.NONE for q in quality],
                    np.int8,
                )
                for c, name in enumerate(s.columns):
                    power = name == "p_kw"
                    i = self.index.get((meter, "e_kwh" if power else name))
                    if i is None or i not in wanted:
                        continue
                    column = table[:, c]
                    present = column != None  # noqa: E711 (element-wise on an object array)
                    values = column[present].astype(np.float64)
                    if power:
                        parts["ps"].append(np.full(values.size, i, np.int64))
                        parts["pt"].append(times[present])
                        parts["pv"].append(values)
                        continue
                    f = flags[present].copy()
                    for m, q, reading in replaced:
                        if (m, q) == (meter, name):
                            # the new meter's first reading, the one after the fall: a new
                            # meter standing still reads the same value again, no exchange
                            before = np.r_[np.inf, values[:-1]]
                            f[(values == reading) & (before > reading)] = Flag.REPLACED
                    parts["s"].append(np.full(values.size, i, np.int64))
                    parts["t"].append(times[present])
                    parts["v"].append(values)
                    parts["f"].append(f)
        if not parts["s"]:
            return None

        def joined(key: str, dtype: Any) -> Any:
            return np.concatenate(parts[key]) if parts[key] else np.zeros(0, dtype)

        return _Raw(
            joined("s", np.int64),
            joined("t", np.int64),
            joined("v", np.float64),
            joined("f", np.int8),
            joined("ps", np.int64),
            joined("pt", np.int64),
            joined("pv", np.float64),
        )

    async def _replacement_events(self, a_ms: int, b_ms: int) -> set[tuple[str, str, float]]:
        """The meter-fault detector's replacements: (meter, quantity, new meter's first
        reading); that reading is flagged ``replaced`` (the swap's consumption is estimated)."""
        statement = (
            f'SELECT "evidence" FROM "anomaly" WHERE park = {qs(self.park.park)} '
            f"AND kind = 'meter_replacement' AND time >= {a_ms}ms AND time <= {b_ms}ms "
            "GROUP BY meter"
        )
        out: set[tuple[str, str, float]] = set()
        for s in await self.reader.query(statement):
            for row in s.values:
                try:
                    ev = orjson.loads(row[1] or "{}")
                    out.add(
                        (s.tags.get("meter", ""), str(ev["quantity"]), float(ev["new_reading"]))
                    )
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
        return out

    async def _new_replacements(self, now_ms: int) -> list[tuple[str, int]]:
        """Exchanges entered through the API that this job has not applied yet, or not with
        these readings (entered again, corrected): (meter, time).
        Hours are only recomputed around recent or late readings, so one entered for last
        week would otherwise never be counted."""
        since = now_ms - int(self.config.replacement_lookback_s * 1000)
        statement = (
            f'SELECT "old_final", "new_initial" FROM {quote_ident(REPLACEMENT_MEASUREMENT)} '
            f"WHERE park = {qs(self.park.park)} AND time >= {since}ms AND time <= {now_ms}ms "
            "GROUP BY meter, quantity"
        )
        out: list[tuple[str, int]] = []
        for s in await self.reader.query(statement):
            meter, quantity = s.tags.get("meter", ""), s.tags.get("quantity", "")
            for t, old, new in s.values:
                key = (meter, quantity, int(t))
                if self.seen_replacements.get(key) != (old, new):
                    self.seen_replacements[key] = (old, new)
                    out.append((meter, int(t)))
        return out

    async def _replacements(self, a_ms: int, b_ms: int) -> list[Replacement]:
        """Exchanges entered through the API: exact old final and new initial readings."""
        statement = (
            f'SELECT "old_final", "new_initial" FROM {quote_ident(REPLACEMENT_MEASUREMENT)} '
            f"WHERE park = {qs(self.park.park)} AND time >= {a_ms}ms AND time <= {b_ms}ms "
            "GROUP BY meter, quantity"
        )
        out: list[Replacement] = []
        for s in await self.reader.query(statement):
            i = self.index.get((s.tags.get("meter", ""), s.tags.get("quantity", "")))
            if i is None:
                continue
            for t, old, new in s.values:
                if old is not None and new is not None:
                    out.append(Replacement(i, int(t), float(old), float(new)))
        return out

    # --- days, months, years and groups --------------------------------------------------

    async def _upper(self, lo: int, hi: int) -> int:
        """Recompute the groups' hours in [lo, hi) and every coarser period over them."""
        zone = self.park.zone
        written = 0
        hours = local_edges(lo, hi, zone, Period.HOUR)
        if hours.size >= 2:
            meters = await self._stored(Period.HOUR, hours)
            lines = self._group_lines(Period.HOUR, group_sums(meters, self.groups))
            await self._write(lines)
            written += len(lines)
        for period in (Period.DAY, Period.MONTH, Period.YEAR):
            edges = self._around(lo, hi, period)
            fine = await self._stored(_COARSER[period], self._fine_edges(edges, period))
            rolled = coarser(fine, edges)
            lines = self._meter_lines(period, rolled, range(len(self.series)), None)
            lines += self._group_lines(period, group_sums(rolled, self.groups))
            await self._write(lines)
            written += len(lines)
        return written

    def _around(self, lo: int, hi: int, period: Period) -> Any:
        """The edges of the ``period``s that [lo, hi) touches."""
        zone = self.park.zone
        reach = {Period.DAY: 2, Period.MONTH: 32, Period.YEAR: 367}[period] * 86_400_000
        edges = local_edges(lo - reach, hi + reach, zone, period)
        first = edges[edges <= lo][-1]
        last = edges[edges > hi - 1][0]
        return edges[(edges >= first) & (edges <= last)]

    def _fine_edges(self, edges: Any, period: Period) -> Any:
        return local_edges(int(edges[0]), int(edges[-1]), self.park.zone, _COARSER[period])

    async def _stored(self, period: Period, edges: Any) -> Rolled:
        """Meter-level rollups of ``period`` between ``edges``, as stored."""
        k = edges.size - 1
        n = len(self.series)
        value = np.full((n, k), np.nan)
        completeness = np.zeros((n, k))
        estimated = np.zeros((n, k))
        statement = (
            f'SELECT "value", "completeness", "estimated" '
            f"FROM {rollup_source(self.config.retention_policy, period)} "
            f"WHERE park = {qs(self.park.park)} AND level = 'meter' "
            f"AND time >= {int(edges[0])}ms AND time < {int(edges[-1])}ms GROUP BY id, quantity"
        )
        for s in await self.reader.query(statement):
            # by the tag the rollups were written with: a PV meter's pv_kwh hours were never
            # found under its counter's name, so its days, months and years were not written
            i = self.rolled_index.get((s.tags.get("id", ""), s.tags.get("quantity", "")))
            if i is None or not s.values:
                continue
            table = np.array(s.values, dtype=object)
            at = np.searchsorted(edges, table[:, 0].astype(np.int64))
            ok = (at < k) & (edges[np.minimum(at, k)] == table[:, 0].astype(np.int64))
            at = at[ok]
            value[i, at] = np.array([np.nan if x is None else x for x in table[ok, 1]], float)
            completeness[i, at] = np.array([x or 0.0 for x in table[ok, 2]], float)
            estimated[i, at] = np.array([x or 0.0 for x in table[ok, 3]], float)
        return Rolled(edges, value, completeness, estimated)

    # --- points ------------------------------------------------------------------------------

    def _carbon(self, utility: Utility, quantity: str, t_ms: int, value: float) -> dict[str, float]:
        if quantity not in ("e_kwh", "vol_m3", "vol_nm3", "steam_t", "heat_gj"):
            return {}
        year = datetime.fromtimestamp(t_ms / 1000, tz=UTC).astimezone(self.park.zone).year
        conv = conversion(self.park.accounting, utility, year)
        if conv is None:
            return {}
        per = (
            conv.kgce_equal if self.park.accounting.convention == "equal" else conv.kgce_equivalent
        )
        return {"kgce": value * per, "co2_kg": value * conv.co2_kg}

    def _meter_lines(
        self,
        period: Period,
        rolled: Rolled,
        rows: Sequence[int] | range,
        events: Any,
        extra: dict[str, Any] | None = None,
    ) -> list[str]:
        lines: list[str] = []
        measurement = MEASUREMENT[period]
        park = self.park.park
        for r in rows:
            cs = self.series[r]
            m = cs.meter
            tags = {
                "park": park,
                "level": Level.METER.value,
                "id": m.id,
                "utility": m.utility.value,
                "quantity": cs.reported_as,
                "enterprise": m.enterprise,
            }
            for k in np.flatnonzero(np.isfinite(rolled.value[r])).tolist():
                t = int(rolled.edges[k])
                value = float(rolled.value[r, k])
                fields: dict[str, float | int | str | bool] = {
                    "value": value,
                    "completeness": float(rolled.completeness[r, k]),
                    "estimated": float(rolled.estimated[r, k]),
                    **self._carbon(m.utility, cs.quantity, t, value),
                }
                if events is not None:
                    fields["events"] = int(events[r, k])
                for name, table in (extra or {}).items():
                    x = float(table[r, k])
                    if np.isfinite(x):
                        fields[name] = bool(x) if name == "power_mismatch" else x
                lines.append(encode_point(measurement, tags, fields, t))
        return lines

    def _group_lines(self, period: Period, rolled: Rolled) -> list[str]:
        lines: list[str] = []
        measurement = MEASUREMENT[period]
        for g, group in enumerate(self.groups):
            tags = {
                "park": self.park.park,
                "level": group.level.value,
                "id": group.id,
                "utility": group.utility.value,
                "quantity": group.quantity,
            }
            if group.enterprise is not None:
                tags["enterprise"] = group.enterprise
            for k in np.flatnonzero(np.isfinite(rolled.value[g])).tolist():
                t = int(rolled.edges[k])
                value = float(rolled.value[g, k])
                fields: dict[str, float | int | str | bool] = {
                    "value": value,
                    "completeness": float(rolled.completeness[g, k]),
                    "estimated": float(rolled.estimated[g, k]),
                    **self._carbon(group.utility, group.quantity, t, value),
                }
                lines.append(encode_point(measurement, tags, fields, t))
        return lines

    async def _write(self, lines: list[str]) -> None:
        # written at once, not batched behind a flush timer: the next step reads them back
        for batch in chunks(lines, 5000):
            await self.writer.write_now(batch)
