"""Per-gateway ``seq`` tracking: make gaps, late batches, replays and restarts visible.

A gateway numbers its batches 1, 2, 3, … and keeps counting across its own restarts (the
counter lives in its write-ahead buffer). What ingest sees is not that clean:

* **gap** — numbers skipped when a higher one arrives, counted once, when skipped;
* **late** — one of those skipped numbers arriving after all: after an outage a gateway
  sends its live batches first and its backlog behind them. Not a replay;
* **replay** — a number seen before: the broker re-delivering an unacknowledged message, or
  a gateway re-sending a batch whose PUBACK it missed. Both re-send *recent* batches;
* **restart** — a gateway reinstalled or its buffer wiped counts from 1 again;
* **outlier** — an absurd number (corrupt or hostile) that must not rule the tracker.

Anyone allowed to publish on a gateway's topic can send any number, once or a thousand times
in a row; what they cannot do is make the real gateway stop, or make a burst take time. So a
number far off the gateway's sequence — more than ``max_jump`` ahead, or far behind it and
neither missing nor recent — opens a *rival* sequence beside the current one (at most
``MAX_RIVALS``), and both stay alive: batches near a rival are judged within it, on hold;
the current sequence's are judged at once, as if the rival were not there. A rival wins
only when the old sequence stopped and the new one keeps going: the current sequence got no
new highest number since the rival opened, the rival got ``WIN`` batches (a new sequence
from a small number: a restart) or ``WIN_FAR`` (a far jump ahead, or back), and they came
over at least ``WIN_TIME`` of the time the old sequence took for as many. Then its held
verdicts count. It loses once the gateway sent ``LOSE`` other batches after its last one:
its batches were outliers (ahead) or replays and late ones (behind). Each sequence keeps a
bounded list of missing ranges (``MAX_RANGES``): memory is O(1) per gateway. Batches are
stored whatever the verdict: a replay overwrites the same points.

What it cannot tell apart: a gateway restarting before its old sequence got past
``RECENT`` + ``WIN`` (its new numbers were all seen recently: replays); and a sender that
keeps the gateway's pace while the gateway itself is silent (the tracker follows it, as it
would the gateway; the real sequence, when it goes on alone, takes the tracker back).
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
    RESTART = "restart"  # the gateway's sequence started again (a rival won from below)
    JUMP = "jump"  # the sequence went on far ahead (a rival won from above)
    HELD = "held"  # a batch of a rival sequence: judged when the rival wins or loses
    OUTLIER = "outlier"  # the batches of a rival ahead that lost


@dataclass
class SeqCounts:
    gaps: int = 0  # batches skipped
    late: int = 0
    replays: int = 0
    restarts: int = 0
    outliers: int = 0

    def add(self, other: SeqCounts) -> None:
        self.gaps += other.gaps
        self.late += other.late
        self.replays += other.replays
        self.restarts += other.restarts
        self.outliers += other.outliers


@dataclass
class _Run:
    """One sequence of numbers: its highest, what is missing below it (as inclusive
    ranges, oldest first, bounded by ``MAX_RANGES``), and the numbers below the first one
    seen, which may or may not have been stored before (late once, then replays)."""

    high: int
    at: float  # when it last went on (a new highest number), seconds
    missing: list[list[int]] = field(default_factory=list)
    unknown: list[list[int]] = field(default_factory=list)
    every: float | None = None  # how often it goes on, once known: a moving average

    def went_on(self, at: float) -> None:
        step = at - self.at
        if self.every is None:
            self.every = step
        else:  # an outage's long step moves it by a little only
            self.every += 0.1 * (min(step, 4 * self.every) - self.every)
        self.at = at


@dataclass
class _Rival:
    run: _Run
    ahead: bool  # opened by a number far ahead of the current sequence, else far behind it
    opened: float  # when, seconds
    held: SeqCounts = field(default_factory=SeqCounts)  # its verdicts, counted if it wins
    batches: int = 1
    # of those, how many the current sequence missed (it counts them late if the rival loses)
    filled: int = 0
    contested: bool = False  # the current sequence went on (a new highest) since it opened
    idle: int = 0  # the gateway's other batches since its last one


@dataclass
class _Gateway:
    run: _Run
    rivals: list[_Rival] = field(default_factory=list)  # at most MAX_RIVALS


class SeqTracker:
    """Feed it every batch's ``(gateway key, seq, arrival time)`` in arrival order; read
    ``counts``."""

    MAX_RANGES = 64  # missing ranges kept per sequence; older ones are forgotten
    MAX_RIVALS = 2  # rival sequences kept per gateway; a third drops the one idle longest
    RECENT = 64  # re-deliveries and re-sends are of a gateway's last batches: this many
    RESTART_BELOW = 64  # a new sequence (live first, a short backlog behind) shows up below
    # a rival's batches, the current sequence going on in none of them, for it to win: a new
    # sequence from a small number soon; a far jump ahead (a gateway whose buffer dropped
    # over 100,000 batches) or back (the real sequence taking over again) after more
    WIN = 32
    WIN_FAR = 64
    # …and it must have gone on for half the time the old sequence takes for that many: a
    # burst sent in a moment never wins, however long
    WIN_TIME = 0.5
    LOSE = 16  # the gateway's other batches after a rival's last one, for it to lose
    UNKNOWN_BELOW = 10_000  # how far below the first number seen arrivals count as late

    def __init__(self, max_jump: int = 100_000) -> None:
        # a jump by more than max_jump opens a rival; a gateway whose buffer dropped a day
        # of batches at one a second comes back 86,400 ahead, which is followed at once
        self.max_jump = max_jump
        self.counts = SeqCounts()
        self._gateways: dict[tuple[str, str], _Gateway] = {}

    def observe(self, key: tuple[str, str], seq: int, at: float) -> list[Verdict]:
        """The verdicts this batch, received at ``at`` (seconds), settles: its own,
        followed by those of the rivals it decides."""
        gateway = self._gateways.get(key)
        if gateway is None:
            low = max(1, seq - self.UNKNOWN_BELOW)
            unknown = [[low, seq - 1]] if seq > low else []
            self._gateways[key] = _Gateway(_Run(seq, at, unknown=unknown))
            return [Verdict.FIRST]
        run, rivals = gateway.run, gateway.rivals
        if seq == run.high + 1 and not rivals:  # the common case, first
            run.high = seq
            run.went_on(at)
            return [Verdict.NEXT]
        if self._settled(run, seq):  # the current sequence's, whatever the rivals
            verdict = self._judge(run, seq, at, self.counts)
            if verdict in (Verdict.NEXT, Verdict.GAP):
                for rival in rivals:
                    rival.contested = True
            return [verdict, *self._idle(gateway, None)]
        ahead = seq > run.high
        owner = next((r for r in rivals if r.ahead == ahead and self._settled(r.run, seq)), None)
        backlog = not ahead and seq > self.RESTART_BELOW and self._contains(run.unknown, seq)
        if owner is None and backlog:  # a backlog behind the first number seen
            verdict = self._judge(run, seq, at, self.counts)
            return [verdict, *self._idle(gateway, None)]
        verdicts = [Verdict.HELD]
        if owner is None:
            if len(rivals) >= self.MAX_RIVALS:
                stopped = max(rivals, key=lambda r: r.idle)
                rivals.remove(stopped)
                verdicts.append(self._lost(stopped))
            owner = self._open(run, seq, at, ahead)
            rivals.append(owner)
        else:
            self._judge(owner.run, seq, at, owner.held)
            owner.batches += 1
            owner.idle = 0
        if not ahead and self._take(run, seq):
            owner.filled += 1
        verdicts += self._idle(gateway, owner)
        win = self.WIN if owner.held.restarts else self.WIN_FAR
        took = self.WIN_TIME * win * (run.every or 0.0)
        if owner.batches >= win and not owner.contested and at - owner.opened >= took:
            verdicts += self._won(gateway, owner)
        return verdicts

    def _idle(self, gateway: _Gateway, owner: _Rival | None) -> list[Verdict]:
        """A batch went elsewhere: the other rivals wait one more; stopped ones lose."""
        verdicts = []
        for rival in list(gateway.rivals):
            if rival is not owner:
                rival.idle += 1
                if rival.idle >= self.LOSE:
                    gateway.rivals.remove(rival)
                    verdicts.append(self._lost(rival))
        return verdicts

    def _settled(self, run: _Run, seq: int) -> bool:
        """Whether ``seq`` is plainly the current sequence's: a step ahead of it within
        ``max_jump``, a recent number (a re-delivery, a re-send), or one it is missing."""
        return run.high - self.RECENT <= seq <= run.high + self.max_jump or self._contains(
            run.missing, seq
        )

    def _open(self, current: _Run, seq: int, at: float, ahead: bool) -> _Rival:
        rival = _Rival(_Run(seq, at), ahead, at)
        if ahead:
            # followed, it skipped everything between; a buffer's backlog behind it fills
            # at most the top max_jump of that (older numbers would be a rival again: the
            # old sequence going on, after a burst of absurd numbers took the tracker)
            skipped = seq - 1 - current.high
            self._skip(rival.run, max(current.high + 1, seq - self.max_jump), seq - 1, rival.held)
            rival.held.gaps += skipped - min(skipped, self.max_jump)
        elif seq <= self.RESTART_BELOW:
            # a new sequence starts at 1: what is below its first arrival is its backlog
            self._skip(rival.run, 1, seq - 1, rival.held)
            rival.held.restarts = 1
        return rival

    def _won(self, gateway: _Gateway, winner: _Rival) -> list[Verdict]:
        """The old sequence stopped, the rival went on: it is the gateway's sequence now."""
        verdicts = [self._lost(r) for r in gateway.rivals if r is not winner]
        gateway.rivals.clear()
        if winner.ahead:
            # the old sequence's own gaps may still be filled by its backlog
            winner.run.missing[:0] = gateway.run.missing
            del winner.run.missing[: -self.MAX_RANGES]
        self.counts.add(winner.held)
        gateway.run = winner.run
        return [*verdicts, Verdict.RESTART if winner.held.restarts else Verdict.JUMP]

    def _lost(self, rival: _Rival) -> Verdict:
        """The gateway went on without this rival."""
        if rival.ahead:
            self.counts.outliers += rival.batches
            return Verdict.OUTLIER
        # numbers the current sequence had seen, or was missing (taken out as they came)
        self.counts.late += rival.filled
        self.counts.replays += rival.batches - rival.filled
        return Verdict.REPLAY

    def _judge(self, run: _Run, seq: int, at: float, counts: SeqCounts) -> Verdict:
        if seq > run.high:
            verdict = Verdict.NEXT if seq == run.high + 1 else Verdict.GAP
            self._skip(run, run.high + 1, seq - 1, counts)
            run.high = seq
            run.went_on(at)
            return verdict
        if self._take(run, seq):
            counts.late += 1
            return Verdict.LATE
        counts.replays += 1
        return Verdict.REPLAY

    def _skip(self, run: _Run, low: int, high: int, counts: SeqCounts) -> None:
        if high < low:
            return
        counts.gaps += high - low + 1
        run.missing.append([low, high])
        if len(run.missing) > self.MAX_RANGES:
            del run.missing[0]

    def _take(self, run: _Run, seq: int) -> bool:
        return self._fill(run.missing, seq) or self._fill(run.unknown, seq)

    @staticmethod
    def _contains(ranges: list[list[int]], seq: int) -> bool:
        return any(low <= seq <= high for low, high in ranges)

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
