"""Scoring events against a simulator's ground truth, fault by fault.

For every fault kind: how many faults, how many were detected — an event of an accepted kind at
the fault's place (its meter, zone or gateway) raised while the fault was on, or within
``grace_ms`` after it ended (a point fault such as a counter reset is "on" at its instant), or
already open when it began (found with no delay) — the time from the fault's start to the first
such event's ``detected_at``, how many events each fault drew (a leak closed and reopened is one
fault, several events), the faults missed where an event of theirs fell elsewhere and was false
(wrong place), and the false events: events of the fault kind's own kind that match no fault of
a kind accepting them, in time and at its place (a kind with events and no fault is scored too),
with their ids and places. For the whole history: false events by place (per 30 days when the
history's length is known) and the false leak events a meter fault in their zone explains (issue
8: no leak reported for a meter fault). Events of kinds no fault maps to are counted apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from parkwatch.events import Event, Family
from parkwatch.site import Park

# fault kind → event kinds that detect it (the first is the exact one)
ACCEPTED: dict[str, tuple[str, ...]] = {
    "demand_peak": ("demand_peak",),
    "counter_reset": ("counter_reset",),
    "counter_rollover": ("counter_rollover",),
    "meter_replacement": ("meter_replacement",),
    "stuck_value": ("stuck_value",),
    "word_swap": ("word_swap",),
    "comm_loss": ("comm_loss",),
    # a clock behind and late delivery look alike from the receiving end
    "clock_skew": ("clock_skew", "late_batches"),
    "late_batches": ("late_batches", "clock_skew"),
    "duplicate_batches": ("duplicate_batches",),
    # leaks: a burst found as it grows, or a leak as a step, is still found
    "water_burst": ("water_burst", "water_leak"),
    "water_leak": ("water_leak", "water_burst"),
    "air_leak": ("air_leak",),
    # no simulated fault is of these kinds (yet): mapped to themselves, so that their events
    # are scored, false when no fault explains them, rather than counted apart
    "gas_leak": ("gas_leak",),
    "steam_loss": ("steam_loss",),
    "counter_jump": ("counter_jump",),
    "meter_under_registration": ("meter_under_registration",),
    "flue_temp_rise": ("flue_temp_rise",),
    "cooling_temp_rise": ("cooling_temp_rise",),
    "heat_recovery_bypass": ("heat_recovery_bypass",),
}
# the detectors' other kinds report consumption and a park's monthly high, not faults: no ground
# truth says when they are right, so their events are counted apart, by kind
UNSCORED_KINDS = frozenset({"baseline_deviation", "coincident_peak", "level_shift"})

# fault kinds where the measurement is wrong, not the consumption: a leak event in a zone one of
# whose meters has such a fault is counted apart too (``leak_for_meter_fault``)
METER_FAULT_KINDS = frozenset(
    {
        "meter_under_registration",
        "counter_reset",
        "counter_rollover",
        "meter_replacement",
        "stuck_value",
        "word_swap",
        "comm_loss",
        "clock_skew",
        "late_batches",
        "duplicate_batches",
    }
)

# event kind → fault kinds that explain it when they touch the same meter at that time: such an
# event is true, though not the fault's own kind (a replaced meter is silent while it is swapped)
EXPLAINED_BY: dict[str, tuple[str, ...]] = {
    # (a gateway's fault touches the gateway and its meters) a swapped register's values can
    # be refused as implausible, as ingest refuses them: slots without a usable reading; a
    # gateway's clock set right after running behind leaves a hole in its data times as long
    # as the skew was; a gateway whose batches come late sends nothing until the first one
    # arrives, and at the end its new batches overtake the queued ones (live, ``seq`` holds the
    # window for those; a replay file has no ``seq``, so they come too late to be analysed)
    "comm_loss": ("meter_replacement", "word_swap", "clock_skew", "late_batches"),
    "counter_reset": ("meter_replacement", "word_swap"),
    "counter_rollover": ("word_swap",),
    "counter_jump": ("word_swap",),
    # a swapped register's counter values can fall outside their plausible range and be
    # refused: the gap and the restart after it are the swap's doing
    "meter_replacement": ("word_swap",),
}

# fault kinds that explain an event only this close to where they begin or end: a clock set
# wrong or set right jumps its gateway's data times by the skew (at most ten minutes), and the
# brief hole that leaves is all it explains — not a long silence that begins there
EXPLAINS_AT_EDGES_MS: dict[str, int] = {"clock_skew": 15 * 60_000}

POINT_GRACE_MS = 30 * 60_000  # a point fault (reset, rollover) counts as found this long after
DAY_MS = 86_400_000
STILL_ON_MS = 2**62  # the end of a fault still on when its ground truth was written


@dataclass(frozen=True)
class Fault:
    id: str
    kind: str
    start_ms: int
    end_ms: int  # for point faults, == start
    meter: str | None
    zone: str | None
    gateway: str | None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], history_end_ms: int | None) -> Fault:
        """``end`` null: the fault was still on when the run stopped (a live run's ground
        truth), so it lasts to ``history_end_ms`` when known, else without end."""
        end = doc.get("end")
        if end is None:
            end = STILL_ON_MS if history_end_ms is None else history_end_ms
        return cls(
            str(doc.get("id")),
            str(doc["kind"]),
            int(doc["start"]),
            int(end),
            doc.get("meter"),
            doc.get("zone"),
            doc.get("gateway"),
        )

    @property
    def place(self) -> str:
        return self.meter or self.zone or f"gateway:{self.gateway}"


@dataclass
class KindScore:
    kind: str
    faults: int = 0
    detected: int = 0  # found at the fault's place: a detection needs the place
    right_place: int = 0  # kept for readers of the report; equals ``detected``
    wrong_place: int = 0  # not found, and an event of its in its time elsewhere was false
    events: int = 0  # events at the faults' places in their time, summed over the faults
    repeated: int = 0  # faults found by two or more events (a leak closed and reopened)
    false_events: int = 0
    false_in_time_elsewhere: int = 0  # of ``false_events``: in a fault's time, not its place
    delays_ms: list[int] = field(default_factory=list)
    missed_ids: list[str] = field(default_factory=list)  # every fault not detected
    wrong_place_ids: list[str] = field(default_factory=list)
    false_ids: list[str] = field(default_factory=list)  # the false events' ids

    @property
    def median_delay_min(self) -> float | None:
        return round(median(self.delays_ms) / 60_000, 1) if self.delays_ms else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "faults": self.faults,
            "detected": self.detected,
            "missed": self.faults - self.detected,
            "right_place": self.right_place,
            "wrong_place": self.wrong_place,
            "events": self.events,
            "repeated": self.repeated,
            "false_events": self.false_events,
            "false_in_time_elsewhere": self.false_in_time_elsewhere,
            "median_time_to_detect_min": self.median_delay_min,
            "missed_ids": self.missed_ids,
            "wrong_place_ids": self.wrong_place_ids,
            "false_ids": self.false_ids,
        }


@dataclass
class TruthReport:
    kinds: list[KindScore]
    other_events: dict[str, int]  # event kinds no fault kind maps to
    false_by_place: dict[str, int] = field(default_factory=dict)  # zone or meter → false events
    history_days: float | None = None  # the history's length, when known
    leak_for_meter_fault_ids: list[str] = field(default_factory=list)

    def false_per_30_days(self) -> dict[str, float] | None:
        """Each place's false events per 30 days (issue 8's goal: at most one per zone per
        month), or None when the history's length is not known."""
        if not self.history_days:
            return None
        scale = 30.0 / self.history_days
        return {place: round(n * scale, 2) for place, n in self.false_by_place.items()}

    def as_dict(self) -> dict[str, Any]:
        return {
            "kinds": [k.as_dict() for k in self.kinds],
            "other_events": self.other_events,
            "history_days": self.history_days,
            "false_by_place": self.false_by_place,
            "false_per_30_days_by_place": self.false_per_30_days(),
            "leak_for_meter_fault": len(self.leak_for_meter_fault_ids),
            "leak_for_meter_fault_ids": self.leak_for_meter_fault_ids,
        }

    def table(self) -> str:
        lines = [
            f"{'fault kind':<24} {'faults':>6} {'found':>6} {'missed':>6} {'elsewhere':>9} "
            f"{'events':>6} {'repeated':>8} {'false':>6} {'median min':>10}"
        ]
        for k in self.kinds:
            delay = "-" if k.median_delay_min is None else f"{k.median_delay_min:g}"
            lines.append(
                f"{k.kind:<24} {k.faults:>6} {k.detected:>6} {k.faults - k.detected:>6} "
                f"{k.wrong_place:>9} {k.events:>6} {k.repeated:>8} {k.false_events:>6} "
                f"{delay:>10}"
            )
        lines.append(
            "found: an event at the fault's place in its time (or open when it began); "
            "elsewhere: missed, and a false event of its kind fell in its time at another place"
        )
        days = "" if self.history_days is None else f" in {self.history_days:g} days"
        if self.false_by_place:
            rates = self.false_per_30_days() or {}
            shown = ", ".join(
                f"{place} {n}" + (f" ({rates[place]:g}/30 d)" if place in rates else "")
                for place, n in sorted(self.false_by_place.items(), key=lambda x: (-x[1], x[0]))
            )
            lines.append(f"false events by place{days}: {shown}")
        else:
            lines.append(f"false events by place{days}: none")
        if self.leak_for_meter_fault_ids:
            lines.append(
                f"false leak events a meter fault in their zone explains: "
                f"{len(self.leak_for_meter_fault_ids)}"
            )
        if self.other_events:
            other = ", ".join(f"{kind} {n}" for kind, n in sorted(self.other_events.items()))
            lines.append(f"events of other kinds: {other}")
        return "\n".join(lines)


