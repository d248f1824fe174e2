"""The wire format: a gateway's batch of readings, and its strict validation.

A batch is ``{"v":1,"gw":..,"seq":..,"readings":[{"m":..,"t":..,"q":{..},"s":..}]}``.
:func:`parse_batch` never raises for bad input: it returns the readings worth storing and one
:class:`Rejection` (with a reason code and a precise message) per bad message, reading or
value. A bad value is rejected alone; the rest of its reading and batch is kept.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple, NotRequired

import msgspec
import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from parkwatch import hotpath
from parkwatch.quantities import QUANTITIES
from parkwatch.site import Meter, SiteRegistry
from parkwatch.slugs import Slug
from parkwatch.topics import DataTopic

WIRE_VERSION: Literal[1] = 1
EPOCH_2000_MS = 946_684_800_000
DAY_MS = 86_400_000


class Quality(StrEnum):
    OK = "ok"
    STALE = "stale"
    ESTIMATED = "estimated"
    BAD = "bad"
    # counter events flagged at the source: the values are the meter's own, unchanged; the
    # reading's counters jumped since the meter's previous reading for this reason
    ROLLOVER = "rollover"
    RESET = "reset"
    REPLACED = "replaced"
    # set by ingest, not by a gateway: a counter is lower than the meter's previous reading
    # and the source gave no reason (the values are stored as given: a reset or a meter
    # replacement the gateway did not see, or a fault — for analytics to decide)
    DECREASED = "decreased"


class Reason(StrEnum):
    """Why something was rejected; the label of the rejection counter."""

    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    BAD_ENVELOPE = "bad_envelope"
    UNSUPPORTED_VERSION = "unsupported_version"
    GATEWAY_MISMATCH = "gateway_mismatch"
    BAD_READING = "bad_reading"
    BAD_UTF8 = "bad_utf8"
    BAD_METER_ID = "bad_meter_id"
    BAD_TIMESTAMP = "bad_timestamp"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    UNKNOWN_PARK = "unknown_park"
    UNKNOWN_METER = "unknown_meter"
    WRONG_GATEWAY = "wrong_gateway"
    BAD_VALUE = "bad_value"
    UNKNOWN_QUANTITY = "unknown_quantity"
    QUANTITY_NOT_FOR_UTILITY = "quantity_not_for_utility"
    IMPLAUSIBLE_VALUE = "implausible_value"
    DATABASE_REJECTED = "database_rejected"
    INTERNAL_ERROR = "internal_error"


# --- the schema (pydantic); the models double as the documented contract -----------------

_STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


QualityName = Literal[
    "ok", "stale", "estimated", "bad", "rollover", "reset", "replaced", "decreased"
]


class ReadingIn(TypedDict):
    __pydantic_config__ = _STRICT  # type: ignore[misc]

    m: Slug
    t: Annotated[StrictInt, Field(ge=EPOCH_2000_MS)]
    q: Annotated[dict[str, float], Field(min_length=1, max_length=64)]
    s: NotRequired[QualityName]


class Reading(BaseModel):
    """One meter at one moment (the model gateways build; ingest validates ``ReadingIn``)."""

    model_config = _STRICT

    m: Slug
    t: Annotated[StrictInt, Field(ge=EPOCH_2000_MS)]
    q: Annotated[dict[str, float], Field(min_length=1, max_length=64)]
    s: Quality = Quality.OK


class Batch(BaseModel):
    model_config = _STRICT

    v: Literal[1] = WIRE_VERSION
    gw: Slug
    seq: Annotated[StrictInt, Field(ge=0)]
    readings: list[Reading]


class _Envelope(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    v: Literal[1]
    gw: Slug
    seq: Annotated[StrictInt, Field(ge=0)]
    readings: list[Any]


_READINGS = TypeAdapter(list[ReadingIn])
_ONE_READING = TypeAdapter(ReadingIn)


def encode_batch(gateway: str, seq: int, readings: Sequence[dict[str, Any]]) -> bytes:
    """Serialise a batch; readings are ``{"m","t","q"[,"s"]}`` dicts."""
    return orjson.dumps({"v": WIRE_VERSION, "gw": gateway, "seq": seq, "readings": readings})


# --- parsing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = 4 * 1024 * 1024
    max_readings: int = 20_000
    max_future_ms: int = DAY_MS  # a clock more than a day ahead is wrong, not early


@dataclass(slots=True)
class Rejection:
    reason: Reason
    detail: str
    index: int | None = None  # position of the reading in the batch
    meter: str | None = None
    quantity: str | None = None
    reading: Any = None  # the offending reading as received

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason.value, "detail": self.detail}
        for key in ("index", "meter", "quantity", "reading"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


class AcceptedReading(NamedTuple):  # a tuple: cheapest to build on the hot path
    meter: Meter
    t: int
    q: dict[str, float]
    s: str = "ok"


# builds an AcceptedReading from a (meter, t, q, s) tuple in C: the class's own __new__ is
# Python code, and one is built per reading
_new_tuple = tuple.__new__


@dataclass(slots=True)
class ParsedBatch:
    park: str
    gateway: str
    seq: int | None = None
    readings: list[AcceptedReading] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    message_rejected: bool = False  # nothing in the message could be used

    @property
    def values_accepted(self) -> int:
        return sum(len(r.q) for r in self.readings)


def _fmt_error(err: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    got = err.get("input")
    shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{loc}: {err['msg']} (got {shown})" if loc else f"{err['msg']} (got {shown})"


def _whole(parsed: ParsedBatch, reason: Reason, detail: str) -> ParsedBatch:
    parsed.rejections.append(Rejection(reason, detail))
    parsed.message_rejected = True
    return parsed


def _reading_reason(err: Any) -> Reason:
    field_name = err["loc"][1] if len(err["loc"]) > 1 else None
    if field_name == "m":
        return Reason.BAD_METER_ID
    if field_name == "t":
        return Reason.BAD_TIMESTAMP
    return Reason.BAD_READING


def _validate_readings(
    raw: list[Any], parsed: ParsedBatch, positions: Sequence[int] | None = None
) -> list[tuple[int, ReadingIn]]:
    """Schema-check readings with pydantic; value errors drop the value, other errors the
    reading. ``positions`` are the readings' places in the batch (default: 0, 1, …)."""
    where = list(positions) if positions is not None else list(range(len(raw)))
    try:
        return list(zip(where, _READINGS.validate_python(raw), strict=True))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    bad_readings: dict[int, Any] = {}
    bad_values: dict[int, dict[str, Any]] = {}
    for err in errors:
        loc = err["loc"]
        sub = loc[0]
        assert isinstance(sub, int)
        err["loc"] = (where[sub], *loc[1:])  # name the reading's place in the whole batch
        # ("i", "q", key) is a value error; ("i", "q", key, "[key]") is a key error
        if len(loc) == 3 and loc[1] == "q" and isinstance(loc[2], str):
            bad_values.setdefault(sub, {})[loc[2]] = err
        else:
            bad_readings.setdefault(sub, err)
    out: list[tuple[int, ReadingIn]] = []
    for sub, item in enumerate(raw):
        index = where[sub]
        meter = item.get("m") if isinstance(item, dict) else None
        meter = meter if isinstance(meter, str) else None
        if sub in bad_readings:
            err = bad_readings[sub]
            parsed.rejections.append(
                Rejection(_reading_reason(err), _fmt_error(err), index, meter, reading=item)
            )
            continue
        if sub in bad_values:
            for key, err in bad_values[sub].items():
                parsed.rejections.append(
                    Rejection(Reason.BAD_VALUE, _fmt_error(err), index, meter, key, reading=item)
                )
            kept = {k: v for k, v in item["q"].items() if k not in bad_values[sub]}
            if not kept:
                continue
            item = {**item, "q": kept}
        out.append((index, _ONE_READING.validate_python(item)))
    return out


