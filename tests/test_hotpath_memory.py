"""The compiled scan's memory handling (``parkwatch._hotpath``: a Scanned's inline records and
values, its freelist, commit's kept line buffer) checked where wrong output alone would not
show it: sizes around the inline limits, lines past the kept buffer's first block, a commit
that raises or is entered again partway, and no meter reference or block leaked over many
rounds; and ``SeqTracker.observe_next``'s no-time-passed branch against ``_next``."""

from __future__ import annotations

import copy
import dataclasses
import gc
import random
import sys
import tracemalloc
from typing import Any

import mqtt5
import pytest
from test_hotpath_scan import METERS, NEWEST_OK, NOW, _check, _reference

from ingest import counters
from ingest.counters import CounterWatch
from ingest.sequence import SeqTracker, _Gateway, _Run
from parkwatch import hotpath
from parkwatch.mqttio import Message
from parkwatch.wire import encode_batch

_QUANTITIES = {
    "e1": ["p_kw", "e_kwh", "pf"],
    "e2": ["p_kw", "e_kwh", "pf"],
    "w1": ["vol_m3", "flow_m3h"],
}


def _scan(payload: bytes) -> Any:
    assert hotpath.scan_message is not None
    return hotpath.scan_message(payload, "gw-a", METERS, NEWEST_OK, 100, counters.QUALITY_NAMES)


def _message(seq: int, shape: list[int], order: list[str], rng: random.Random) -> bytes:
    """A message of len(shape) readings, the i-th with shape[i] values, meters in turn."""
    readings = []
    for i, count in enumerate(shape):
        meter = order[i % len(order)]
        keys = _QUANTITIES[meter][:count]
        values = {k: rng.choice([0.5, 0.25, 0.75, 0.125]) for k in keys}
        readings.append({"m": meter, "t": NOW - 1000 + seq + i, "q": values})
    return encode_batch("gw-a", seq, readings)


def _wide(t: int, base: float) -> dict[str, Any]:
    """One e1 reading with every quantity but pf and soc_pct, long decimals: a line > 256
    bytes, past the kept buffer's first block."""
    keys = [k for k in METERS["e1"].bounds if k not in ("pf", "soc_pct")]
    return {
        "m": "e1",
        "t": t,
        "q": {k: base + 0.123456789012 * (i + 1) for i, k in enumerate(keys)},
    }


_BIG1 = encode_batch("gw-a", 1, [_wide(NOW - 100, 123456789.0)] * 2)
# its first reading goes back (a decrease), then three long lines after it
_BIG2 = encode_batch("gw-a", 2, [_wide(NOW - 90, 1.0)] + [_wide(NOW - 80, 223456789.0)] * 3)
_SMALL = encode_batch("gw-a", 3, [{"m": "e2", "t": NOW, "q": {"p_kw": 1.0}}])


