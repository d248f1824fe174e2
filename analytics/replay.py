"""Replay: history through the same streaming engine as the live service, as fast as it goes.

Rows (``time,meter,quantity,value``) are taken in the order they arrived when the file is in
arrival order (a history the simulator wrote, an export sorted by time) and sorted by time when
it is not: when more than ``DISORDER_SHARE`` of the rows come more than a slot before the newest
time their gateway already sent (live, they would all be late), or more than ``DISORDER_MS``
before the newest of the whole file. A gateway's rows with one time form a batch, as its message
would, wherever other gateways' rows fall between them (an export sorted by time, then meter,
interleaves every gateway's rows): the batch is fed whole where its first row is. The replay
clock — the arrival time the engine sees — is the median of the gateways'
newest data times, so a gateway whose clock runs ahead or whose batches come late stands out
as it would live. A reading seen before (same meter, quantity and time) counts once. Rows the
engine cannot use are reported with their line numbers, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from analytics.engine.contract import FloatArray, IntArray
from analytics.engine.engine import Advanced, ParkEngine, Rows
from analytics.kernels.feeding import span_bounds
from parkwatch.events import Event, State

# a file is replayed in its own order unless this share of rows comes more than a slot before
# its gateway's newest time so far, or more than ``DISORDER_MS`` before the file's (then it is
# sorted by time first)
DISORDER_SHARE = 0.01
DISORDER_MS = 6 * 3_600_000
_CLOCK_CELLS = 1_000_000  # batches × gateways the replay clock works on at once (8 MB)


class Readings(Protocol):
    """Columnar rows of a replay file (``parkwatch.readings_csv`` reads them)."""

    t_ms: IntArray
    meter_code: npt.NDArray[np.int32]
    meters: Sequence[str]
    quantity_code: npt.NDArray[np.int32]
    quantities: Sequence[str]
    value: FloatArray
    line: IntArray  # the file line of each row, for reports


@dataclass
class BadRow:
    line: int
    reason: str


@dataclass
class ReplayReport:
    rows: int = 0
    used: int = 0  # rows the engine analysed
    ignored: int = 0  # known meter and quantity that no detector needs
    duplicates: int = 0
    late: int = 0
    sorted_by_time: bool = False
    bad_rows: list[BadRow] = field(default_factory=list)  # the first of each reason
    bad_row_count: int = 0
    events: list[Event] = field(default_factory=list)  # each event's last state
    messages: int = 0  # lifecycle messages (what the alerts topic would have carried)
    failed_detectors: dict[str, str] = field(default_factory=dict)  # stopped by an error


def replay(
    engine: ParkEngine,
    readings: Readings,
    *,
    progress: Callable[[int, int], None] | None = None,
    on_advance: Callable[[Advanced], None] | None = None,
    advance_every_slots: int = 60,
    started: Callable[[], None] | None = None,
) -> ReplayReport:
    """``readings`` through ``engine`` stretch by stretch (``advance_every_slots`` of the
    replay clock each). ``progress(done, total)`` is called after each stretch, ``on_advance``
    with each advance's output, ``started`` once after the first stretch (the kernels its
    detectors use are loaded by then: the replay command freezes its start-up there)."""
    report = ReplayReport(rows=int(readings.t_ms.size))
    series, gateway, gateway_names = _map_rows(engine, readings, report)
    usable = series >= 0
    order = np.flatnonzero(usable)
    t_all = readings.t_ms
    if order.size:
        t = t_all[order]
        if _disordered(gateway[order], t, engine.step_ms):
            order = order[np.argsort(t, kind="stable")]
            report.sorted_by_time = True
        order = order[_batches_together(gateway[order], t_all[order])]
    series, gateway, t_ms = series[order], gateway[order], t_all[order]
    value = readings.value[order]
    duplicate = ~_first_occurrence(series, t_ms)
    report.duplicates = int(duplicate.sum())
    report.used = int((~duplicate).sum())
    arrival = _replay_clock(gateway, t_ms, len(gateway_names))

    events: dict[str, Event] = {}

    def take(adv: Advanced) -> None:
        for event in adv.events:
            report.messages += 1
            events[event.id] = event
        if on_advance is not None:
            on_advance(adv)

    total = int(t_ms.size)
    for start, stop in _stretches(arrival, engine.step_ms * advance_every_slots):
        # what the clock closes on reaching this stretch goes to the detectors first: after
        # a gap (weeks the logger was off), before the stretch's rows stretch the tables
        take(engine.advance(int(arrival[start])))
        part = slice(start, stop)
        rows = Rows(
            series[part], t_ms[part], value[part], gateway[part], arrival[part], duplicate[part]
        )
        take(engine.feed_rows(rows))
        take(engine.advance(int(arrival[stop - 1])))
        if started is not None and start == 0:
            started()
        if progress is not None:
            progress(stop, total)
    take(engine.finish())
    report.late = engine.late_readings()
    report.failed_detectors = engine.failed_detectors
    report.events = sorted(events.values(), key=lambda e: (e.detected_at_ms, e.id))
    return report


def _disordered(gateway: IntArray, t_ms: IntArray, step_ms: int) -> bool:
    """Whether rows in this order are not in arrival order: too many would be late live."""
    behind_file = t_ms < np.maximum.accumulate(t_ms) - DISORDER_MS
    # each gateway's newest time so far: a running maximum over its own rows, made one pass
    # by lifting each gateway's times above the previous gateway's (epoch ms < 2**42)
    by_gateway = np.lexsort((np.arange(t_ms.size), gateway))
    lifted = gateway[by_gateway].astype(np.int64) * (1 << 42) + t_ms[by_gateway]
    behind_gateway = lifted < np.maximum.accumulate(lifted) - step_ms
    return bool(np.mean(behind_file) > DISORDER_SHARE or np.mean(behind_gateway) > DISORDER_SHARE)


def _batches_together(gateway: IntArray, t_ms: IntArray) -> IntArray:
    """The order that brings each batch's rows together where its first row is: a batch is a
    run of one gateway's rows (ignoring other gateways' rows between them) with one time.
    Fed in two parts, a batch would be complete after the first, and the rest late."""
    n = t_ms.size
    by_gateway = np.lexsort((np.arange(n), gateway))
    g, t = gateway[by_gateway], t_ms[by_gateway]
    new = np.r_[True, (g[1:] != g[:-1]) | (t[1:] != t[:-1])]
    first = by_gateway[new][np.cumsum(new) - 1]  # each row's batch's first row (file position)
    where = np.empty(n, dtype=np.int64)
    where[by_gateway] = first
    order: IntArray = np.argsort(where, kind="stable")
    return order


def _replay_clock(gateway: IntArray, t_ms: IntArray, gateways: int) -> IntArray:
    """The arrival time of each row: the median of the gateways' newest data times so far.

    A gateway whose clock runs ahead, or whose batches come late, moves the median little, so
    its own rows show the offset as they would against the wall clock live. Worked out
    ``_CLOCK_CELLS`` (batches × gateways) at a time: a day of a park with 2,000 gateways polled
    each minute is 2.9 M batches, whose matrix at once would take 46 GB."""
    if t_ms.size == 0:
        return t_ms.copy()
    starts = np.flatnonzero(np.r_[True, (gateway[1:] != gateway[:-1]) | (t_ms[1:] != t_ms[:-1])])
    run_gateway, run_t = gateway[starts], t_ms[starts].astype(np.float64)
    clock = np.empty(starts.size)
    carry = np.full(gateways, np.nan)  # each gateway's newest time before the part
    per = max(1, _CLOCK_CELLS // max(gateways, 1))
    for a in range(0, starts.size, per):
        b = min(starts.size, a + per)
        newest = np.full((b - a, gateways), np.nan)
        newest[np.arange(b - a), run_gateway[a:b]] = run_t[a:b]
        newest[0] = np.fmax(newest[0], carry)
        filled = np.fmax.accumulate(newest, axis=0)  # each gateway's newest time so far
        with np.errstate(all="ignore"):
            clock[a:b] = np.nanmedian(filled, axis=1)
        carry = filled[-1]
    clock = np.maximum.accumulate(np.nan_to_num(clock, nan=float(t_ms[0])))
    lengths = np.diff(np.r_[starts, t_ms.size])
    return np.repeat(clock.astype(np.int64), lengths)


def _stretches(arrival: IntArray, span_ms: int) -> Iterator[tuple[int, int]]:
    """[start, stop) of consecutive rows whose arrival falls in one span of the clock."""
    if arrival.size == 0:
        return
    bounds = span_bounds(arrival, span_ms)
    yield from zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)


def _map_rows(
    engine: ParkEngine, readings: Readings, report: ReplayReport
) -> tuple[IntArray, IntArray, list[str]]:
    """Engine series index and gateway number of every row (−1: not analysed)."""
    meters = engine.ctx.tree.meters
    table = engine.park.quantity_table
    gateways = sorted({m.gateway for m in meters.values()})
    gw_no = {g: i for i, g in enumerate(gateways)}
    n_q = len(readings.quantities)
    lookup = np.full((len(readings.meters), n_q), -1, dtype=np.int64)
    meter_gw = np.full(len(readings.meters), -1, dtype=np.int64)
    unknown_meter = np.zeros(len(readings.meters), dtype=bool)
    unknown_quantity = np.array([q not in table for q in readings.quantities], dtype=bool)
    foreign = np.zeros((len(readings.meters), n_q), dtype=bool)  # not of the meter's utility
    for mi, name in enumerate(readings.meters):
        meter = meters.get(name)
        if meter is None:
            unknown_meter[mi] = True
            continue
        meter_gw[mi] = gw_no[meter.gateway]
        for qi, quantity in enumerate(readings.quantities):
            index = engine.series_of(name, quantity)
            if index is not None:
                lookup[mi, qi] = index
            foreign[mi, qi] = quantity in table and quantity not in meter.bounds
    mc, qc = readings.meter_code, readings.quantity_code
    series = lookup[mc, qc]
    bad_meter = unknown_meter[mc]
    bad_quantity = unknown_quantity[qc] & ~bad_meter
    wrong_utility = foreign[mc, qc]
    # the plausibility bounds ingest applies: analytics only ever sees what ingest would store
    low = np.full((len(readings.meters), n_q), -np.inf)
    high = np.full((len(readings.meters), n_q), np.inf)
    for mi, name in enumerate(readings.meters):
        meter = meters.get(name)
        if meter is None:
            continue
        for qi, quantity in enumerate(readings.quantities):
            bounds = meter.bounds.get(quantity)
            if bounds is not None:
                low[mi, qi], high[mi, qi] = bounds
    value = readings.value
    implausible = ~((value >= low[mc, qc]) & (value <= high[mc, qc]))
    implausible &= ~(bad_meter | bad_quantity | wrong_utility)
    for mask, reason in (
        (bad_meter, "unknown meter {m!r}"),
        (bad_quantity, "unknown quantity {q!r}"),
        (wrong_utility, "{q!r} is not a quantity of meter {m!r}"),
        (implausible, "{q!r} of {m!r}: value not a number or outside its plausible range"),
    ):
        report.bad_row_count += int(mask.sum())
        for row in np.flatnonzero(mask)[:1000]:  # the first thousand of each kind, by line
            report.bad_rows.append(
                BadRow(
                    int(readings.line[row]),
                    reason.format(m=readings.meters[mc[row]], q=readings.quantities[qc[row]]),
                )
            )
    known = ~(bad_meter | bad_quantity | wrong_utility | implausible)
    report.ignored = int((known & (series < 0)).sum())
    return np.where(known, series, -1), meter_gw[mc], gateways


def _first_occurrence(series: IntArray, t_ms: IntArray) -> npt.NDArray[np.bool_]:
    """False for a row whose series and time came before."""
    if series.size == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((np.arange(series.size), t_ms, series))
    s, t = series[order], t_ms[order]
    repeat = np.zeros(series.size, dtype=bool)
    repeat[1:] = (s[1:] == s[:-1]) & (t[1:] == t[:-1])
    first = np.ones(series.size, dtype=bool)
    first[order[repeat]] = False
    return first


def last_states(events: Sequence[Event]) -> list[Event]:
    """The latest message of each event (a replayed stream of lifecycle messages)."""
    latest: dict[str, Event] = {}
    rank = {State.OPENED: 0, State.UPDATED: 1, State.CLOSED: 2}
    for event in events:
        have = latest.get(event.id)
        if have is None or rank[event.state] >= rank[have.state]:
            latest[event.id] = event
    return sorted(latest.values(), key=lambda e: (e.detected_at_ms, e.id))
