"""The scan of a plain message straight to its lines (``parkwatch._hotpath.scan_message``
and its ``commit``, run by :meth:`ingest.counters.CounterWatch.scan`) against the reference
path it replaces: ``plain_message`` (msgspec), the counter watch and the encoder. On random
and adversarial payloads, whatever the scan accepts the reference accepts with
byte-for-byte the same lines, the same seq, decreases and counter state; where it gives up
it leaves the state untouched; and ``_handle`` stores and dead-letters the same with the
scan as without it."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import counters
from ingest.counters import CounterWatch
from ingest.sequence import SeqTracker
from ingest.service import IngestService, encode_lines
from ingest.settings import IngestSettings
from parkwatch import hotpath, topics
from parkwatch.mqttio import Message
from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.site import Park, SiteRegistry
from parkwatch.wire import Quality, encode_batch, plain_message

pytestmark = pytest.mark.skipif(not hotpath.COMPILED, reason="tests/test_hotpath.py fails then")

PARK = Park.model_validate(
    {
        "park": "p1",
        "enterprises": [
            {
                "id": "a",
                "workshops": [
                    {
                        "id": "w",
                        "meters": [
                            {"id": "e1", "utility": "electricity", "gateway": "gw-a"},
                            {"id": "e2", "utility": "electricity", "gateway": "gw-a"},
                            {"id": "w1", "utility": "water", "gateway": "gw-a"},
                            {"id": "other-gw", "utility": "water", "gateway": "gw-b"},
                        ],
                    }
                ],
            }
        ],
    }
)
REGISTRY = SiteRegistry([PARK])
METERS = REGISTRY.gateway_meters("p1", "gw-a")
NOW = 1_732_411_200_000
NEWEST_OK = NOW + 86_400_000

# JSON text for numbers: plain, signed zero, exponents, long mantissas, big integers, and what
# is not JSON or not a float at all
_NUMBER_TEXTS = [
    "0",
    "1",
    "-1",
    "-0",
    "0.0",
    "-0.0",
    "412.5",
    "1834567.25",
    "0.001",
    "1e5",
    "1E+5",
    "2.5e-3",
    "1e-7",
    "0.30000000000000004",
    "0.1000000000000000055511151231257827",
    "123456789012345",
    "1234567890123456",
    "12345678901234567890",
    "9007199254740993",
    "9007199254740993.0",
    "1e400",
    "-1e400",
    "1e-400",
    "4.9e-324",
    "1.7976931348623157e308",
    "01",
    "1.",
    ".5",
    "-",
    "+1",
    "NaN",
    "Infinity",
    "true",
    "null",
    '"1"',
    "1e",
    "0x10",
    "999999999.999999",
    "1e9",
    "100000.000000000000000000001",
]
_KEYS = ["p_kw", "e_kwh", "vol_m3", "flow_m3h", "pf", "unknown_q", "p_\\u006bw", "p_kw\\n"]
_METERS = ["e1", "e2", "w1", "other-gw", "nope", "e\\u0031", "\u00e91"]
_SPACE = st.sampled_from(["", "", "", " ", "\n  ", "\t"])


def _number() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(_NUMBER_TEXTS),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.floats(min_value=-1e6, max_value=1e6).map(lambda v: repr(round(v, 3))),
        st.integers(min_value=-(10**20), max_value=10**20).map(str),
        st.tuples(
            st.text("0123456789", min_size=1, max_size=25).filter(
                lambda d: d == "0" or not d.startswith("0")
            ),
            st.text("0123456789", min_size=1, max_size=25),
        ).map(lambda p: f"{p[0]}.{p[1]}"),
    )


@st.composite
def _object(draw: st.DrawFn, members: list[tuple[str, str]]) -> str:
    """A JSON object of these (key, value text) members, in a drawn order, spacing and
    perhaps a member twice or one left out."""
    members = list(members)
    order = draw(st.permutations(members)) if draw(st.integers(0, 3)) == 0 else members
    order = list(order)
    if order and draw(st.integers(0, 19)) == 0:
        order.append(draw(st.sampled_from(order)))  # a key twice
    if order and draw(st.integers(0, 19)) == 0:
        order.pop(draw(st.integers(0, len(order) - 1)))  # one missing
    space = draw(_SPACE)
    parts = [f'{space}"{k}"{space}:{space}{v}{space}' for k, v in order]
    return "{" + ",".join(parts) + "}"


@st.composite
def _reading(draw: st.DrawFn) -> str:
    values = draw(
        st.lists(st.tuples(st.sampled_from(_KEYS), _number()), min_size=0, max_size=4)
        | st.lists(
            st.tuples(
                st.sampled_from(["p_kw", "e_kwh", "pf"]),
                st.floats(min_value=0, max_value=1e5).map(repr) | _number(),
            ),
            min_size=1,
            max_size=3,
        )
        | st.lists(
            st.tuples(
                st.sampled_from(["p_kw", "e_kwh"]),
                st.integers(0, 5).map(lambda i: f"{i}.0"),
            ),
            min_size=1,
            max_size=2,
        )
    )
    q = draw(_object(values))
    t = draw(
        st.one_of(
            st.integers(NOW - 5, NOW + 5).map(str),
            st.sampled_from(
                [
                    str(NEWEST_OK),
                    str(NEWEST_OK + 1),
                    "946684800000",
                    "946684799999",
                    "-1",
                    "1732411200000.0",
                    "1.7e12",
                    "17324112000000000000",
                    '"1732411200000"',
                ]
            ),
        )
    )
    meter = draw(st.sampled_from(["e1", "e2"]) | st.sampled_from(_METERS))
    members = [("m", f'"{meter}"'), ("t", t), ("q", q)]
    quality = draw(
        st.sampled_from([None, "ok", "bad"])
        | st.sampled_from([None, *[q.value for q in Quality], "nope", "o\\u006b"])
    )
    if quality is not None:
        members.append(("s", f'"{quality}"'))
    if draw(st.integers(0, 19)) == 0:
        members.append(("x", "1"))
    return str(draw(_object(members)))


@st.composite
def _message(draw: st.DrawFn) -> bytes:
    readings = draw(st.lists(_reading(), max_size=5))
    space = draw(_SPACE)
    members = [
        ("v", draw(st.sampled_from(["1"] * 8 + ["2", "1.0", '"1"']))),
        ("gw", draw(st.sampled_from(['"gw-a"'] * 8 + ['"gw-b"', '"gw-\\u0061"']))),
        ("seq", draw(st.sampled_from(["0", "7"] * 4 + ["-1", "18446744073709551616", "7.0"]))),
        ("readings", "[" + space + ("," + space).join(readings) + space + "]"),
    ]
    text = draw(_object(members)) + draw(_SPACE)
    if draw(st.integers(0, 29)) == 0:
        text += draw(st.sampled_from(["x", "{}", "\x00"]))
    return text.encode()


def _reference(watch: CounterWatch, payload: bytes, max_readings: int) -> Any:
    plain = plain_message(payload, "gw-a", METERS, NEWEST_OK, max_readings)
    if plain is None:
        return None
    seq, readings = plain
    readings = list(readings)
    decreases = watch.flag(readings)
    lines = encode_lines(readings)
    values = sum(len(r.q) for r in readings)
    return seq, lines, values, max((r.t for r in readings), default=0), decreases


def _check(messages: list[bytes], max_readings: int = 20_000) -> int:
    """Scan and reference over a sequence of messages (the counter state carries over);
    how many the scan took."""
    scanning, reference = CounterWatch(), CounterWatch()
    taken = 0
    for payload in messages:
        before = copy.deepcopy(scanning._last)
        got = scanning.scan(payload, "gw-a", METERS, NEWEST_OK, max_readings)
        if got is None:
            assert scanning._last == before  # gave up without touching the state
            expected = _reference(reference, payload, max_readings)
            _reference(scanning, payload, max_readings)  # the caller's fallback
        else:
            taken += 1
            expected = _reference(reference, payload, max_readings)
            assert expected is not None, payload
            assert got == expected, payload
            assert [type(x) for x in got] == [int, list, int, int, list]
        assert scanning._last == reference._last
    return taken


@settings(max_examples=1500, deadline=None)
@given(messages=st.lists(_message(), min_size=1, max_size=4))
def test_the_scan_matches_the_reference_on_random_and_adversarial_payloads(
    messages: list[bytes],
) -> None:
    _check(messages)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["e1", "e2", "w1"]),
            st.integers(NOW - 10, NOW),
            st.floats(min_value=0, max_value=1e6),
            st.floats(min_value=0, max_value=1e6),
            st.sampled_from([q.value for q in Quality]),
        ),
        min_size=1,
        max_size=20,
    ),
    chunks=st.integers(1, 3),
)
def test_the_scan_takes_what_gateways_send(rows: list[Any], chunks: int) -> None:
    """Messages as gateways write them (orjson, the wire's encoder) are all scanned, with
    counters that go back among them."""
    messages = []
    for c in range(chunks):
        readings = [
            {
                "m": m,
                "t": t + c,
                "q": {"p_kw": a, "e_kwh": b} if m != "w1" else {"vol_m3": b, "flow_m3h": a},
                "s": s,
            }
            for m, t, a, b, s in rows
        ]
        messages.append(encode_batch("gw-a", c, readings))
    assert _check(messages) == chunks


def test_the_scan_gives_up_beyond_the_reading_limit() -> None:
    one = {"m": "e1", "t": NOW, "q": {"p_kw": 1.0}}
    payload = encode_batch("gw-a", 1, [one, one, one])
    assert CounterWatch().scan(payload, "gw-a", METERS, NEWEST_OK, 2) is None
    assert CounterWatch().scan(payload, "gw-a", METERS, NEWEST_OK, 3) is not None


class _Letters:
    def __init__(self) -> None:
        # as published: a letter may echo a NaN literal, which strict JSON parsers refuse
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, payload: bytes, qos: int = 1) -> asyncio.Future[None]:
        self.sent.append((topic, payload))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class _Kept:
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def write(self, lines: list[str], units: int = 0) -> None:
        self.lines.extend(lines)


def _run(chunks: list[list[bytes]], clock: float) -> tuple[Any, ...]:
    settings = IngestSettings(
        mqtt=MqttSettings(), influx=InfluxSettings(), client_id="scan", session_expiry_s=0
    )
    service = IngestService(settings, REGISTRY, clock=lambda: clock)
    letters, writer = _Letters(), _Kept()
    data = topics.data_topic("p1", "gw-a")

    async def go() -> None:
        for chunk in chunks:
            messages = [Message(data, p, 1, n) for n, p in enumerate(chunk, 1)]
            await service._handle(letters, writer, messages)  # type: ignore[arg-type]

    asyncio.run(go())
    metrics = {
        (m.name, tuple(sorted(s.labels.items()))): s.value
        for m in service.metrics.registry.collect()
        for s in m.samples
        if not m.name.startswith(("pw_ingest_latency", "pw_ingest_lag"))
        and not s.name.endswith("_created")
    }
    return writer.lines, letters.sent, metrics, service.counters._last


@settings(max_examples=150, deadline=None)
@given(chunks=st.lists(st.lists(_message(), min_size=1, max_size=6), min_size=1, max_size=3))
def test_handle_stores_and_dead_letters_the_same_with_the_scan(chunks: list[list[bytes]]) -> None:
    """Whole chunks through ``_handle``, mixed plain and bad messages, the scan on and off:
    the same lines in the same order, dead letters, metrics and counter state."""
    clock = NOW / 1000
    assert counters.SCANNING
    with_scan = _run(chunks, clock)
    counters.SCANNING = False
    try:
        without = _run(chunks, clock)
    finally:
        counters.SCANNING = True
    assert with_scan == without


def test_a_message_whose_seq_tracking_fails_leaves_the_counter_watch_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seq tracking raising (a bug) dead-letters the message whole; with the scan as without,
    its readings never reach the counter watch: the next reading's counter did not go back."""
    observe = SeqTracker.observe

    def failing(self: SeqTracker, key: Any, seq: int, at: float) -> Any:
        if seq == 2:
            raise RuntimeError("a bug")
        return observe(self, key, seq, at)

    observe_next = SeqTracker.observe_next

    def failing_next(self: SeqTracker, key: Any, seq: int, at: float) -> bool:
        if seq == 2:
            raise RuntimeError("a bug")
        return observe_next(self, key, seq, at)

    monkeypatch.setattr(SeqTracker, "observe", failing)
    # the inline path asks observe_next first (observe only when that says no)
    monkeypatch.setattr(SeqTracker, "observe_next", failing_next)

    def message(seq: int, t: int, kwh: float) -> bytes:
        reading = {"m": "e1", "t": t, "q": {"e_kwh": kwh}}
        return json.dumps({"v": 1, "gw": "gw-a", "seq": seq, "readings": [reading]}).encode()

    chunks = [[message(1, NOW - 10, 10.0), message(2, NOW - 8, 1000.0), message(3, NOW - 5, 20.0)]]
    results = {}
    for scanning in (True, False):
        monkeypatch.setattr(counters, "SCANNING", scanning)
        results[scanning] = _run(chunks, NOW / 1000)
    stored, letters = results[True][0], results[True][1]
    assert [line.split(" ")[1] for line in stored] == ["e_kwh=10.0", "e_kwh=20.0"]
    assert len(letters) == 1
    assert b"internal_error" in letters[0][1]
    assert results[True] == results[False]


def test_a_commit_that_cannot_write_a_line_fails_before_the_counter_watch() -> None:
    """A quality without its field (the reference's KeyError) raises before the state changes;
    a scanned message commits once."""
    assert hotpath.scan_message is not None
    reading = {"m": "e1", "t": NOW, "q": {"e_kwh": 1.0}, "s": "estimated"}
    payload = encode_batch("gw-a", 1, [{"m": "e1", "t": NOW - 1, "q": {"e_kwh": 2.0}}, reading])
    scanned = hotpath.scan_message(payload, "gw-a", METERS, NEWEST_OK, 10, counters.QUALITY_NAMES)
    last: dict[str, Any] = {}
    rules = (last, counters.COUNTERS, [], counters.Decrease)
    with pytest.raises(KeyError):
        scanned.commit({"decreased": ',quality="decreased"'}, *rules)
    assert last == {}
    lines, values, newest, decreases = scanned.commit(counters.QUALITY_FIELD, *rules)
    assert lines[1].endswith(' e_kwh=1.0,quality="estimated" 1732411200000')
    assert (values, newest, len(decreases)) == (2, NOW, 1)
    with pytest.raises(RuntimeError):
        scanned.commit(counters.QUALITY_FIELD, *rules)