_QUALITIES = frozenset(q.value for q in Quality)


def _plainly_valid(
    items: list[Any],
    parsed: ParsedBatch,
    topic: DataTopic,
    registry: SiteRegistry,
    newest_ok: int,
) -> list[int]:
    """The hot path. Accept the readings that are plainly right — a known meter of this
    gateway (registry ids are slugs), an int timestamp in range, a dict of allowed quantities
    whose values are numbers within bounds, no other keys — without building pydantic's
    copies. It is stricter than the schema, never looser: whatever it does not accept (its
    positions are returned) goes through pydantic and the site rules for a precise verdict."""
    meters = registry.park_meters(topic.park)
    gateway = topic.gateway
    accepted = parsed.readings
    others: list[int] = []
    for index, item in enumerate(items):
        if type(item) is not dict:
            others.append(index)
            continue
        size = len(item)
        quality = "ok"
        if size == 4:
            quality = item.get("s")  # type: ignore[assignment]
            if type(quality) is not str or quality not in _QUALITIES:
                others.append(index)
                continue
        elif size != 3:
            others.append(index)
            continue
        m, t, q = item.get("m"), item.get("t"), item.get("q")
        meter = meters.get(m) if type(m) is str else None
        if (
            meter is None
            or meter.gateway != gateway
            or type(t) is not int
            or not EPOCH_2000_MS <= t <= newest_ok
            or type(q) is not dict
            or not 0 < len(q) <= 64
        ):
            others.append(index)
            continue
        bounds = meter.bounds
        has_int = False
        for name, value in q.items():
            limit = bounds.get(name)
            kind = type(value)
            if kind is int:
                has_int = True
            elif kind is not float:
                break
            if limit is None or not limit[0] <= value <= limit[1]:
                break
        else:
            if has_int:
                q = {k: float(v) for k, v in q.items()}
            accepted.append(_new_tuple(AcceptedReading, (meter, t, q, quality)))
            continue
        others.append(index)
    return others


