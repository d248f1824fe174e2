"""The seq tracker (unit), as scenario tables: batches in arrival order → what is counted.
Gaps, late batches, replays, restarts, and absurd numbers that must not rule it (issue 11,
item 3)."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import pytest

from ingest.sequence import SeqCounts, SeqTracker, Verdict

A = ("lj-demo", "gw-a")
B = ("lj-demo", "gw-b")
WIN, WIN_FAR = SeqTracker.WIN, SeqTracker.WIN_FAR


@dataclass(frozen=True)
class Arrival:
    key: tuple[str, str]
    seq: int
    after: float  # seconds after the arrival before


def span(low: int, high: int) -> list[int]:
    """Numbers low..high, both included."""
    return list(range(low, high + 1))


def poll(*seqs: int | list[int], key: tuple[str, str] = A, every: float = 1.0) -> list[Arrival]:
    """Batches as a gateway sends them: one every poll interval."""
    flat = [n for s in seqs for n in (s if isinstance(s, list) else [s])]
    return [Arrival(key, n, every) for n in flat]


def burst(*seqs: int | list[int], key: tuple[str, str] = A) -> list[Arrival]:
    """Batches arriving all at once: a broker re-delivering, a backlog, a hostile sender."""
    return [Arrival(a.key, a.seq, 0.0) for a in poll(*seqs, key=key)]


def feed(tracker: SeqTracker, arrivals: list[Arrival], start: float = 0.0) -> list[Verdict]:
    verdicts: list[Verdict] = []
    at = start
    for arrival in arrivals:
        at += arrival.after
        verdicts += tracker.observe(arrival.key, arrival.seq, at)
    return verdicts


def timeline(*streams: list[tuple[float, int]], key: tuple[str, str] = A) -> list[Arrival]:
    """Streams of ``(seconds, seq)`` interleaved by time (the first stream first at a tie)."""
    merged = sorted((e for stream in streams for e in stream), key=lambda e: e[0])
    return [
        Arrival(key, n, at - before)
        for (at, n), (before, _) in zip(merged, [(0.0, 0), *merged[:-1]], strict=True)
    ]


def paced(seqs: list[int], start: float, every: float = 1.0) -> list[tuple[float, int]]:
    return [(start + every * k, n) for k, n in enumerate(seqs)]


def drained(seqs: list[int], start: float) -> list[tuple[float, int]]:
    """A backlog sent behind the live batches: 20 a second."""
    return [(start + 0.01 + 0.05 * k, n) for k, n in enumerate(seqs)]


HOSTILE = 900_001

SCENARIOS: dict[str, tuple[list[Arrival], SeqCounts]] = {
    "plain run": (poll(span(1, 500)), SeqCounts()),
    "plain run, ingest started late": (poll(span(5000, 5500)), SeqCounts()),
    "plain run, ingest handling a chunk of them at once": (
        [*poll(span(1, 100)), *burst(span(101, 400)), *poll(span(401, 450))],
        SeqCounts(),
    ),
    "a real gap": (poll(1, 2, 3, 6, 7), SeqCounts(gaps=2)),
    # an outage as it comes: the live batch first, after the outage's time (a gap at once),
    # the backlog behind it (late)
    "outage: live first, backlog behind": (
        [
            *poll(span(1, 10)),
            *poll(20, every=10.0),
            *burst(11),
            *poll(21),
            *burst(span(12, 14)),
            *poll(22),
            *burst(span(15, 19)),
            *poll(23),
        ],
        SeqCounts(gaps=9, late=9),
    ),
    "long outage: live first, a backlog of a thousand behind at 20 a second": (
        [*poll(span(1, 10)), *poll(1011, every=1001.0)]
        + [
            a
            for k in range(50)  # each second 20 of the backlog, then a live batch
            for a in (
                *poll(span(11 + 20 * k, 30 + 20 * k), every=0.0475),
                *poll(1012 + k, every=0.05),
            )
        ]
        + poll(span(1062, 1100)),
        SeqCounts(gaps=1000, late=1000),
    ),
    # …and as if the outage took no time: the live batch does not fit the time since the
    # last one, so it is a rival, one with the current sequence once the backlog reached it
    # (nothing was missing then; before the review, whatever was missing within JUMP of it
    # when the backlog got that close counted as gaps, then late)
    "outage that took no time: live first, backlog behind": (
        [
            *poll(span(1, 10)),
            *poll(20),
            *burst(11),
            *poll(21),
            *burst(span(12, 14)),
            *poll(22),
            *burst(span(15, 19)),
            *poll(23),
        ],
        SeqCounts(),
    ),
    "long outage that took no time: live first, a backlog of a thousand behind": (
        [*poll(span(1, 10))]
        + [
            a
            for k in range(50)  # each second a live batch, then 20 of the backlog
            for a in (
                *poll(1011 + k, every=0.05),
                *poll(span(11 + 20 * k, 30 + 20 * k), every=0.0475),
            )
        ]
        + poll(span(1061, 1100)),
        SeqCounts(),
    ),
    "long outage that took no time, then a real gap among the live batches": (
        [*poll(span(1, 10), 1011, 1012, 1015), *burst(span(11, 1010)), *poll(span(1016, 1030))],
        SeqCounts(gaps=2),
    ),
    "a late batch sent again is a replay": (
        poll(1, 2, 5, 3, 3, 6),
        SeqCounts(gaps=2, late=1, replays=1),
    ),
    "ingest restarted while a gateway drains its backlog": (
        poll(7000, 6000, 6001, 7001),
        SeqCounts(late=2),
    ),
    "a new gateway's whole life in its backlog, behind live": (
        [
            *poll(3600),
            *burst(span(1, 20)),
            *poll(3601),
            *burst(span(21, 40)),
            *poll(3602),
            *burst(span(41, 100)),
            *poll(span(3603, 3625)),
        ],
        SeqCounts(late=100),
    ),
    "broker re-delivers the last few batches": (
        [*poll(span(1, 500)), *burst(span(490, 500)), *poll(501, 502)],
        SeqCounts(replays=11),
    ),
    "broker re-delivers hundreds of batches": (
        [*poll(span(1, 500)), *burst(span(100, 500)), *poll(span(501, 530))],
        SeqCounts(replays=401),
    ),
    "a gateway re-sends one batch after a missed PUBACK": (
        poll(span(1, 50), 50, 51),
        SeqCounts(replays=1),
    ),
    "hostile: one absurd number, then a real gap": (
        [*poll(span(1, 100)), *burst(HOSTILE), *poll(101, 102, 105, span(106, 130))],
        SeqCounts(gaps=2, outliers=1),
    ),
    "hostile: a consecutive pair, then a real gap": (
        [*poll(span(1, 100)), *burst(HOSTILE, HOSTILE + 1), *poll(101, 102, 105, span(106, 130))],
        SeqCounts(gaps=2, outliers=2),
    ),
    "hostile: a burst of absurd numbers, then a real gap": (
        [
            *poll(span(1, 100)),
            *burst(span(HOSTILE, HOSTILE + 999)),
            *poll(101, 104, span(105, 130)),
        ],
        SeqCounts(gaps=2, outliers=1000),
    ),
    "hostile: absurd numbers at the gateway's own pace, among real ones": (
        poll([n for k in range(1, 200) for n in (k, HOSTILE + k)], 203, span(204, 230)),
        SeqCounts(gaps=3, outliers=199),
    ),
    "hostile: the first number after ingest started is absurd, then a real gap": (
        [*burst(HOSTILE), *poll(span(5000, 5100), span(5104, 5200))],
        SeqCounts(gaps=3, outliers=1),
    ),
    "hostile: a number a few hundred ahead": (
        [*poll(span(1, 100)), *burst(400), *poll(span(101, 130))],
        SeqCounts(outliers=1),
    ),
    "hostile: a number within JUMP ahead, not sent by the gateway": (
        [*poll(span(1, 100)), *burst(150), *poll(span(101, 149), span(151, 160))],
        SeqCounts(gaps=1, outliers=1),
    ),
    "hostile: a small number far behind (a fake restart)": (
        [*poll(span(1, 500)), *burst(3), *poll(span(501, 520))],
        SeqCounts(replays=1),
    ),
    "hostile: a burst counting from 1 (a fake restart)": (
        [*poll(span(1, 500)), *burst(span(1, 100)), *poll(span(501, 520))],
        SeqCounts(replays=100),
    ),
    "restart at 1": (poll(span(5000, 5100), span(1, 60)), SeqCounts(restarts=1)),
    "restart at 1, the old sequence seen from 1": (
        poll(span(1, 300), span(1, 60)),
        SeqCounts(restarts=1),
    ),
    "restart with a backlog: live 8 first, 1..7 behind": (
        [
            *poll(span(5000, 5100), 8),
            *burst(1, 2),
            *poll(9),
            *burst(span(3, 7)),
            *poll(span(10, 50)),
        ],
        SeqCounts(gaps=7, late=7, restarts=1),
    ),
    "restart, then a real gap in the new sequence": (
        poll(span(5000, 5100), span(1, 40), span(43, 60)),
        SeqCounts(gaps=2, restarts=1),
    ),
    "restart while a hostile candidate is held": (
        [*poll(span(1, 200)), *burst(HOSTILE, HOSTILE + 1), *poll(span(1, 60), 63)],
        SeqCounts(gaps=2, restarts=1, outliers=2),
    ),
    "a real far jump: the old sequence stops, the new one goes on": (
        poll(span(1, 10), span(200_011, 200_011 + WIN_FAR + 10)),
        SeqCounts(gaps=200_000),
    ),
    "a far jump whose backlog arrives after it is followed": (
        [*poll(span(1, 10), span(200_011, 200_011 + WIN_FAR)), *burst(150_000, 150_001)],
        SeqCounts(gaps=200_000, late=2),
    ),
    # review of the rival design (issue 11, item 3): one stray must not stop a restart or a
    # jump from being followed, a number a step ahead must fit the time since the last one,
    # and hostile numbers must not push out a rival that holds the live batches
    "hostile: one stray at the top of JUMP ahead, then a real gap": (
        [*poll(span(1, 100)), *burst(100 + SeqTracker.JUMP), *poll(span(101, 120), span(123, 140))],
        SeqCounts(gaps=2, outliers=1),
    ),
    "hostile: one stray ten ahead, then a real gap": (
        [*poll(span(1, 100)), *burst(110), *poll(span(101, 120), span(123, 140))],
        SeqCounts(gaps=2, outliers=1),
    ),
    "hostile: a burst stepping by JUMP, then a real gap": (
        [
            *poll(span(1, 100)),
            *burst([100 + SeqTracker.JUMP * k for k in range(1, 1001)]),
            *poll(span(101, 120), span(123, 140)),
        ],
        SeqCounts(gaps=2, outliers=1000),
    ),
    "hostile: bursts stepping by 8 between real batches, with real gaps": (
        poll(span(1, 100))
        + [
            a
            for k in range(100, 200)
            for a in (
                *poll(k + 1 + (k >= 150) * 2),  # 151, 152 lost
                *burst([k + 1 + (k >= 150) * 2 + 8 * j for j in range(1, 6)]),
            )
        ]
        + poll(span(203, 230)),
        SeqCounts(gaps=2, outliers=500),
    ),
    "restart, then one stray of the old sequence, then a real gap": (
        [
            *poll(span(5000, 5100), span(1, 10)),
            *burst(5101),
            *poll(span(11, 80), span(83, 120)),
        ],
        SeqCounts(gaps=2, restarts=1),
    ),
    "a far jump, then one stray of the old sequence, then a real gap": (
        [
            *poll(span(1, 10), span(200_011, 200_020)),
            *burst(11),
            *poll(span(200_021, 200_200), span(200_203, 200_240)),
        ],
        SeqCounts(gaps=200_000 - 1 + 2),  # the stray is taken for the old sequence's 11
    ),
    "long outage, two hostile numbers while the backlog drains": (
        [*poll(span(1, 10))]
        + [
            a
            for k in range(50)  # each second a live batch, then 20 of the backlog
            for a in (
                *poll(1011 + k, every=0.05),
                *(burst(HOSTILE, HOSTILE + 10**6) if k == 10 else []),
                *poll(span(11 + 20 * k, 30 + 20 * k), every=0.0475),
            )
        ]
        + poll(span(1061, 1100), span(1103, 1140)),
        SeqCounts(gaps=2, outliers=2),
    ),
    # review of 767ca13: a trickle of absurd numbers must not rule the tracker whenever the
    # gateway goes silent, and a restart first delivered above RESTART_BELOW is a restart
    "hostile: a trickle, one every 30 polls from the start, then an outage, live first": (
        timeline(
            paced(span(1, 2000), 1.0),
            paced(span(2031, 3100), 2031.0),
            drained(span(2001, 2030), 2031.0),
            # from just after the gateway's first batch (ingest just started): no pace known
            paced(span(HOSTILE, HOSTILE + 99), 1.5, every=30.0),
        ),
        SeqCounts(gaps=30, late=30, outliers=100),
    ),
    "a restart first delivered at 100: live first, its backlog 1..99 behind": (
        timeline(
            paced(span(1, 5000), 1.0),
            paced(span(100, 400), 5100.0),
            drained(span(1, 99), 5100.0),
        ),
        SeqCounts(late=99, restarts=1),  # not known missing: unknown, as below a first number
    ),
    "a restart first delivered at 500: live first, its backlog 1..499 behind": (
        timeline(
            paced(span(1, 5000), 1.0),
            paced(span(500, 800), 5500.0),
            drained(span(1, 499), 5500.0),
        ),
        SeqCounts(late=499, restarts=1),  # not known missing: unknown, as below a first number
    ),
    "a restart during a trickle attack on two rivals, then a real gap": (
        timeline(
            paced(span(1, 1000), 1.0),
            paced([*span(1, 499), *span(503, 800)], 1001.0),
            [
                (500.3, HOSTILE),
                (500.31, HOSTILE + 1),
                (500.32, 5 * HOSTILE),
                (500.33, 5 * HOSTILE + 1),
            ],
            paced(span(HOSTILE + 2, HOSTILE + 130), 510.3, every=10.0),
            paced(span(5 * HOSTILE + 2, 5 * HOSTILE + 130), 510.31, every=10.0),
        ),
        SeqCounts(gaps=3, restarts=1, outliers=2 * 131),
    ),
    "restart held by strays of the old sequence every 10 polls, a real gap in it meanwhile": (
        timeline(
            paced(span(1, 5000), 1.0),
            paced([*span(1, 1199), *span(1203, 1300)], 5001.0),
            paced(span(5001, 5110), 5002.5, every=10.0),
        ),
        SeqCounts(gaps=3, restarts=1),
    ),
    "a trickle while the gateway is silent again during a backlog: the live rival stays": (
        timeline(
            paced(span(1, 100), 1.0),
            paced(span(1101, 1110), 101.0),  # an outage that took no time: live first
            drained(span(101, 300), 101.0),
            # silent for 600 s, then live first again and all the rest behind
            paced(span(1711, 1800), 711.0),
            drained([*span(301, 1100), *span(1111, 1710)], 711.0),
            paced(span(HOSTILE, HOSTILE + 19), 120.5, every=30.0),
        ),
        # back after the second outage everything behind the live batch was missing: late
        SeqCounts(gaps=1400, late=1400, outliers=20),
    ),
    "a backlog with batches lost a few apart, behind live": (
        timeline(
            paced(span(1, 100), 1.0),
            paced(span(1101, 1200), 101.0),
            drained([n for n in span(101, 1100) if n not in (500, 505, 700, 710)], 101.0),
        ),
        SeqCounts(gaps=4),
    ),
    # …while a gateway reinstalled polling slower is still followed, once its old sequence
    # was silent for long
    "restart at 1, the gateway polling three times slower now": (
        [*poll(span(1, 2000)), *poll(span(1, 400), every=3.0)],
        SeqCounts(restarts=1),
    ),
    "two gateways interleaved, each with its own gap": (
        [
            a
            for n in range(100)
            for a in (*poll(1 + n, every=0.5), *poll(1000 + n, key=B, every=0.5))
        ]
        + [*poll(103), *poll(1105, key=B), *poll(104), *poll(1106, key=B)],
        SeqCounts(gaps=2 + 5),
    ),
    "two gateways, one hostile pair on one of them": (
        [*poll(span(1, 50)), *burst(HOSTILE, HOSTILE + 1)]
        + [a for n in span(51, 80) for a in (*poll(n), *poll(n, key=B))]
        + [*poll(83), *poll(82, key=B)],
        SeqCounts(gaps=2 + 1, outliers=2),
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    arrivals, expected = SCENARIOS[name]
    tracker = SeqTracker()
    feed(tracker, arrivals)
    assert tracker.counts == expected


def test_a_hostile_pair_never_touches_the_verdicts_of_real_batches() -> None:
    tracker = SeqTracker()
    feed(tracker, poll(span(1, 100)))
    assert tracker.observe(A, HOSTILE, 100.5) == [Verdict.HELD]
    assert tracker.observe(A, HOSTILE + 1, 100.5) == [Verdict.HELD]
    # the real sequence is judged at once, as if nothing had come
    assert feed(tracker, poll(101, 102, 105), 100) == [Verdict.NEXT, Verdict.NEXT, Verdict.GAP]
    assert feed(tracker, burst(103), 103) == [Verdict.LATE]
    assert Verdict.OUTLIER in feed(tracker, poll(span(106, 130)), 103)


def test_hostile_numbers_never_push_out_the_rival_holding_the_live_batches() -> None:
    tracker = SeqTracker()
    feed(tracker, poll(span(1, 10)))
    # back from an outage that took no time: live first, a rival until the backlog drains
    assert feed(tracker, poll(1011, 1012, 1013), 10) == [Verdict.HELD] * 3
    assert tracker.observe(A, HOSTILE, 13.1) == [Verdict.HELD]
    # a lone number makes room for the next; the rival that went on stays
    assert tracker.observe(A, 2 * HOSTILE, 13.1) == [Verdict.HELD, Verdict.OUTLIER]
    assert tracker.observe(A, 3 * HOSTILE, 13.1) == [Verdict.HELD, Verdict.OUTLIER]
    feed(tracker, burst(span(11, 1010)), 13.2)
    assert feed(tracker, poll(1014), 13.2) == [Verdict.HELD, Verdict.JOINED]
    # two polls lost; the last hostile number, left behind, is decided too
    assert feed(tracker, poll(1017), 16.2) == [Verdict.GAP, Verdict.OUTLIER]
    assert tracker.counts == SeqCounts(gaps=2, outliers=3)


def test_a_restart_is_told_by_its_verdict_once() -> None:
    tracker = SeqTracker()
    feed(tracker, poll(span(5000, 5100)))
    verdicts = feed(tracker, poll(span(1, WIN)), 101)
    assert verdicts[: WIN - 1] == [Verdict.HELD] * (WIN - 1)
    assert verdicts[-1] is Verdict.RESTART
    assert feed(tracker, poll(WIN + 1), 101 + WIN) == [Verdict.NEXT]


def test_a_sender_at_the_gateways_pace_while_it_is_silent_is_left_behind() -> None:
    """Numbers far ahead, sent at the gateway's own pace while the gateway is silent, are
    the gateway for all ingest can tell: the tracker follows them. When the real sequence
    comes back and goes on alone, it takes the tracker back (a sequence going back is a
    restart for all ingest can tell), and its gaps count again."""
    tracker = SeqTracker()
    feed(tracker, poll(span(1, 100)))
    assert Verdict.JUMP in feed(tracker, poll(span(HOSTILE, HOSTILE + WIN_FAR)), 100)
    assert Verdict.RESTART in feed(tracker, poll(span(101, 101 + WIN_FAR)), 200)
    before = tracker.counts.gaps
    assert feed(tracker, poll(101 + WIN_FAR + 3), 300) == [Verdict.GAP]
    assert tracker.counts.gaps == before + 2


def test_very_long_runs_keep_memory_bounded() -> None:
    tracker = SeqTracker()
    rng = random.Random(11)
    skipped = 0
    seq = 0
    for k in range(200_000):
        step = 1 if rng.random() < 0.9 else 2  # one batch in ten lost for good
        skipped += step - 1
        seq += step
        tracker.observe(A, seq, float(k))
        if rng.random() < 0.001:
            tracker.observe(A, HOSTILE + seq * 1000, float(k))  # now and then an absurd one
    gateway = tracker._gateways[A]
    assert len(gateway.run.missing) <= SeqTracker.MAX_RANGES
    assert len(gateway.rivals) <= SeqTracker.MAX_RIVALS
    assert tracker.counts.gaps == skipped
    assert tracker.counts.replays == tracker.counts.late == tracker.counts.restarts == 0


class _Checked(SeqTracker):
    """Ingest reads the counts only after a verdict that may change them: check that."""

    def observe(self, key: tuple[str, str], seq: int, at: float) -> list[Verdict]:
        before = replace(self.counts)
        verdicts = super().observe(key, seq, at)
        if verdicts in ([Verdict.NEXT], [Verdict.FIRST], [Verdict.HELD]):
            assert self.counts == before, (seq, verdicts)
        return verdicts


def _a_gateway_and_an_attacker(seed: int, attacker: bool) -> tuple[SeqCounts, SeqCounts]:
    """An hour or so of a gateway polling each second, with what happens to real ones:
    batches lost for good, outages sent live first with the backlog behind at 20 a second
    (outages during a backlog too), a recent batch re-sent; and, with ``attacker``, absurd
    numbers now and then, alone or in bursts of up to 500, and a trickle of consecutive ones,
    one every 30 seconds from the start, outages included. Returns what the tracker counted
    and the truth (gaps as net missing: gaps counted less the late ones that filled them)."""
    rng = random.Random(seed)
    tracker = _Checked()
    truth = SeqCounts()
    seq, sent, backlog, outage, second, trickled = 0, [], [], 0, 0, 0
    while second < 4000 or outage or backlog:
        second += 1
        quiet = second > 3800  # at the end the gateway goes on alone: rivals are decided
        seq += 1
        if seq > 1 and not quiet and rng.random() < 0.01:
            truth.gaps += 1
        elif outage:
            backlog.append(seq)
        else:
            tracker.observe(A, seq, second)
            sent.append(seq)
        if attacker and not quiet and second % 30 == 2:
            trickled += 1
            tracker.observe(A, 5 * 10**9 + trickled, second + 0.5)
            truth.outliers += 1
        if outage:
            outage -= 1
            continue
        if not quiet and rng.random() < 0.003:
            outage = rng.randint(5, 400)
            continue
        for k in range(min(20, len(backlog))):
            sent.append(backlog.pop(0))
            tracker.observe(A, sent[-1], second + 0.0475 * (k + 1))
        if not quiet and rng.random() < 0.01:
            tracker.observe(A, rng.choice(sent[-5:]), second + 0.01)
            truth.replays += 1
        if attacker and not quiet and rng.random() < 0.005:
            size = rng.choice([1, 1, 2, 5, 50, 500])
            absurd = seq + 10_000 + rng.randint(0, 10**9)
            for k in range(size):
                tracker.observe(A, absurd + k, second + 0.02)
            truth.outliers += size
    c = tracker.counts
    net = SeqCounts(
        gaps=c.gaps - c.late, replays=c.replays, restarts=c.restarts, outliers=c.outliers
    )
    return net, truth


@pytest.mark.parametrize("attacker", [False, True])
def test_a_gateways_life_with_and_without_an_attacker(attacker: bool) -> None:
    for seed in range(20):
        counted, truth = _a_gateway_and_an_attacker(seed, attacker)
        assert counted == truth, seed
