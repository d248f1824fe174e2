"""The streaming engine: slots, watermarks, late data, virtual meters, and the promise that
live, replay, any chunking and a snapshot in between all give the same events."""

from __future__ import annotations

import pickle
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from analytics.detectors import DETECTORS
from analytics.engine.clocks import NEVER, ClockRules, Clocks
from analytics.engine.contract import Block, Finding, IntArray
from analytics.engine.engine import Batch, ParkEngine, _RowBuffers
from analytics.engine.engine import Rows as EngineRows
from analytics.engine.events import EventBook
from analytics.engine.slots import Columns, SlotArrays, slot_block
from analytics.engine.store import MAX_AHEAD_MS
from analytics.kernels.feeding import _group_by_table, _route_arrays, merge_rows, route_readings
from analytics.replay import replay
from analytics.scoring.nab_runner import METER, QUANTITY, one_meter_park
from parkwatch.events import Estimate, Event, Family, Severity, State
from parkwatch.site import Park
from simulators import DEMO_PARK
from simulators.faults import FaultKind, random_schedule
from tests.analytics_data import Rows, simulated_rows

START_MS = 1_795_968_000_000  # local midnight in Shanghai
DAY_MS = 86_400_000


@cache
def demo() -> Park:
    return Park.from_yaml(DEMO_PARK)


@cache
def faulty_day() -> Rows:
    park = demo()
    faults = random_schedule(park, START_MS, START_MS + DAY_MS, seed=3)
    return simulated_rows(park, START_MS, 1, seed=3, faults=faults)


def final_states(events: list[Event]) -> list[tuple[str, str, str, int, int | None]]:
    return sorted((e.id, e.kind, e.state.value, e.detected_at_ms, e.end_ms) for e in events)


# --- slots ---------------------------------------------------------------------------------------


def test_a_slot_holds_the_mean_or_the_last_counter_reading_and_gaps_stay_gaps() -> None:
    rows = np.array([0, 0, 0, 1, 1])
    t = np.array([0, 20_000, 40_000, 10_000, 50_000])
    v = np.array([1.0, 2.0, 6.0, 100.0, 105.0])
    block = slot_block(rows, t, v, 2, 0, 60_000, 2, np.array([False, True]))
    np.testing.assert_array_equal(block.values[:, 0], [3.0, 105.0])  # mean; counter's last
    assert np.isnan(block.values[:, 1]).all()  # nothing came: NaN, not 0
    np.testing.assert_array_equal(block.count[:, 0], [3, 2])
    np.testing.assert_array_equal(block.low[:, 0], [1.0, 100.0])
    np.testing.assert_array_equal(block.high[:, 0], [6.0, 105.0])
    assert not block.values.flags.writeable


def test_a_reading_at_a_time_already_seen_counts_once() -> None:
    cells = SlotArrays.empty(1, 1)
    first = cells.add(np.array([0, 0]), np.array([0, 0]), np.array([5, 6]), np.array([2.0, 4.0]))
    again = cells.add(np.array([0]), np.array([0]), np.array([6]), np.array([4.0]))
    assert not first.any()
    assert again.all()
    block = cells.block(0, 1, 0, 60_000, np.array([False]))
    assert block.values[0, 0] == 3.0
    assert block.count[0, 0] == 2


def test_a_batch_sent_again_counts_once_even_after_newer_readings_of_its_slot() -> None:
    """A gateway polling faster than the slot step puts several readings in a slot; a batch
    the edge sends again (QoS 1 redelivery, a replay after a lost PUBACK) repeats its seq and
    must not count twice, although newer readings of the slot came in between."""
    engine = ParkEngine(demo(), DETECTORS)
    index = engine.series_of("foodco-main", "p_kw")
    assert index is not None
    sent = [(1, 0, 10.0), (2, 20_000, 20.0), (1, 0, 10.0), (3, 40_000, 30.0), (2, 20_000, 20.0)]
    for seq, dt, value in sent:
        t = START_MS + dt
        engine.feed(
            Batch("gw-foodco", seq, np.array([index]), np.array([t]), np.array([value]), t + 500)
        )
    name, row = engine.place[engine.series[index]]
    slot = START_MS // 60_000
    block = engine.tables[name].block(slot, slot + 1, 60_000)
    assert block.count[row, 0] == 3
    assert block.values[row, 0] == 20.0
    # (the last one comes once the slot is complete: its fact goes to the next slot)
    stats = engine.tables[name].stats(slot, slot + 2)
    assert stats.duplicates[stats.gateways.index("gw-foodco")].sum() == 2


def test_a_backlog_older_than_the_first_batch_heard_is_late_not_a_repeat() -> None:
    """Started cold while an edge drains its backlog behind live data, the engine first hears
    a live batch (seq 10); the backlog's lower seqs were never seen: late, not duplicates (a
    repeat would count toward duplicate_batches)."""
    engine = ParkEngine(demo(), DETECTORS)
    index = engine.series_of("foodco-main", "p_kw")
    assert index is not None
    now = START_MS + 30 * 60_000

    def batch(seq: int, t: int) -> Batch:
        return Batch("gw-foodco", seq, np.array([index]), np.array([t]), np.array([5.0]), now)

    engine.feed(batch(10, now))
    engine.feed(batch(11, now + 60_000))
    late = engine.feed(batch(7, START_MS))
    assert late.late == [("foodco-main", START_MS, START_MS)]
    name = engine.place[engine.series[index]][0]
    assert engine.tables[name].transport.duplicates.sum() == 0
    again = engine.feed(batch(10, now))  # this one was seen: a repeat
    assert again.late == []
    assert engine.tables[name].transport.duplicates.sum() == 1


# --- watermarks ----------------------------------------------------------------------------------


def test_a_seq_gap_holds_the_watermark_until_the_backlog_fills_it() -> None:
    clocks = Clocks(1)
    for seq in (1, 2, 3):
        clocks.batch(0, seq, seq * 60_000, seq * 60_000, seq * 60_000)
    # live data goes first after an outage: 7 arrives while 4-6 are still queued at the edge
    assert clocks.batch(0, 7, 420_000, 420_000, 420_000) == "gap"
    assert clocks.watermark[0] == 180_000
    for seq in (4, 5, 6):
        clocks.batch(0, seq, seq * 60_000, seq * 60_000, 430_000)
    assert clocks.watermark[0] == 420_000
    assert not clocks.pending


def test_batches_the_edge_dropped_are_not_waited_for() -> None:
    """An edge whose buffer filled during an outage dropped its oldest batches (4 and 5) and
    says so in its status: the backlog it still has (6-9) and its live batches close the
    slots at once, rather than after a day's hold for batches that will never come."""
    clocks = Clocks(1)
    clocks.status(0, True, 0, dropped=0)
    for seq in (1, 2, 3):
        clocks.batch(0, seq, seq * 60_000, seq * 60_000, seq * 60_000)
    clocks.status(0, False, 200_000)
    clocks.status(0, True, 700_000, dropped=2)
    assert clocks.batch(0, 10, 600_000, 600_000, 700_000) == "gap"  # live first
    for seq in (6, 7, 8, 9):
        clocks.batch(0, seq, seq * 60_000, seq * 60_000, 700_000 + seq)
    assert clocks.watermark[0] == 600_000
    assert not clocks.pending
    assert clocks.gaps_given_up[0] == 2


def test_a_restarted_count_is_told_from_a_replay() -> None:
    clocks = Clocks(1)
    for seq in (100, 101):
        clocks.batch(0, seq, seq * 1000, seq * 1000, seq * 1000)
    assert clocks.batch(0, 100, 100_000, 100_000, 102_000) == "replay"
    # a reinstalled gateway counts from 1 again, with data newer than anything seen
    assert clocks.batch(0, 1, 200_000, 200_000, 200_000) == "restart"
    assert clocks.watermark[0] == 200_000


def test_a_gap_is_given_up_after_the_hold_limit() -> None:
    clocks = Clocks(1, ClockRules(max_hold_ms=10 * 60_000))
    clocks.batch(0, 1, 0, 0, 0)
    clocks.batch(0, 5, 60_000, 60_000, 60_000)
    assert clocks.watermark[0] == 0
    clocks.batch(0, 6, 11 * 60_000, 11 * 60_000, 11 * 60_000)
    assert clocks.watermark[0] == 11 * 60_000
    assert clocks.gaps_given_up[0] == 3


