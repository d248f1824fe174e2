"""InfluxDB line-protocol encoder.

Escaping follows the InfluxDB 1.x parser, which the v1 API of 2.x and 3.x share: measurement
names escape ``,`` and space; tag keys, tag values and field keys escape ``,``, ``=`` and
space; string field values escape ``"`` and ``\\``. What the parser cannot read back
unchanged is refused with :class:`LineProtocolError` instead of being written wrong: newlines,
a backslash right before a character the parser unescapes (``,``, space or ``=`` anywhere,
``"`` in measurement names and field keys, whose 1.x unescaping also takes ``\\"``) or
before another backslash (the parser would take the pair as one escape), a trailing
backslash, empty names, a measurement name starting with ``#`` (a comment), the reserved key
``time``, NaN/infinity, integers outside the signed 64-bit range and text that is not valid
UTF-8 (lone surrogates). Names (measurement, tag keys and values, field keys) must also be
printable (:meth:`str.isprintable`, and no U+FFFD): 1.8+ and 2.x drop series keys with
control, format or separator characters other than the space, 1.x skips a leading tab or NUL,
and InfluxQL cannot name anything that holds a NUL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

FieldValue = float | int | bool | str

_MEASUREMENT_TABLE = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_TABLE = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING_TABLE = str.maketrans({"\\": "\\\\", '"': '\\"'})

# characters the 1.x parser unescapes after a backslash, per part of the line
_MEASUREMENT_SPECIALS = ', ="'
_TAG_SPECIALS = ",= "
_FIELD_KEY_SPECIALS = ',= "'
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class LineProtocolError(ValueError):
    """A value that line protocol cannot carry (and read back unchanged)."""


def _check_utf8(text: str, what: str) -> None:
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise LineProtocolError(f"{what} {text!r} is not valid UTF-8") from None


def _check_identifier(text: str, what: str, specials: str) -> None:
    if not text:
        raise LineProtocolError(f"{what} is empty")
    if "\n" in text or "\r" in text:
        raise LineProtocolError(f"{what} {text!r} contains a line break")
    _check_utf8(text, what)
    if not text.isprintable() or "\ufffd" in text:
        raise LineProtocolError(f"{what} {text!r} contains a non-printable character")
    if "\\" in text:
        if text.endswith("\\"):
            raise LineProtocolError(f"{what} {text!r} ends with a backslash")
        for i, char in enumerate(text[:-1]):
            if char == "\\" and text[i + 1] in specials + "\\":
                raise LineProtocolError(
                    f"{what} {text!r} has a backslash before {text[i + 1]!r}, which the "
                    "parser would read as an escape"
                )


def escape_measurement(name: str) -> str:
    _check_identifier(name, "measurement", _MEASUREMENT_SPECIALS)
    if name.startswith("#"):
        raise LineProtocolError(f"measurement {name!r} starts with '#', which marks a comment")
    return name.translate(_MEASUREMENT_TABLE)


def escape_key(key: str, what: str = "key") -> str:
    """Escape a tag key or tag value (field keys: :func:`escape_field_key`)."""
    _check_identifier(key, what, _TAG_SPECIALS)
    return key.translate(_KEY_TABLE)


def escape_field_key(key: str) -> str:
    """Escape a field key; unlike tags, the parser also unescapes ``\\"`` in field keys."""
    _check_identifier(key, "field key", _FIELD_KEY_SPECIALS)
    return key.translate(_KEY_TABLE)


def format_field_value(value: FieldValue) -> str:
    # bool before int: bool is a subclass of int
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise LineProtocolError(f"integer field value {value} does not fit in 64-bit")
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError(f"field value {value!r} is not finite")
        return repr(value)
    if isinstance(value, str):
        if "\n" in value or "\r" in value:
            # the 1.x parser accepts raw newlines inside quotes but 2.x/3.x do not
            raise LineProtocolError("string field value contains a line break")
        _check_utf8(value, "string field value")
        return '"' + value.translate(_STRING_TABLE) + '"'
    raise LineProtocolError(f"unsupported field value type {type(value).__name__}")


def series_key(measurement: str, tags: Mapping[str, str]) -> str:
    """The escaped ``measurement,tag=value,...`` prefix; tags sorted as InfluxDB stores them.

    Tags with an empty value are left out: line protocol has no empty tag value.
    """
    parts = [escape_measurement(measurement)]
    for key in sorted(tags):
        value = tags[key]
        if value == "":
            continue
        if key == "time":
            raise LineProtocolError("'time' is not allowed as a tag key")
        parts.append(f"{escape_key(key, 'tag key')}={escape_key(value, 'tag value')}")
    return ",".join(parts)


def encode_fields(fields: Mapping[str, FieldValue]) -> str:
    if not fields:
        raise LineProtocolError("a point needs at least one field")
    out = []
    for key, value in fields.items():
        if key == "time":
            raise LineProtocolError("'time' is not allowed as a field key")
        out.append(f"{escape_field_key(key)}={format_field_value(value)}")
    return ",".join(out)


def encode_float_fields(fields: Mapping[str, float]) -> str:
    """Fast path for quantity fields: keys come from the registry (already safe) and every
    value is written as a float so that ``412`` and ``412.5`` never clash as field types."""
    return ",".join([f"{key}={float(value)!r}" for key, value in fields.items()])


def encode_point(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue],
    time: int | None = None,
) -> str:
    """One line; ``time`` is in the precision the write is sent with (ms across parkwatch)."""
    line = f"{series_key(measurement, tags)} {encode_fields(fields)}"
    return line if time is None else f"{line} {int(time)}"
