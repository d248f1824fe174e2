"""JSON payload maps: how an MQTT-native meter's own JSON becomes parkwatch quantities.

MQTT-native meters (Tasmota energy monitors, Shelly Pro 3EM, water meters behind a vendor's
IoT bridge, …) publish their own JSON on their own topics. A map, kept as data in
``mqtt_maps/*.yaml`` like the register maps of Modbus meters, says for one product:

* which messages it publishes: a topic template per message (``tele/{device}/SENSOR``), where
  ``{device}`` is the device's own MQTT name given in ``gateway.yaml``;
* where each quantity lives in a message: a JSON path (``ENERGY.Total``, ``emeters[0].power``,
  or a YAML list of keys and indexes for keys that contain ``.`` or ``[``), and how the raw
  number becomes the quantity's unit: ``value = raw × scale`` (W → kW: 0.001), or a scale per
  unit the device reports next to the value (``unit_path`` + ``units``: ``{L: 0.001, m3: 1}``);
  several paths (or a path holding an array, as Tasmota's three-phase ``Power``) are combined
  with ``sum`` or ``mean``;
* optionally where the message says when it was measured, and how to read that: ISO 8601 (a
  time without an offset is in the device's zone: the device's ``timezone`` in
  ``gateway.yaml``, else the map's), or epoch seconds or milliseconds.

Decoding never guesses: a mapped field that is absent or ``null`` leaves its quantity out (the
device does not report it now); for a combined value, one missing part leaves the whole value
out rather than averaging what is left. A message that is not a JSON object, a mapped field of
the wrong type (a string, a bool, an array where a number is due), a unit the map does not
know, an unreadable timestamp, or a message with no mapped value at all raises
:class:`PayloadError`: the payload does not match its map, and the caller drops the whole
message rather than store part of something it cannot trust.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from edge_agent.yaml_maps import load_map, load_maps, pick
from parkwatch.quantities import QUANTITIES, Utility
from parkwatch.slugs import Slug

MAPS_DIR = Path(__file__).resolve().parent / "mqtt_maps"
MAX_PAYLOAD_BYTES = 64 * 1024  # a meter's message is a few hundred bytes; refuse to parse more
DEVICE_PLACEHOLDER = "{device}"

_STRICT = ConfigDict(extra="forbid", frozen=True)
# one dotted part of a path: a key, then any number of [index]
_PART = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")


class JsonMapError(ValueError):
    """A JSON map is malformed, or a named map does not exist."""


class PayloadError(ValueError):
    """A device's message does not match its map (not JSON, wrong types, unknown unit, …)."""


PathPart = str | int


def parse_path(value: Any) -> tuple[PathPart, ...]:
    """``"a.b[2].c"`` → ``("a", "b", 2, "c")``; a list is taken as the parts themselves."""
    if isinstance(value, list | tuple):
        parts = tuple(value)
        if not parts or not all(
            (isinstance(p, str) and p) or (isinstance(p, int) and not isinstance(p, bool))
            for p in parts
        ):
            raise ValueError("a path list holds non-empty keys (strings) and indexes (integers)")
        return parts
    if not isinstance(value, str) or not value:
        raise ValueError("a path is a string like 'ENERGY.Total' or a list of keys and indexes")
    out: list[PathPart] = []
    for dotted in value.split("."):
        match = _PART.fullmatch(dotted)
        if match is None:
            raise ValueError(f"cannot read path {value!r}; give keys with . or [ as a list")
        out.append(match.group(1))
        out.extend(int(index) for index in _INDEX.findall(match.group(2)))
    return tuple(out)


JsonPath = Annotated[tuple[PathPart, ...], BeforeValidator(parse_path)]


def lookup(document: Any, path: Sequence[PathPart]) -> Any:
    """The value at ``path``, or ``None`` when any part of it is absent (or ``null``)."""
    node = document
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return None
            node = node[part]
        else:
            if not isinstance(node, dict):
                return None
            node = node.get(part)
        if node is None:
            return None
    return node


def show(path: Sequence[PathPart]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _number(value: Any, where: str) -> Decimal:
    # bool is an int in Python, and a JSON true is no measurement
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"{where}: expected a number, got {orjson.dumps(value).decode()[:60]}")
    # decimal arithmetic from the shortest text of the number: 412500 W × 0.001 is 412.5,
    # not 412.50000000000006
    return Decimal(repr(value))


def _exact(factor: float) -> Decimal:
    return Decimal(repr(factor))


class Combine(StrEnum):
    SUM = "sum"  # e.g. three phase powers → total power
    MEAN = "mean"  # e.g. three phase voltages → the phase average parkwatch stores


