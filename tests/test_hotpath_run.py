"""``_handle``'s loop compiled over a run of messages (``parkwatch._hotpath.scan_run``)
against the same loop in Python, message by message: on random chunks of good, bad,
duplicate, out-of-order and restarted gateways' messages, over several topics, the same
lines in the same order, dead letters, metrics, counter state and seq state — and with the
scan off altogether (the reference decoding). Where seq tracking or a commit raises
(a bug), the message is dead-lettered alike."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import tracemalloc
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

MANY = 20  # gateways: more than scan_run's 16 kept at once
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
                            # more gateways than scan_run keeps next numbers for in a call
                            *(
                                {"id": f"n{i}", "utility": "electricity", "gateway": f"gw-{i}"}
                                for i in range(MANY)
                            ),
                        ],
                    }
                ],
            }
        ],
    }
)
REGISTRY = SiteRegistry([PARK])
GATEWAYS = {"gw-a": ["e1", "e2", "w1"], "gw-b": ["e3", "w2"], "gw-x": ["e1"]}
GATEWAYS.update({f"gw-{i}": [f"n{i}"] for i in range(MANY)})
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
    # the build's scan_run takes the arguments ingest gives it (an older one is not used)
    assert _hotpath.SCAN_RUN_VERSION == hotpath.SCAN_RUN_VERSION


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


_STEPS: list[int | str] = [*[1] * 10, 0, -1, -3, 2, 9, "restart"]
_GOING_ON: list[int | str] = [*[1] * 40, 0, -2, 2, 70, "restart"]


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
            step = draw(st.sampled_from(_STEPS))
            seqs[gateway] = max(1, seqs[gateway] + step) if isinstance(step, int) else 1
            if draw(st.integers(0, 9)) == 0:
                payload = draw(_message())  # anything: mostly off, some the scan gives up on
            else:
                payload = draw(_good(gateway, seqs[gateway]))
            chunk.append((topic, payload))
        out.append(chunk)
    return out


def _run(
    chunks: list[list[tuple[str, bytes]]],
    start: float = NOW / 1000,
    steps: list[float] | None = None,
    consts: dict[str, float] | None = None,
) -> tuple[Any, ...]:
    settings = IngestSettings(
        mqtt=MqttSettings(), influx=InfluxSettings(), client_id="run", session_expiry_s=0
    )
    clock = [start]
    ingest = IngestService(settings, REGISTRY, clock=lambda: clock[0])
    for name, value in (consts or {}).items():  # the tracker's own, not its class's
        setattr(ingest.sequences, name, value)
    letters, writer = _Letters(), _Kept()

    async def go() -> None:
        for i, chunk in enumerate(chunks):
            messages = [Message(t, p, 1, n) for n, (t, p) in enumerate(chunk, 1)]
            await ingest._handle(letters, writer, messages)  # type: ignore[arg-type]
            # chunks at the same time and later
            clock[0] += 0.5 * (i % 3) if steps is None else steps[i % len(steps)]

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
    chunks: list[list[tuple[str, bytes]]],
    monkeypatch: pytest.MonkeyPatch,
    unscanned: bool = True,
    steps: list[float] | None = None,
    consts: dict[str, float] | None = None,
) -> Any:
    """The run compiled, the loop in Python with the scan, and (``unscanned``) without the
    scan: all alike."""
    assert hotpath.scan_run is not None
    assert counters.SCANNING
    compiled = _run(chunks, steps=steps, consts=consts)
    with monkeypatch.context() as patch:
        patch.setattr(service, "_scan_run", None)
        in_python = _run(chunks, steps=steps, consts=consts)
        patch.setattr(counters, "SCANNING", False)
        reference = _run(chunks, steps=steps, consts=consts) if unscanned else compiled
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


# the tracker's constants overridden on the instance (observe_next reads them from self):
# scan_run reads them there too
_CONSTS: list[dict[str, float] | None] = [
    None,
    {"SLACK": 0.5, "MARGIN": 0.3, "JUMP": 1},
    {"JUMP": 0},
    {"SLACK": 7.25, "MARGIN": 2.0, "JUMP": 3},
    {"SLACK": 2.0, "MARGIN": 1.5, "JUMP": -4},
]


@st.composite
def _gateways_going_on(
    draw: st.DrawFn,
) -> tuple[list[list[tuple[str, bytes]]], list[float], dict[str, float] | None]:
    """Chunks as gateways send them over a while: their next numbers mostly, several to a
    chunk, now and then one missed, repeated or from a restart; chunks a moment to a minute
    apart, so that runs go on quickly, learn a pace and stop. Two gateways, or 20 (more than
    scan_run keeps at once) interleaved one by one or in bursts; the tracker's constants
    now and then its own."""
    many = draw(st.booleans())
    pool = [f"gw-{i}" for i in range(MANY)] if many else ["gw-a", "gw-b"]
    seqs = {gateway: draw(st.sampled_from([0, 40])) for gateway in pool}
    chunks = []
    for _ in range(draw(st.integers(2, 12))):
        chunk = []
        # 0: any order; 1: one by one in turn; 2+: bursts of that many
        burst = draw(st.integers(0, 4))
        for n in range(draw(st.integers(1, 70 if many else 30))):
            gateway = pool[(n // burst) % len(pool)] if burst else draw(st.sampled_from(pool))
            step = draw(st.sampled_from(_GOING_ON))
            seqs[gateway] = max(1, seqs[gateway] + step) if isinstance(step, int) else 1
            chunk.append((topics.data_topic("p1", gateway), draw(_good(gateway, seqs[gateway]))))
        chunks.append(chunk)
    steps = draw(st.lists(st.sampled_from([0.0, 0.01, 0.3, 1.0, 2.5, 7.0, 60.0]), min_size=1))
    return chunks, steps, draw(st.sampled_from(_CONSTS))


@settings(max_examples=150, deadline=None)
@given(sent=_gateways_going_on())
def test_next_numbers_taken_in_the_run_leave_the_tracker_alike(
    sent: tuple[list[list[tuple[str, bytes]]], list[float], dict[str, float] | None],
) -> None:
    """scan_run takes a gateway's next numbers after its first ones in a call itself (the
    tracker given): the seq state (every run's high, lead, pace) as the Python loop's."""
    chunks, steps, consts = sent
    with pytest.MonkeyPatch.context() as monkeypatch:
        _three_ways(chunks, monkeypatch, unscanned=False, steps=steps, consts=consts)


def _in_a_row(gateway: str, first: int, n: int) -> list[tuple[str, bytes]]:
    topic = topics.data_topic("p1", gateway)
    payloads = [
        json.dumps(
            {
                "v": 1,
                "gw": gateway,
                "seq": seq,
                "readings": [
                    {"m": GATEWAYS[gateway][0], "t": NOW - 500 + seq, "q": {"e_kwh": 1.0}}
                ],
            }
        ).encode()
        for seq in range(first, first + n)
    ]
    return [(topic, payload) for payload in payloads]


@pytest.mark.parametrize("later", [0.0, 0.4, 3.0])
def test_the_run_calls_observe_next_only_for_a_gateways_first_numbers(later: float) -> None:
    """Given the tracker, scan_run calls observe_next (Python) for a gateway's first two
    numbers in a call and takes the rest itself: the same state as observe_next for each,
    nothing kept (references) once it returns — at the same time as the last chunk (a run
    that never moved in time: a room of JUMP) and later (a quick run, a paced one)."""
    assert hotpath.scan_run is not None

    def fed(tracker_given: bool) -> tuple[str, int, list[int]]:
        ingest = IngestService(
            IngestSettings(
                mqtt=MqttSettings(), influx=InfluxSettings(), client_id="n", session_expiry_s=0
            ),
            REGISTRY,
            clock=lambda: NOW / 1000,
        )
        first = _in_a_row("gw-a", 1, 3) + _in_a_row("gw-b", 1, 3)
        first += _in_a_row("gw-a", 4, 3) + _in_a_row("gw-b", 4, 3)
        messages = [Message(t, p, 1, n) for n, (t, p) in enumerate(first, 1)]
        asyncio.run(ingest._handle(_Letters(), _Kept(), messages))  # type: ignore[arg-type]
        tracker = ingest.sequences
        for gateway in tracker._gateways.values():  # paced: every known
            if later >= 1.0:
                gateway.run.every = 1.0
        chunk = [
            Message(t, p, 1, n)
            for n, (t, p) in enumerate(
                _in_a_row("gw-a", 7, 5) + _in_a_row("gw-b", 7, 5) + _in_a_row("gw-a", 12, 4), 1
            )
        ]
        calls: list[int] = []

        def next_in_line(key: tuple[str, str], seq: int, at: float) -> bool:
            calls.append(seq)
            return tracker.observe_next(key, seq, at)

        at = NOW / 1000 + later
        lines: list[str] = []
        handled: list[Any] = []
        refs = sys.getrefcount(tracker._gateways[("p1", "gw-a")].run)
        assert hotpath.scan_run is not None
        index, stop, *_ = hotpath.scan_run(
            chunk,
            0,
            ingest._sources,
            1 << 20,
            NOW + 1000,
            100,
            counters.QUALITY_NAMES,
            ingest.counters.commit_args(),
            next_in_line,
            at,
            handled,
            lines,
            ingest._show_decreases,
            tracker if tracker_given else None,
        )
        assert (index, stop) == (len(chunk), hotpath.SCAN_FRESH)
        assert len(lines) == len(chunk)
        kept = sys.getrefcount(tracker._gateways[("p1", "gw-a")].run)  # (not in the assert:
        assert kept == refs  # pytest's rewritten assert holds its operands)
        return repr(tracker._gateways), len(calls), calls

    state, _, calls = fed(True)
    reference, all_of_them, _ = fed(False)
    assert state == reference
    assert all_of_them == 14
    # gw-a's 7 and 8, gw-b's 7 and 8; gw-a's second lot goes on in C
    assert calls == [7, 8, 7, 8]


@pytest.mark.parametrize("burst", [1, 3])
def test_more_gateways_in_a_call_than_kept(burst: int) -> None:
    """20 gateways in a call (scan_run keeps 16): sent one by one in turn, none has a third
    number before the 17th comes, so all go to observe_next (the cache left for the call);
    in bursts of 3, each gateway's third is taken in C (the cache started again at the
    17th) — the state as observe_next's for every number either way."""
    assert hotpath.scan_run is not None
    pool = [f"gw-{i}" for i in range(MANY)]

    def fed(tracker_given: bool) -> tuple[str, list[int]]:
        ingest = IngestService(
            IngestSettings(
                mqtt=MqttSettings(), influx=InfluxSettings(), client_id="m", session_expiry_s=0
            ),
            REGISTRY,
            clock=lambda: NOW / 1000,
        )
        first = [sent for gateway in pool for sent in _in_a_row(gateway, 1, 2)]
        messages = [Message(t, p, 1, n) for n, (t, p) in enumerate(first, 1)]
        asyncio.run(ingest._handle(_Letters(), _Kept(), messages))  # type: ignore[arg-type]
        tracker = ingest.sequences
        if burst == 1:
            sent = [_in_a_row(gateway, seq, 1)[0] for seq in (3, 4, 5) for gateway in pool]
        else:
            sent = [one for gateway in pool for one in _in_a_row(gateway, 3, 3)]
        calls: list[int] = []

        def next_in_line(key: tuple[str, str], seq: int, at: float) -> bool:
            calls.append(seq)
            return tracker.observe_next(key, seq, at)

        assert hotpath.scan_run is not None
        index, stop, *_ = hotpath.scan_run(
            [Message(t, p, 1, n) for n, (t, p) in enumerate(sent, 1)],
            0,
            ingest._sources,
            1 << 20,
            NOW + 1000,
            100,
            counters.QUALITY_NAMES,
            ingest.counters.commit_args(),
            next_in_line,
            NOW / 1000 + 0.4,
            [],
            [],
            ingest._show_decreases,
            tracker if tracker_given else None,
        )
        assert (index, stop) == (len(sent), hotpath.SCAN_FRESH)
        return repr(tracker._gateways), calls

    state, calls = fed(True)
    reference, all_of_them = fed(False)
    assert state == reference
    assert len(all_of_them) == 3 * MANY
    assert calls == (all_of_them if burst == 1 else [3, 4] * MANY)


