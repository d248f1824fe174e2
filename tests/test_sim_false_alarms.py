"""False meter-fault events simulated histories raised, each pinned down: a skewed gateway's
meters reported silent, a battery at a fixed power setpoint or idling after a gap taken for a
stuck meter, and the scorer's view of the gaps a fault leaves behind."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import numpy as np

from analytics.detectors import DETECTORS
from analytics.detectors.meter_faults import MeterFaults
from analytics.engine.contract import ParkContext
from analytics.engine.engine import Batch, ParkEngine
from analytics.engine.slots import slot_block
from analytics.replay import replay
from analytics.scoring.ground_truth import Fault as TruthFault
from analytics.scoring.ground_truth import score_events
from parkwatch.events import Event, Family, Severity, State
from parkwatch.site import Park
from simulators import DEMO_PARK
from simulators.faults import Fault, FaultKind
from tests.analytics_data import Rows, simulated_rows

START_MS = 1_795_968_000_000  # local midnight in Shanghai
HOUR_MS = 3_600_000
STEP_MS = 60_000


@cache
def demo() -> Park:
    return Park.from_yaml(DEMO_PARK)


def _live(park: Park, rows: Rows) -> list[tuple[str, str | None, str | None]]:
    """The rows as the gateways would publish them live: one message per gateway and poll."""
    assert rows.poll_ms is not None
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
    for poll in np.unique(rows.poll_ms):
        at = (series >= 0) & (rows.poll_ms == poll)
        arrival = int(poll) + 300
        for gw in np.unique(gateway[at]):
            mine = at & (gateway == gw)
            seqs[gw] = seqs.get(gw, 0) + 1
            engine.feed(
                Batch(str(gw), seqs[gw], series[mine], rows.t_ms[mine], rows.value[mine], arrival)
            )
        events.update((e.id, e) for e in engine.advance(arrival).events)
    events.update((e.id, e) for e in engine.finish().events)
    return _summary(list(events.values()))


def _summary(events: list[Event]) -> list[tuple[str, str | None, str | None]]:
    """What was raised about what (the replay clock and a live arrival differ by a moment, so
    a transport event can be raised a slot apart)."""
    return sorted((e.kind, e.meter, e.zone) for e in events)


def test_a_gateway_clock_running_behind_raises_no_silence_on_its_meters() -> None:
    """gw-elecco's clock 302.665 s behind: its batches sit 37.335 s past the minute, and in
    a history (meters in park order) elecco-pv's row, of another gateway, splits each of its
    poll cycles in two. The replay clock turned to the next minute between the two parts, the
    first part closed the slot, the second (elecco-bess, elecco-water) was refused as late:
    38 hours of comm_loss on two of five meters in a 14-day history."""
    park = demo()
    skew = Fault(
        FaultKind.CLOCK_SKEW,
        START_MS + HOUR_MS,
        START_MS + 4 * HOUR_MS,
        gateway="gw-elecco",
        magnitude=-302.665,
    )
    rows = simulated_rows(park, START_MS, 0.25, seed=3, faults=[skew])
    report = replay(ParkEngine(park, DETECTORS), rows)
    elecco = {m.id for m in park.iter_meters() if m.gateway == "gw-elecco"}
    meters_silent = [e for e in report.events if e.kind == "comm_loss" and e.meter in elecco]
    assert meters_silent == []
    # only the readings the clock's jump back put behind the newest batch are late: 5 cycles
    codes = [rows.meters.index(m) for m in elecco]
    per_cycle = int(np.sum((rows.t_ms == rows.t_ms[0]) & np.isin(rows.meter_code, codes)))
    assert 0 < report.late <= 6 * per_cycle
    skewed = [e for e in report.events if e.zone == "gateway:gw-elecco"]
    assert {e.kind for e in skewed} >= {"late_batches"}  # a clock behind looks like late data
    assert _summary(report.events) == _live(park, rows)


# --- a battery at a fixed power setpoint -------------------------------------------------------


def test_a_battery_at_a_fixed_setpoint_is_not_stuck_while_its_charge_moves() -> None:
    park = Park.model_validate(
        {
            "park": "b",
            "meters": [
                {"id": "bess", "utility": "electricity", "role": "battery"},
                {"id": "plain", "utility": "electricity"},
            ],
        }
    )
    ctx = ParkContext(park, reported={"bess": ["p_kw", "soc_pct"], "plain": ["p_kw"]})
    series = MeterFaults.select(ctx)
    assert [str(k) for k in series if k.meter == "bess"] == ["bess/p_kw", "bess/soc_pct"]
    assert all(k.quantity != "soc_pct" for k in series if k.meter == "plain")

    lively, fixed = 90, 60  # slots of a varying load, then of a fixed charging setpoint
    p = np.r_[100.0 + 7 * np.sin(np.arange(lively)), np.full(fixed, 133.0)]
    soc = 40.0 + 0.22 * np.arange(lively + fixed)  # 133 kW into 1 MWh: 0.22 % a minute

    def findings(soc_values: np.ndarray) -> list[str]:
        detector = MeterFaults(ctx, [k for k in series if k.meter == "bess"])
        n = p.size
        rows = np.r_[np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64)]
        t = np.tile(START_MS + np.arange(n, dtype=np.int64) * STEP_MS, 2)
        block = slot_block(rows, t, np.r_[p, soc_values], 2, START_MS, STEP_MS, n)
        return [f.kind for f in detector.update(block).findings]

    assert "stuck_value" not in findings(soc)
    # the same meter with its charge frozen too is stuck: the check still finds that
    assert "stuck_value" in findings(np.r_[soc[:lively], np.full(fixed, soc[lively])])


def test_one_change_after_a_long_gap_does_not_make_a_steady_meter_stuck() -> None:
    """elecco-bess idles at its lowest charge: 1.5 kW of auxiliaries, the charge unchanged.
    After an hour without its data, its first reading differed from the last one before the
    gap, and that one reading, all changed, was taken for a lively meter now stuck."""
    park = Park.model_validate({"park": "g", "meters": [{"id": "m", "utility": "electricity"}]})
    ctx = ParkContext(park, reported={"m": ["p_kw"]})

    def findings(gap: int) -> list[str]:
        lively = 100.0 + 7 * np.sin(np.arange(90))
        values = np.r_[lively, np.full(gap, np.nan), np.full(30, 1.5)]
        k = np.flatnonzero(np.isfinite(values))
        block = slot_block(
            np.zeros(k.size, dtype=np.int64),
            START_MS + k * STEP_MS,
            values[k],
            1,
            START_MS,
            STEP_MS,
            values.size,
        )
        return [f.kind for f in MeterFaults(ctx, MeterFaults.select(ctx)).update(block).findings]

    assert "stuck_value" in findings(gap=0)  # straight from lively to steady: stuck
    after_gap = findings(gap=70)
    assert "comm_loss" in after_gap
    assert "stuck_value" not in after_gap


# --- scoring: gaps a fault leaves ----------------------------------------------------------


def _event(kind: str, at_ms: int, meter: str | None = None, zone: str | None = None) -> Event:
    return Event(
        id=f"{kind}-{meter or zone}-{at_ms}",
        kind=kind,
        family=Family.METER_FAULT,
        state=State.CLOSED,
        park="p",
        zone=zone,
        meter=meter,
        start_ms=at_ms,
        detected_at_ms=at_ms,
        end_ms=at_ms + 10 * STEP_MS,
        severity=Severity.MINOR,
    )


def test_gaps_a_transport_fault_or_a_word_swap_leaves_are_not_false_comm_loss() -> None:
    t0 = START_MS
    faults = [
        TruthFault("0", "word_swap", t0, t0 + 3 * HOUR_MS, "m1", None, None),
        TruthFault("1", "late_batches", t0, t0 + 2 * HOUR_MS, None, None, "gw-a"),
        TruthFault("2", "clock_skew", t0, t0 + 6 * HOUR_MS, None, None, "gw-b"),
        TruthFault("3", "comm_loss", t0 + 9 * HOUR_MS, t0 + 10 * HOUR_MS, None, None, "gw-z"),
    ]
    gateways_of = {"m1": "gw-m", "a1": "gw-a", "b1": "gw-b", "c1": "gw-c"}
    explained = [
        _event("comm_loss", t0 + HOUR_MS, meter="m1"),  # swapped values refused
        _event("comm_loss", t0 + 5 * STEP_MS, zone="gateway:gw-a"),  # nothing came yet
        _event("comm_loss", t0 + 6 * HOUR_MS, zone="gateway:gw-b"),  # the clock set right
    ]
    elsewhere = [
        _event("comm_loss", t0 + HOUR_MS, meter="c1"),  # another gateway's meter
        _event("comm_loss", t0 + HOUR_MS, zone="gateway:gw-c"),
        _event("comm_loss", t0 + 3 * HOUR_MS, zone="gateway:gw-b"),  # mid-skew: no jump there
        replace(_event("comm_loss", t0 + 5 * STEP_MS, meter="b1"), end_ms=t0 + 5 * HOUR_MS),
    ]
    report = score_events(explained + elsewhere, faults, gateways_of)
    false = {k.kind: k.false_events for k in report.kinds}
    assert false["comm_loss"] == len(elsewhere)