def score_events(
    events: Sequence[Event],
    faults: Sequence[Fault],
    gateways_of: Mapping[str, str] | None = None,
    accepted: Mapping[str, tuple[str, ...]] | None = None,
    grace_ms: int = POINT_GRACE_MS,
    zone_places: Mapping[str, frozenset[str]] | None = None,
    zone_meters: Mapping[str, frozenset[str]] | None = None,
    history_end_ms: int | None = None,
    history_days: float | None = None,
) -> TruthReport:
    """``gateways_of``: meter → gateway, so that a meter's event can place a gateway fault;
    ``zone_places``: a park zone → the places it stands for (its feed meter, its enterprise),
    so that a zone's event can place a fault the simulator aimed at those; ``zone_meters``: a
    zone → its meters, so that a leak event there can be told a meter fault's doing;
    ``history_end_ms``: where the history stops (a fault still on there was not over);
    ``history_days``: its length, for false events per 30 days."""
    table = dict(ACCEPTED if accepted is None else accepted)
    gateways_of = gateways_of or {}
    places = zone_places or {}

    def finds(event: Event, fault: Fault) -> bool:
        return _on_during(event, fault, grace_ms) and _right_place(
            event, fault, gateways_of, places
        )

    def explained(event: Event, fault: Fault) -> bool:
        # raised after the fault began (a fault does not cause what was there before it)
        return (
            fault.kind in EXPLAINED_BY.get(event.kind, ())
            and _right_place(event, fault, gateways_of, places)
            and _in_time(event, fault, grace_ms)
            and _near_edge(event, fault, history_end_ms)
        )

    def fits(event: Event) -> bool:
        """The event matches a fault of a kind accepting it, or a fault explains it."""
        return any(event.kind in table.get(f.kind, ()) and finds(event, f) for f in faults) or any(
            explained(event, f) for f in faults
        )

    mapped = {k for kinds in table.values() for k in kinds}
    false = [not fits(e) if e.kind in mapped else False for e in events]

    # a kind with events and no fault is scored too, or its events, all false, would go unseen
    scored_kinds = sorted(({f.kind for f in faults} | {e.kind for e in events}) & set(table))
    report: list[KindScore] = []
    for kind in scored_kinds:
        score = KindScore(kind)
        wanted = set(table[kind])
        candidates = [i for i, e in enumerate(events) if e.kind in wanted]
        for fault in (f for f in faults if f.kind == kind):
            score.faults += 1
            in_time = [i for i in candidates if _on_during(events[i], fault, grace_ms)]
            hits = [
                events[i] for i in in_time if _right_place(events[i], fault, gateways_of, places)
            ]
            if not hits:
                # an operator sent elsewhere has not found the fault; an event elsewhere that
                # found another fault of the kind sent no one astray
                score.missed_ids.append(fault.id)
                if any(false[i] for i in in_time):
                    score.wrong_place += 1
                    score.wrong_place_ids.append(fault.id)
                continue
            score.detected += 1
            score.right_place += 1
            first = min(hits, key=lambda e: e.detected_at_ms)
            # an event open when the fault began had an alert up at its place all along
            score.delays_ms.append(max(0, first.detected_at_ms - fault.start_ms))
            score.events += len(hits)
            if len(hits) > 1:
                score.repeated += 1
        # false events: of the kind's own kind, matching no fault of a kind accepting them (in
        # time and place) and explained by no fault (EXPLAINED_BY)
        for i, event in enumerate(events):
            if event.kind != table[kind][0] or not false[i]:
                continue
            score.false_events += 1
            score.false_ids.append(event.id)
            if any(
                event.kind in table.get(f.kind, ()) and _on_during(event, f, grace_ms)
                for f in faults
            ):
                score.false_in_time_elsewhere += 1
        report.append(score)
    own = {table[kind][0] for kind in scored_kinds}
    by_place: dict[str, int] = {}
    for_meter_fault: list[str] = []
    for i, event in enumerate(events):
        if not false[i] or event.kind not in own:
            continue
        place = _place(event)
        by_place[place] = by_place.get(place, 0) + 1
        if event.family is Family.LEAK and _meter_fault_in_zone(
            event, faults, zone_meters or {}, gateways_of, grace_ms
        ):
            for_meter_fault.append(event.id)
    other: dict[str, int] = {}
    for event in events:
        if event.kind not in mapped:
            other[event.kind] = other.get(event.kind, 0) + 1
    return TruthReport(report, other, by_place, history_days, for_meter_fault)