class ValueSpec(BaseModel):
    """Where one quantity lives in a message, and how its number becomes the quantity."""

    model_config = _STRICT

    quantity: str
    path: JsonPath | None = None
    paths: tuple[JsonPath, ...] = ()
    combine: Combine | None = None  # needed when the paths hold more than one number
    scale: float = 1.0  # raw × scale; may be negative where a vendor's sign convention differs
    # the unit the device reports beside the value, and the scale for each unit it may report
    unit_path: JsonPath | None = None
    units: dict[str, float] = Field(default_factory=dict)
    doc: str = ""  # the vendor's field name, unit and meaning

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.path is None) == (not self.paths):
            raise ValueError(f"{self.quantity}: give either path or paths")
        if len(self.paths) == 1:
            raise ValueError(f"{self.quantity}: paths lists several paths; use path for one")
        if self.paths and self.combine is None:
            raise ValueError(f"{self.quantity}: several paths need combine (sum or mean)")
        if not math.isfinite(self.scale) or self.scale == 0:
            raise ValueError(f"{self.quantity}: scale must be a finite number other than 0")
        if (self.unit_path is None) != (not self.units):
            raise ValueError(f"{self.quantity}: unit_path and units go together")
        if self.unit_path is not None and self.scale != 1.0:
            raise ValueError(f"{self.quantity}: with units, each unit gives the scale")
        for unit, factor in self.units.items():
            if not math.isfinite(factor) or factor == 0:
                raise ValueError(f"{self.quantity}: the scale of unit {unit!r} must be finite, ≠ 0")
        return self

    @property
    def all_paths(self) -> tuple[tuple[PathPart, ...], ...]:
        return (self.path,) if self.path is not None else self.paths

    def decode(self, document: Mapping[str, Any]) -> float | None:
        """The quantity's value in ``document``; ``None`` when the device does not report it."""
        raws: list[Decimal] = []
        for path in self.all_paths:
            found = lookup(document, path)
            if found is None:
                return None  # never combine what is left of a partly reported value
            where = show(path)
            if isinstance(found, list):
                if any(item is None for item in found):
                    return None
                raws.extend(_number(item, f"{where}[{i}]") for i, item in enumerate(found))
            else:
                raws.append(_number(found, where))
        if not raws:
            return None  # an empty array reports nothing
        if len(raws) > 1 and self.combine is None:
            raise PayloadError(
                f"{show(self.all_paths[0])}: {len(raws)} numbers, map has no combine"
            )
        total = sum(raws, Decimal(0))
        raw = total / len(raws) if self.combine is Combine.MEAN else total
        value = float(raw * self._factor(document))
        if not math.isfinite(value):
            raise PayloadError(f"{show(self.all_paths[0])}: {value} is out of range")
        return value

    def _factor(self, document: Mapping[str, Any]) -> Decimal:
        if self.unit_path is None:
            return _exact(self.scale)
        unit = lookup(document, self.unit_path)
        if not isinstance(unit, str):
            raise PayloadError(f"{show(self.unit_path)}: expected the unit as a string")
        factor = self.units.get(unit)
        if factor is None:
            known = ", ".join(sorted(self.units))
            raise PayloadError(f"{show(self.unit_path)}: unit {unit!r} not in the map ({known})")
        return _exact(factor)


class TimeFormat(StrEnum):
    ISO8601 = "iso8601"  # "2026-11-24T10:00:00", with or without an offset
    EPOCH_S = "epoch_s"  # seconds since 1970 (may have a fraction)
    EPOCH_MS = "epoch_ms"


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


