"""``_handle``'s loop compiled over a run of messages (``parkwatch._hotpath.scan_run``)
against the same loop in Python, message by message: on random chunks of good, bad,
duplicate, out-of-order and restarted gateways' messages, over several topics, the same
lines in the same order, dead letters, metrics, counter state and seq state — and with the
scan off altogether (the reference decoding). Where seq tracking or a commit raises
(a bug), the message is dead-lettered alike."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hotpath_scan import NOW, _Kept, _Letters, _message

from ingest import counters, service
from ingest.counters import CounterWatch
from ingest.sequence import SeqTracker
from ingest.service import IngestService
from ingest.settings import IngestSettings
from parkwatch import _hotpath, hotpath, topics
from parkwatch.mqttio import Message
from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.site import Park, SiteRegistry

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
                            {"id": "e3", "utility": "electricity", "gateway": "gw-b"},
                            {"id": "w2", "utility": "water", "gateway": "gw-b"},
                        ],
                    }
                ],
            }
        ],
    }
)
REGISTRY = SiteRegistry([PARK])
GATEWAYS = {"gw-a": ["e1", "e2", "w1"], "gw-b": ["e3", "w2"], "gw-x": ["e1"]}
TOPICS = [
    topics.data_topic("p1", "gw-a"),
    topics.data_topic("p1", "gw-b"),
    topics.data_topic("p1", "gw-x"),  # no meter of this gateway: not tracked
    topics.data_topic("p9", "gw-a"),  # a park not configured
    "not/a/data/topic",
]


def test_the_stops_are_numbered_alike() -> None:
    for name in ("SCAN_FRESH", "SCAN_GAVE_UP", "SCAN_SEQ", "SCAN_SEQ_FAILED", "SCAN_COMMIT_FAILED"):
        assert getattr(_hotpath, name) == getattr(hotpath, name)


@st.composite
def _good(draw: st.DrawFn, gateway: str, seq: int) -> bytes:
    """A message as a gateway writes it: its meters, energy that mostly rises (sometimes goes
    back), now and then a quality."""
    readings = []
    for meter in draw(st.lists(st.sampled_from(GATEWAYS[gateway]), min_size=1, max_size=4)):
        q = (
            {"e_kwh": draw(st.floats(0, 100).map(lambda v: round(v, 2))), "p_kw": 1.5}
            if meter.startswith("e")
            else {"vol_m3": draw(st.floats(0, 100)), "flow_m3h": 0.25}
        )
        reading: dict[str, Any] = {"m": meter, "t": NOW - draw(st.integers(0, 50)), "q": q}
        quality = draw(st.sampled_from([None] * 6 + ["ok", "bad", "estimated", "nope"]))
        if quality is not None:
            reading["s"] = quality
        readings.append(reading)
    return json.dumps({"v": 1, "gw": gateway, "seq": seq, "readings": readings}).encode()


@st.composite
def _chunks(draw: st.DrawFn) -> list[list[tuple[str, bytes]]]:
    """Chunks of (topic, payload): each gateway's seq mostly in a row, with duplicates,
    numbers from behind and ahead, restarts; bad payloads and odd topics among them."""
    seqs = {"gw-a": 0, "gw-b": 100, "gw-x": 5}
    out = []
    for _ in range(draw(st.integers(1, 4))):
        chunk = []
        for _ in range(draw(st.integers(1, 12))):
            topic = draw(st.sampled_from(TOPICS[:2] * 6 + TOPICS))
            gateway = topic.split("/")[-1] if topic != TOPICS[-1] else "gw-a"
            gateway = gateway if gateway in seqs else "gw-a"
            step: int | str = draw(st.sampled_from([1] * 10 + [0, -1, -3, 2, 9, "restart"]))
            seqs[gateway] = max(1, seqs[gateway] + step) if isinstance(step, int) else 1
            if draw(st.integers(0, 9)) == 0:
                payload = draw(_message())  # anything: mostly off, some the scan gives up on
            else:
                payload = draw(_good(gateway, seqs[gateway]))
            chunk.append((topic, payload))
        out.append(chunk)
    return out


def _run(chunks: list[list[tuple[str, bytes]]], start: float = NOW / 1000) -> tuple[Any, ...]:
    settings = IngestSettings(
        mqtt=MqttSettings(), influx=InfluxSettings(), client_id="run", session_expiry_s=0
    )
    clock = [start]
    ingest = IngestService(settings, REGISTRY, clock=lambda: clock[0])
    letters, writer = _Letters(), _Kept()

    async def go() -> None:
        for i, chunk in enumerate(chunks):
            messages = [Message(t, p, 1, n) for n, (t, p) in enumerate(chunk, 1)]
            await ingest._handle(letters, writer, messages)  # type: ignore[arg-type]
            clock[0] += 0.5 * (i % 3)  # chunks at the same time and later

    asyncio.run(go())
    metrics = {
        (m.name, tuple(sorted(s.labels.items()))): s.value
        for m in ingest.metrics.registry.collect()
        for s in m.samples
        if not m.name.startswith(("pw_ingest_latency", "pw_ingest_lag"))
        and not s.name.endswith("_created")
    }
    seq_state = (repr(ingest.sequences._gateways), repr(ingest.sequences.counts))
    return writer.lines, letters.sent, metrics, ingest.counters._last, seq_state


def _three_ways(
    chunks: list[list[tuple[str, bytes]]], monkeypatch: pytest.MonkeyPatch, unscanned: bool = True
) -> Any:
    """The run compiled, the loop in Python with the scan, and (``unscanned``) without the
    scan: all alike."""
    assert hotpath.scan_run is not None
    assert counters.SCANNING
    compiled = _run(chunks)
    with monkeypatch.context() as patch:
        patch.setattr(service, "_scan_run", None)
        in_python = _run(chunks)
        patch.setattr(counters, "SCANNING", False)
        reference = _run(chunks) if unscanned else compiled
    assert compiled == in_python
    assert compiled == reference
    return compiled


@settings(max_examples=200, deadline=None)
@given(chunks=_chunks())
def test_the_compiled_run_handles_chunks_as_the_python_loop(
    chunks: list[list[tuple[str, bytes]]],
) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        _three_ways(chunks, monkeypatch)


def _good_chunk() -> list[tuple[str, bytes]]:
    a, b = TOPICS[0], TOPICS[1]

    def one(gateway: str, seq: int, kwh: float) -> bytes:
        reading = {"m": GATEWAYS[gateway][0], "t": NOW - 100 + seq, "q": {"e_kwh": kwh}}
        return json.dumps({"v": 1, "gw": gateway, "seq": seq, "readings": [reading]}).encode()

    return [
        (a, one("gw-a", 1, 10.0)),
        (b, one("gw-b", 1, 5.0)),
        (a, one("gw-a", 2, 1000.0)),
        (a, one("gw-a", 3, 20.0)),  # went back: a decrease shown
        (b, one("gw-b", 2, 6.0)),
        (a, one("gw-a", 2, 21.0)),  # a replay
        (a, one("gw-a", 4, 22.0)),
    ]


def test_a_chunk_as_gateways_send_it_goes_through_in_one_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    run = hotpath.scan_run
    assert run is not None

    def counted(*args: Any) -> Any:
        calls.append(args[1])
        return run(*args)

    monkeypatch.setattr(service, "_scan_run", counted)
    lines, letters, metrics, _, _ = _three_ways([_good_chunk()], monkeypatch)
    assert len(lines) == 7
    assert not letters
    assert metrics[("pw_ingest_counter_decreases", (("quantity", "e_kwh"),))] == 1
    # the first gateway's first messages go to observe (seq FIRST), the replay too: the run
    # hands each back and goes on after it
    assert calls[0] == 0
    assert len(calls) < 7


# gw-a's 3 comes in a row (observe_next takes it), its second 2 is a replay (observe's)
@pytest.mark.parametrize(("failing", "at_seq"), [("observe_next", 3), ("observe", 2)])
def test_seq_tracking_that_raises_dead_letters_the_message_alike(
    monkeypatch: pytest.MonkeyPatch, failing: str, at_seq: int
) -> None:
    original = getattr(SeqTracker, failing)

    def broken(self: SeqTracker, key: Any, seq: int, at: float) -> Any:
        if key[1] == "gw-a" and seq == at_seq:
            raise RuntimeError("a bug")
        return original(self, key, seq, at)

    monkeypatch.setattr(SeqTracker, failing, broken)
    # without the scan ingest asks observe alone, so another message would fail there
    lines, letters, _, _, _ = _three_ways([_good_chunk()], monkeypatch, unscanned=False)
    assert len(letters) == 1
    assert b"internal_error" in letters[0][1]
    assert len(lines) == 6


def test_a_commit_that_raises_dead_letters_the_message_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A quality without its line field makes the commit raise (a bug's stand-in), before the
    counter watch changes: that message is dead-lettered with its seq, the rest stored."""
    commit_args = CounterWatch.commit_args

    def without_estimated(self: CounterWatch) -> tuple[object, ...]:
        fields, *rest = commit_args(self)
        kept = {k: v for k, v in fields.items() if k != "estimated"}  # type: ignore[attr-defined]
        return (kept, *rest)

    monkeypatch.setattr(CounterWatch, "commit_args", without_estimated)
    chunk = _good_chunk()
    odd = json.loads(chunk[3][1])
    odd["readings"][0]["s"] = "estimated"
    chunk[3] = (chunk[3][0], json.dumps(odd).encode())
    # (the reference encoder does not take commit_args: it would store the message)
    lines, letters, _, _, _ = _three_ways([chunk], monkeypatch, unscanned=False)
    assert len(letters) == 1
    assert b"internal_error" in letters[0][1]
    assert b'"seq":3' in letters[0][1] or b'"seq": 3' in letters[0][1]
    assert len(lines) == 6
