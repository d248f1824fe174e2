"""The seq tracker (unit): gaps, late batches, replays, restarts, and outliers that must not
poison it (issue 11, item 3)."""

from __future__ import annotations

from ingest.sequence import SeqCounts, SeqTracker, Verdict

GW = ("lj-demo", "gw-foodco")


def feed(tracker: SeqTracker, seqs: list[int]) -> list[Verdict]:
    return [v for seq in seqs for v in tracker.observe(GW, seq)]


def test_a_steady_sequence_counts_nothing() -> None:
    tracker = SeqTracker()
    verdicts = feed(tracker, list(range(5, 100)))
    assert verdicts[0] is Verdict.FIRST
    assert set(verdicts[1:]) == {Verdict.NEXT}
    assert tracker.counts == SeqCounts()


def test_live_first_backlog_is_late_not_replayed() -> None:
    # what a plain demo run counted as replays: a gateway's first batch, polled before its
    # broker session, sent behind the first live one
    tracker = SeqTracker()
    assert feed(tracker, [2, 1, 3, 1]) == [
        Verdict.FIRST,
        Verdict.LATE,
        Verdict.NEXT,
        Verdict.REPLAY,
    ]
    tracker = SeqTracker()
    # after an outage: live 10, 11, backlog 5..9 interleaved, then live again
    verdicts = feed(tracker, [4, 10, 5, 11, 6, 7, 8, 9, 12])
    assert verdicts.count(Verdict.LATE) == 5
    assert tracker.counts == SeqCounts(gaps=5, late=5)
    # ingest (re)started while a gateway drains a backlog: older numbers are late too
    tracker = SeqTracker()
    assert feed(tracker, [7000, 6000, 6001, 7001]).count(Verdict.LATE) == 2
    assert tracker.counts == SeqCounts(late=2)


def test_a_seen_number_is_a_replay() -> None:
    tracker = SeqTracker()
    feed(tracker, [1, 2, 3, 4])
    assert feed(tracker, [3, 4, 5]) == [Verdict.REPLAY, Verdict.REPLAY, Verdict.NEXT]
    assert tracker.counts == SeqCounts(replays=2)


def test_one_absurd_number_does_not_rule_the_tracker() -> None:
    tracker = SeqTracker()
    feed(tracker, list(range(1, 101)))
    assert feed(tracker, [10_000_001]) == [Verdict.HELD]
    # the real sequence goes on, with a real gap that must still be seen
    verdicts = feed(tracker, [101, 102, 105, 106])
    assert Verdict.REPLAY not in verdicts
    assert tracker.counts.gaps == 2
    assert tracker.counts.replays == 0
    # no later batch confirms the absurd one: an outlier, once
    feed(tracker, list(range(107, 107 + SeqTracker.CONFIRM_WITHIN)))
    assert tracker.counts == SeqCounts(gaps=2, outliers=1)


def test_a_restart_from_one_is_told_from_a_replay() -> None:
    tracker = SeqTracker()
    feed(tracker, list(range(5000, 5100)))
    verdicts = feed(tracker, [1, 2, 3, 5, 4, 6])
    assert verdicts[:2] == [Verdict.HELD, Verdict.RESTART]
    assert tracker.counts == SeqCounts(gaps=1, late=1, restarts=1)
    # a wiped gateway that buffered a few batches before its first session: live 8 first
    tracker = SeqTracker()
    feed(tracker, list(range(5000, 5100)))
    feed(tracker, [8, 1, 2, 9])
    assert tracker.counts == SeqCounts(gaps=7, late=2, restarts=1)


def test_a_long_outage_jump_is_followed_once_confirmed() -> None:
    tracker = SeqTracker(max_jump=1000)
    feed(tracker, list(range(1, 11)))
    # back after 5,000 batches: live batches interleaved with the backlog from 11 on
    verdicts = feed(tracker, [5011, 11, 12, 5012, 13])
    assert verdicts[0] is Verdict.HELD
    assert Verdict.OUTLIER not in verdicts
    assert tracker.counts.outliers == 0
    # 11 and 12 came before the jump was confirmed (judged as next), 13 fills the gap
    assert tracker.counts.gaps == 5011 - 13
    assert tracker.counts.late == 1


def test_gateways_are_tracked_apart() -> None:
    tracker = SeqTracker()
    tracker.observe(("p", "a"), 1)
    tracker.observe(("p", "b"), 100)
    assert tracker.observe(("p", "a"), 2) == [Verdict.NEXT]
    assert tracker.observe(("p", "b"), 101) == [Verdict.NEXT]