class TimestampSpec(BaseModel):
    """Where a message says when it was measured."""

    model_config = _STRICT

    path: JsonPath
    format: TimeFormat
    # the zone of times written without an offset, unless the device's own ``timezone`` says
    timezone: str | None = None
    doc: str = ""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            zone(value)
        return value

    @property
    def needs_zone(self) -> bool:
        """A device must name its zone: the map's times may come without an offset."""
        return self.format is TimeFormat.ISO8601 and self.timezone is None

    def decode(self, document: Mapping[str, Any], device_zone: ZoneInfo | None = None) -> int:
        """Epoch milliseconds of the message's own timestamp."""
        where = show(self.path)
        raw = lookup(document, self.path)
        if raw is None:
            raise PayloadError(f"{where}: the timestamp is missing")
        if self.format is TimeFormat.ISO8601:
            if not isinstance(raw, str):
                raise PayloadError(f"{where}: expected an ISO 8601 time, got {raw!r}")
            try:
                when = datetime.fromisoformat(raw)
            except ValueError as exc:
                raise PayloadError(f"{where}: {raw!r} is not an ISO 8601 time") from exc
            if when.tzinfo is None:
                local = device_zone or (zone(self.timezone) if self.timezone else None)
                if local is None:
                    raise PayloadError(f"{where}: {raw!r} has no offset and no zone is set")
                when = when.replace(tzinfo=local)
            return round(when.timestamp() * 1000)
        number = _number(raw, where)
        ms = number * 1000 if self.format is TimeFormat.EPOCH_S else number
        if not (0 <= ms < 10**14):  # before 1970 or after the year 5138: not a clock reading
            raise PayloadError(f"{where}: {raw!r} is not a plausible {self.format}")
        return int(ms.to_integral_value())


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one message says: its values, and its own timestamp when the map has one."""

    values: dict[str, float]
    t_ms: int | None


class MessageSpec(BaseModel):
    """One message a device publishes: its topic, its timestamp, its values."""

    model_config = _STRICT

    name: Slug  # e.g. sensor, em, emdata: how gateway.yaml names it to override its topic
    topic: str  # a template: {device} is the device's own MQTT name
    timestamp: TimestampSpec | None = None  # without: the time the gateway received it
    values: tuple[ValueSpec, ...]

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        check_topic(value.replace(DEVICE_PLACEHOLDER, "device"))
        return value

    def topic_for(self, device: str) -> str:
        return self.topic.replace(DEVICE_PLACEHOLDER, device)

    def decode(self, payload: bytes, device_zone: ZoneInfo | None = None) -> Decoded:
        """Decode one payload; raises :class:`PayloadError` when it does not match the map."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise PayloadError(f"{len(payload)} bytes, more than {MAX_PAYLOAD_BYTES}")
        try:
            # orjson refuses NaN and Infinity, which are not JSON: such a value is no reading
            document = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(f"not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise PayloadError(f"expected a JSON object, got {type(document).__name__}")
        values: dict[str, float] = {}
        for spec in self.values:
            value = spec.decode(document)
            if value is not None:
                values[spec.quantity] = value
        if not values:
            raise PayloadError("none of the mapped values is in the message")
        t_ms = None if self.timestamp is None else self.timestamp.decode(document, device_zone)
        return Decoded(values, t_ms)


def check_topic(topic: str) -> str:
    """A topic a device publishes to: no wildcards, no empty name, within MQTT's limits."""
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise ValueError(f"{topic!r} is not a topic name (no wildcards, not empty)")
    if topic.startswith("$"):
        raise ValueError(f"{topic!r}: topics starting with $ belong to the broker")
    if len(topic.encode()) > 65535:
        raise ValueError("topic longer than MQTT allows")
    return topic


class JsonMap(BaseModel):
    """A product's JSON map: the messages it publishes and what they carry."""

    model_config = _STRICT

    name: Slug
    vendor: str
    model: str
    utility: Utility
    source: str = ""  # where the map comes from, and how far it can be trusted
    messages: tuple[MessageSpec, ...]

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.messages:
            raise ValueError("a map describes at least one message")
        names: set[str] = set()
        topics: set[str] = set()
        for message in self.messages:
            if message.name in names:
                raise ValueError(f"message {message.name!r} is described twice")
            names.add(message.name)
            if message.topic in topics:
                raise ValueError(f"two messages share the topic {message.topic!r}")
            topics.add(message.topic)
            if not message.values:
                raise ValueError(f"message {message.name!r} maps no value")
            seen: set[str] = set()
            for spec in message.values:
                known = QUANTITIES.get(spec.quantity)
                if known is None:
                    raise ValueError(f"unknown quantity {spec.quantity!r}")
                if self.utility not in known.utilities:
                    raise ValueError(
                        f"{spec.quantity!r} is not a quantity of a {self.utility} meter"
                    )
                if spec.quantity in seen:
                    raise ValueError(f"{spec.quantity!r} is mapped twice in {message.name!r}")
                seen.add(spec.quantity)
        return self

    @property
    def needs_zone(self) -> bool:
        return any(m.timestamp is not None and m.timestamp.needs_zone for m in self.messages)

    def message(self, name: str) -> MessageSpec:
        for message in self.messages:
            if message.name == name:
                return message
        raise KeyError(name)


# --- loading ---------------------------------------------------------------------------


def load_json_map(path: Path) -> JsonMap:
    return load_map(JsonMap, path, JsonMapError, "JSON map")


def load_json_maps(directories: Iterable[Path]) -> dict[str, JsonMap]:
    """Every ``*.yaml`` map in ``directories``; a later directory may replace a map."""
    return load_maps(JsonMap, directories, JsonMapError, "JSON map")


@functools.cache
def builtin_json_maps() -> Mapping[str, JsonMap]:
    """The maps shipped in ``edge_agent/mqtt_maps`` (loaded on first use)."""
    return load_json_maps([MAPS_DIR])


def get_json_map(name: str, extra: Mapping[str, JsonMap] | None = None) -> JsonMap:
    return pick({**builtin_json_maps(), **(extra or {})}, name, JsonMapError, "JSON map")