class TestScanMemory:
    @pytest.fixture(autouse=True)
    def _compiled(self) -> None:
        # these are the compiled scan's own memory paths: without the build they would test
        # the Python fallback, so fail and say why (./run.sh setup builds it)
        assert hotpath.COMPILED, "parkwatch._hotpath is not built: run ./run.sh setup"

    def test_sizes_around_the_inline_limits_match_the_reference(self) -> None:
        """4 records / 8 values fit inline, 5 / 9 move them to the heap (alone or one of
        them), and growth after that; each meter order, so hint hits and misses too."""
        rng = random.Random(1)
        shapes = [[n] * k for k in range(1, 13) for n in (1, 2, 3)]
        shapes += [[3, 3, 2], [3, 3, 3], [2, 2, 2, 2], [2, 2, 2, 3], [1, 1, 1, 1, 3]]
        orders = [["e1", "e2", "w1"], ["w1", "e2", "e1"], ["e1"], ["e2", "e1"]]
        messages: list[bytes] = []
        for shape in shapes:
            for order in orders:
                messages.append(_message(len(messages) + 1, shape, order, rng))
        assert _check(messages) == len(messages)

    def test_long_lines_over_several_commits(self) -> None:
        lines = _reference(CounterWatch(), _BIG1, 100)[1]
        assert min(len(line) for line in lines) > 256
        # the kept buffer grows in the first, is reused long and short after
        assert _check([_BIG1, _BIG2, _SMALL, _BIG1, _BIG2, _SMALL]) == 6

    def test_a_commit_that_raises_partway_leaves_later_commits_right(self) -> None:
        for _ in range(3):
            watch = CounterWatch()
            args = list(watch.commit_args())
            _scan(_BIG1).commit(*args)

            def boom(*_: object) -> Any:
                raise ZeroDivisionError

            args[-1] = boom
            with pytest.raises(ZeroDivisionError):
                _scan(_BIG2).commit(*args)  # after its first line, with the buffer taken
            assert _check([_BIG1, _BIG2, _SMALL, _BIG1]) == 4

    def test_a_commit_within_a_commit(self) -> None:
        """The decrease callback commits long lines while the outer commit holds the kept
        buffer: both give the reference's lines, and later commits too."""
        inner: list[Any] = []

        def decrease(*fields: Any) -> counters.Decrease:
            rules: tuple[object, ...] = (
                counters.QUALITY_FIELD,
                {},
                counters.COUNTERS,
                counters._NOT_COUNTED,
            )
            inner.append(_scan(_BIG1).commit(*rules, counters.Decrease))
            return counters.Decrease(*fields)

        args = list(CounterWatch().commit_args())
        args[-1] = decrease
        _scan(_BIG1).commit(*args)
        got = _scan(_BIG2).commit(*args)
        reference = CounterWatch()
        _reference(reference, _BIG1, 100)
        expected = _reference(reference, _BIG2, 100)
        assert (got[0], got[3]) == (expected[1], expected[4])
        assert len(inner) == len(expected[4]) > 0
        assert all(i[0] == _reference(CounterWatch(), _BIG1, 100)[1] for i in inner)
        assert _check([_BIG2, _BIG1, _SMALL]) == 3

    def test_no_meter_reference_or_block_leaks(self) -> None:
        """Many scan+commit rounds, with messages given up before and after the records
        grew past the inline ones: the meters' refcounts and the traced memory stay."""
        rng = random.Random(2)
        good = _message(1, [3] * 9, ["e1", "e2", "w1"], rng)
        small = _message(1, [2] * 4, ["e1", "e2", "w1"], rng)
        garbage_tail = good[:-3] + b'"nope"' + good[-3:]  # gives up after every reading
        unknown = good.replace(b'"m":"w1"', b'"m":"nope"', 1)  # gives up at the 3rd reading
        # gives up at the 6th: its 5 records and 15 values off the inline arrays
        parts = good.split(b'"m":"w1"')
        unknown_late = b'"m":"w1"'.join(parts[:2]) + b'"m":"nope"' + b'"m":"w1"'.join(parts[2:])
        assert _scan(unknown) is None
        assert _scan(unknown_late) is None
        assert _scan(garbage_tail) is None
        messages = [good, small, garbage_tail, unknown, unknown_late, _BIG1]

        def rounds(n: int) -> None:
            watch = CounterWatch()
            for _ in range(n):
                for payload in messages:
                    scanned = _scan(payload)
                    if scanned is not None:
                        scanned.commit(*watch.commit_args())

        rounds(200)  # freelists, the kept buffer at its largest
        gc.collect()
        refs = {m: sys.getrefcount(meter) for m, meter in METERS.items()}
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            rounds(2000)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert {m: sys.getrefcount(meter) for m, meter in METERS.items()} == refs
        # a block leaked per commit or message would be > 2000 * 4 * 256 bytes
        assert grown < 64_000, grown


def _fields(run: _Run) -> list[tuple[str, str, str]]:
    """Each field's type and repr: equal floats but -0.0 and 0.0, or 7 and 7.0, differ."""
    return [
        (f.name, type(getattr(run, f.name)).__name__, repr(getattr(run, f.name)))
        for f in dataclasses.fields(run)
    ]


def _states(rng: random.Random) -> list[tuple[_Run, float]]:
    """Runs and an arrival time at or before their last: random ones and, explicitly, each
    case of observe_next's branch (a quick run's, a stopped quick run's, JUMP's, paced)."""
    states = []
    for _ in range(5000):
        at = rng.choice([0.0, 5.0, 1e9 + 0.123, rng.uniform(0, 1e6)])
        run = _Run(
            high=rng.randint(1, 10**6),
            at=at,
            lead=rng.choice([0.0, 2.0, 1.5, rng.uniform(0, 2), 7, -0.0]),
            every=rng.choice([None, 1.0, 0.5, 60.0, rng.uniform(1e-3, 1e4), float("inf")]),
            fast=rng.choice([0, 0, 1, 300]),
            quick=rng.choice([None, 0.3, rng.uniform(1e-6, 0.999)]),
            alone=rng.choice([True, False]),
        )
        states.append((run, at - rng.choice([0.0, 0.0, 0.5, 1e-9, 3.0])))
    for every in (None, 1.0):
        for fast, quick in ((0, None), (3, None), (3, 0.2), (0, 0.2)):
            # fast with quick None: a quick run that stopped (SLACK, not JUMP, if unpaced)
            states.append(
                (_Run(high=10, at=50.0, lead=0.5, every=every, fast=fast, quick=quick), 50.0)
            )
    return states