def _place(event: Event) -> str:
    return event.zone or event.meter or "?"


def _meter_fault_in_zone(
    event: Event,
    faults: Sequence[Fault],
    zone_meters: Mapping[str, frozenset[str]],
    gateways_of: Mapping[str, str],
    grace_ms: int,
) -> bool:
    """A meter of the event's zone (or its gateway) had a meter fault when it was raised."""
    meters = zone_meters.get(event.zone or "", frozenset())
    gateways = {gateways_of[m] for m in meters if m in gateways_of}
    return any(
        f.kind in METER_FAULT_KINDS
        and (f.meter in meters or (f.meter is None and f.gateway in gateways))
        and _in_time(event, f, grace_ms)
        for f in faults
    )


def _in_time(event: Event, fault: Fault, grace_ms: int) -> bool:
    if event.detected_at_ms < fault.start_ms:
        return False
    end = fault.end_ms if fault.end_ms > fault.start_ms else fault.start_ms
    return event.detected_at_ms <= end + grace_ms


def _on_during(event: Event, fault: Fault, grace_ms: int) -> bool:
    """Raised in the fault's time, or raised before it and still open when it began."""
    if event.detected_at_ms < fault.start_ms:
        return event.end_ms is None or event.end_ms >= fault.start_ms
    return _in_time(event, fault, grace_ms)