def test_next_numbers_taken_in_the_run_leak_nothing() -> None:
    """1,000 calls of scan_run with the tracker, each taking most numbers itself: no
    reference kept to a run, no block per message."""
    assert hotpath.scan_run is not None
    ingest = IngestService(
        IngestSettings(
            mqtt=MqttSettings(), influx=InfluxSettings(), client_id="l", session_expiry_s=0
        ),
        REGISTRY,
        clock=lambda: NOW / 1000,
    )
    first = _in_a_row("gw-a", 1, 3) + _in_a_row("gw-b", 1, 3)
    messages = [Message(t, p, 1, n) for n, (t, p) in enumerate(first, 1)]
    asyncio.run(ingest._handle(_Letters(), _Kept(), messages))  # type: ignore[arg-type]
    tracker = ingest.sequences
    seqs = {"gw-a": 4, "gw-b": 4}
    at = [NOW / 1000]

    def rounds(n: int) -> None:
        for _ in range(n):
            sent = _in_a_row("gw-a", seqs["gw-a"], 6) + _in_a_row("gw-b", seqs["gw-b"], 6)
            seqs["gw-a"] += 6
            seqs["gw-b"] += 6
            at[0] += 0.3
            assert hotpath.scan_run is not None
            index, stop, *_ = hotpath.scan_run(
                [Message(t, p, 1, n) for n, (t, p) in enumerate(sent, 1)],
                0,
                ingest._sources,
                1 << 20,
                NOW + 10**9,
                100,
                counters.QUALITY_NAMES,
                ingest.counters.commit_args(),
                tracker.observe_next,
                at[0],
                [],
                [],
                ingest._show_decreases,
                tracker,
            )
            assert (index, stop) == (len(sent), hotpath.SCAN_FRESH)

    rounds(100)
    gc.collect()
    runs = [gateway.run for gateway in tracker._gateways.values()]
    refs = [sys.getrefcount(run) for run in runs]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rounds(1000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    kept = [sys.getrefcount(run) for run in runs]
    assert kept == refs
    assert [run.high for run in runs] == [6603, 6603]  # written back: 3 + 1,100 * 6
    # a block leaked per message would be > 12,000 * 32 bytes
    assert grown < 16_000, grown
