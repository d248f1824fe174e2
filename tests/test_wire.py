"""Batch validation: each kind of bad input gets its own reason and a precise message, and
never costs the good readings around it."""

from __future__ import annotations

import json

import orjson
import pytest

from parkwatch.site import Park, SiteRegistry
from parkwatch.topics import DataTopic
from parkwatch.wire import DAY_MS, Limits, Reason, deadletter_payload, parse_batch

NOW = 1_732_411_200_000
TOPIC = DataTopic("p1", "gw-e1")


@pytest.fixture(scope="module")
def registry() -> SiteRegistry:
    park = Park.model_validate(
        {
            "park": "p1",
            "enterprises": [
                {
                    "id": "e1",
                    "workshops": [
                        {
                            "id": "w1",
                            "meters": [
                                {"id": "m1", "utility": "electricity"},
                                {"id": "w-main", "utility": "water"},
                                {"id": "m9", "utility": "electricity", "gateway": "gw-other"},
                            ],
                        }
                    ],
                }
            ],
        }
    )
    return SiteRegistry([park])


def batch(*readings: object, gw: str = "gw-e1", seq: int = 1) -> bytes:
    return orjson.dumps({"v": 1, "gw": gw, "seq": seq, "readings": list(readings)})


GOOD = {"m": "m1", "t": NOW, "q": {"p_kw": 412.5, "e_kwh": 1834567.2}}


def test_good_batch_is_accepted_whole(registry: SiteRegistry) -> None:
    parsed = parse_batch(batch(GOOD), TOPIC, registry, NOW)
    assert parsed.rejections == []
    assert parsed.seq == 1
    [reading] = parsed.readings
    assert (reading.meter.id, reading.t, reading.q, reading.s) == (
        "m1",
        NOW,
        {"p_kw": 412.5, "e_kwh": 1834567.2},
        "ok",
    )


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        (b"not json at all", Reason.NOT_JSON, "expected"),
        (b'{"v":1,"gw":"gw-e1","seq":1,"readings":[', Reason.NOT_JSON, ""),
        (b"[" * 5000, Reason.NOT_JSON, "depth"),
        (b"[1,2]", Reason.BAD_ENVELOPE, "valid dictionary"),
        (b'{"v":2,"gw":"gw-e1","seq":1,"readings":[]}', Reason.UNSUPPORTED_VERSION, "v=2"),
        (b'{"v":1,"gw":"gw-e1","seq":"7","readings":[]}', Reason.BAD_ENVELOPE, "seq"),
        (b'{"v":1,"gw":"gw-e1","seq":1}', Reason.BAD_ENVELOPE, "readings: Field required"),
        (b'{"v":1,"gw":"gw-e1","seq":1,"readings":[],"x":1}', Reason.BAD_ENVELOPE, "x: Extra"),
        (b'{"v":1,"gw":"GW E1","seq":1,"readings":[]}', Reason.BAD_ENVELOPE, "gw"),
        (batch(GOOD, gw="gw-e2"), Reason.GATEWAY_MISMATCH, "gw='gw-e2'"),
    ],
)
def test_whole_message_rejections(
    registry: SiteRegistry, payload: bytes, reason: Reason, detail: str
) -> None:
    parsed = parse_batch(payload, TOPIC, registry, NOW)
    assert parsed.message_rejected
    assert parsed.readings == []
    [rejection] = parsed.rejections
    assert rejection.reason is reason
    assert detail in rejection.detail


def test_size_limits(registry: SiteRegistry) -> None:
    big = batch(*([GOOD] * 50))
    parsed = parse_batch(big, TOPIC, registry, NOW, Limits(max_bytes=100))
    assert [r.reason for r in parsed.rejections] == [Reason.TOO_LARGE]
    parsed = parse_batch(big, TOPIC, registry, NOW, Limits(max_readings=10))
    assert [r.reason for r in parsed.rejections] == [Reason.TOO_LARGE]
    assert "50 readings" in parsed.rejections[0].detail


