"""The event book: findings in, events with a lifecycle out.

At most one event is open per kind and subject (a meter or a zone). The first active finding
opens it (``detected_at`` = the finding's data time); later ones update it when its severity
changes, or its estimate moves by a quarter or more and the last message is at least
``update_every_ms`` of data time old — so an operator sees what changed, not every slot; an
inactive finding closes it. A consumption or leak finding about a meter whose measurement is
itself in question (an open meter-fault event) is held back: a broken meter is reported as a
broken meter, never as a leak.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC
from typing import Any

from analytics.engine.contract import Finding
from parkwatch.events import Event, Family, State

_SUPPRESSED_BY_METER_FAULT = frozenset(
    {Family.CONSUMPTION, Family.DEMAND, Family.LEAK, Family.WASTE_HEAT}
)


@dataclass
class EventRules:
    update_every_ms: int = 15 * 60_000
    update_change: float = 0.25  # relative change of the estimate that is worth a message


def finding_order(f: Finding) -> tuple[int, int, str, str, int]:
    """The order findings are applied in, whatever order detectors returned them: by time;
    meter faults first (so they hold back what they explain); an opening before a closing."""
    return (
        f.at_ms,
        0 if f.family is Family.METER_FAULT else 1,
        f.kind,
        f.subject,
        0 if f.active else 1,
    )


class EventBook:
    def __init__(self, park: str, rules: EventRules | None = None) -> None:
        self.park = park
        self.rules = rules or EventRules()
        self.open: dict[tuple[str, str], Event] = {}
        self._faulty_meters: dict[str, int] = {}  # meter → open meter-fault events
        self.suppressed = 0

    def apply(self, findings: Iterable[Finding]) -> list[Event]:
        """Events to publish for these findings (in data-time order of the findings)."""
        out: list[Event] = []
        for finding in sorted(findings, key=finding_order):
            event = self._apply(finding)
            if event is not None:
                out.append(event)
        return out

    def _apply(self, f: Finding) -> Event | None:
        key = (f.kind, f.subject)
        current = self.open.get(key)
        if not f.active:
            if current is None:
                return None
            closed = current.with_state(
                State.CLOSED,
                end_ms=max(f.at_ms, current.detected_at_ms),
                updated_at_ms=f.at_ms,
                estimate=f.estimate or current.estimate,
                evidence={**current.evidence, **f.evidence},
            )
            del self.open[key]
            self._note_fault(closed, -1)
            return closed
        if current is None:
            if self._suppressed(f):
                self.suppressed += 1
                return None
            opened = Event(
                id=Event.make_id(self.park, f.kind, f.subject, f.at_ms),
                kind=f.kind,
                family=f.family,
                state=State.OPENED,
                park=self.park,
                meter=f.meter,
                zone=f.zone,
                start_ms=min(f.start_ms if f.start_ms is not None else f.at_ms, f.at_ms),
                detected_at_ms=f.at_ms,
                end_ms=None,
                severity=f.severity,
                estimate=f.estimate,
                evidence=dict(f.evidence),
                updated_at_ms=f.at_ms,
            )
            self.open[key] = opened
            self._note_fault(opened, +1)
            return opened
        if not self._worth_update(current, f):
            return None
        updated = current.with_state(
            State.UPDATED,
            severity=f.severity,
            estimate=f.estimate or current.estimate,
            evidence=dict(f.evidence) or current.evidence,
            updated_at_ms=f.at_ms,
            start_ms=min(current.start_ms, f.start_ms if f.start_ms is not None else f.at_ms),
        )
        self.open[key] = updated
        return updated

    def adopt(self, event: Event) -> Event | None:
        """Hold ``event`` (open) in place of the open event of its kind and subject, which is
        returned: a restarted worker carries on the event an earlier worker stored, rather
        than a second one of the same kind and subject found at another time. It takes the
        replaced one's severity and estimate (the detectors' view now, which later findings
        are weighed against), so its next message — an update or its close — carries them;
        its id, times and evidence stay the stored ones."""
        key = (event.kind, event.subject)
        replaced = self.open.pop(key, None)
        if replaced is not None:
            self._note_fault(replaced, -1)
            event = replace(
                event,
                severity=replaced.severity,
                estimate=replaced.estimate or event.estimate,
            )
        self.open[key] = event
        self._note_fault(event, +1)
        return replaced

    def _worth_update(self, current: Event, f: Finding) -> bool:
        if f.severity != current.severity:
            return True
        if f.estimate is None or current.estimate is None:
            return False
        last = current.updated_at_ms or current.detected_at_ms
        if f.at_ms - last < self.rules.update_every_ms:
            return False
        before, now = abs(current.estimate.value), abs(f.estimate.value)
        return abs(now - before) >= self.rules.update_change * max(before, 1e-9)

    def _suppressed(self, f: Finding) -> bool:
        return (
            f.meter is not None
            and f.family in _SUPPRESSED_BY_METER_FAULT
            and self._faulty_meters.get(f.meter, 0) > 0
        )

    def _note_fault(self, event: Event, delta: int) -> None:
        if event.family is Family.METER_FAULT and event.meter is not None:
            self._faulty_meters[event.meter] = self._faulty_meters.get(event.meter, 0) + delta

    def state(self) -> dict[str, Any]:
        return {"open": [e.as_json(UTC) for e in self.open.values()], "suppressed": self.suppressed}

    def restore(self, state: dict[str, Any]) -> None:
        self.open = {}
        self._faulty_meters = {}
        for doc in state["open"]:
            event = Event.from_json(doc)
            self.open[(event.kind, event.subject)] = event
            self._note_fault(event, +1)
        self.suppressed = int(state.get("suppressed", 0))
