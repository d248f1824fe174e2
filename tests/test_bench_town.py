"""``parkwatch bench town``'s scoring by hand: leaks reported by a new event or by an update
whose estimate grew, covered by an open event that said nothing new, missed; false events."""

from __future__ import annotations

import numpy as np

from parkwatch.events import Estimate, Event, Family, Severity, State
from parkwatch_cli.bench_town import score_year
from simulators.town import DAY_MS, START_MS, TownLeak, TownYear

H = 3_600_000


def _at(day: float) -> int:
    return START_MS + int(day * DAY_MS)


def _leak(name: str, on: float, off: float) -> TownLeak:
    return TownLeak(name, "leak", _at(on), _at(off), 4.0, 0.0)


def _event(at: float, value: float) -> Event:
    return Event(
        id=f"e{at}",
        kind="water_leak",
        family=Family.LEAK,
        state=State.OPENED,
        park="net",
        meter=None,
        zone="town",
        start_ms=_at(at),
        detected_at_ms=_at(at),
        end_ms=None,
        severity=Severity.MINOR,
        estimate=Estimate(value, "m³/h"),
        updated_at_ms=_at(at),
    )


def test_leaks_are_scored_by_new_events_updates_and_what_an_open_event_covers() -> None:
    """L1 (days 30–60) opens an event 6 h in, whose estimate grows from 4 to 9 m³/h 12 h
    after L2 began (day 40); L3 (day 45) moves it by 10 % only: covered. The event closes on
    day 61. L4 (day 80–90) draws nothing: missed. An event on day 70 is false, open a day."""
    days = 100
    t = START_MS + np.arange(days * 288, dtype=np.int64) * 300_000
    leaks = [_leak("L1", 30, 60), _leak("L2", 40, 60), _leak("L3", 45, 60), _leak("L4", 80, 90)]
    year = TownYear(np.zeros((3, t.size)), t, leaks, [], days)
    first = _event(30.25, 4.0)
    grew = first.with_state(State.UPDATED, estimate=Estimate(9.0, "m³/h"), updated_at_ms=_at(40.5))
    small = grew.with_state(State.UPDATED, estimate=Estimate(9.9, "m³/h"), updated_at_ms=_at(46))
    closed = first.with_state(State.CLOSED, end_ms=_at(61), updated_at_ms=_at(61))
    false = _event(70, 2.0)
    messages = [first, grew, small, closed, false, false.with_state(State.CLOSED, end_ms=_at(71))]
    report = score_year(year, messages)
    verdicts = {s.id: (s.verdict, s.delay_h) for s in report.leaks}
    assert verdicts["L1"] == ("opened", 6.0)
    assert verdicts["L2"] == ("updated", 12.0)
    assert verdicts["L3"] == ("covered", None)  # 9.9 is 10 % over the last message's 9
    assert verdicts["L4"] == ("missed", None)
    assert report.false_events == 1
    assert report.spanning == 1  # L2 and L3 began while it was open
    assert report.open_at_end == 0


def test_one_message_tells_of_one_leak_and_an_event_after_a_repair_is_false() -> None:
    """L1 (days 10–20) and L2 (days 12–20) both run when the only event opens (day 12.5): it
    tells of L2, the latest begun; L1 is missed (no event was open over its onset either).
    Its update on day 30 (estimate 4 → 8) comes when no leak runs: it tells of nothing.
    L3 (days 40–50) opens an event on day 40.25; a second event on day 45 is a repeat; an
    event on day 50.5, within the day of grace after L3's repair, is false, as are two on
    days 60 and 85: at most 2 false in 30 days (days 50.5 and 60, or 60 and 85)."""
    days = 100
    t = START_MS + np.arange(days * 288, dtype=np.int64) * 300_000
    leaks = [_leak("L1", 10, 20), _leak("L2", 12, 20), _leak("L3", 40, 50)]
    year = TownYear(np.zeros((3, t.size)), t, leaks, [], days)
    first = _event(12.5, 4.0)
    late = first.with_state(State.UPDATED, estimate=Estimate(8.0, "m³/h"), updated_at_ms=_at(30))
    closed = first.with_state(State.CLOSED, end_ms=_at(31), updated_at_ms=_at(31))
    messages = [first, late, closed]
    for day in (40.25, 45, 50.5, 60, 85):
        e = _event(day, 3.0)
        messages += [e, e.with_state(State.CLOSED, end_ms=_at(day + 0.2))]
    messages.sort(key=lambda m: m.updated_at_ms or 0)
    report = score_year(year, messages)
    verdicts = {s.id: (s.verdict, s.delay_h) for s in report.leaks}
    assert verdicts["L2"] == ("opened", 12.0)
    assert verdicts["L1"] == ("missed", None)
    assert verdicts["L3"] == ("opened", 6.0)
    assert report.repeated == 1
    assert report.false_events == 3
    assert report.false_most_in_30_days == 2
