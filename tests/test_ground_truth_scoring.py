"""``score truth``: events against a simulator's ground truth, fault by fault."""

from __future__ import annotations

import json
from pathlib import Path

from analytics.scoring.ground_truth import Fault, load_faults, score_events
from parkwatch.events import Event, Family, Severity, State

T0 = 1_795_968_000_000
MIN = 60_000
HOUR = 60 * MIN


def event(kind: str, meter: str | None, detected_at: int, zone: str | None = None) -> Event:
    return Event(
        id=f"{kind}/{meter or zone}/{detected_at}",
        kind=kind,
        family=Family.METER_FAULT,
        state=State.OPENED,
        park="p",
        meter=meter,
        zone=zone,
        start_ms=detected_at,
        detected_at_ms=detected_at,
        end_ms=None,
        severity=Severity.MINOR,
    )


def test_a_fault_still_on_when_the_run_stopped_is_open_ended(tmp_path: Path) -> None:
    """A live run's ground truth leaves ``end`` null for a fault still on: it is on until the
    end, not a point in time that a detection two hours on would miss."""
    truth = tmp_path / "ground_truth.jsonl"
    truth.write_text(
        json.dumps({"id": 0, "kind": "stuck_value", "meter": "m1", "start": T0, "end": None}) + "\n"
    )
    faults = load_faults(truth)
    report = score_events([event("stuck_value", "m1", T0 + 120 * MIN)], faults)
    [score] = report.kinds
    assert (score.faults, score.detected, score.right_place, score.false_events) == (1, 1, 1, 0)
    assert score.median_delay_min == 120.0


def leak(zone: str, start: int, end: int, fid: str = "0") -> Fault:
    return Fault(fid, "water_leak", start, end, None, zone, None)


def test_time_to_detect_runs_to_the_first_event_at_the_faults_place() -> None:
    """A leak in d3 from T0 to T0 + 48 h; a leak event in d2 at 2 h, one in d3 at 10 h: found
    at 10 h (600 min), not 120; the d2 event is false, though in the leak's time."""
    events = [
        event("water_leak", None, T0 + 2 * HOUR, zone="water-d2"),
        event("water_leak", None, T0 + 10 * HOUR, zone="water-d3"),
    ]
    [score] = score_events(events, [leak("water-d3", T0, T0 + 48 * HOUR)]).kinds
    assert (score.median_delay_min, score.false_events) == (600.0, 1)
    assert (score.detected, score.right_place, score.wrong_place) == (1, 1, 0)
    assert score.false_in_time_elsewhere == 1


def test_an_event_only_elsewhere_is_a_wrong_place_not_a_detection() -> None:
    """A meter stuck from T0 to T0 + 5 h, a stuck event on another meter at 1 h: the fault is
    missed (wrong place) and the event is false; a leak whose only event is in another zone
    likewise."""
    stuck = Fault("s", "stuck_value", T0, T0 + 5 * HOUR, "m1", None, None)
    faults = [stuck, leak("water-d3", T0, T0 + 48 * HOUR, "w")]
    events = [
        event("stuck_value", "m2", T0 + HOUR),
        event("water_leak", None, T0 + 3 * HOUR, zone="water-d1"),
    ]
    report = score_events(events, faults)
    by_kind = {k.kind: k.as_dict() for k in report.kinds}
    for kind, fid in (("stuck_value", "s"), ("water_leak", "w")):
        row = by_kind[kind]
        assert (row["faults"], row["detected"], row["missed"], row["false_events"]) == (1, 0, 1, 1)
        assert row["wrong_place"] == 1
        assert (row["right_place"], row["events"], row["repeated"]) == (0, 0, 0)
        assert row["false_in_time_elsewhere"] == 1
        assert row["median_time_to_detect_min"] is None
        assert row["missed_ids"] == row["wrong_place_ids"] == [fid]
    assert "elsewhere" in report.table().splitlines()[0]


def test_a_leak_closed_and_reopened_is_one_fault_with_its_events_counted() -> None:
    """Leak A (d3) drew three events at its place — opened, closed and reopened twice — and
    leak B (d1) one: 2 faults found, 4 events, 1 repeated; the first of A's events times it."""
    faults = [leak("water-d3", T0, T0 + 72 * HOUR, "a"), leak("water-d1", T0, T0 + 24 * HOUR, "b")]
    events = [event("water_leak", None, T0 + h * HOUR, zone="water-d3") for h in (20, 30, 50)] + [
        event("water_leak", None, T0 + 4 * HOUR, zone="water-d1")
    ]
    [score] = score_events(events, faults).kinds
    assert (score.faults, score.detected, score.events, score.repeated) == (2, 2, 4, 1)
    assert score.false_events == 0
    assert sorted(score.delays_ms) == [4 * HOUR, 20 * HOUR]
    assert "repeated" in score_events(events, faults).table().splitlines()[0]


def test_a_zones_event_places_a_fault_aimed_at_its_feed_meter_or_enterprise() -> None:
    """The simulator aims an air leak at an enterprise ("steelco"); the park's zone "air-s"
    stands for it (zone_places): its event finds the leak and is not false; an event of a zone
    that does not stand for it is false and leaves the leak at the wrong place."""
    fault = Fault("x", "air_leak", T0, T0 + 48 * HOUR, None, "steelco", None)
    places = {"air-s": frozenset({"air-s", "steelco"}), "air-c": frozenset({"air-c", "castco"})}
    right = event("air_leak", None, T0 + 5 * HOUR, zone="air-s")
    wrong = event("air_leak", None, T0 + 3 * HOUR, zone="air-c")
    [both] = score_events([wrong, right], [fault], zone_places=places).kinds
    assert (both.detected, both.false_events, both.median_delay_min) == (1, 1, 300.0)
    [only] = score_events([wrong], [fault], zone_places=places).kinds
    assert (only.detected, only.wrong_place, only.false_events) == (0, 1, 1)


def test_events_of_a_kind_no_fault_has_are_false_not_unseen() -> None:
    """The ground truth has a stuck meter and no leak; a leak event is false, in a row of its
    own with no faults."""
    stuck = Fault("s", "stuck_value", T0, T0 + 5 * HOUR, "m1", None, None)
    events = [
        event("stuck_value", "m1", T0 + HOUR),
        event("water_leak", None, T0 + 2 * HOUR, zone="water-d1"),
    ]
    rows = {k.kind: k.as_dict() for k in score_events(events, [stuck]).kinds}
    assert (rows["stuck_value"]["detected"], rows["stuck_value"]["false_events"]) == (1, 0)
    assert rows["water_leak"]["faults"] == 0
    assert rows["water_leak"]["false_events"] == 1
