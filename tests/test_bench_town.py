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
