"""The seq tracker (unit), as scenario tables: batches in arrival order → what is counted.
Gaps, late batches, replays, restarts, and absurd numbers that must not rule it (issue 11,
item 3)."""

from __future__ import annotations

import random

import pytest

from ingest.sequence import SeqCounts, SeqTracker, Verdict

A = ("lj-demo", "gw-a")
B = ("lj-demo", "gw-b")
WIN, WIN_FAR = SeqTracker.WIN, SeqTracker.WIN_FAR


def span(low: int, high: int) -> list[int]:
    """Numbers low..high, both included."""
    return list(range(low, high + 1))


def feed(tracker: SeqTracker, arrivals: list[int | tuple[tuple[str, str], int]]) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for arrival in arrivals:
        key, seq = arrival if isinstance(arrival, tuple) else (A, arrival)
        verdicts += tracker.observe(key, seq)
    return verdicts


HOSTILE = 900_001

SCENARIOS: dict[str, tuple[list[int | tuple[tuple[str, str], int]], SeqCounts]] = {
    "plain run": (span(1, 500), SeqCounts()),
    "plain run, ingest started late": (span(5000, 5500), SeqCounts()),
    "a real gap": ([1, 2, 3, 6, 7], SeqCounts(gaps=2)),
    "outage: live first, backlog behind": (
        [*span(1, 10), 20, 11, 21, 12, 13, 14, 22, 15, 16, 17, 18, 19, 23],
        SeqCounts(gaps=9, late=9),
    ),
    "a late batch sent again is a replay": (
        [1, 2, 5, 3, 3, 6],
        SeqCounts(gaps=2, late=1, replays=1),
    ),
    "ingest restarted while a gateway drains its backlog": (
        [7000, 6000, 6001, 7001],
        SeqCounts(late=2),
    ),
    "a new gateway's whole life in its backlog, behind live": (
        [3600, *span(1, 20), 3601, *span(21, 40), 3602, *span(41, 100), *span(3603, 3625)],
        SeqCounts(late=100),
    ),
    "broker re-delivers the last few batches": (
        [*span(1, 500), *span(490, 500), 501, 502],
        SeqCounts(replays=11),
    ),
    "broker re-delivers a hundred batches": (
        [*span(1, 500), *span(400, 500), *span(501, 530)],
        SeqCounts(replays=101),
    ),
    "a gateway re-sends one batch after a missed PUBACK": (
        [*span(1, 50), 50, 51],
        SeqCounts(replays=1),
    ),
    "hostile: one absurd number, then a real gap": (
        [*span(1, 100), HOSTILE, 101, 102, 105, *span(106, 130)],
        SeqCounts(gaps=2, outliers=1),
    ),
    "hostile: a consecutive pair, then a real gap": (
        [*span(1, 100), HOSTILE, HOSTILE + 1, 101, 102, 105, *span(106, 130)],
        SeqCounts(gaps=2, outliers=2),
    ),
    "hostile: a burst of absurd numbers, then a real gap": (
        [*span(1, 100), *span(HOSTILE, HOSTILE + 99), 101, 104, *span(105, 130)],
        SeqCounts(gaps=2, outliers=100),
    ),
    "hostile: scattered absurd numbers among real ones": (
        [n for k in range(1, 200) for n in (k, HOSTILE + 1000 * k)] + [203, *span(204, 230)],
        SeqCounts(gaps=3, outliers=199),
    ),
    "hostile: a small number far behind (a fake restart)": (
        [*span(1, 500), 3, *span(501, 520)],
        SeqCounts(replays=1),
    ),
    "restart at 1": ([*span(5000, 5100), *span(1, 60)], SeqCounts(restarts=1)),
    "restart at 1, the old sequence seen from 1": (
        [*span(1, 300), *span(1, 60)],
        SeqCounts(restarts=1),
    ),
    "restart with a backlog: live 8 first, 1..7 behind": (
        [*span(5000, 5100), 8, 1, 2, 9, 3, 4, 5, 6, 7, *span(10, 50)],
        SeqCounts(gaps=7, late=7, restarts=1),
    ),
    "restart, then a real gap in the new sequence": (
        [*span(5000, 5100), *span(1, 40), *span(43, 60)],
        SeqCounts(gaps=2, restarts=1),
    ),
    "restart while a hostile candidate is held": (
        [*span(1, 200), HOSTILE, HOSTILE + 1, *span(1, 60), 63],
        SeqCounts(gaps=2, restarts=1, outliers=2),
    ),
    "a real far jump: the old sequence stops, the new one goes on": (
        [*span(1, 10), *span(200_011, 200_011 + WIN_FAR + 10)],
        SeqCounts(gaps=200_000),
    ),
    "a far jump whose backlog arrives after it is followed": (
        [*span(1, 10), *span(200_011, 200_011 + WIN_FAR), 150_000, 150_001],
        SeqCounts(gaps=200_000, late=2),
    ),
    "two gateways interleaved, each with its own gap": (
        [(key, s) for n in range(100) for key, s in ((A, 1 + n), (B, 1000 + n))]
        + [(A, 103), (B, 1105), (A, 104), (B, 1106)],
        SeqCounts(gaps=2 + 5),
    ),
    "two gateways, one hostile pair on one of them": (
        [(A, s) for s in span(1, 50)]
        + [(A, HOSTILE), (A, HOSTILE + 1)]
        + [(k, s) for s in span(51, 80) for k in (A, B)]
        + [(A, 83), (B, 82)],
        SeqCounts(gaps=2 + 1, outliers=2),
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    arrivals, expected = SCENARIOS[name]
    tracker = SeqTracker()
    feed(tracker, arrivals)
    assert tracker.counts == expected


def test_a_hostile_burst_never_poisons_the_verdicts_of_real_batches() -> None:
    tracker = SeqTracker()
    feed(tracker, span(1, 100))
    assert feed(tracker, [HOSTILE]) == [Verdict.HELD]
    assert feed(tracker, [HOSTILE + 1]) == [Verdict.HELD]
    # the real sequence is judged at once, as if nothing had come
    assert feed(tracker, [101, 102, 105]) == [Verdict.NEXT, Verdict.NEXT, Verdict.GAP]
    assert feed(tracker, [103]) == [Verdict.LATE]
    assert Verdict.OUTLIER in feed(tracker, span(106, 130))


def test_a_restart_is_told_by_its_verdict_once() -> None:
    tracker = SeqTracker()
    feed(tracker, span(5000, 5100))
    verdicts = feed(tracker, span(1, WIN))
    assert verdicts[: WIN - 1] == [Verdict.HELD] * (WIN - 1)
    assert verdicts[-1] is Verdict.RESTART
    assert feed(tracker, [WIN + 1]) == [Verdict.NEXT]


def test_a_hostile_burst_while_the_gateway_is_silent_is_left_behind() -> None:
    """A burst of WIN_FAR or more between two of the gateway's batches looks like a jump;
    the real sequence, going on while the burst does not, takes the tracker back."""
    tracker = SeqTracker()
    feed(tracker, span(1, 100))
    assert Verdict.JUMP in feed(tracker, span(HOSTILE, HOSTILE + WIN_FAR))
    assert Verdict.JUMP in feed(tracker, span(101, 101 + WIN_FAR))
    before = tracker.counts.gaps
    assert feed(tracker, [101 + WIN_FAR + 3]) == [Verdict.GAP]  # real gaps are seen again
    assert tracker.counts.gaps == before + 2


def test_very_long_runs_keep_memory_bounded() -> None:
    tracker = SeqTracker()
    rng = random.Random(11)
    skipped = 0
    seq = 0
    for _ in range(200_000):
        step = 1 if rng.random() < 0.9 else 2  # one batch in ten lost for good
        skipped += step - 1
        seq += step
        tracker.observe(A, seq)
        if rng.random() < 0.001:
            tracker.observe(A, HOSTILE + seq * 1000)  # now and then an absurd one
    gateway = tracker._gateways[A]
    assert len(gateway.run.missing) <= SeqTracker.MAX_RANGES
    assert len(gateway.rivals) <= SeqTracker.MAX_RIVALS
    assert tracker.counts.gaps == skipped
    assert tracker.counts.replays == tracker.counts.late == tracker.counts.restarts == 0