def test_observe_next_where_no_time_passed_is_next() -> None:
    """The inlined branch leaves each field as ``_next`` would, bit for bit and type."""
    cases = set()
    for run, at in _states(random.Random(5)):
        reference = copy.deepcopy(run)
        cases.add((run.every is None, bool(run.fast), run.quick is None))
        tracker = SeqTracker()
        tracker._gateways[("p", "g")] = _Gateway(run)
        assert tracker.observe_next(("p", "g"), run.high + 1, at)
        SeqTracker()._next(reference, reference.high + 1, at)
        assert _fields(run) == _fields(reference)
    assert len(cases) == 8
    # the stopped quick run's room is SLACK, a never-fast unpaced one's JUMP
    stopped = _Run(high=10, at=50.0, lead=0.5, fast=3)
    jumping = _Run(high=10, at=50.0, lead=0.5)
    for run in (stopped, jumping):
        tracker = SeqTracker()
        tracker._gateways[("p", "g")] = _Gateway(run)
        assert tracker.observe_next(("p", "g"), 11, 50.0)
    assert (stopped.lead, jumping.lead) == (SeqTracker.SLACK - 1, SeqTracker.JUMP - 1)


class TestRunMemory:
    """``scan_run``: a commit that fails partway leaves the chunk's lines as they were, and
    many runs (with the reader's kept topics) leak no reference or block."""

    @pytest.fixture(autouse=True)
    def _compiled(self) -> None:
        assert hotpath.COMPILED, "parkwatch._hotpath is not built: run ./run.sh setup"

    @staticmethod
    def _run(chunk: list[Any], lines: list[str], handled: list[Any], args: Any) -> Any:
        assert hotpath.scan_run is not None
        source = _Src()
        return hotpath.scan_run(
            chunk,
            0,
            {"t": source},
            1 << 20,
            NEWEST_OK,
            100,
            counters.QUALITY_NAMES,
            tuple(args),
            None,
            1.0,
            handled,
            lines,
            lambda found: None,
        )

    def test_a_commit_that_fails_partway_takes_its_lines_out(self) -> None:
        # its first reading goes up, its second back: the decrease callback raises there,
        # after the first line was appended
        back = encode_batch("gw-a", 2, [_wide(NOW - 70, 323456789.0), _wide(NOW - 60, 1.0)])

        def boom(*_: object) -> Any:
            raise ZeroDivisionError

        args = list(CounterWatch().commit_args())
        args[-1] = boom
        lines: list[str] = []
        handled: list[Any] = []
        index, stop, scanned, error, _, _ = self._run(
            [("t", _BIG1), ("t", back)], lines, handled, args
        )
        assert (index, stop) == (1, hotpath.SCAN_COMMIT_FAILED)
        assert isinstance(error, ZeroDivisionError)
        assert scanned is not None
        assert lines == _reference(CounterWatch(), _BIG1, 100)[1]
        assert len(handled) == 1

    def test_no_reference_or_block_leaks(self) -> None:
        rng = random.Random(3)
        payloads = [_message(1, [3] * n, ["e1", "e2", "w1"], rng) for n in (1, 2, 9)]
        names = [f"pw/v1/p/gw-{i}/data" for i in range(20)]
        data = b"".join(
            bytes(
                mqtt5.PublishPacket(
                    name, payloads[i % 3], qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=i + 1
                ).write()
            )
            for i, name in enumerate(names * 3)
        )

        def rounds(n: int) -> None:
            args = CounterWatch().commit_args()
            for _ in range(n):
                messages, _, _ = hotpath.read_publishes(data, 0, Message)  # type: ignore[misc]
                chunk = [("t", m.payload) for m in messages]
                self._run(chunk, [], [], args)

        rounds(100)
        gc.collect()
        refs = {m: sys.getrefcount(meter) for m, meter in METERS.items()}
        source_refs = sys.getrefcount(_SRC)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            rounds(1000)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert {m: sys.getrefcount(meter) for m, meter in METERS.items()} == refs
        assert sys.getrefcount(_SRC) == source_refs
        # a block leaked per message would be > 60,000 * 32 bytes
        assert grown < 64_000, grown


class _Src:
    """A source as ingest's ``_Source`` gives it to scan_run (its ``scan`` only)."""

    scan = ("gw-a", METERS, None)


_SRC = _Src.scan
