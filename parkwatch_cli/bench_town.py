"""``parkwatch bench town``: a year of a small town's water network (two inflow meters and a
tank level, the shape of the public leak data issue 8 scores us on) with about twenty leaks,
replayed through the leak detector and scored leak by leak.

The scenario is ``simulators.town.year_scenario``. Its readings go through ``replay`` and
the engine as a live park's would (gaps are readings that never came). Scoring follows
``parkwatch score truth`` where it fits — a leak is found only by an event at its zone, its
delay is to the first such event's ``detected_at`` — with what overlapping leaks need
besides: each opening, and each open event's update whose estimate grew by a quarter over
its last message, tells of one leak — the latest-begun one running then (a repair's day of
grace included) that nothing told of yet; that leak is **reported** (with its delay). A
leak nothing told of is **covered** when an event was open over its onset, else
**missed**. An opening that tells of no leak is **false** when no leak ran then (the day
of grace not included), else **repeated** (a second event for a leak already reported);
false events are also counted in the worst 30 days. An event **spans** several leaks when
leaks began in its open time besides the one it opened for. Closings: an event closed while
a leak it covered still ran (its excess learnt as normal, or faded under a growing leak's
scatter), and events still open at the end.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.detectors.leaks import ZoneLeaks
from analytics.engine.engine import Advanced, ParkEngine
from analytics.replay import replay
from parkwatch.events import Event, State
from simulators.town import DAY_MS, METERS, TownYear, town_park, year_scenario

GRACE_MS = DAY_MS  # an event opened within a day of a repair is still that leak's


@dataclass
class _Readings:
    t_ms: npt.NDArray[np.int64]
    meter_code: npt.NDArray[np.int32]
    meters: Sequence[str]
    quantity_code: npt.NDArray[np.int32]
    quantities: Sequence[str]
    value: npt.NDArray[np.float64]
    line: npt.NDArray[np.int64]


def readings_of(year: TownYear) -> _Readings:
    """The scenario as replay rows: flows as ``flow_m3h``, the level as ``level_m``; a gap is
    readings that never came."""
    rows, slots = year.values.shape
    meter = np.repeat(np.arange(rows, dtype=np.int32), slots)
    quantity = np.where(meter == METERS.index("level"), 1, 0).astype(np.int32)
    value = year.values.reshape(-1)
    keep = np.isfinite(value)
    t = np.tile(year.t_ms, rows)
    order = np.argsort(t[keep], kind="stable")
    return _Readings(
        t[keep][order],
        meter[keep][order],
        list(METERS),
        quantity[keep][order],
        ["flow_m3h", "level_m"],
        value[keep][order],
        np.arange(2, int(keep.sum()) + 2, dtype=np.int64),
    )


@dataclass
class LeakScore:
    id: str
    kind: str
    m3h: float
    days: float
    verdict: str = "missed"  # "opened", "updated", "covered", "missed"
    delay_h: float | None = None


@dataclass
class TownReport:
    seed: int
    days: int
    leaks: list[LeakScore] = field(default_factory=list)
    events: int = 0
    false_events: int = 0
    false_most_in_30_days: int = 0  # the goal: at most one per zone per month
    repeated: int = 0  # events opened for a leak another message had already reported
    spanning: int = 0  # events over whose open time other leaks began
    closed_while_on: int = 0  # closed while a leak it covered still ran
    open_at_end: int = 0
    updates: int = 0
    seconds: float = 0.0

    def count(self, verdict: str) -> int:
        return sum(1 for s in self.leaks if s.verdict == verdict)

    def as_dict(self) -> dict[str, Any]:
        delays = [s.delay_h for s in self.leaks if s.delay_h is not None]
        return {
            "seed": self.seed,
            "days": self.days,
            "leaks": len(self.leaks),
            "reported": self.count("opened") + self.count("updated"),
            "by_new_event": self.count("opened"),
            "by_update": self.count("updated"),
            "covered": self.count("covered"),
            "missed": self.count("missed"),
            "median_delay_h": round(median(delays), 1) if delays else None,
            "within_a_day": sum(1 for d in delays if d <= 24),
            "events": self.events,
            "false_events": self.false_events,
            "false_per_30_days": round(self.false_events * 30 / self.days, 2),
            "false_most_in_30_days": self.false_most_in_30_days,
            "repeated": self.repeated,
            "spanning_several_leaks": self.spanning,
            "closed_while_a_leak_ran": self.closed_while_on,
            "open_at_end": self.open_at_end,
            "updates": self.updates,
            "seconds": round(self.seconds, 1),
            "per_leak": [
                {
                    "id": s.id,
                    "kind": s.kind,
                    "m3h": s.m3h,
                    "days": round(s.days, 1),
                    "verdict": s.verdict,
                    "delay_h": s.delay_h,
                }
                for s in self.leaks
            ],
        }


def score_year(year: TownYear, messages: list[Event], seed: int = 0) -> TownReport:
    """``messages``: every lifecycle message of the zone's leak events, in order."""
    end_ms = int(year.t_ms[-1])
    report = TownReport(seed, year.days)
    opened = [m for m in messages if m.state is State.OPENED]
    last: dict[str, Event] = {}
    for m in messages:
        last[m.id] = m
    report.events = len(opened)
    report.updates = sum(1 for m in messages if m.state is State.UPDATED)

    def span(e: Event) -> tuple[int, int]:
        end = last[e.id].end_ms
        return e.detected_at_ms, end_ms if end is None else end

    # One message tells of one leak: each opening, and each update whose estimate grew, is
    # credited to the latest-begun leak running then that no message told of yet. (Crediting
    # one message to every leak running would count a leak reported by a message about
    # another, or by re-estimation noise weeks after its onset.)
    scores: dict[str, LeakScore] = {}
    for leak in year.leaks:
        score = LeakScore(leak.id, leak.kind, leak.m3h, (leak.repair_ms - leak.onset_ms) / DAY_MS)
        scores[leak.id] = score
        report.leaks.append(score)
    tellings = sorted(
        [(e.detected_at_ms, "opened", e) for e in opened]
        + [
            (m.updated_at_ms or 0, "updated", m)
            for m in messages
            if m.state is State.UPDATED and _grew(m, messages)
        ],
        key=lambda t: t[0],
    )
    told_nothing: list[Event] = []
    for at, how, m in tellings:
        running = [
            x
            for x in year.leaks
            if x.onset_ms <= at < x.repair_ms + GRACE_MS and scores[x.id].verdict == "missed"
        ]
        if not running:
            if how == "opened":
                told_nothing.append(m)
            continue
        leak = max(running, key=lambda x: x.onset_ms)
        scores[leak.id].verdict = how
        scores[leak.id].delay_h = round((at - leak.onset_ms) / 3_600_000, 1)
    for leak in year.leaks:
        if scores[leak.id].verdict == "missed" and any(
            span(e)[0] < leak.onset_ms < span(e)[1] for e in opened
        ):
            scores[leak.id].verdict = "covered"
    false_at: list[int] = []
    for e in told_nothing:
        # false: it opened while no leak ran (a repaired leak's day of grace does not count:
        # its own report came before); else a second event for a leak already reported
        if any(x.onset_ms <= e.detected_at_ms < x.repair_ms for x in year.leaks):
            report.repeated += 1
        else:
            false_at.append(e.detected_at_ms)
    report.false_events = len(false_at)
    month = 30 * DAY_MS
    report.false_most_in_30_days = max(
        (sum(1 for b in false_at if a <= b < a + month) for a in false_at), default=0
    )
    for e in opened:
        a, b = span(e)
        if sum(1 for x in year.leaks if a < x.onset_ms < b) >= 1:
            report.spanning += 1
        closed = last[e.id].end_ms
        if closed is None:
            report.open_at_end += 1
        elif any(x.onset_ms <= a and closed < x.repair_ms - 3_600_000 for x in year.leaks):
            report.closed_while_on += 1
    return report