def _near_edge(event: Event, fault: Fault, history_end_ms: int | None) -> bool:
    margin = EXPLAINS_AT_EDGES_MS.get(fault.kind)
    if margin is None:
        return True
    # an event still open runs to the history's end: not brief, whatever its start
    if event.end_ms is None or event.end_ms - event.start_ms > margin:
        return False
    edges = [fault.start_ms]
    # a fault still on at the history's end (its end is the history's) was never set right:
    # no edge there
    if history_end_ms is None or fault.end_ms < history_end_ms:
        edges.append(fault.end_ms)
    return any(abs(event.detected_at_ms - edge) <= margin for edge in edges)


def _right_place(
    event: Event,
    fault: Fault,
    gateways_of: Mapping[str, str],
    zone_places: Mapping[str, frozenset[str]] | None = None,
) -> bool:
    if fault.meter is not None:
        return event.meter == fault.meter
    if fault.zone is not None:
        if event.zone is not None and fault.zone in (zone_places or {}).get(event.zone, ()):
            return True
        return event.zone == fault.zone or event.zone == f"enterprise:{fault.zone}"
    gateway = f"gateway:{fault.gateway}"
    if event.zone == gateway:
        return True
    return event.meter is not None and gateways_of.get(event.meter) == fault.gateway


def zone_places(park: Park) -> dict[str, frozenset[str]]:
    """Each zone of the park → the places a fault in it may be named by: the zone, its feed
    meter when it has one, and the enterprise all its meters belong to when they do."""
    meters = {m.id: m for m in park.iter_meters()}
    out: dict[str, frozenset[str]] = {}
    for zone in park.zones:
        names = {zone.id}
        if len(zone.inflow) == 1:
            names.add(zone.inflow[0])
        owners = {meters[m].enterprise for m in zone.meter_ids if m in meters}
        if len(owners) == 1:
            names.add(next(iter(owners)))
        out[zone.id] = frozenset(names)
    return out


def zone_meters(park: Park) -> dict[str, frozenset[str]]:
    """Each zone of the park → its meters (inflow, outflow, tank levels)."""
    return {zone.id: frozenset(zone.meter_ids) for zone in park.zones}


def load_faults(path: Path, history_end_ms: int | None = None) -> list[Fault]:
    faults = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                faults.append(Fault.from_json(json.loads(line), history_end_ms))
    return faults


def load_events(path: Path) -> list[Event]:
    """Events of an EVENTS.jsonl (each event's last state, or every lifecycle message)."""
    latest: dict[str, Event] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                event = Event.from_json(json.loads(line))
                latest[event.id] = event
    return sorted(latest.values(), key=lambda e: e.detected_at_ms)


def merge_accepted(*tables: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """ACCEPTED extended by other detector families' tables."""
    out = dict(ACCEPTED)
    for table in tables:
        out.update({k: tuple(v) for k, v in table.items()})
    return out