# --- the first pass: typed decoding of a plainly valid message --------------------------


# gc=False: the collector does not track these (cheaper to build, fewer young-generation
# runs); they hold only strings, numbers and a dict of floats, so they can form no cycle
class _PlainReading(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    m: str
    t: Annotated[int, msgspec.Meta(ge=EPOCH_2000_MS)]
    q: Annotated[dict[str, float], msgspec.Meta(min_length=1, max_length=64)]
    s: QualityName = "ok"


class _PlainBatch(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    v: Literal[1]
    gw: str
    seq: Annotated[int, msgspec.Meta(ge=0)]
    readings: list[_PlainReading]


_PLAIN = msgspec.json.Decoder(_PlainBatch)
# the site checks compiled, or None where the extension is not built (parkwatch.hotpath)
_check_plain = hotpath.check_plain


def plain_message(
    payload: bytes, gateway: str, meters: Mapping[str, Meter], newest_ok: int, max_readings: int
) -> tuple[int, list[AcceptedReading]] | None:
    """The hot path: a message whose every reading is plainly right, decoded by msgspec
    straight into typed structs (types, ranges, the quality names and the key sets checked in
    C; ints in ``q`` become floats) and then checked against the site — known meters of this
    gateway, not from the future, values within bounds — in one loop. None as soon as
    anything is off (not UTF-8, not JSON, NaN literals, a bad reading): the message then goes
    through the careful path, which finds every problem and keeps every good reading.
    ``meters``: the gateway's (:meth:`SiteRegistry.gateway_meters`); ``newest_ok``: the
    newest timestamp accepted. Ingest calls it directly with both kept per topic."""
    try:
        batch = _PLAIN.decode(payload)
    except ValueError:  # msgspec's DecodeError and ValidationError, and UnicodeDecodeError,
        # which bad bytes in a key raise
        return None
    if batch.gw != gateway or len(batch.readings) > max_readings:
        return None
    accepted: list[AcceptedReading] | None = (
        check_plain_py if _check_plain is None else _check_plain
    )(batch.readings, meters, newest_ok, AcceptedReading)
    if accepted is None:
        return None
    return batch.seq, accepted


def check_plain_py(
    readings: list[Any], meters: Mapping[str, Meter], newest_ok: int, accepted: type[Any]
) -> list[AcceptedReading] | None:
    """:func:`plain_message`'s site checks over its decoded readings, in Python: the reference
    for :func:`parkwatch._hotpath.check_plain`, and what runs where that is not built."""
    out = []
    try:
        for reading in readings:
            meter = meters.get(reading.m)
            t = reading.t
            if meter is None or t > newest_ok:
                return None
            bounds = meter.bounds
            values = reading.q
            for name, value in values.items():
                low, high = bounds[name]  # KeyError: not a quantity of this meter
                if not low <= value <= high:
                    return None
            out.append(_new_tuple(accepted, (meter, t, values, reading.s)))
    except KeyError:
        return None
    return out


def parse_batch(
    payload: bytes,
    topic: DataTopic,
    registry: SiteRegistry,
    now_ms: int,
    limits: Limits = Limits(),
    try_plain: bool = True,
) -> ParsedBatch:
    """Validate one message from ``pw/v1/{park}/{gateway}/data``; never raises on bad input.

    ``try_plain=False`` skips the fast attempt when the caller has just made it and it
    found something to say (ingest's inline path), so such a message is not decoded twice."""
    if try_plain and len(payload) <= limits.max_bytes and topic.park in registry.parks:
        plain = plain_message(
            payload,
            topic.gateway,
            registry.gateway_meters(topic.park, topic.gateway),
            now_ms + limits.max_future_ms,
            limits.max_readings,
        )
        if plain is not None:
            return ParsedBatch(topic.park, topic.gateway, *plain)
    parsed = ParsedBatch(park=topic.park, gateway=topic.gateway)
    if len(payload) > limits.max_bytes:
        return _whole(
            parsed, Reason.TOO_LARGE, f"{len(payload)} bytes > limit of {limits.max_bytes}"
        )
    lenient = False
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as strict_error:
        # Gateways written with Python's json module send NaN/Infinity literals, and a broken
        # meter may put bytes that are not UTF-8 into one reading: parse such messages
        # leniently (bad bytes become lone surrogates) so that only the non-finite values
        # and the readings with bad text are rejected, and the rest is kept.
        try:
            doc = json.loads(payload.decode("utf-8", "surrogateescape"))
        except (ValueError, RecursionError) as exc:
            return _whole(parsed, Reason.NOT_JSON, _not_json_detail(strict_error, exc))
        lenient = True
    if (
        type(doc) is dict
        and len(doc) == 4
        and type(doc.get("v")) is int
        and doc["v"] == WIRE_VERSION
        and doc.get("gw") == topic.gateway
        and type(doc.get("seq")) is int
        and doc["seq"] >= 0
        and type(doc.get("readings")) is list
        and len(doc["readings"]) <= limits.max_readings
        and topic.park in registry.parks
    ):
        # a well-formed envelope: take the plainly valid readings fast, the rest carefully
        parsed.seq = doc["seq"]
        items = doc["readings"]
        newest_ok = now_ms + limits.max_future_ms
        others = _plainly_valid(items, parsed, topic, registry, newest_ok)
        if others:
            # the plain pass never accepts bad text (every string it takes is a known name)
            careful = _reject_bad_text(items, others, parsed) if lenient else others
            valid = _validate_readings([items[i] for i in careful], parsed, careful)
            slow_at: list[int] = []
            _check_readings(parsed, valid, items, topic, registry, now_ms, limits, slow_at)
            # back into batch order: a later reading of the same meter and time must win
            skipped = set(others)
            fast_at = [i for i in range(len(items)) if i not in skipped]
            ordered = sorted(zip(fast_at + slow_at, parsed.readings, strict=True))
            parsed.readings = [reading for _, reading in ordered]
        return parsed
    if isinstance(doc, dict) and doc.get("v", WIRE_VERSION) != WIRE_VERSION:
        return _whole(
            parsed, Reason.UNSUPPORTED_VERSION, f"v={doc.get('v')!r}; this ingest reads v=1"
        )
    try:
        envelope = _Envelope.model_validate(doc)
    except ValidationError as exc:
        detail = "; ".join(_fmt_error(e) for e in exc.errors(include_url=False)[:5])
        return _whole(parsed, Reason.BAD_ENVELOPE, detail)
    parsed.seq = envelope.seq
    problem = _envelope_problem(envelope.gw, len(envelope.readings), topic, registry, limits)
    if problem is not None:
        return _whole(parsed, *problem)
    readings = envelope.readings
    positions = list(range(len(readings)))
    if lenient:
        positions = _reject_bad_text(readings, positions, parsed)
    valid = _validate_readings([readings[i] for i in positions], parsed, positions)
    return _check_readings(parsed, valid, readings, topic, registry, now_ms, limits)


def _not_json_detail(strict_error: Exception, lenient_error: Exception) -> str:
    # orjson names bad UTF-8 "surrogates not allowed", which misleads; the lenient parser
    # read past the bad bytes, so its message names the real syntax error
    return str(lenient_error) if "UTF-8" in str(strict_error) else str(strict_error)


def _bad_text(value: Any, where: str) -> str | None:
    """Where in a parsed reading a string is not valid UTF-8 (bytes the lenient parser kept
    as lone surrogates, or an escaped lone surrogate), with the bytes as received; None if
    all text is good."""
    if type(value) is str:
        if value.isascii():
            return None
        try:
            value.encode()
        except UnicodeEncodeError:
            try:
                shown: object = value.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:  # an escaped surrogate ("\\ud800"), not raw bytes
                shown = value.encode("utf-8", "backslashreplace").decode()
            return f"{where}: not valid UTF-8 (got {shown!r:.80})"
        return None
    if type(value) is dict:
        for key, item in value.items():
            found = _bad_text(key, f"{where}.{key!r}" if where else "a key")
            if found is None:
                found = _bad_text(item, f"{where}.{key}" if where else str(key))
            if found is not None:
                return found
    elif type(value) is list:
        for i, item in enumerate(value):
            found = _bad_text(item, f"{where}.{i}" if where else str(i))
            if found is not None:
                return found
    return None


def _printable(value: Any) -> Any:
    """A copy of a reading whose bad text is shown with backslash escapes, for dead letters
    (JSON encoders refuse lone surrogates)."""
    if type(value) is str:
        return value.encode("utf-8", "backslashreplace").decode()
    if type(value) is dict:
        return {_printable(k): _printable(v) for k, v in value.items()}
    if type(value) is list:
        return [_printable(v) for v in value]
    return value


def _reject_bad_text(items: list[Any], positions: Iterable[int], parsed: ParsedBatch) -> list[int]:
    """Reject each reading with text that is not UTF-8 — alone; a quantity name with bad text
    costs only its value, as any other unknown quantity would. The positions still to check
    (a reading that lost values is replaced in ``items`` by its good part)."""
    kept = []
    for index in positions:
        item = items[index]
        if _bad_text(item, "") is None:
            kept.append(index)
            continue
        meter = item.get("m") if type(item) is dict else None
        meter = meter if type(meter) is str and _bad_text(meter, "") is None else None
        values = item.get("q") if type(item) is dict else None
        if (
            type(values) is dict
            and _bad_text({k: v for k, v in item.items() if k != "q"}, "") is None
        ):
            good = {}
            for key, value in values.items():
                problem = _bad_text(key, "q key") or _bad_text(value, f"q.{_printable(key)}")
                if problem is None:
                    good[key] = value
                    continue
                parsed.rejections.append(
                    Rejection(
                        Reason.BAD_UTF8, problem, index, meter, _printable(key), _printable(item)
                    )
                )
            if good:
                items[index] = {**item, "q": good}
                kept.append(index)
            continue
        problem = _bad_text(item, "")
        parsed.rejections.append(
            Rejection(Reason.BAD_UTF8, str(problem), index, meter, reading=_printable(item))
        )
    return kept


def _envelope_problem(
    gw: str, count: int, topic: DataTopic, registry: SiteRegistry, limits: Limits
) -> tuple[Reason, str] | None:
    if gw != topic.gateway:
        return (
            Reason.GATEWAY_MISMATCH,
            f"gw={gw!r} published on the topic of gateway {topic.gateway!r}",
        )
    if topic.park not in registry.parks:
        return Reason.UNKNOWN_PARK, f"park {topic.park!r} is not configured"
    if count > limits.max_readings:
        return Reason.TOO_LARGE, f"{count} readings > limit of {limits.max_readings}"
    return None


def _check_readings(
    parsed: ParsedBatch,
    valid: Iterable[tuple[int, ReadingIn]],
    raw: Sequence[Any],
    topic: DataTopic,
    registry: SiteRegistry,
    now_ms: int,
    limits: Limits,
    accepted_at: list[int] | None = None,
) -> ParsedBatch:
    """Site rules for schema-valid readings: known meter on this gateway, not from the
    future, quantities of the meter's utility within their bounds. ``accepted_at`` collects
    the batch positions of the readings accepted."""
    newest_ok = now_ms + limits.max_future_ms
    meters = registry.park_meters(topic.park)
    gateway = topic.gateway
    accepted = parsed.readings
    # the hot path: one dict look-up per reading and one per value; problems go to helpers
    for index, reading in valid:
        t = reading["t"]
        meter = meters.get(reading["m"])
        if meter is None or t > newest_ok or meter.gateway != gateway:
            parsed.rejections.append(
                _reading_rejection(reading, meter, index, raw[index], topic, now_ms)
            )
            continue
        values = reading["q"]  # pydantic made every value a finite float
        bounds = meter.bounds
        for name, value in values.items():
            limit = bounds.get(name)
            if limit is None or not limit[0] <= value <= limit[1]:
                values = _good_values(values, meter, index, raw[index], parsed)
                break
        if values:
            accepted.append(AcceptedReading(meter, t, values, reading.get("s", "ok")))
            if accepted_at is not None:
                accepted_at.append(index)
    return parsed


def _reading_rejection(
    reading: ReadingIn, meter: Meter | None, index: int, raw: Any, topic: DataTopic, now_ms: int
) -> Rejection:
    meter_id, t = reading["m"], reading["t"]
    if meter is None:
        return Rejection(
            Reason.UNKNOWN_METER,
            f"meter {meter_id!r} is not in park {topic.park!r}",
            index,
            meter_id,
            reading=raw,
        )
    if meter.gateway != topic.gateway:
        return Rejection(
            Reason.WRONG_GATEWAY,
            f"meter {meter_id!r} is read by gateway {meter.gateway!r}, not {topic.gateway!r}",
            index,
            meter_id,
            reading=raw,
        )
    return Rejection(
        Reason.TIMESTAMP_IN_FUTURE,
        f"t={t} is {(t - now_ms) / 3_600_000:.1f} h ahead of the ingest clock",
        index,
        meter_id,
        reading=raw,
    )


def _good_values(
    values: dict[str, float], meter: Meter, index: int, raw: Any, parsed: ParsedBatch
) -> dict[str, float]:
    """The values that pass; a rejection for each that does not."""
    good: dict[str, float] = {}
    for name, value in values.items():
        limit = meter.bounds.get(name)
        spec = QUANTITIES.get(name)
        if limit is None and spec is None:
            reason, detail = Reason.UNKNOWN_QUANTITY, f"unknown quantity {name!r}"
        elif limit is None:
            reason = Reason.QUANTITY_NOT_FOR_UTILITY
            detail = f"{name!r} is not a quantity of a {meter.utility.value} meter"
        elif not limit[0] <= value <= limit[1]:
            reason = Reason.IMPLAUSIBLE_VALUE
            unit = f" {spec.unit}" if spec is not None else ""
            detail = f"{name}={value!r} outside [{limit[0]:g}, {limit[1]:g}]{unit}"
        else:
            good[name] = value
            continue
        parsed.rejections.append(Rejection(reason, detail, index, meter.id, name, raw))
    return good


def deadletter_payload(
    topic: str, parsed: ParsedBatch, payload: bytes, received_ms: int, max_echo: int = 65536
) -> bytes:
    """The message published on ``pw/v1/{park}/deadletter`` for a batch with rejections."""
    doc: dict[str, Any] = {
        "v": WIRE_VERSION,
        "topic": topic,
        "gw": parsed.gateway,
        "seq": parsed.seq,
        "received_ms": received_ms,
        "rejections": [r.as_json() for r in parsed.rejections],
    }
    if parsed.message_rejected:
        doc["payload"] = payload[:max_echo].decode("utf-8", errors="replace")
        doc["payload_truncated"] = len(payload) > max_echo
    try:
        return orjson.dumps(doc, default=str)
    except TypeError:
        # a lone surrogate (e.g. "\ud800" from the lenient parser) is not UTF-8; the standard
        # library writes it as an escape, which is still valid JSON
        return json.dumps(doc, default=str).encode()