def _grew(update: Event, messages: list[Event]) -> bool:
    """The update's estimate is over the event's previous message's by a quarter (the event
    book's own threshold for an update worth a message): a leak of its own, or growth."""
    before = [m for m in messages if m.id == update.id and m is not update]
    previous = [m for m in before if (m.updated_at_ms or 0) < (update.updated_at_ms or 0)]
    if update.estimate is None or not previous or previous[-1].estimate is None:
        return False
    return update.estimate.value >= 1.25 * previous[-1].estimate.value


def run_town(
    days: int, seed: int, leaks: int | None = None, season: float = 0.15
) -> tuple[TownReport, TownYear, list[Event]]:
    year = year_scenario(days, seed, leaks, season)
    messages: list[Event] = []

    def take(adv: Advanced) -> None:
        messages.extend(e for e in adv.events if e.zone == "town")

    started = time.perf_counter()
    replay(ParkEngine(town_park(), [ZoneLeaks]), readings_of(year), on_advance=take)
    report = score_year(year, messages, seed)
    report.seconds = time.perf_counter() - started
    return report, year, messages


def format_report(reports: list[TownReport]) -> str:
    lines = []
    for r in reports:
        d = r.as_dict()
        lines.append(
            f"seed {r.seed}: {d['leaks']} leaks over {r.days} days — reported {d['reported']} "
            f"({d['by_new_event']} by a new event, {d['by_update']} by an update; "
            f"{d['within_a_day']} within a day, median {d['median_delay_h']} h), "
            f"covered by an open event {d['covered']}, missed {d['missed']}; "
            f"events {r.events}, false {r.false_events} ({d['false_per_30_days']} per 30 days, "
            f"at most {r.false_most_in_30_days} in 30 days), repeated {r.repeated}, "
            f"spanning several leaks {r.spanning}, closed while a leak ran {r.closed_while_on}, "
            f"open at the end {r.open_at_end} ({r.seconds:.0f} s)"
        )
        for s in r.leaks:
            delay = "-" if s.delay_h is None else f"{s.delay_h} h"
            lines.append(
                f"  {s.id} {s.kind:9s} {s.m3h:5.2f} m³/h {s.days:6.1f} d  {s.verdict:8s} {delay}"
            )
    return "\n".join(lines)


def main(
    days: int, seeds: list[int], leaks: int | None = None, season: float = 0.15
) -> tuple[str, dict[str, Any]]:
    reports = [run_town(days, seed, leaks, season)[0] for seed in seeds]
    total = {
        k: sum(int(r.as_dict()[k]) for r in reports)
        for k in (
            "leaks",
            "reported",
            "by_new_event",
            "by_update",
            "covered",
            "missed",
            "within_a_day",
            "events",
            "false_events",
            "repeated",
            "spanning_several_leaks",
            "closed_while_a_leak_ran",
            "open_at_end",
        )
    }
    summary = {
        "days": days,
        "seeds": seeds,
        "season": season,
        "total": total,
        "runs": [r.as_dict() for r in reports],
    }
    return format_report(reports), summary