def test_a_gateway_back_from_a_long_silence_does_not_take_the_silence_for_its_interval() -> None:
    """One batch, weeks of nothing (a test batch at commissioning, a logger switched off, a row
    with a wrong year), then regular batches: the one spacing seen is the silence, not the
    poll interval, and taking it for one would close the weeks ahead and make every reading
    in them late."""
    clocks = Clocks(1)
    weeks = 61 * DAY_MS
    clocks.batch(0, 1, 0, 0, 0)
    clocks.batch(0, 2, weeks, weeks, weeks)
    assert clocks.complete_until(weeks + 1000)[0] <= weeks + 60_000
    clocks.batch(0, 3, weeks + 60_000, weeks + 60_000, weeks + 60_000)
    assert clocks.interval[0] == 60_000  # regular batches tell the interval again


def test_a_gateway_polling_slower_than_the_silence_allowance_is_not_taken_for_silent() -> None:
    """A gateway that sends every 5 minutes, its clock 5 minutes behind: just before its next
    batch it is not silent (its interval says the batch is due), so that batch is not late."""
    clocks = Clocks(1, ClockRules(silence_ms=180_000))
    behind = 307_000
    for k in range(5):
        poll = k * 300_000
        clocks.batch(0, k + 1, poll - behind, poll - behind, poll + 300)
    next_poll = 5 * 300_000
    assert clocks.complete_until(next_poll)[0] <= next_poll - behind
    # and one that misses its batch by more than the allowance is
    assert clocks.complete_until(next_poll + 300_000)[0] == next_poll + 300_000 - 180_000


def test_offline_holds_online_silence_closes_and_the_unheard_close_nothing() -> None:
    clocks = Clocks(2, ClockRules(silence_ms=180_000, max_hold_ms=3_600_000))
    for k in range(5):
        clocks.batch(0, k + 1, k * 60_000, k * 60_000, k * 60_000)
    # the last reading plus its interval; gateway 1 was never heard from
    assert clocks.complete_until(5 * 60_000).tolist() == [5 * 60_000, NEVER]
    # online but silent: slots close as gaps once the silence allowance has passed
    assert clocks.complete_until(30 * 60_000)[0] == 27 * 60_000
    clocks.online[0] = False  # its status says it is buffering: wait for the backlog
    assert clocks.complete_until(30 * 60_000)[0] == 5 * 60_000


def test_after_a_refill_silence_counts_from_when_the_worker_listens() -> None:
    """A worker refilled from history that ends hours ago (the demo's history, or a gateway
    whose backlog is still to come) starts listening: the hours since are not silence yet, so
    the backlog that comes next is analysed, not late. Once it has listened for the allowance
    and nothing came, they close as gaps as before."""
    engine = ParkEngine(demo(), DETECTORS)
    index = engine.series_of("foodco-main", "p_kw")
    assert index is not None
    sim = simulated_rows(demo(), START_MS, 0.25, seed=2)
    series = np.array(
        [
            -1 if (i := engine.series_of(sim.meters[m], sim.quantities[q])) is None else i
            for m, q in zip(sim.meter_code.tolist(), sim.quantity_code.tolist(), strict=True)
        ]
    )
    keep = series >= 0
    s, t, v = series[keep], sim.t_ms[keep], sim.value[keep]
    gateway = np.array(
        [engine.gateway_no[engine.ctx.tree.meters[k.meter].gateway] for k in engine.series]
    )[s]
    # as the service refills from InfluxDB: rows in time order, arriving at their own time
    engine.feed_rows(EngineRows(s, t, v, gateway, t, np.zeros(t.size, dtype=bool)))
    engine.advance(int(t.max()))
    end = START_MS + DAY_MS // 4
    listening = end + 5 * 3_600_000
    engine.listening_from(listening)
    engine.advance(listening + 60_000)
    backlog = Batch(
        "gw-foodco", None, np.array([index]), np.array([end]), np.array([5.0]), listening + 60_000
    )
    assert engine.feed(backlog).late == []
    g = engine.gateway_no["gw-park"]  # no backlog from this one: its hours close as gaps
    engine.advance(listening + 10 * 60_000)
    assert engine.closed[g] * engine.step_ms >= listening


# --- the engine as a whole --------------------------------------------------------------------


def test_any_chunking_of_a_replay_gives_the_same_events() -> None:
    rows = faulty_day()
    runs = [
        final_states(replay(ParkEngine(demo(), DETECTORS), rows, advance_every_slots=n).events)
        for n in (1, 15, 10_000)
    ]
    assert runs[0], "the faulty day raised no event at all"
    assert runs[0] == runs[1] == runs[2]