def test_unknown_park(registry: SiteRegistry) -> None:
    parsed = parse_batch(batch(GOOD), DataTopic("nowhere", "gw-e1"), registry, NOW)
    assert [r.reason for r in parsed.rejections] == [Reason.UNKNOWN_PARK]


@pytest.mark.parametrize(
    ("reading", "reason", "detail"),
    [
        ({"m": "M 1", "t": NOW, "q": {"p_kw": 1}}, Reason.BAD_METER_ID, "pattern"),
        ({"m": 5, "t": NOW, "q": {"p_kw": 1}}, Reason.BAD_METER_ID, "string"),
        ({"m": "m1", "t": NOW / 1000, "q": {"p_kw": 1}}, Reason.BAD_TIMESTAMP, "integer"),
        ({"m": "m1", "t": NOW // 1000, "q": {"p_kw": 1}}, Reason.BAD_TIMESTAMP, "946684800000"),
        ({"m": "m1", "t": str(NOW), "q": {"p_kw": 1}}, Reason.BAD_TIMESTAMP, "integer"),
        (
            {"m": "m1", "t": NOW + 2 * DAY_MS, "q": {"p_kw": 1}},
            Reason.TIMESTAMP_IN_FUTURE,
            "48.0 h",
        ),
        ({"m": "m1", "t": NOW, "q": {}}, Reason.BAD_READING, "at least 1"),
        ({"m": "m1", "t": NOW, "q": [1]}, Reason.BAD_READING, "dictionary"),
        ({"m": "m1", "t": NOW, "q": {"p_kw": 1}, "s": "great"}, Reason.BAD_READING, "'ok'"),
        ({"m": "m1", "t": NOW, "q": {"p_kw": 1}, "extra": 1}, Reason.BAD_READING, "Extra"),
        ("m1", Reason.BAD_READING, "dictionary"),
        ({"m": "ghost", "t": NOW, "q": {"p_kw": 1}}, Reason.UNKNOWN_METER, "'ghost'"),
        ({"m": "m9", "t": NOW, "q": {"p_kw": 1}}, Reason.WRONG_GATEWAY, "gw-other"),
    ],
)
def test_bad_reading_is_rejected_alone(
    registry: SiteRegistry, reading: object, reason: Reason, detail: str
) -> None:
    parsed = parse_batch(batch(GOOD, reading, GOOD | {"t": NOW + 1}), TOPIC, registry, NOW)
    assert [r.t for r in parsed.readings] == [NOW, NOW + 1]
    [rejection] = parsed.rejections
    assert (rejection.reason, rejection.index) == (reason, 1)
    assert detail in rejection.detail
    assert rejection.reading == reading


@pytest.mark.parametrize(
    ("values", "reason", "detail"),
    [
        ({"p_kw": "412"}, Reason.BAD_VALUE, "valid number"),
        ({"p_kw": True}, Reason.BAD_VALUE, "valid number"),
        ({"p_kw": None}, Reason.BAD_VALUE, "valid number"),
        ({"p_kw": {"x": 1}}, Reason.BAD_VALUE, "valid number"),
        ({"watts": 1.0}, Reason.UNKNOWN_QUANTITY, "'watts'"),
        ({"flow_m3h": 3.0}, Reason.QUANTITY_NOT_FOR_UTILITY, "electricity"),
        ({"pf": 1.7}, Reason.IMPLAUSIBLE_VALUE, "pf=1.7"),
        ({"e_kwh": -5.0}, Reason.IMPLAUSIBLE_VALUE, "e_kwh=-5.0"),
        ({"p_kw": 1e300}, Reason.IMPLAUSIBLE_VALUE, "outside"),
    ],
)
def test_bad_value_is_rejected_alone(
    registry: SiteRegistry, values: dict[str, object], reason: Reason, detail: str
) -> None:
    reading = {"m": "m1", "t": NOW, "q": {"q_kvar": 12.0, **values}}
    parsed = parse_batch(batch(reading), TOPIC, registry, NOW)
    [kept] = parsed.readings
    assert kept.q == {"q_kvar": 12.0}  # the good value of the same reading stays
    [rejection] = parsed.rejections
    assert (rejection.reason, rejection.quantity) == (reason, next(iter(values)))
    assert detail in rejection.detail


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_from_lenient_encoders(registry: SiteRegistry, literal: str) -> None:
    # Python's json.dumps writes NaN/Infinity; such a batch still stores its finite values
    reading = f'{{"m":"m1","t":{NOW},"q":{{"p_kw":{literal},"pf":0.9}}}}'
    payload = f'{{"v":1,"gw":"gw-e1","seq":1,"readings":[{reading}]}}'.encode()
    parsed = parse_batch(payload, TOPIC, registry, NOW)
    [kept] = parsed.readings
    assert kept.q == {"pf": 0.9}
    [rejection] = parsed.rejections
    assert rejection.reason is Reason.BAD_VALUE
    assert "finite" in rejection.detail


def test_integers_become_floats_and_quality_is_kept(registry: SiteRegistry) -> None:
    parsed = parse_batch(
        batch({"m": "w-main", "t": NOW, "q": {"flow_m3h": 3}, "s": "estimated"}),
        TOPIC,
        registry,
        NOW,
    )
    [reading] = parsed.readings
    assert reading.q == {"flow_m3h": 3.0}
    assert isinstance(reading.q["flow_m3h"], float)
    assert reading.s == "estimated"


def test_deadletter_payload_carries_reasons_and_the_offending_input(
    registry: SiteRegistry,
) -> None:
    bad = {"m": "ghost", "t": NOW, "q": {"p_kw": 1}}
    parsed = parse_batch(batch(GOOD, bad, seq=42), TOPIC, registry, NOW)
    doc = json.loads(deadletter_payload("pw/v1/p1/gw-e1/data", parsed, b"", NOW))
    assert doc["seq"] == 42
    assert doc["rejections"] == [
        {
            "reason": "unknown_meter",
            "detail": "meter 'ghost' is not in park 'p1'",
            "index": 1,
            "meter": "ghost",
            "reading": bad,
        }
    ]
    whole = parse_batch(b"\xff garbage", TOPIC, registry, NOW)
    doc = json.loads(deadletter_payload("pw/v1/p1/gw-e1/data", whole, b"\xff garbage", NOW))
    assert doc["rejections"][0]["reason"] == "not_json"
    assert doc["payload"].endswith(" garbage")


def test_accepted_readings_keep_batch_order(registry: SiteRegistry) -> None:
    # the middle reading takes the careful path (an unknown quantity); it must still land
    # between the other two, so that the last reading of a meter and time wins in InfluxDB
    readings = [
        {"m": "m1", "t": NOW, "q": {"p_kw": 1.0}},
        {"m": "m1", "t": NOW, "q": {"p_kw": 2.0, "zz": 1.0}},
        {"m": "m1", "t": NOW, "q": {"p_kw": 3.0}},
    ]
    parsed = parse_batch(batch(*readings), TOPIC, registry, NOW)
    assert [r.q["p_kw"] for r in parsed.readings] == [1.0, 2.0, 3.0]
    assert [r.reason for r in parsed.rejections] == [Reason.UNKNOWN_QUANTITY]


def test_deadletter_survives_lone_surrogates(registry: SiteRegistry) -> None:
    payload = (
        b'{"v":1,"gw":"gw-e1","seq":1,"readings":[{"m":"m1","t":%d,'
        b'"q":{"p_kw":NaN,"\\ud800":1.0,"pf":0.5}}]}' % NOW
    )
    parsed = parse_batch(payload, TOPIC, registry, NOW)
    assert [r.q for r in parsed.readings] == [{"pf": 0.5}]
    doc = json.loads(deadletter_payload("pw/v1/p1/gw-e1/data", parsed, payload, NOW))
    # a name that is not valid text says so (it used to read "unknown quantity")
    assert sorted(r["reason"] for r in doc["rejections"]) == ["bad_utf8", "bad_value"]
