"""``score truth``: events against a simulator's ground truth, fault by fault."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from analytics.detectors import DETECTORS
from analytics.scoring.ground_truth import (
    ACCEPTED,
    UNSCORED_KINDS,
    Fault,
    load_faults,
    score_events,
    zone_meters,
    zone_places,
)
from parkwatch.events import Event, Family, Severity, State
from parkwatch.site import Park
from parkwatch_cli.app import app

DEMO = Path(__file__).resolve().parents[1] / "simulators" / "parks" / "demo.yaml"

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


def test_a_fault_missed_while_an_event_found_another_is_not_elsewhere() -> None:
    """Leaks in d1 and d3 from T0 to T0 + 48 h, one leak event, in d1 at 5 h: d1's leak is
    found, d3's missed — but the event was true, so it sent no one to the wrong place: not
    elsewhere. A second event, in d2 at 6 h, is false, and d3's leak was missed with it on:
    elsewhere."""
    faults = [leak("water-d1", T0, T0 + 48 * HOUR, "a"), leak("water-d3", T0, T0 + 48 * HOUR, "b")]
    d1 = event("water_leak", None, T0 + 5 * HOUR, zone="water-d1")
    [score] = score_events([d1], faults).kinds
    assert (score.detected, score.wrong_place, score.false_events) == (1, 0, 0)
    assert (score.missed_ids, score.wrong_place_ids) == (["b"], [])
    d2 = event("water_leak", None, T0 + 6 * HOUR, zone="water-d2")
    [score] = score_events([d1, d2], faults).kinds
    assert (score.detected, score.wrong_place, score.false_events) == (1, 1, 1)
    assert score.wrong_place_ids == ["b"]
    # the same for two stuck meters at once, one of them found
    stuck = [
        Fault("s1", "stuck_value", T0, T0 + 5 * HOUR, "m1", None, None),
        Fault("s2", "stuck_value", T0, T0 + 5 * HOUR, "m2", None, None),
    ]
    [score] = score_events([event("stuck_value", "m1", T0 + HOUR)], stuck).kinds
    assert (score.detected, score.wrong_place, score.false_events) == (1, 0, 0)


def test_the_report_names_false_events_their_places_and_leaks_a_meter_fault_explains() -> None:
    """A 14-day history: pharmco-water (a meter of zone water-d3) under-registers from T0 to
    T0 + 5 d; a burst event in water-d3 at 3 h is false (no leak there) and a meter fault in its
    zone explains it; two false leak events in water-d2 (at 1 d and 3 d, no meter fault there)
    and a false stuck event on m9 (each closed an hour after it opened). By place: water-d2 2,
    water-d3 1, m9 1; per 30 days over 14 days: 2 · 30 / 14 = 4.29 and 1 · 30 / 14 = 2.14. A
    burst in water-d3 at 12 h while a leak is on there is true: not counted at all."""
    under = Fault("u", "meter_under_registration", T0, T0 + 120 * HOUR, "pharmco-water", None, None)
    real = leak("water-d3", T0 + 10 * HOUR, T0 + 20 * HOUR, "w")
    meters = {"water-d3": frozenset({"water-d3", "foodco-water", "pharmco-water"})}
    meters["water-d2"] = frozenset({"water-d2", "elecco-water", "autoparts-water"})

    def leak_event(kind: str, zone: str, at: int) -> Event:
        closed = replace(event(kind, None, at, zone=zone), end_ms=at + HOUR)
        return replace(closed, family=Family.LEAK, id=f"{zone}@{at}")

    events = [
        leak_event("water_burst", "water-d3", T0 + 3 * HOUR),
        leak_event("water_leak", "water-d2", T0 + 24 * HOUR),
        leak_event("water_leak", "water-d2", T0 + 72 * HOUR),
        replace(event("stuck_value", "m9", T0 + 30 * HOUR), end_ms=T0 + 31 * HOUR),
        leak_event("water_burst", "water-d3", T0 + 12 * HOUR),
    ]
    report = score_events([*events], [under, real], zone_meters=meters, history_days=14.0)
    doc = report.as_dict()
    rows = {k["kind"]: k for k in doc["kinds"]}
    assert rows["water_burst"]["false_ids"] == [f"water-d3@{T0 + 3 * HOUR}"]
    assert rows["water_leak"]["false_ids"] == [
        f"water-d2@{T0 + 24 * HOUR}",
        f"water-d2@{T0 + 72 * HOUR}",
    ]
    assert rows["water_leak"]["detected"] == 1  # the burst at 12 h found the leak
    assert rows["stuck_value"]["false_ids"] == [events[3].id]
    assert doc["false_by_place"] == {"water-d3": 1, "water-d2": 2, "m9": 1}
    assert doc["history_days"] == 14.0
    assert doc["false_per_30_days_by_place"] == {"water-d3": 2.14, "water-d2": 4.29, "m9": 2.14}
    assert doc["leak_for_meter_fault"] == 1
    assert doc["leak_for_meter_fault_ids"] == [f"water-d3@{T0 + 3 * HOUR}"]
    table = report.table()
    assert "false events by place in 14 days: water-d2 2 (4.29/30 d)" in table
    assert "a meter fault in their zone explains: 1" in table
    # the history's length unknown: counts, no rate
    assert score_events(events, [under, real]).as_dict()["false_per_30_days_by_place"] is None


def test_every_kind_a_detector_raises_is_scored_or_named_apart() -> None:
    """A gas leak, a steam loss and a counter jump with no fault are false in rows of their
    own, not counted apart; baseline deviations and coincident peaks, which no ground truth
    judges, are counted apart; no detector raises a kind the scorer does not know."""
    events = [
        event("gas_leak", None, T0, zone="chemco-gas"),
        event("steam_loss", None, T0, zone="steam-1"),
        event("counter_jump", "m1", T0),
        event("baseline_deviation", "m1", T0),
        event("coincident_peak", None, T0, zone="park"),
    ]
    report = score_events(events, [])
    assert {k.kind: k.false_events for k in report.kinds} == {
        "counter_jump": 1,
        "gas_leak": 1,
        "steam_loss": 1,
    }
    assert report.other_events == {"baseline_deviation": 1, "coincident_peak": 1}
    raised = {kind for detector in DETECTORS for kind in detector.kinds}
    own = {kinds[0] for kinds in ACCEPTED.values()}
    assert raised - own == set(UNSCORED_KINDS)


def test_an_event_open_when_the_fault_began_finds_it_at_once() -> None:
    """A leak event in d1 opened at T0 − 2 h and still open (or closed at T0 + 1 h) when a
    leak begins there at T0: the alert was up at the right place all along — found, time to
    detect 0, the event not false. One closed at T0 − 1 h found nothing and is false."""
    fault = leak("water-d1", T0, T0 + 48 * HOUR)
    before = event("water_leak", None, T0 - 2 * HOUR, zone="water-d1")
    for still in (before, replace(before, end_ms=T0 + HOUR)):
        [score] = score_events([still], [fault]).kinds
        assert (score.detected, score.false_events, score.median_delay_min) == (1, 0, 0.0)
    [score] = score_events([replace(before, end_ms=T0 - HOUR)], [fault]).kinds
    assert (score.detected, score.false_events) == (0, 1)


def test_a_clock_still_wrong_at_the_historys_end_explains_no_gap_there(tmp_path: Path) -> None:
    """gw-b's clock runs behind from T0 and is never set right (its ground truth's end null,
    so it lasts to the history's end, T0 + 10 h). A brief gap on b1 (10 min, closed) at
    T0 + 9 h 55 min is near the fault's end, but no clock was set right there: false. One at
    T0 + 5 min, where the clock went wrong, is the skew's doing; a gap still open at the
    history's end is never one."""
    end = T0 + 10 * HOUR
    truth = tmp_path / "ground_truth.jsonl"
    truth.write_text(
        json.dumps({"id": 0, "kind": "clock_skew", "gateway": "gw-b", "start": T0, "end": None})
        + "\n"
    )
    faults = load_faults(truth, end)
    gap = replace(event("comm_loss", "b1", T0 + 5 * MIN), end_ms=T0 + 15 * MIN)
    late = replace(event("comm_loss", "b1", end - 5 * MIN), end_ms=end + 5 * MIN)
    still = event("comm_loss", "b1", end - 5 * MIN)  # open (end None) at the history's end
    for ev, false in ((gap, 0), (late, 1), (still, 1)):
        report = score_events([ev], faults, {"b1": "gw-b"}, history_end_ms=end)
        assert {k.kind: k.false_events for k in report.kinds}["comm_loss"] == false, ev