def test_live_batches_and_replay_give_the_same_events() -> None:
    park = demo()
    faults = random_schedule(park, START_MS, START_MS + DAY_MS // 2, seed=5)
    rows = simulated_rows(park, START_MS, 0.5, seed=5, faults=faults)
    assert rows.poll_ms is not None
    replayed = final_states(replay(ParkEngine(park, DETECTORS), rows).events)
    assert replayed
    engine = ParkEngine(park, DETECTORS)
    gateway_of = {m.id: m.gateway for m in park.iter_meters()}
    series = np.array(
        [
            -1 if (i := engine.series_of(rows.meters[m], rows.quantities[q])) is None else i
            for m, q in zip(rows.meter_code, rows.quantity_code, strict=True)
        ]
    )
    gateway = np.array([gateway_of[rows.meters[m]] for m in rows.meter_code])
    events: dict[str, Event] = {}
    seqs: dict[str, int] = {}
    # what ingest would refuse never reaches analytics live (replay applies the same bounds)
    meters = park.tree.meters
    plausible = np.array(
        [
            (b := meters[rows.meters[m]].bounds.get(rows.quantities[q])) is not None
            and b[0] <= v <= b[1]
            for m, q, v in zip(rows.meter_code, rows.quantity_code, rows.value, strict=True)
        ]
    )
    keep = (series >= 0) & plausible
    # one message per gateway and poll cycle, as gateways publish, arriving a moment later
    for poll in np.unique(rows.poll_ms):
        at = keep & (rows.poll_ms == poll)
        arrival = int(poll) + 300
        for gw in np.unique(gateway[at]):
            mine = at & (gateway == gw)
            seqs[gw] = seqs.get(gw, 0) + 1
            batch = Batch(
                str(gw), seqs[gw], series[mine], rows.t_ms[mine], rows.value[mine], arrival
            )
            engine.feed(batch)
        events.update((e.id, e) for e in engine.advance(arrival).events)
    events.update((e.id, e) for e in engine.finish().events)
    assert final_states(list(events.values())) == replayed


def test_a_history_gives_the_same_events_whatever_order_its_rows_come_in() -> None:
    """An export sorted by time then meter interleaves every gateway's rows, and a user's file
    may come in any order: no row may be lost as late for it, nor an event raised or missed.
    (Transport faults are left out: they show only in arrival order.)"""
    park = demo()
    kinds = [k for k in FaultKind if k not in {FaultKind.CLOCK_SKEW, FaultKind.LATE_BATCHES,
                                                FaultKind.DUPLICATE_BATCHES}]  # fmt: skip
    faults = random_schedule(park, START_MS, START_MS + DAY_MS // 2, seed=11, kinds=kinds)
    rows = simulated_rows(park, START_MS, 0.5, seed=11, faults=faults)
    names = np.array(rows.meters)[rows.meter_code]
    orders = {
        "as simulated": np.arange(rows.t_ms.size),
        "by time, then meter": np.lexsort((names, rows.t_ms)),
        "shuffled": np.random.default_rng(0).permutation(rows.t_ms.size),
    }
    runs = {}
    for name, order in orders.items():
        report = replay(ParkEngine(park, DETECTORS), _rows_in(rows, order))
        assert report.late == 0, f"{name}: {report.late} rows lost as late"
        runs[name] = final_states(report.events)
    assert runs["as simulated"], "the faulty half day raised no event at all"
    assert runs["by time, then meter"] == runs["as simulated"]
    assert runs["shuffled"] == runs["as simulated"]


def test_a_history_with_a_long_gap_is_replayed_in_bounded_memory() -> None:
    """A logger that was off for weeks (or one row with a wrong year) leaves a gap the
    detectors must walk through slot by slot; neither the tables nor the detectors' blocks may
    hold the whole gap at once."""
    park = Park.model_validate(
        {"park": "gap", "meters": [{"id": "main", "utility": "electricity",
                                     "contracted_demand_kw": 500}]}
    )  # fmt: skip
    engine = ParkEngine(park, DETECTORS)
    widest = []
    for inst in engine.instances:  # the widest block each detector is given
        original = inst.detector.update

        def update(block: Block, original: Any = original) -> Any:
            widest.append(block.slots)
            return original(block)

        inst.detector.update = update  # type: ignore[method-assign]
    gap_days = 40
    t = np.r_[np.arange(120), np.arange(120) + gap_days * 1440] * 60_000 + START_MS
    rows = Rows(
        t.astype(np.int64),
        np.zeros(t.size, dtype=np.int32),
        ["main"],
        np.zeros(t.size, dtype=np.int32),
        ["p_kw"],
        np.full(t.size, 300.0),
        np.arange(2, t.size + 2, dtype=np.int64),
    )
    held = []
    report = replay(engine, rows, on_advance=lambda _: held.append(engine.open_slots()))
    assert report.late == 0
    assert max(held) <= 2 * 1440
    assert max(widest) <= 1440
    comm = [e for e in report.events if e.kind == "comm_loss"]
    assert comm, "weeks without a reading are silence"


def _rows_in(rows: Rows, order: npt.NDArray[np.intp]) -> Rows:
    return Rows(
        rows.t_ms[order],
        rows.meter_code[order],
        rows.meters,
        rows.quantity_code[order],
        rows.quantities,
        rows.value[order],
        rows.line[order],
    )


def _engine_rows(engine: ParkEngine, rows: Rows) -> EngineRows:
    """The rows as the engine takes them, arriving at their own time."""
    gateways = {m.id: engine.gateway_no[m.gateway] for m in demo().iter_meters()}
    series = np.array(
        [
            -1 if (i := engine.series_of(rows.meters[m], rows.quantities[q])) is None else i
            for m, q in zip(rows.meter_code, rows.quantity_code, strict=True)
        ]
    )
    keep = series >= 0
    gateway = np.array([gateways[rows.meters[m]] for m in rows.meter_code])[keep]
    t = rows.t_ms[keep]
    return EngineRows(series[keep], t, rows.value[keep], gateway, t, np.zeros(t.size, bool))


def _run(engine: ParkEngine, rows: EngineRows, events: dict[str, Event], a: int, b: int) -> None:
    for start in range(a, b, 5_000):
        stop = min(b, start + 5_000)
        part = slice(start, stop)
        chunk = EngineRows(
            rows.series[part],
            rows.t_ms[part],
            rows.value[part],
            rows.gateway[part],
            rows.arrival_ms[part],
            rows.duplicate[part],
        )
        for adv in (engine.feed_rows(chunk), engine.advance(int(rows.t_ms[stop - 1]))):
            events.update((e.id, e) for e in adv.events)


def test_a_snapshot_in_between_changes_nothing() -> None:
    one = ParkEngine(demo(), DETECTORS)
    rows = _engine_rows(one, faulty_day())
    whole: dict[str, Event] = {}
    _run(one, rows, whole, 0, rows.t_ms.size)
    whole.update((e.id, e) for e in one.finish().events)
    assert whole

    first = ParkEngine(demo(), DETECTORS)
    events: dict[str, Event] = {}
    cut = rows.t_ms.size // 2 // 5_000 * 5_000
    _run(first, rows, events, 0, cut)
    state = pickle.loads(pickle.dumps(first.state()))
    second = ParkEngine(demo(), DETECTORS)
    second.restore(state)
    _run(second, rows, events, cut, rows.t_ms.size)
    events.update((e.id, e) for e in second.finish().events)
    assert final_states(list(events.values())) == final_states(list(whole.values()))


def test_late_readings_are_counted_and_reported_not_written_into_the_past() -> None:
    park = demo()
    engine = ParkEngine(park, DETECTORS)
    index = engine.series_of("foodco-main", "p_kw")
    assert index is not None
    for k in range(10):
        t = START_MS + k * 60_000
        engine.feed(
            Batch("gw-foodco", k + 1, np.array([index]), np.array([t]), np.array([100.0]), t)
        )
        engine.advance(t)
    late = engine.feed(
        Batch(
            "gw-foodco",
            None,
            np.array([index]),
            np.array([START_MS + 60_000]),
            np.array([5.0]),
            START_MS + 11 * 60_000,
        )
    )
    assert late.late == [("foodco-main", START_MS + 60_000, START_MS + 60_000)]
    assert late.late_readings == 1
    assert engine.late_readings() == 1
    # a backlog batch of three poll cycles, all closed: one range, three readings counted
    times = START_MS + np.array([2, 3, 4]) * 60_000
    backlog = engine.feed(
        Batch("gw-foodco", None, np.full(3, index), times, np.full(3, 5.0), START_MS + 660_000)
    )
    assert backlog.late == [("foodco-main", int(times[0]), int(times[-1]))]
    assert backlog.late_readings == 3
    assert engine.late_readings() == 4


def test_an_irregularly_sampled_source_loses_no_reading_as_late_in_replay() -> None:
    # spacings of 2 to 25 minutes, mostly 10, on a 5-minute grid: readings drift across slot edges
    # (NAB's traffic sensors sample like this): a slot closes only once even the shortest
    # recent spacing would take the next reading past its end, so none lands in a closed slot
    step = 300_000
    spacing_min = np.tile([10, 10, 3, 10, 12, 2, 10, 25, 4], 60)
    t = START_MS + np.cumsum(spacing_min).astype(np.int64) * 60_000
    rows = Rows(
        t,
        np.zeros(t.size, dtype=np.int32),
        [METER],
        np.zeros(t.size, dtype=np.int32),
        [QUANTITY],
        np.sin(np.arange(t.size) / 20.0) + 2.0,
        np.arange(2, t.size + 2, dtype=np.int64),
    )
    report = replay(ParkEngine(one_meter_park(step), DETECTORS), rows)
    assert report.bad_row_count == 0
    assert report.used == t.size
    assert report.late == 0


def test_a_gateway_never_heard_from_does_not_keep_its_table_growing() -> None:
    """A park.yaml names gateways that are not installed yet or gone: the slots of the
    gateways that do report are dropped once read, whoever shares their table."""
    engine = ParkEngine(demo(), DETECTORS)
    index = engine.series_of("foodco-main", "p_kw")
    assert index is not None
    sizes = []
    for k in range(400):
        t = START_MS + k * 60_000
        engine.feed(Batch("gw-foodco", k + 1, np.array([index]), np.array([t]), np.array([5.0]), t))
        engine.advance(t)
        sizes.append(engine.open_slots())
    assert max(sizes[200:]) <= 2 * 64 + 2


def test_a_reading_older_than_the_longest_hold_is_late_and_does_not_stretch_the_tables() -> None:
    """A gateway whose clock was reset (or a backlog older than any window is held for) must
    not widen its table back to that time: the tables are shared by many gateways' rows, and a
    year of one-minute slots of them is gigabytes. Nor may a clock that stays behind hold the
    park clock, and with it every table, for longer than the longest hold."""
    park = demo()
    hold = 60  # minutes
    engine = ParkEngine(park, DETECTORS, clock_rules=ClockRules(max_hold_ms=hold * 60_000))
    running = engine.series_of("foodco-main", "p_kw")
    fresh = engine.series_of("pharmco-main", "p_kw")
    assert running is not None
    assert fresh is not None

    def feed(gateway: str, seq: int, series: int, t: int, at: int) -> list[tuple[str, int, int]]:
        batch = Batch(gateway, seq, np.array([series]), np.array([t]), np.array([5.0]), at)
        return engine.feed(batch).late

    for k in range(30):
        t = START_MS + k * 60_000
        feed("gw-foodco", k + 1, running, t, t)
        engine.advance(t)
    held = engine.open_slots()
    now = START_MS + 30 * 60_000
    year_ago = START_MS - 365 * DAY_MS
    # the first batch ever of gw-pharmco: nothing of it is closed yet
    assert feed("gw-pharmco", 1, fresh, year_ago, now) == [("pharmco-main", year_ago, year_ago)]
    engine.advance(now + 1000)
    # at most the longest hold more: where the late batch's transport facts go
    assert engine.open_slots() <= held + hold + 64
    # its clock stays a year behind: the park clock moves on once the hold has passed
    for k in range(1, 3 * hold):
        at = now + k * 60_000
        feed("gw-pharmco", k + 1, fresh, year_ago + k * 60_000, at)
        feed("gw-foodco", 30 + k, running, at, at)
        engine.advance(at)
    assert engine.park_emitted is not None
    assert engine.park_emitted * 60_000 >= now + (3 * hold - 1) * 60_000 - (hold + 1) * 60_000
    assert engine.open_slots() <= held + 2 * hold + 64


def test_a_gateway_back_online_is_not_taken_for_silent_before_its_backlog_comes() -> None:
    """After an outage the edge announces ``online`` and then sends its backlog: the hour it
    was away is not silence to close as gaps in the moment between the two."""
    park = demo()
    engine = ParkEngine(park, DETECTORS)
    index = engine.series_of("foodco-main", "p_kw")
    assert index is not None

    def batch(k: int, arrival: int) -> Batch:
        t = START_MS + k * 60_000
        return Batch(
            "gw-foodco", k + 1, np.array([index]), np.array([t]), np.array([100.0]), arrival
        )

    for k in range(10):
        engine.feed(batch(k, START_MS + k * 60_000))
        engine.advance(START_MS + k * 60_000)
    back = START_MS + 70 * 60_000
    engine.gateway_status("gw-foodco", False)  # its last will: buffering at the edge
    engine.advance(back - 1000)
    engine.gateway_status("gw-foodco", True, back)
    engine.advance(back + 1000)  # the ticker runs before the first backlog batch is in
    late = engine.feed(batch(10, back + 1500))
    assert late.late == []
    assert engine.late_readings() == 0


def test_a_virtual_meter_is_a_series_like_a_real_one() -> None:
    park = Park.model_validate(
        {
            "park": "v",
            "meters": [
                {"id": "main", "utility": "electricity"},
                {"id": "pv", "utility": "electricity", "role": "pv"},
                {"id": "net", "utility": "electricity", "formula": "main - pv"},
            ],
        }
    )
    engine = ParkEngine(park, DETECTORS)
    rows = [("main", 100.0), ("pv", 30.0)]
    points = []
    for k in range(20):
        t = START_MS + k * 60_000
        for i, (meter, value) in enumerate(rows):
            index = engine.series_of(meter, "p_kw")
            assert index is not None
            engine.feed(
                Batch(
                    "gw-park",
                    2 * k + i + 1,
                    np.array([index]),
                    np.array([t]),
                    np.array([value + k]),
                    t,
                )
            )
        points.extend(engine.advance(t).points)
    net = [p for p in points if p.tags.get("meter") == "net" and p.measurement == "electricity"]
    assert net
    assert all(p.fields["p_kw"] == 70.0 for p in net)
    demand = [p for p in points if p.measurement == "demand_15m" and p.tags["meter"] == "net"]
    assert demand
    assert demand[0].fields["p_kw_avg"] == 70.0


def test_the_replay_clock_of_a_park_with_many_gateways_takes_bounded_memory() -> None:
    """The clock is the median of every gateway's newest time, batch after batch: worked out
    in parts, it is the same as at once, without a batches × gateways matrix of the whole
    file (a day of 2,000 gateways polled each minute would be 46 GB)."""
    import tracemalloc

    from analytics.replay import _replay_clock

    rng = np.random.default_rng(2)
    gateways = 1_000
    polls = 16
    gateway = np.tile(rng.permutation(gateways), polls).astype(np.int64)
    t_ms = START_MS + np.repeat(np.arange(polls), gateways) * 60_000
    t_ms = t_ms + rng.integers(-2, 3, t_ms.size) * 60_000  # clocks a little off
    newest = np.full((t_ms.size, gateways), np.nan)  # the whole matrix, for the reference
    newest[np.arange(t_ms.size), gateway] = t_ms
    expected = np.maximum.accumulate(np.nanmedian(np.fmax.accumulate(newest, axis=0), axis=1))
    del newest
    tracemalloc.start()
    clock = _replay_clock(gateway, t_ms, gateways)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(clock, expected.astype(np.int64))
    assert peak < 80_000_000, f"{peak / 1e6:.0f} MB"  # the whole matrix alone: 128 MB


def test_a_detector_that_raises_is_stopped_alone_and_named() -> None:
    from analytics.detectors.peaks import Peaks
    from analytics.engine.contract import Output

    class Broken(Peaks):
        """Peaks under another name, with a bug that strikes on its fifth update."""

        name = "broken"
        kinds = ("broken_peak",)
        calls = 0

        def update(self, block: Block) -> Output:
            Broken.calls += 1
            if Broken.calls >= 5:
                raise ZeroDivisionError("a bug")
            return Output()

    rows = faulty_day()
    alone = replay(ParkEngine(demo(), DETECTORS), rows, advance_every_slots=15)
    engine = ParkEngine(demo(), [*DETECTORS, Broken])
    beside = replay(engine, rows, advance_every_slots=15)
    # the park is still watched by every other detector, event for event
    assert final_states(beside.events) == final_states(alone.events)
    assert beside.failed_detectors == {"broken@park": "ZeroDivisionError: a bug"}
    assert Broken.calls == 5  # stopped: not called again after it raised
    assert alone.failed_detectors == {}


def test_a_stopped_detector_closes_its_open_events() -> None:
    """Left open, a stopped detector's events would never close, and an open meter fault would
    hold back every other finding about its meter until a restart."""
    from analytics.detectors.meter_faults import MeterFaults
    from analytics.engine.contract import Output

    class Breaks(MeterFaults):
        """Meter faults that raise on the update after the first one that found a fault."""

        found = False

        def update(self, block: Block) -> Output:
            if self.found:
                raise RuntimeError("a bug")
            out = super().update(block)
            self.found = any(f.active for f in out.findings)
            return out

    engine = ParkEngine(demo(), [Breaks])
    result = replay(engine, faulty_day(), advance_every_slots=15)
    assert engine.failed_detectors, "the detector never found a fault to stop after"
    assert result.events  # the last state of each event it raised
    assert [e.state for e in result.events] == [State.CLOSED] * len(result.events)
    assert not engine.events.open
    stopped = [e for e in result.events if "closed_because" in e.evidence]
    assert stopped
    for event in stopped:
        assert event.evidence["closed_because"].startswith("detector meter_faults@")
        assert event.evidence["closed_because"].endswith("stopped: RuntimeError: a bug")
        assert event.end_ms is not None
        assert event.end_ms >= event.detected_at_ms


def test_a_stopped_detector_is_snapshotted_without_its_half_updated_state() -> None:
    from analytics.detectors.peaks import Peaks
    from analytics.engine.contract import Output

    class HalfUpdated(Peaks):
        """Peaks with a bug that strikes half way through its update."""

        name = "half_updated"
        kinds = ("half_updated_peak",)

        def update(self, block: Block) -> Output:
            self.demand.psum[:] = 1e9  # written before the bug strikes
            raise ValueError("a bug")

    engine = ParkEngine(demo(), [HalfUpdated])
    replay(engine, faulty_day(), advance_every_slots=15)
    assert engine.failed_detectors == {"half_updated@park": "ValueError: a bug"}
    restarted = ParkEngine(demo(), [HalfUpdated])
    restarted.restore(pickle.loads(pickle.dumps(engine.state())))
    [inst] = restarted.instances
    # the restarted detector starts afresh, not from the sums its failed update left
    assert not inst.detector.demand.psum.any()  # type: ignore[attr-defined]


def test_the_detectors_read_one_shared_block_the_largest_as_a_view() -> None:
    """Every detector's block holds exactly its rows of the window store (what the table's
    own read gives), read once for all of them: the largest's block is a read-only view of
    the shared one (slot-major, as the tables are), not a copy of its own; a detector that
    does not take ``any_layout`` gets C-contiguous arrays, as its numpy code always had; a
    ``values_only`` one gets its values alone (count, low and high empty)."""
    engine = ParkEngine(demo(), DETECTORS)
    checked: dict[str, int] = {}
    views: dict[str, bool] = {}

    def checking(inst: Any, update: Any) -> Any:
        def wrapped(block: Block) -> Any:
            rows = np.arange(len(inst.detector.series)) if block.row_index is None else (
                block.row_index
            )  # fmt: skip
            step = block.step_ms
            start, stop = block.start_ms // step, block.end_ms // step
            if checked.get(inst.key, 0) < 20:
                checked[inst.key] = checked.get(inst.key, 0) + 1
                names = ["values", "count", "low", "high"]
                if inst.detector.values_only:
                    names = names[:1]
                    for a in (block.count, block.low, block.high):
                        assert a.size == 0
                for i, r in enumerate(rows.tolist()):
                    table, row = engine.place[inst.detector.series[r]]
                    ref = engine.tables[table].block(start, stop, step)
                    for name in names:
                        np.testing.assert_array_equal(
                            getattr(block, name)[i], getattr(ref, name)[row]
                        )
            for a in (block.values, block.count, block.low, block.high):
                assert not a.flags.writeable
                assert inst.detector.any_layout or a.flags.c_contiguous, inst.key
            views[inst.key] = views.get(inst.key, True) and block.values.base is not None
            return update(block)

        return wrapped

    for inst in engine.instances:
        inst.detector.update = checking(inst, inst.detector.update)  # type: ignore[method-assign]
    rows = faulty_day()
    replay(engine, rows, advance_every_slots=15)
    assert engine.failed_detectors == {}
    largest = max(
        (i for i in engine.instances if i.detector.scope.value == "meter"),
        key=lambda i: len(i.detector.series),
    )
    assert checked[largest.key] == 20
    assert len(checked) == len(engine.instances)
    assert largest.detector.any_layout  # the meter faults: every meter's checked quantities
    assert any(i.detector.values_only for i in engine.instances if i.key in checked)
    assert views[largest.key], "the largest detector's block was a copy of its own"


def test_the_compiled_clock_walk_closes_what_the_walk_closes(monkeypatch: Any) -> None:
    """Replay's clock walk compiled (``kernels.feed_clocks``) against the walk in Python, on
    a faulty day where one gateway's hour comes two hours late (a backlog), another goes
    offline for longer than windows are held and a third falls silent: after every stretch
    both engines hold the same clocks and closed slots, gave every row the same first open
    slot, and raise the same events."""
    rules = ClockRules(max_hold_ms=40 * 60_000)
    fast, slow = (ParkEngine(demo(), DETECTORS, clock_rules=rules) for _ in range(2))
    monkeypatch.setattr(slow, "_walk_compiled", slow._walk)
    thresholds: dict[str, list[npt.NDArray[np.int64]]] = {"fast": [], "slow": []}
    routed = {"fast": 0, "slow": 0}
    for name, engine in (("fast", fast), ("slow", slow)):

        def noting(
            *args: Any, store: Any = engine._store, name: str = name, e: Any = engine, **kw: Any
        ) -> Any:
            thresholds[name].append(args[6].copy())
            if kw.get("routed") is not None:
                # the walk's routing is what _store would route after it (route_readings)
                skip = e._skip_table()
                ahead = (e.now_ms + MAX_AHEAD_MS) // e.step_ms
                want = route_readings(args[0], args[1], args[6], args[5], e._series_table, skip,
                                      e.step_ms, ahead, len(e._tables))  # fmt: skip
                routed[name] += 1
                # a slot is set only for the rows routed (not duplicates, not virtual)
                live = ~args[5] & (e._series_table[args[0]] != skip)
                np.testing.assert_array_equal(kw["routed"][0][live], want[0][live])
                for got, ref in zip(kw["routed"][1:], want[1:], strict=True):
                    np.testing.assert_array_equal(got, ref)
            return store(*args, **kw)

        monkeypatch.setattr(engine, "_store", noting)
    rows = _engine_rows(fast, faulty_day())
    arrival = rows.t_ms.copy()
    backlog = (rows.gateway == 1) & (rows.t_ms >= START_MS + 5 * 3_600_000)
    backlog &= rows.t_ms < START_MS + 6 * 3_600_000
    arrival[backlog] += 2 * 3_600_000
    # gateway 3 says it goes offline at 14 h and buffers: its two hours come when it is back
    offline_at, online_at = START_MS + 14 * 3_600_000, START_MS + 16 * 3_600_000
    away = (rows.gateway == 3) & (rows.t_ms >= offline_at) & (rows.t_ms < online_at)
    arrival[away] = online_at + (rows.t_ms[away] - offline_at) // 10
    silent = (rows.gateway == 2) & (rows.t_ms >= START_MS + 9 * 3_600_000)
    keep = ~(silent & (rows.t_ms < START_MS + 11 * 3_600_000))
    order = np.argsort(arrival[keep], kind="stable")
    pick = np.flatnonzero(keep)[order]
    rows = EngineRows(rows.series[pick], rows.t_ms[pick], rows.value[pick],
                      rows.gateway[pick], arrival[pick], rows.duplicate[pick])  # fmt: skip
    seen: dict[str, list[Event]] = {"fast": [], "slow": []}
    for k, start in enumerate(range(0, rows.t_ms.size, 200)):
        part = slice(start, start + 200)
        chunk = EngineRows(
            rows.series[part],
            rows.t_ms[part],
            rows.value[part],
            rows.gateway[part],
            rows.arrival_ms[part],
            rows.duplicate[part],
        )
        now = int(chunk.arrival_ms[-1])
        status = None if not offline_at <= now < online_at + 30 * 60_000 else now < online_at
        for name, engine in (("fast", fast), ("slow", slow)):
            if status is not None:  # its status message, retained: heard again and again
                engine.gateway_status(engine.gateways[3], not status, now)
            engine.feed_rows(chunk)
            if k % 10 == 9:
                seen[name].extend(engine.advance(now).events)
        assert (fast.now_ms, fast.clock_slot, fast.park_closed) == (
            slow.now_ms, slow.clock_slot, slow.park_closed
        )  # fmt: skip
        np.testing.assert_array_equal(fast.closed, slow.closed)
        np.testing.assert_array_equal(thresholds["fast"][-1], thresholds["slow"][-1])
        for name in Clocks._ARRAYS:
            np.testing.assert_array_equal(getattr(fast.clocks, name), getattr(slow.clocks, name))
        for a, b in zip(fast.tables.values(), slow.tables.values(), strict=True):
            assert (a.base, a.late_readings) == (b.base, b.late_readings)
    for name, engine in (("fast", fast), ("slow", slow)):
        seen[name].extend(engine.finish().events)
    assert fast.late_readings() > 0  # the backlog's hour came after its slots closed
    assert routed["fast"] > 0
    assert routed["slow"] == 0
    zone = demo().zone
    assert [e.to_bytes(zone) for e in seen["fast"]] == [e.to_bytes(zone) for e in seen["slow"]]
    assert seen["fast"]


def _clock_state(engine: ParkEngine) -> tuple[Any, ...]:
    """What the clock walk leaves behind: the park clock, closed slots and every clock."""
    clocks = engine.clocks
    return (
        engine.now_ms,
        engine.clock_slot,
        engine.park_closed,
        engine.closed.tolist(),
        {name: getattr(clocks, name).tolist() for name in Clocks._ARRAYS},
        clocks.pending,
        clocks.run_seq,
        clocks.final_ms,
        engine.late_readings(),
    )


def test_the_walk_stays_in_python_while_a_seq_gap_waits_or_after_the_final_time(
    monkeypatch: Any,
) -> None:
    """Live batches with skipped seqs between replayed stretches leave a seq gap waiting, and
    ``finish`` sets a final time; the compiled walk knows neither, so ``feed_rows`` walks in
    Python then. An engine that switches must end where one kept on ``_walk`` throughout
    does, after every stretch and batch, with the same events."""
    step = 60_000
    park = demo()
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        rules = ClockRules(max_hold_ms=int(rng.choice([10, 40])) * step)
        switching, slow = (ParkEngine(park, DETECTORS, clock_rules=rules) for _ in range(2))
        monkeypatch.setattr(slow, "_walk_compiled", slow._walk)
        sg = switching._series_gateway
        per_gateway = [np.flatnonzero(sg == g) for g in range(len(switching.gateways))]
        seq = [0] * len(switching.gateways)
        arrival = START_MS
        stretches = {"compiled": 0, "python": 0}
        seen: tuple[list[bytes], list[bytes]] = ([], [])
        for it in range(150):
            arrival += int(rng.integers(1, 3 * step))
            if rng.random() < 0.4:  # a live batch, some seqs skipped
                g = int(rng.integers(len(seq)))
                if per_gateway[g].size == 0:
                    continue
                seq[g] += int(rng.choice([1, 1, 1, 2, 3]))
                series = rng.choice(per_gateway[g], size=min(5, per_gateway[g].size), replace=False)
                t = (arrival // step) * step - int(rng.choice([0, step]))
                for engine in (switching, slow):
                    engine.feed(
                        Batch(engine.gateways[g], seq[g], series.astype(np.int64),
                              np.full(series.size, t, np.int64), np.ones(series.size), arrival)
                    )  # fmt: skip
            else:  # a replayed stretch, some of it an hour late
                n = int(rng.integers(1, 200))
                arr = arrival + np.sort(rng.integers(0, 5 * step, size=n))
                arrival = int(arr[-1])
                series = rng.integers(0, sg.size, size=n).astype(np.int64)
                t = (arr - rng.choice([0, 0, step, 3_600_000], size=n)) // step * step
                gw = sg[series].astype(np.int64)
                rows = EngineRows(series, t.astype(np.int64), np.ones(n), gw, arr.astype(np.int64),
                                  np.zeros(n, dtype=bool))  # fmt: skip
                waiting = slow.clocks.final_ms is not None or bool(slow.clocks.pending)
                stretches["python" if waiting else "compiled"] += 1
                for engine in (switching, slow):
                    engine.feed_rows(rows)
            if it % 10 == 9:
                for k, engine in enumerate((switching, slow)):
                    seen[k].extend(e.to_bytes(park.zone) for e in engine.advance(arrival).events)
            assert _clock_state(switching) == _clock_state(slow), (seed, it)
        for k, engine in enumerate((switching, slow)):
            seen[k].extend(e.to_bytes(park.zone) for e in engine.finish().events)
        # rows after the final time: it is set, so the walk must stay in Python
        n = 50
        arr = arrival + np.arange(n, dtype=np.int64) * 1000
        series = rng.integers(0, sg.size, size=n).astype(np.int64)
        rows = EngineRows(series, arr // step * step, np.ones(n), sg[series].astype(np.int64), arr,
                          np.zeros(n, dtype=bool))  # fmt: skip
        for engine in (switching, slow):
            engine.feed_rows(rows)
        assert _clock_state(switching) == _clock_state(slow), seed
        assert seen[0] == seen[1]
        assert seen[0]
        # both walks were taken, each many times
        assert min(stretches.values()) >= 10, stretches


def test_the_compiled_clock_walk_matches_the_walk_on_random_clocks() -> None:
    """``_walk_compiled`` against ``_walk`` on seeded random stretches the faulty day lacks:
    gateways sending at mixed intervals (15 s to 5 min, 37 s not dividing a slot), clocks
    skewed by hours or a year back, times before 1970, rows an hour or two late, stretches
    longer than the hold time, status messages and silent gateways. Both must leave the same
    clocks and closed slots and give every row the same first open slot."""
    step = 60_000
    park = demo()
    for base_ms in (START_MS, -3 * 365 * DAY_MS + 12_345, 0):
        for seed in range(4):
            rng = np.random.default_rng(seed)
            rules = ClockRules(max_hold_ms=int(rng.choice([10, 40, 1440])) * step,
                               silence_ms=int(rng.choice([1, 3, 7])) * step)  # fmt: skip
            python = ParkEngine(park, DETECTORS, clock_rules=rules)
            compiled = ParkEngine(park, DETECTORS, clock_rules=rules)
            gateways = len(python.gateways)
            sg = python._series_gateway
            interval = rng.choice([step, 2 * step, 5 * step, 15_000, 37_000], size=gateways)
            skew = rng.choice([0, 0, 0, -3_600_000, 7_200_000, -400 * DAY_MS], size=gateways)
            arrival = base_ms + int(rng.integers(0, 10 * step))
            for it in range(60):
                if rng.random() < 0.2:
                    g, online = int(rng.integers(gateways)), bool(rng.random() < 0.5)
                    for engine in (python, compiled):
                        engine.gateway_status(engine.gateways[g], online, arrival)
                if rng.random() < 0.05:
                    for engine in (python, compiled):
                        engine.listening_from(arrival)
                n = int(rng.integers(1, 400))
                span = int(rng.choice([step, 10 * step, 200 * step]))
                arr = arrival + np.sort(rng.integers(0, span, size=n))
                arrival = int(arr[-1])
                series = rng.integers(0, sg.size, size=n)
                gw = sg[series]
                g0 = np.maximum(gw, 0)
                lag = rng.choice([0, 0, 0, 30_000, 3_600_000, 7_200_000], size=n)
                t = (arr - lag + skew[g0]) // interval[g0] * interval[g0]
                keep = np.ones(n, dtype=bool)
                if rng.random() < 0.3:  # one gateway silent through the stretch
                    keep &= gw != int(rng.integers(gateways))
                if not keep.any():
                    continue
                k = int(keep.sum())
                rows = EngineRows(series[keep].astype(np.int64), t[keep].astype(np.int64),
                                  np.zeros(k), gw[keep].astype(np.int64),
                                  arr[keep].astype(np.int64), np.zeros(k, dtype=bool))  # fmt: skip
                slot = rows.arrival_ms // step
                bounds = np.r_[0, np.flatnonzero(slot[1:] != slot[:-1]) + 1, k]
                th_python, th_compiled = np.empty(k, np.int64), np.empty(k, np.int64)
                python._walk(rows, bounds, th_python)
                compiled._walk_compiled(rows, bounds, th_compiled)
                where = (base_ms, seed, it)
                assert _clock_state(compiled) == _clock_state(python), where
                np.testing.assert_array_equal(th_compiled, th_python, err_msg=str(where))


def test_span_bounds_cut_where_the_numpy_code_cut() -> None:
    """``kernels.span_bounds`` (replay's and the feed's stretches) against the numpy code it
    replaced, on times in order, out of order, negative, repeated and empty."""
    from analytics.kernels.feeding import span_bounds

    rng = np.random.default_rng(7)
    cases = [
        np.zeros(0, dtype=np.int64),
        np.array([5], dtype=np.int64),
        np.sort(rng.integers(-(10**7), 10**7, 5000)),
        rng.integers(-(10**6), 10**6, 5000),
        np.repeat(np.arange(-20, 20, dtype=np.int64) * 60_000, 7),
    ]
    for times in cases:
        for span in (1, 60_000, 900_000):
            b = times // span
            want = np.r_[0, np.flatnonzero(b[1:] != b[:-1]) + 1, times.size]
            np.testing.assert_array_equal(span_bounds(times, span), want)


# hostile values for the cells a buffer leaves unfilled (Columns.STALE): none may reach a
# finding, a point or a snapshot
STALE_JUNK: dict[str, Any] = {
    "total": 1e300,
    "low": -7e299,
    "high": 7e299,
    "last_t": np.iinfo(np.int64).max - 3,
    "last_v": 12345.678,
}


def _poison_unfilled_cells(monkeypatch: pytest.MonkeyPatch, *, in_place: bool = True) -> list[int]:
    """From now on, the ``STALE`` arrays of every new buffer (``Columns._empty_arrays`` with
    ``stale``) and, with ``in_place``, of every slot widened in place are full of
    ``STALE_JUNK``. Returns a one-item list counting the arrays poisoned."""
    allocate = Columns._empty_arrays.__func__  # type: ignore[attr-defined]
    widen = Columns.widened
    poisoned = [0]

    def allocated(
        cls: type[Columns], rows: int, slots: int, *, stale: bool = False
    ) -> list[npt.NDArray[Any]]:
        arrays: list[npt.NDArray[Any]] = allocate(cls, rows, slots, stale=stale)
        if stale:
            for (name, _, _), a in zip(cls.FILL, arrays, strict=True):
                if name in cls.STALE:
                    a[...] = STALE_JUNK[name]
                    poisoned[0] += 1
        return arrays

    def widened(self: Columns, before: int, after: int) -> Columns:
        n = self.slots
        out = widen(self, before, after)
        for name in self.STALE:
            a = getattr(out, name)
            a[:, :before] = STALE_JUNK[name]
            a[:, before + n :] = STALE_JUNK[name]
            poisoned[0] += 1
        return out

    monkeypatch.setattr(Columns, "_empty_arrays", classmethod(allocated))
    if in_place:
        monkeypatch.setattr(Columns, "widened", widened)
    return poisoned


def _events_points_state(rows: EngineRows) -> tuple[list[str], list[str], list[bytes]]:
    """A day through a fresh engine in chunks: its events, points and a snapshot mid-way and
    at the end (pickled)."""
    engine = ParkEngine(demo(), DETECTORS)
    events: list[str] = []
    points: list[str] = []
    states: list[bytes] = []
    n = rows.t_ms.size
    for start in range(0, n, 3_000):
        stop = min(n, start + 3_000)
        part = slice(start, stop)
        chunk = EngineRows(
            rows.series[part], rows.t_ms[part], rows.value[part], rows.gateway[part],
            rows.arrival_ms[part], rows.duplicate[part],
        )  # fmt: skip
        for adv in (engine.feed_rows(chunk), engine.advance(int(rows.t_ms[stop - 1]))):
            events += [repr(e) for e in adv.events]
            points += [repr(p) for p in adv.points]
        if start <= n // 2 < stop:
            states.append(pickle.dumps(engine.state()))
    adv = engine.finish()
    events += [repr(e) for e in adv.events]
    points += [repr(p) for p in adv.points]
    states.append(pickle.dumps(engine.state()))
    return events, points, states


def test_what_unfilled_cells_hold_changes_no_event_point_or_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new buffer leaves the ``STALE`` arrays unfilled (``Columns.STALE``): a cell of them
    is read only where its count says it has data. With hostile values in every such cell,
    a faulty day gives the same events, the same derived points and the same snapshots."""
    rows = _engine_rows(ParkEngine(demo(), DETECTORS), faulty_day())
    clean = _events_points_state(rows)
    poisoned = _poison_unfilled_cells(monkeypatch)
    dirty = _events_points_state(rows)
    assert poisoned[0] > 0
    assert clean[0]  # the day has events
    assert dirty[0] == clean[0]
    assert dirty[1] == clean[1]
    assert dirty[2] == clean[2]


def _cells(rng: np.random.Generator, rows: int, slots: int) -> tuple[IntArray, ...]:
    """Readings in a third of ``rows × slots`` cells, some several, in no order."""
    row, slot, t, value = [], [], [], []
    for r in range(rows):
        for k in range(slots):
            for j in range(int(rng.integers(0, 3)) if rng.random() < 0.33 else 0):
                row.append(r)
                slot.append(k)
                t.append(START_MS + k * 60_000 + j * 7_000)
                value.append(float(rng.normal(100.0, 30.0)))
    order = rng.permutation(len(row))
    return tuple(np.array(x)[order] for x in (row, slot, t, value))


def test_the_same_cells_pickle_the_same_whatever_their_buffers_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two tables of the same readings, one allocated whole and filled, the other grown at
    both ends in steps through unfilled buffers full of junk (and slots moved over old
    data): the same snapshot, byte for byte."""
    rng = np.random.default_rng(11)
    rows, slots = 7, 90
    row, slot, t, value = _cells(rng, rows, slots)
    whole = SlotArrays.empty(rows, slots)
    whole.add(row, slot, t, value)

    _poison_unfilled_cells(monkeypatch, in_place=False)  # old data stays in moved-over slots
    # a new buffer; widened in place; its slots moved to the front; another new buffer
    grown = SlotArrays.empty(rows, 0).widened(0, 20)
    first = 30  # the slot its column 0 holds
    for before, after, lo, hi in ((0, 0, 30, 50), (0, 10, 50, 60), (30, 0, 0, 30), (0, 30, 60, 90)):
        grown.widened(before, after)
        first -= before
        mine = (slot >= lo) & (slot < hi)
        grown.add(row[mine], slot[mine] - first, t[mine], value[mine])
    assert grown.slots == slots
    np.testing.assert_array_equal(grown.count, whole.count)
    assert pickle.dumps(grown) == pickle.dumps(whole)
    again = pickle.loads(pickle.dumps(grown))
    for name, _, _ in SlotArrays.FILL:
        assert getattr(again, name).tobytes() == getattr(whole, name).tobytes(), name


def test_pickling_a_table_leaves_its_unfilled_cells_as_they_were(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A snapshot saves unfilled cells empty in copies: with one row a table's arrays are
    contiguous views of its buffers, which pickling must not write into."""
    _poison_unfilled_cells(monkeypatch)
    table = SlotArrays.empty(1, 0).widened(0, 10)
    table.add(np.array([0, 0]), np.array([2, 5]), START_MS + np.array([0, 1]), np.array([1.0, 2.0]))
    held = {name: getattr(table, name).tobytes() for name, _, _ in SlotArrays.FILL}
    saved = pickle.loads(pickle.dumps(table))
    assert {name: getattr(table, name).tobytes() for name, _, _ in SlotArrays.FILL} == held
    assert saved.total.tolist() == [[0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0]]


def test_an_adopted_event_takes_the_engines_severity_and_estimate_into_its_next_message() -> None:
    """The stored event adopted keeps its id, times and evidence, but takes the severity
    and estimate of the book's own event it replaces (the detectors' view now): its close
    carries them, not what the earlier worker last stored."""
    book = EventBook("p")
    now = Estimate(40.0, "kW")
    [own] = book.apply(
        [Finding("baseline_deviation", Family.CONSUMPTION, 2_000, True, meter="m",
                 severity=Severity.MAJOR, estimate=now)]
    )  # fmt: skip
    stored = own.with_state(
        State.UPDATED, id="earlier", detected_at_ms=1_000, updated_at_ms=1_500,
        severity=Severity.MINOR, estimate=Estimate(10.0, "kW"), evidence={"then": 1},
    )  # fmt: skip
    book.adopt(stored)
    held = book.open[("baseline_deviation", "m")]
    assert (held.id, held.detected_at_ms, held.evidence) == ("earlier", 1_000, {"then": 1})
    assert (held.severity, held.estimate) == (Severity.MAJOR, now)
    [closed] = book.apply(
        [Finding("baseline_deviation", Family.CONSUMPTION, 3_000, False, meter="m")]
    )
    assert (closed.id, closed.state, closed.severity, closed.estimate) == (
        "earlier", State.CLOSED, Severity.MAJOR, now
    )  # fmt: skip


def test_an_adopted_event_is_carried_on_and_holds_back_what_its_fault_explains() -> None:
    """``EventBook.adopt``: a stored event replaces the book's own of its kind and subject
    (a restarted worker carries on the earlier worker's event); a meter fault adopted in
    place of another still holds back a consumption finding about its meter, and the next
    inactive finding closes the adopted event, at its own detection time's point."""
    book = EventBook("p")
    [own] = book.apply([Finding("stuck_value", Family.METER_FAULT, 2_000, True, meter="m")])
    stored = own.with_state(State.UPDATED, id="earlier", detected_at_ms=1_000, updated_at_ms=1_500)
    assert book.adopt(stored) == own
    assert book.open == {("stuck_value", "m"): stored}
    held = Finding("baseline_deviation", Family.CONSUMPTION, 3_000, True, meter="m")
    assert book.apply([held]) == []  # the adopted fault still explains the meter
    [closed] = book.apply([Finding("stuck_value", Family.METER_FAULT, 4_000, False, meter="m")])
    assert (closed.id, closed.state, closed.detected_at_ms, closed.end_ms) == (
        "earlier", State.CLOSED, 1_000, 4_000
    )  # fmt: skip
    assert book.apply([held]) != []  # no fault open any more: the finding opens its event


def test_feeding_reuses_its_row_buffers_without_stale_rows(monkeypatch: Any) -> None:
    """The engine's per-row work arrays (``_RowBuffers``: first open slots, routed slots, late
    marks, the routed rows' grouping, a table's cells) are kept from stretch to stretch and
    are longer than a later, smaller stretch: whatever they hold when a stretch comes (the
    last stretch's rows, or junk) changes nothing. Three engines on the same stretches (a
    large one first, then smaller ones; rows sent twice, marked duplicates, a backlog that
    comes after its slots closed, times out of order, a gap and an empty stretch) hold the
    same cells, transport, clocks and late readings after every stretch, and raise the
    same events, as one walking in Python whose routing allocates afresh."""
    rules = ClockRules(max_hold_ms=40 * 60_000)
    kept, junk, slow = (ParkEngine(demo(), DETECTORS, clock_rules=rules) for _ in range(3))
    monkeypatch.setattr(slow, "_walk_compiled", slow._walk)

    def dirty(n: int) -> None:
        # buffers of the stretch's size and more, full of junk
        buffers = junk._buffers
        buffers.fit(n + 7)
        for name, fill in (("threshold", 10**12), ("slot", -3), ("late", True), ("kept", 1),
                           ("order", 5), ("cell", 0)):  # fmt: skip
            getattr(buffers, name)[:] = fill

    rows = _engine_rows(kept, faulty_day())
    arrival = rows.t_ms.copy()
    # gateway 1's fifth hour comes two hours late: its slots closed by then
    backlog = (rows.gateway == 1) & (rows.t_ms >= START_MS + 5 * 3_600_000)
    backlog &= rows.t_ms < START_MS + 6 * 3_600_000
    arrival[backlog] += 2 * 3_600_000
    # gateway 2 silent from 9 h to 11 h (a gap)
    silent = (rows.gateway == 2) & (rows.t_ms >= START_MS + 9 * 3_600_000)
    keep = ~(silent & (rows.t_ms < START_MS + 11 * 3_600_000))
    pick = np.flatnonzero(keep)[np.argsort(arrival[keep], kind="stable")]
    # a tenth of the rows sent again right after themselves, marked duplicates, and a
    # twentieth unmarked (the merge finds them at the time already in their cell)
    rng = np.random.default_rng(3)
    again = np.flatnonzero(rng.random(pick.size) < 0.15)
    pick = np.insert(pick, again + 1, pick[again])
    duplicate = np.zeros(pick.size, dtype=bool)
    duplicate[(again + 1 + np.arange(again.size))[rng.random(again.size) < 2 / 3]] = True
    t_ms = rows.t_ms[pick].copy()
    # one row in twenty swaps its time with the next one's: times out of order
    swap = np.flatnonzero(rng.random(pick.size - 1) < 0.05)
    swap = swap[np.r_[True, np.diff(swap) > 1]]  # no row in two swaps
    t_ms[swap], t_ms[swap + 1] = t_ms[swap + 1], t_ms[swap].copy()
    stream = EngineRows(rows.series[pick], t_ms, rows.value[pick], rows.gateway[pick],
                        arrival[pick], duplicate)  # fmt: skip
    # a large stretch first; then smaller ones, an empty one among them
    sizes = [3_000] + [150, 0, 400, 1, 250] * (stream.t_ms.size // 800 + 1)
    seen: dict[str, list[Event]] = {"kept": [], "junk": [], "slow": []}
    start = 0
    late = 0
    for k, size in enumerate(sizes):
        if start >= stream.t_ms.size:
            break
        part = slice(start, start + size)
        start += size
        if size == 0:  # an empty stretch: nothing to feed (feed_rows returns at once)
            part = slice(start, start)
        chunk = EngineRows(stream.series[part], stream.t_ms[part], stream.value[part],
                           stream.gateway[part], stream.arrival_ms[part],
                           stream.duplicate[part])  # fmt: skip
        out = {}
        dirty(size)  # junk's buffers before every stretch
        for name, engine in (("kept", kept), ("junk", junk), ("slow", slow)):
            out[name] = engine.feed_rows(chunk)
            if k % 20 == 19:
                seen[name].extend(engine.advance(int(chunk.arrival_ms[-1])).events)
        assert out["kept"].late == out["junk"].late == out["slow"].late
        late += out["slow"].late_readings
        for engine in (kept, junk):
            assert (engine.now_ms, engine.clock_slot, engine.park_closed) == (
                slow.now_ms, slow.clock_slot, slow.park_closed
            )  # fmt: skip
            np.testing.assert_array_equal(engine.closed, slow.closed)
            for a, b in zip(engine.tables.values(), slow.tables.values(), strict=True):
                assert (a.base, a.late_readings, a.refused_ahead) == (
                    b.base, b.late_readings, b.refused_ahead
                )  # fmt: skip
                for x, y in ((a.cells, b.cells), (a.transport, b.transport)):
                    for key, value in x.__getstate__().items():
                        np.testing.assert_array_equal(value, y.__getstate__()[key], key)
    assert start >= stream.t_ms.size
    assert late > 0  # the backlog came after its slots closed
    assert kept._buffers.slot.size > 1_000  # the large stretch's buffers, kept
    for name, engine in (("kept", kept), ("junk", junk), ("slow", slow)):
        seen[name].extend(engine.finish().events)
    zone = demo().zone
    want = [e.to_bytes(zone) for e in seen["slow"]]
    assert want
    assert [e.to_bytes(zone) for e in seen["kept"]] == want
    assert [e.to_bytes(zone) for e in seen["junk"]] == want


def test_row_buffers_grow_for_a_stretch_and_shrink_after_a_large_one() -> None:
    """``_RowBuffers.fit``: room for the stretch's rows (a quarter over), kept while the
    stretches stay near that size, and given back after a rebuild's or a backlog's large
    stretch once the batches are four times smaller, so that ~30 MB are not held for the
    engine's life; small buffers (up to ``_KEEP_ROWS``) are kept whatever comes."""
    buffers = _RowBuffers()
    buffers.fit(1_000)
    assert buffers.slot.size == 1_250
    buffers.fit(100)  # small: kept, no reallocation for every live batch
    assert buffers.slot.size == 1_250
    buffers.fit(580_000)
    assert buffers.slot.size == 725_000
    kept = buffers.slot
    buffers.fit(200_000)  # within four times: the same arrays
    assert buffers.slot is kept
    buffers.fit(2_000)  # a live batch after a rebuild: given back
    assert buffers.slot.size == 2_500
    for name in ("threshold", "slot", "late", "kept", "order", "cell"):
        assert getattr(buffers, name).size == 2_500, name


def test_the_feeding_kernels_refuse_a_buffer_shorter_than_the_rows() -> None:
    """numba compiles no bounds checks: a row buffer shorter than the rows would write past
    its end. Each kernel that takes one raises ValueError instead."""
    z = np.zeros
    with pytest.raises(ValueError, match="cell_buf"):
        merge_rows(
            np.arange(3), z(3, np.int64), z(3, np.int64), z(3), z(3, np.int64),
            z(1, np.int64), 0, 1, 0, z(4), z(4, np.int32), z(4), z(4), z(4, np.int64), z(4),
            z(3, bool), np.empty(2, np.int64),
        )  # fmt: skip
    with pytest.raises(ValueError, match="shorter than the rows"):
        _route_arrays(5, 2, np.empty(5, np.int64), np.empty(4, bool), np.empty(5, np.int64))
    with pytest.raises(ValueError, match="order_buf"):
        _group_by_table(z(5, np.int64), np.array([0, 5, 0], np.int64), np.empty(4, np.int64))
