"""Anomaly events: the form analytics publishes, InfluxDB stores and replay writes.

One event is one anomaly of one kind at one place (a meter, or a zone, an enterprise, the park),
seen through its lifecycle: ``opened`` → ``updated`` … → ``closed``. Every message carries the
whole event as it stands. ``detected_at`` is the data time at which the detector raised it, never
back-dated; ``start`` is the onset the detector estimates, which may lie before.

The same JSON object travels on ``pw/v1/{park}/alerts/{kind}``, is a line of replay's
EVENTS.jsonl, and is what the scorer reads; times are ISO 8601 with the park's offset.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from enum import StrEnum
from typing import Any

import orjson

from parkwatch.lineprotocol import encode_point

ANOMALY_MEASUREMENT = "anomaly"

# event ids are derived from what identifies the event, so live and replay give the same ids
# and an event written twice overwrites itself
_EVENT_NAMESPACE = uuid.UUID("6f1d7a52-3b0e-4b8e-9a51-2c7c1f0e8d11")


class State(StrEnum):
    OPENED = "opened"
    UPDATED = "updated"
    CLOSED = "closed"


class Severity(StrEnum):
    INFO = "info"
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.MINOR: 1, Severity.MAJOR: 2, Severity.CRITICAL: 3}


class Family(StrEnum):
    """What an event is about, so that an operator can tell a leak from a broken meter."""

    CONSUMPTION = "consumption"  # the plant uses more (or less) than it should
    DEMAND = "demand"  # maximum-demand peaks
    LEAK = "leak"
    WASTE_HEAT = "waste_heat"
    METER_FAULT = "meter_fault"  # the measurement is wrong, not the consumption


@dataclass(frozen=True, slots=True)
class Estimate:
    """What the anomaly amounts to: a rate in its unit, per day, and its cost where known."""

    value: float  # e.g. 2.4
    unit: str  # e.g. "m³/h"
    per_day: float | None = None  # e.g. 57.6
    per_day_unit: str | None = None  # e.g. "m³/d"
    cny_per_day: float | None = None  # where the park has a tariff for it

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": _round(self.value), "unit": self.unit}
        if self.per_day is not None:
            out["per_day"] = _round(self.per_day)
            out["per_day_unit"] = self.per_day_unit
        if self.cny_per_day is not None:
            out["cny_per_day"] = round(self.cny_per_day, 2)
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Estimate:
        return cls(
            float(doc["value"]),
            str(doc["unit"]),
            _opt_float(doc.get("per_day")),
            doc.get("per_day_unit"),
            _opt_float(doc.get("cny_per_day")),
        )


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    kind: str  # e.g. "water_leak", "demand_peak", "counter_reset"
    family: Family
    state: State
    park: str
    meter: str | None  # exactly one of meter and zone is set
    zone: str | None  # a zone, an enterprise ("enterprise:steelco") or the park ("park")
    start_ms: int  # onset estimate
    detected_at_ms: int  # data time at which it was raised
    end_ms: int | None  # None while open
    severity: Severity
    estimate: Estimate | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    updated_at_ms: int | None = None  # data time of this message (opened: detected_at)

    @staticmethod
    def make_id(park: str, kind: str, subject: str, detected_at_ms: int) -> str:
        return str(uuid.uuid5(_EVENT_NAMESPACE, f"{park}/{kind}/{subject}/{detected_at_ms}"))

    @property
    def subject(self) -> str:
        return self.meter if self.meter is not None else (self.zone or "")

    def with_state(self, state: State, **changes: Any) -> Event:
        return replace(self, state=state, **changes)

    def as_json(self, zone: tzinfo) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "family": self.family.value,
            "state": self.state.value,
            "park": self.park,
            "zone": self.zone,
            "meter": self.meter,
            "start": iso(self.start_ms, zone),
            "detected_at": iso(self.detected_at_ms, zone),
            "updated_at": iso(self.updated_at_ms or self.detected_at_ms, zone),
            "end": None if self.end_ms is None else iso(self.end_ms, zone),
            "severity": self.severity.value,
            "estimate": None if self.estimate is None else self.estimate.as_json(),
            "evidence": self.evidence,
        }

    def to_bytes(self, zone: tzinfo, *, late: bool = False) -> bytes:
        """The alert's payload; ``late``: published after the fact (a new worker's refill of
        an outage nobody analysed live), flagged ``"late": true``."""
        doc = self.as_json(zone)
        if late:
            doc["late"] = True
        return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Event:
        return cls(
            id=str(doc["id"]),
            kind=str(doc["kind"]),
            family=Family(doc.get("family", Family.CONSUMPTION)),
            state=State(doc["state"]),
            park=str(doc["park"]),
            meter=doc.get("meter"),
            zone=doc.get("zone"),
            start_ms=parse_time_ms(doc["start"]),
            detected_at_ms=parse_time_ms(doc["detected_at"]),
            end_ms=_opt_time(doc.get("end")),
            severity=Severity(doc["severity"]),
            estimate=None if not doc.get("estimate") else Estimate.from_json(doc["estimate"]),
            evidence=dict(doc.get("evidence") or {}),
            updated_at_ms=None
            if doc.get("updated_at") is None
            else parse_time_ms(doc["updated_at"]),
        )

    def line(self, enterprise: str | None = None) -> str:
        """The event as a point of measurement ``anomaly``, at its detection time: each
        lifecycle message overwrites the same point, so the point holds the latest state."""
        tags = {"park": self.park, "kind": self.kind, "family": self.family.value}
        if self.meter is not None:
            tags["meter"] = self.meter
        if self.zone is not None:
            tags["zone"] = self.zone
        if enterprise is not None:
            tags["enterprise"] = enterprise
        fields: dict[str, float | int | bool | str] = {
            "id": self.id,
            "state": self.state.value,
            "severity": self.severity.value,
            "severity_rank": self.severity.rank,
            "start_ms": self.start_ms,
            # the data time of the message it holds: a new worker tells from it which of its
            # own messages an earlier worker already wrote and published (analytics.service)
            "updated_ms": self.updated_at_ms or self.detected_at_ms,
            "open": self.end_ms is None,
            "evidence": orjson.dumps(self.evidence, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
        }
        if self.end_ms is not None:
            fields["end_ms"] = self.end_ms
        if self.estimate is not None:
            fields["estimate"] = float(self.estimate.value)
            fields["estimate_unit"] = self.estimate.unit
            if self.estimate.per_day is not None:
                fields["per_day"] = float(self.estimate.per_day)
            if self.estimate.per_day_unit is not None:  # a restarted worker reads it back
                fields["per_day_unit"] = self.estimate.per_day_unit
            if self.estimate.cny_per_day is not None:
                fields["cny_per_day"] = float(self.estimate.cny_per_day)
        return encode_point(ANOMALY_MEASUREMENT, tags, fields, self.detected_at_ms)


def iso(t_ms: int, zone: tzinfo) -> str:
    """ISO 8601 with the zone's offset, to the millisecond when it has one."""
    moment = datetime.fromtimestamp(t_ms / 1000, tz=zone)
    spec = "milliseconds" if t_ms % 1000 else "seconds"
    return moment.isoformat(timespec=spec)


def parse_time_ms(text: str | int | float) -> int:
    """Epoch milliseconds from ISO 8601 with an offset, or from epoch milliseconds."""
    if isinstance(text, int | float):
        return int(text)
    moment = datetime.fromisoformat(text.upper())  # RFC 3339 allows "t" and "z" too
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return round(moment.timestamp() * 1000)


def _round(value: float) -> float:
    return float(f"{value:.4g}") if abs(value) < 1e4 else round(value, 1)


def _opt_time(value: Any) -> int | None:
    return None if value is None else parse_time_ms(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