def test_a_meters_event_finds_its_gateways_fault() -> None:
    """Batches from gw-a come late from T0 to T0 + 2 h; a late-batches event on a1 (a meter
    on gw-a) at 20 min finds it (20 min); one on c1 (gw-c) at 10 min is false, and before the
    one on a1 came, it alone would have left the fault elsewhere."""
    fault = Fault("g", "late_batches", T0, T0 + 2 * HOUR, None, None, "gw-a")
    gateways_of = {"a1": "gw-a", "c1": "gw-c"}
    a1 = event("late_batches", "a1", T0 + 20 * MIN)
    c1 = event("late_batches", "c1", T0 + 10 * MIN)
    [score] = score_events([c1, a1], [fault], gateways_of).kinds
    assert (score.detected, score.median_delay_min, score.false_events) == (1, 20.0, 1)
    assert score.false_ids == [c1.id]
    [score] = score_events([c1], [fault], gateways_of).kinds
    assert (score.detected, score.wrong_place, score.false_events) == (0, 1, 1)


def test_zone_places_of_the_demo_park() -> None:
    """The demo park's zones: a district's meters belong to several enterprises (and the
    park's own district meter), so it stands for itself alone; steelco's pipes and air
    network, autoparts' air network and chemco's gas pipes stand for their enterprise too,
    and an air network for its header meter; the trunk main's meters are all the park's."""
    places = zone_places(Park.from_yaml(DEMO))
    assert places == {
        "park-water-main": {"park-water-main", "park"},
        "water-d1": {"water-d1"},
        "water-d2": {"water-d2"},
        "water-d3": {"water-d3"},
        "steelco-water": {"steelco-water", "steelco"},
        "steelco-air": {"steelco-air", "steelco-air-header", "steelco"},
        "autoparts-air": {"autoparts-air", "autoparts"},
        "park-gas-main": {"park-gas-main"},
        "chemco-gas": {"chemco-gas", "chemco"},
    }
    assert zone_meters(Park.from_yaml(DEMO))["water-d3"] == {
        "water-d3",
        "foodco-water",
        "pharmco-water",
    }


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def test_score_truth_on_a_small_file_set(tmp_path: Path) -> None:
    """``parkwatch score truth`` as a user runs it, on the demo park: the ground truth has
    an air leak aimed at steelco (T0 to T0 + 2 d) and a late gateway (gw-pharmco, T0 + 1 h to
    T0 + 3 h); the events: an air leak in zone steelco-air at 6 h (found: 360 min), a late
    batches event on pharmco-water (a meter on gw-pharmco) at 1 h 30 min (found: 30 min) and a
    water leak in water-d2 at 1 d, which is false; history.json beside the ground truth gives
    4 days: 7.5 false events per 30 days in water-d2. Without --park it refuses to score."""
    truth = tmp_path / "ground_truth.jsonl"
    truth.write_text(
        json.dumps({"id": 0, "kind": "air_leak", "zone": "steelco", "start": T0,
                    "end": T0 + 48 * HOUR}) + "\n"
        + json.dumps({"id": 1, "kind": "late_batches", "gateway": "gw-pharmco",
                      "start": T0 + HOUR, "end": T0 + 3 * HOUR}) + "\n"
    )  # fmt: skip
    (tmp_path / "history.json").write_text(
        json.dumps({"start_ms": T0 - 24 * HOUR, "end_ms": T0 + 72 * HOUR})
    )

    def line(kind: str, family: str, at: int, zone: str | None, meter: str | None) -> str:
        return json.dumps(
            {"id": f"{kind}-{at}", "kind": kind, "family": family, "state": "opened",
             "park": "lj-demo", "zone": zone, "meter": meter, "start": _iso(at),
             "detected_at": _iso(at), "end": None, "severity": "minor", "estimate": None,
             "evidence": {}}
        )  # fmt: skip

    events = tmp_path / "EVENTS.jsonl"
    events.write_text(
        line("air_leak", "leak", T0 + 6 * HOUR, "steelco-air", None) + "\n"
        + line("late_batches", "meter_fault", T0 + 90 * MIN, None, "pharmco-water") + "\n"
        + line("water_leak", "leak", T0 + 24 * HOUR, "water-d2", None) + "\n"
    )  # fmt: skip
    args = ["score", "truth", "--events", str(events), "--truth", str(truth)]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2
    assert "--park" in refused.output
    result = CliRunner().invoke(app, [*args, "--park", str(DEMO), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    rows = {k["kind"]: k for k in doc["kinds"]}
    assert (rows["air_leak"]["detected"], rows["air_leak"]["median_time_to_detect_min"]) == (
        1,
        360.0,
    )
    assert (
        rows["late_batches"]["detected"],
        rows["late_batches"]["median_time_to_detect_min"],
    ) == (
        1,
        30.0,
    )
    assert (rows["water_leak"]["faults"], rows["water_leak"]["false_ids"]) == (
        0,
        [f"water_leak-{T0 + 24 * HOUR}"],
    )
    assert doc["history_days"] == 4.0
    assert doc["false_per_30_days_by_place"] == {"water-d2": 7.5}
    table = CliRunner().invoke(app, [*args, "--park", str(DEMO), "--days", "30"])
    assert "false events by place in 30 days: water-d2 1 (1/30 d)" in table.stdout
