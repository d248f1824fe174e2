"""Per-gateway ``seq`` tracking: make gaps, late batches, replays and restarts visible.

A gateway numbers its batches 1, 2, 3, … and keeps counting across its own restarts (the
counter lives in its write-ahead buffer). What ingest sees is not that clean:

* **late** — after an outage a gateway sends its live batches first and the backlog behind
  them, so lower numbers arrive after higher ones. They fill gaps counted earlier: a late
  batch is not a replay (the tracker before issue 11 counted every one as a replay).
* **replay** — a number seen before: the broker re-delivering an unacknowledged message, or
  a gateway re-sending a batch whose PUBACK it missed.
* **restart** — a gateway reinstalled or its buffer wiped counts from 1 again.
* **outlier** — one absurd number (a corrupt or hostile message) must not rule the tracker:
  otherwise every real batch after ``seq=10000001`` counts as a replay and real gaps go
  unseen.

So a number that would move the tracker far — forward by more than ``max_jump``, or back to
a small number that is no missing one — is held as a *candidate*: if a later batch (within
``CONFIRM_WITHIN`` batches) continues from it, the jump or the restart is real and the
tracker follows; otherwise the candidate was an outlier and is forgotten. Meanwhile batches
are judged against the old sequence (a gateway coming back from a long outage interleaves
its live batches with its backlog). Batches are stored whatever the verdict: a replay
overwrites the same points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Verdict(StrEnum):
    FIRST = "first"  # the first batch seen from this gateway since ingest started
    NEXT = "next"
    GAP = "gap"  # ahead of the next expected: batches are missing (for now)
    LATE = "late"  # one of the missing ones, arriving after later batches
    REPLAY = "replay"  # seen before
    RESTART = "restart"  # the gateway's sequence started again (confirmed)
    HELD = "held"  # a far jump or a possible restart: judged by the gateway's next batch
    OUTLIER = "outlier"  # a held number that the next batch did not confirm


@dataclass
class _Gateway:
    last: int  # the highest number of the current sequence
    # numbers skipped so far, as inclusive ranges, oldest first (bounded: see MAX_RANGES)
    missing: list[list[int]] = field(default_factory=list)
    # numbers below the first one seen since ingest started: whether they were stored before
    # is unknown, so the first arrival of each is late, a second one a replay (not counted
    # as gaps)
    unknown: list[list[int]] = field(default_factory=list)
    candidate: int | None = None
    candidate_age: int = 0  # batches seen since the candidate was held


@dataclass
class SeqCounts:
    gaps: int = 0  # batches skipped
    late: int = 0
    replays: int = 0
    restarts: int = 0
    outliers: int = 0


class SeqTracker:
    """Feed it every batch's ``(gateway key, seq)`` in arrival order; read ``counts``."""

    MAX_RANGES = 64  # missing ranges kept per gateway; older ones are forgotten
    CONFIRM_SPAN = 16  # how close a later batch must be to a held number to confirm it
    CONFIRM_WITHIN = 256  # batches after which an unconfirmed candidate is an outlier
    UNKNOWN_BELOW = 10_000  # how far below the first number seen arrivals count as late

    def __init__(self, max_jump: int = 100_000, restart_below: int = 1_000) -> None:
        # a jump by more than max_jump is held for confirmation; a gateway offline for a day
        # at one batch a second comes back 86,400 ahead, which the next batch confirms
        self.max_jump = max_jump
        # a number under this, below the sequence and not missing, may be a new sequence
        self.restart_below = restart_below
        self.counts = SeqCounts()
        self._gateways: dict[tuple[str, str], _Gateway] = {}

    def observe(self, key: tuple[str, str], seq: int) -> list[Verdict]:
        """The verdicts this batch settles: its own, preceded by the held candidate's when it
        decides that one."""
        state = self._gateways.get(key)
        if state is None:
            low = max(1, seq - self.UNKNOWN_BELOW)
            self._gateways[key] = _Gateway(seq, unknown=[[low, seq - 1]] if seq > low else [])
            return [Verdict.FIRST]
        if seq == state.last + 1 and state.candidate is None:  # the common case, first
            state.last = seq
            return [Verdict.NEXT]
        verdicts: list[Verdict] = []
        candidate = state.candidate
        if candidate is not None:
            if seq != candidate and abs(seq - candidate) <= self.CONFIRM_SPAN:
                state.candidate = None
                verdicts.append(self._follow(key, state, candidate))
                state = self._gateways[key]
            else:
                state.candidate_age += 1
                if state.candidate_age > self.CONFIRM_WITHIN:
                    state.candidate = None
                    self.counts.outliers += 1
                    verdicts.append(Verdict.OUTLIER)
        verdicts.append(self._judge(state, seq))
        return verdicts

    def _follow(self, key: tuple[str, str], state: _Gateway, candidate: int) -> Verdict:
        """A held number confirmed: a far jump forward, or a new sequence."""
        if candidate > state.last:
            self._skip(state, state.last + 1, candidate - 1)
            state.last = candidate
            return Verdict.GAP
        self.counts.restarts += 1
        fresh = _Gateway(candidate)
        self._skip(fresh, 1, candidate - 1)  # a new sequence starts at 1
        self._gateways[key] = fresh
        return Verdict.RESTART

    def _judge(self, state: _Gateway, seq: int) -> Verdict:
        if seq == state.last + 1:
            state.last = seq
            return Verdict.NEXT
        if seq > state.last:
            if seq - state.last > self.max_jump:
                return self._hold(state, seq)
            self._skip(state, state.last + 1, seq - 1)
            state.last = seq
            return Verdict.GAP
        if self._fill(state.missing, seq):
            self.counts.late += 1
            return Verdict.LATE
        if seq < self.restart_below and seq < state.last - self.CONFIRM_SPAN:
            return self._hold(state, seq)
        if self._fill(state.unknown, seq):
            self.counts.late += 1
            return Verdict.LATE
        self.counts.replays += 1
        return Verdict.REPLAY

    def _hold(self, state: _Gateway, seq: int) -> Verdict:
        if state.candidate is not None:  # replaced before anything confirmed it
            self.counts.outliers += 1
        state.candidate, state.candidate_age = seq, 0
        return Verdict.HELD

    def _skip(self, state: _Gateway, low: int, high: int) -> None:
        if high < low:
            return
        self.counts.gaps += high - low + 1
        state.missing.append([low, high])
        if len(state.missing) > self.MAX_RANGES:
            del state.missing[0]

    @staticmethod
    def _fill(ranges: list[list[int]], seq: int) -> bool:
        """Take ``seq`` out of these ranges; False if it was not in them."""
        for i, (low, high) in enumerate(ranges):
            if low <= seq <= high:
                if low == high:
                    del ranges[i]
                elif seq == low:
                    ranges[i][0] = seq + 1
                elif seq == high:
                    ranges[i][1] = seq - 1
                else:
                    ranges[i : i + 1] = [[low, seq - 1], [seq + 1, high]]
                    if len(ranges) > SeqTracker.MAX_RANGES:
                        del ranges[0]
                return True
        return False
