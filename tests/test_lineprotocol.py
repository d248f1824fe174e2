"""The line-protocol encoder: escaping rules, and a property test against the real influxd.

The property test is the specification: for any measurement, tags, fields and time, either
the encoder refuses the point with :class:`LineProtocolError` (and the input really holds
something line protocol cannot carry back unchanged) or influxd accepts the encoded line and
InfluxQL reads back exactly the same measurement, tags, field types, field values and time.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from parkwatch.influx import quote_ident, quote_string
from parkwatch.lineprotocol import (
    FieldValue,
    LineProtocolError,
    encode_fields,
    encode_float_fields,
    encode_point,
    escape_key,
    escape_measurement,
    format_field_value,
    series_key,
)
from parkwatch.stack import LocalStack

PARK = "两江新区-一号厂"


# --------------------------------------------------------------------------- escaping


def test_measurement_escapes_comma_and_space_only() -> None:
    assert escape_measurement("power meter,main") == r"power\ meter\,main"
    # '=' and '"' need no escape in a measurement
    assert escape_measurement('a=b"c') == 'a=b"c'


def test_keys_escape_comma_equals_and_space() -> None:
    assert escape_key("a b,c=d") == r"a\ b\,c\=d"
    assert escape_key('say "hi"') == r'say\ "hi"'


def test_chinese_names_pass_through_unchanged() -> None:
    assert escape_measurement(PARK) == PARK
    assert escape_key(PARK) == PARK
    line = encode_point("电表", {"园区": PARK, "表号": "一号 表"}, {"有功功率": 1.5}, 1000)
    assert line == r"电表,园区=两江新区-一号厂,表号=一号\ 表 有功功率=1.5 1000"


@pytest.mark.parametrize("name", ["", "a\nb", "a\rb", "\n"])
def test_empty_names_and_line_breaks_are_refused(name: str) -> None:
    with pytest.raises(LineProtocolError):
        escape_measurement(name)
    with pytest.raises(LineProtocolError):
        escape_key(name)


def test_backslashes() -> None:
    # a backslash before an ordinary character is kept as it is
    assert escape_measurement(r"C:\data") == r"C:\data"
    assert escape_key(r"a\b") == r"a\b"
    # a trailing backslash would escape the separator after it
    with pytest.raises(LineProtocolError, match="ends with a backslash"):
        escape_key("a\\")
    with pytest.raises(LineProtocolError, match="ends with a backslash"):
        escape_measurement("m\\")
    # backslash + character the parser unescapes would be read as one escape
    for text in ["a\\,b", "a\\ b", "a\\=b", "a\\\\b"]:
        with pytest.raises(LineProtocolError, match="backslash before"):
            escape_key(text)
    for text in ["m\\,x", "m\\ x", "m\\=x", 'm\\"x']:
        with pytest.raises(LineProtocolError, match="backslash before"):
            escape_measurement(text)


def test_field_key_backslash_before_quote_is_refused() -> None:
    # influxd unescapes \" in field keys (not in tag keys or values)
    with pytest.raises(LineProtocolError, match="backslash before"):
        encode_fields({'a\\"b': 1.0})
    assert series_key("m", {"t": 'a\\"b'}) == 'm,t=a\\"b'


def test_measurement_starting_with_hash_is_refused() -> None:
    with pytest.raises(LineProtocolError, match="comment"):
        escape_measurement("#meters")
    # '#' elsewhere is fine, and a leading space is escaped
    assert escape_measurement("m#1") == "m#1"
    assert escape_key("#1") == "#1"
    assert escape_measurement(" m") == r"\ m"


def test_time_key_is_refused() -> None:
    with pytest.raises(LineProtocolError, match="'time'"):
        series_key("m", {"time": "1"})
    with pytest.raises(LineProtocolError, match="'time'"):
        encode_fields({"time": 1.0})
    # 'time' as a value, or a key with another case, is ordinary data
    assert series_key("m", {"t": "time"}) == "m,t=time"


@pytest.mark.parametrize(
    "name",
    [
        "\tmeters",
        "\x00m",
        "m\x00",
        "a\tb",
        "a\x1fb",
        "a\x7f",
        "a\u00a0b",
        "a\u2028",
        "\ufeffm",
        "a\ufffd",
    ],
)
def test_non_printable_names_are_refused(name: str) -> None:
    with pytest.raises(LineProtocolError, match="non-printable"):
        escape_measurement(name)
    with pytest.raises(LineProtocolError, match="non-printable"):
        series_key("m", {"t": name})
    with pytest.raises(LineProtocolError, match="non-printable"):
        series_key("m", {name: "v"})
    with pytest.raises(LineProtocolError, match="non-printable"):
        encode_fields({name: 1.0})


def test_string_field_values_may_hold_any_character_but_line_breaks() -> None:
    assert format_field_value("a\tb\x00\u2028\ufffd") == '"a\tb\x00\u2028\ufffd"'


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(LineProtocolError, match="UTF-8"):
        escape_measurement("m\ud800")
    with pytest.raises(LineProtocolError, match="UTF-8"):
        escape_key("k\udfff")
    with pytest.raises(LineProtocolError, match="UTF-8"):
        format_field_value("v\ud800")


# --------------------------------------------------------------------------- field values


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (0, "0i"),
        (-42, "-42i"),
        (2**63 - 1, "9223372036854775807i"),
        (-(2**63), "-9223372036854775808i"),
        (1.0, "1.0"),
        (412.5, "412.5"),
        (-0.0, "-0.0"),
        (1e16, "1e+16"),
        (1.5e-7, "1.5e-07"),
        (5e-324, "5e-324"),
        ("", '""'),
        ("plain", '"plain"'),
        ('say "hi"', r'"say \"hi\""'),
        ("C:\\data\\", r'"C:\\data\\"'),
        ("a,b=c d", '"a,b=c d"'),
        (PARK, f'"{PARK}"'),
    ],
)
def test_field_value_formatting(value: FieldValue, text: str) -> None:
    assert format_field_value(value) == text


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(value: float) -> None:
    with pytest.raises(LineProtocolError, match="not finite"):
        format_field_value(value)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_integers_outside_int64_are_refused(value: int) -> None:
    with pytest.raises(LineProtocolError, match="64-bit"):
        format_field_value(value)


@pytest.mark.parametrize("value", ["a\nb", "a\r\nb"])
def test_string_with_line_break_is_refused(value: str) -> None:
    with pytest.raises(LineProtocolError, match="line break"):
        format_field_value(value)


def test_unsupported_field_type_is_refused() -> None:
    with pytest.raises(LineProtocolError, match="unsupported"):
        format_field_value(None)  # type: ignore[arg-type]
    with pytest.raises(LineProtocolError, match="at least one field"):
        encode_fields({})


def test_bool_is_not_written_as_integer() -> None:
    assert encode_fields({"on": True, "n": 1, "x": 1.0}) == "on=true,n=1i,x=1.0"


def test_float_fast_path_writes_ints_as_floats() -> None:
    assert encode_float_fields({"p": 412, "q": 412.5}) == "p=412.0,q=412.5"


# --------------------------------------------------------------------------- series keys


def test_tags_are_sorted_and_empty_values_omitted() -> None:
    tags = {"z": "last", "a": "first", "m": "", "park": PARK}
    assert series_key("energy", tags) == f"energy,a=first,park={PARK},z=last"
    # an empty value drops the tag before its key is looked at
    assert series_key("energy", {"": "", "time": "", "b": "1"}) == "energy,b=1"


def test_empty_tag_key_with_value_is_refused() -> None:
    with pytest.raises(LineProtocolError, match="tag key is empty"):
        series_key("m", {"": "v"})


def test_encode_point_with_and_without_time() -> None:
    assert encode_point("m", {"t": "a b"}, {"v": 1}) == r"m,t=a\ b v=1i"
    assert encode_point("m", {}, {"v": 1.5, "s": "x"}, 1700000000000) == (
        'm v=1.5,s="x" 1700000000000'
    )


# --------------------------------------------------------------------------- against influxd

# what the 1.x parser unescapes after a backslash, per part of the line
_MEASUREMENT_ESCAPES = ', ="'
_TAG_ESCAPES = ",= "
_FIELD_KEY_ESCAPES = ',= "'
_INT64 = (-(2**63), 2**63 - 1)


def _not_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _name_problem(text: str, escapes: str) -> str | None:
    if text == "":
        return "empty"
    if "\n" in text or "\r" in text:
        return "line break"
    if text.endswith("\\"):
        return "trailing backslash"
    if any(a == "\\" and (b in escapes or b == "\\") for a, b in itertools.pairwise(text)):
        return "backslash read as an escape"
    if _not_utf8(text):
        return "not UTF-8"
    if not text.isprintable() or "\ufffd" in text:
        return "non-printable character"
    return None


def _value_problem(value: FieldValue) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if _INT64[0] <= value <= _INT64[1] else "integer outside int64"
    if isinstance(value, float):
        return None if math.isfinite(value) else "not finite"
    assert isinstance(value, str)
    if "\n" in value or "\r" in value:
        return "line break in string"
    return "not UTF-8" if _not_utf8(value) else None


def unrepresentable(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue]
) -> str | None:
    """Why line protocol cannot carry this point back unchanged, as the module docstring
    lists it; ``None`` if it can."""
    if problem := _name_problem(measurement, _MEASUREMENT_ESCAPES):
        return f"measurement: {problem}"
    if measurement.startswith("#"):
        return "measurement starts with '#'"
    for key, value in tags.items():
        if value == "":
            continue  # left out, not refused
        if key == "time":
            return "tag key 'time'"
        if problem := _name_problem(key, _TAG_ESCAPES) or _name_problem(value, _TAG_ESCAPES):
            return f"tag: {problem}"
    if not fields:
        return "no fields"
    for key, field_value in fields.items():
        if key == "time":
            return "field key 'time'"
        if problem := _name_problem(key, _FIELD_KEY_ESCAPES) or _value_problem(field_value):
            return f"field: {problem}"
    return None


# broad alphabets, with the characters that matter for line protocol and InfluxQL made common
_PRINTABLE = st.one_of(
    st.characters(codec="utf-8", categories=["L", "M", "N", "P", "S"]),
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.sampled_from(" ,=\"'\\#两江新区厂-一号é😀"),
)
# never written: control, format and separator characters, private use, line breaks and
# lone surrogates; only in the hostile quarter of the examples
_HOSTILE_CHARS = st.one_of(
    _PRINTABLE,
    st.characters(codec="utf-8"),
    st.sampled_from("\t\x00\x1f\x7f\u00a0\u2028\ufeff\ufffd\U0010fffd\n\r\ud800\udfff"),
)
_SAMPLES = st.sampled_from([PARK, "Time", "#x", "a\\b", 'a"b', "a'b", "a b,c=d"])
_BAD_SAMPLES = st.sampled_from(["", "time", "\\", "a\\", "a\\,b", 'a\\"b', "a\\\\b", "a\nb"])
_CLEAN = st.one_of(
    st.characters(codec="utf-8", categories=["L", "N"]), st.sampled_from(" ,=\"'#-两江新区厂一号😀")
)
_NAMES = st.one_of(
    st.text(_CLEAN, min_size=1, max_size=12), st.text(_PRINTABLE, min_size=1, max_size=12), _SAMPLES
)
_HOSTILE_NAMES = st.one_of(st.text(_HOSTILE_CHARS, max_size=12), _SAMPLES, _BAD_SAMPLES)
_INT64_VALUES = st.integers(*_INT64)
_HOSTILE_INTS = st.sampled_from([_INT64[0], _INT64[1], 2**63, -(2**63) - 1, 10**30])
_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    _INT64_VALUES,
    st.booleans(),
    st.text(_PRINTABLE, max_size=20),
)
_HOSTILE_VALUES = st.one_of(
    st.floats(), _HOSTILE_INTS, st.booleans(), st.text(_HOSTILE_CHARS, max_size=20)
)
# epoch milliseconds that stay inside InfluxDB's nanosecond range
_MAX_MS = 9_223_372_036_854
_TIMES = st.one_of(st.integers(-_MAX_MS, _MAX_MS), st.integers(0, 4_102_444_800_000), st.just(0))


@st.composite
def _points(draw: st.DrawFn) -> tuple[str, dict[str, str], dict[str, FieldValue], int]:
    """A point; one in four is drawn from hostile alphabets that include what can never be
    written, the others mostly (not always) from what can."""
    hostile = draw(st.integers(0, 3)) == 0
    names = _HOSTILE_NAMES if hostile else _NAMES
    values = st.one_of(_VALUES, _HOSTILE_VALUES) if hostile else _VALUES
    measurement = draw(names)
    tags = draw(st.dictionaries(names, st.one_of(names, st.just("")), max_size=4))
    fields = draw(st.dictionaries(names, values, min_size=0 if hostile else 1, max_size=4))
    return measurement, tags, fields, draw(_TIMES)


_db_counter = itertools.count()


class _Number(str):
    """A JSON number kept as its text, so '-0' and '1e+16' are compared exactly."""


def _query(client: httpx.Client, db: str, statement: str) -> list[dict[str, Any]]:
    response = client.post("/query", params={"db": db, "epoch": "ms"}, data={"q": statement})
    assert response.status_code == 200, response.text
    payload = json.loads(response.text, parse_int=_Number, parse_float=_Number)
    results: list[dict[str, Any]] = payload["results"]
    for result in results:
        assert "error" not in result, (statement, result)
    return results


def _same_value(expected: FieldValue, field_type: str, got: object) -> bool:
    if isinstance(expected, bool):
        return field_type == "boolean" and got is expected
    if isinstance(expected, int):
        return field_type == "integer" and isinstance(got, _Number) and int(got) == expected
    if isinstance(expected, float):
        # repr equality: exact, including the sign of zero
        return (
            field_type == "float"
            and isinstance(got, _Number)
            and repr(float(got)) == repr(expected)
        )
    return field_type == "string" and got == expected


@pytest.fixture(scope="module")
def influx_client(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.influx_url, timeout=30.0) as client:
        yield client


@pytest.mark.integration
@settings(
    # LP_EXAMPLES=5000 to hunt longer; 100 keep the suite quick
    max_examples=int(os.environ.get("LP_EXAMPLES", "100")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(point=_points())
# what earlier encoders got wrong, and the edges of each kind of value
@example(point=("a\\=b", {}, {"v": 1.0}, 0))  # influxd reads a measurement's \= as =
@example(point=('m\\"a', {}, {"v": 1.0}, 0))  # ... and \" as "
@example(point=("m", {}, {'f\\"k': 1.0}, 0))  # and a field key's \" as "
@example(point=("\tm", {}, {"v": 1.0}, 0))  # a leading tab is skipped
@example(point=("\x00m", {}, {"v": 1.0}, 0))  # so is a leading NUL
@example(point=("m", {"t": "a\x00"}, {"v": 1.0}, 0))  # InfluxQL cannot name a NUL
@example(point=("m", {}, {"\x00": 1.0}, 0))  # SHOW FIELD KEYS returns "" for it
@example(point=("m", {}, {"v": 2**63}, 0))  # influxd refuses the whole batch
@example(point=("m\ud800", {}, {"v": 1.0}, 0))  # str.encode() fails on the whole batch
@example(point=("m", {}, {"s": "\udfff"}, 0))
@example(point=("m", {"TIME": "x", "t": "v"}, {"t": 1.0}, 1))
@example(point=("m", {}, {"z": -0.0, "s": 5e-324, "b": 1e16, "i": -(2**63)}, -_MAX_MS))
@example(point=(PARK, {"园区": PARK, "a": ""}, {"s": 'say "hi" \\ 两\t'}, 1700000000000))
def test_encoded_points_read_back_unchanged_from_influxd(
    influx_client: httpx.Client,
    point: tuple[str, dict[str, str], dict[str, FieldValue], int],
) -> None:
    measurement, tags, fields, time = point
    reason = unrepresentable(measurement, tags, fields)
    event(f"refused: {reason.split(':')[0]}" if reason else "written")
    if reason is not None:
        with pytest.raises(LineProtocolError):
            encode_point(measurement, tags, fields, time)
        return
    # a LineProtocolError here means a representable point was refused
    line = encode_point(measurement, tags, fields, time)

    db = f"lp_{next(_db_counter)}"
    client = influx_client
    _query(client, db, f"CREATE DATABASE {quote_ident(db)}")
    try:
        response = client.post(
            "/write", params={"db": db, "precision": "ms"}, content=line.encode()
        )
        assert response.status_code == 204, (line, response.text)

        expected_tags = {k: v for k, v in tags.items() if v != ""}
        # InfluxQL reads any spelling of "time" in WHERE as the time column, even quoted and
        # cast to ::tag; such a tag is still checked below, through GROUP BY *
        where = " AND ".join(
            f"{quote_ident(k)}::tag = {quote_string(v)}"
            for k, v in expected_tags.items()
            if k.lower() != "time"
        )
        statement = (
            f"SHOW FIELD KEYS FROM {quote_ident(measurement)}; "
            f"SELECT * FROM {quote_ident(measurement)}"
            + (f" WHERE {where}" if where else "")
            + " GROUP BY *"
        )
        keys_result, select_result = _query(client, db, statement)

        assert "series" in keys_result, f"no fields found for {line!r}"
        [key_series] = keys_result["series"]
        field_types = dict(key_series["values"])
        assert set(field_types) == set(fields), (line, field_types)

        assert "series" in select_result, f"{line!r} not found by {statement!r}"
        [series] = select_result["series"]
        assert series["name"] == measurement, line
        assert series.get("tags", {}) == expected_tags, line
        [row] = series["values"]
        got = dict(zip(series["columns"], row, strict=True))
        assert int(got.pop("time")) == time, line
        assert set(got) == set(fields), line
        for key, value in fields.items():
            assert _same_value(value, field_types[key], got[key]), (line, key, got[key])
    finally:
        _query(client, db, f"DROP DATABASE {quote_ident(db)}")
