"""Watermarks: up to which data time each gateway's readings are complete.

Windows close on data time, not on the wall clock, so a backlog is analysed as if it had come
on time. Per gateway:

* **seq**: batches carry a sequence number that grows per gateway. The watermark follows the
  contiguous run only: when batch 105 arrives before 101–104 (a backlog still queued at the
  edge while live data goes first), the watermark waits at 100's data time until the gap
  fills, or until it is older than ``max_hold_ms`` (then the gap is given up and counted). A
  batch at or below the run is a replay or duplicate — unless its data is newer than anything
  seen, which is a gateway that restarted its count.
* **interval**: the shortest spacing of the gateway's recent batch times (known from its third
  batch: a gateway's first spacing may be a silence, not its poll interval). A slot is complete
  when even the soonest next reading (watermark + interval) falls after its end, so a slot of a
  regular poll closes as soon as its last poll arrives rather than when the next one does, and
  one of an irregularly sampled source is not closed before a reading that may still land in it.
* **status**: a gateway whose retained status says ``offline`` is buffering at the edge: its
  watermark holds (up to ``max_hold_ms``). An edge whose buffer filled drops its oldest batches
  and says how many in its status (``dropped``): that many of the lowest missing seqs are given
  up at once rather than held for. One that is online but silent is not: once it has
  been silent for ``silence_ms`` of the park's clock, its slots close as gaps up to that clock
  minus the allowance, which is how a dead meter shows. Silence counts from its latest batch or
  ``online`` status, whichever is later: an edge back from an outage announces itself before its
  backlog, and the hour it was away is not silence to close in the moment between. A gateway
  never heard from closes nothing (and holds nothing back).

Replay feeds batches without seq, in arrival order, with the replay clock as arrival time, so
the same rules apply. The state of every gateway of a park is kept in arrays, so that a park
with thousands of gateways is advanced with a few array operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.kernels.clocks import clock_runs, note_times

NEVER = -(2**62)
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class ClockRules:
    max_hold_ms: int = 24 * 3_600_000  # longest a seq gap or an offline gateway holds windows
    silence_ms: int = 180_000  # an online gateway silent this long closes its slots as gaps
    intervals_kept: int = 15  # recent batch spacings the interval is taken from


class Clocks:
    """The watermarks of ``n`` gateways (numbered as the engine numbers them)."""

    def __init__(self, n: int, rules: ClockRules | None = None) -> None:
        self.rules = rules or ClockRules()
        self.watermark = np.full(n, NEVER, dtype=np.int64)
        self.newest = np.full(n, NEVER, dtype=np.int64)  # newest data time, contiguous or not
        self.last_arrival = np.full(n, NEVER, dtype=np.int64)
        self.online = np.ones(n, dtype=bool)
        self.online_since = np.full(n, NEVER, dtype=np.int64)  # its latest ``online`` status
        self.interval = np.zeros(n, dtype=np.int64)  # shortest recent spacing; 0: not known yet
        k = self.rules.intervals_kept + 1
        self.times = np.full((n, k), NEVER, dtype=np.int64)  # recent distinct batch times
        self.final_ms: int | None = None  # no more data will come: complete up to here
        # seq bookkeeping, for the gateways that send seq (live)
        self.run_seq: dict[int, int] = {}
        self.pending: dict[int, dict[int, int]] = {}  # gateway → seq beyond a gap → newest t
        self.gap_since: dict[int, int] = {}
        self.gaps_given_up = np.zeros(n, dtype=np.int64)
        # gateway → the first seq this engine took: lower ones were sent before it listened
        # (a backlog behind live data at a cold start), so they are not sent again
        self.first_seq: dict[int, int] = {}
        self.dropped_seen: dict[int, int] = {}  # gateway → its edge's dropped count, last seen
        self.skip: dict[int, int] = {}  # gateway → missing seqs known dropped at the edge

    def status(self, g: int, online: bool, now_ms: int, dropped: int | None = None) -> None:
        """Gateway ``g``'s status message (``offline``: its last will; it buffers at the edge).
        ``dropped``: how many batches its edge has dropped so far (a full buffer drops the
        oldest): that many of the lowest seqs still missing will never come."""
        self.online[g] = online
        if online:
            self.online_since[g] = max(self.online_since[g], now_ms)
        if dropped is not None:
            before = self.dropped_seen.get(g)
            if before is not None and dropped > before:
                self.skip[g] = self.skip.get(g, 0) + dropped - before
            self.dropped_seen[g] = dropped  # (an edge restarted counts from 0 again)

    # --- live: one batch with a seq ---------------------------------------------------------

    def batch(
        self, g: int, seq: int | None, oldest_ms: int, newest_ms: int, arrival_ms: int
    ) -> str:
        """Account one batch of gateway ``g``; returns ``"in_order"``, ``"gap"``,
        ``"replay"`` (a seq at or below the run), ``"duplicate"`` (a seq already waiting
        beyond a gap) or ``"restart"``."""
        self.last_arrival[g] = max(self.last_arrival[g], arrival_ms)
        self.online[g] = True
        verdict = "in_order"
        run = self.run_seq.get(g)
        credit = self.skip.get(g, 0)
        if credit and seq is not None and run is not None and seq > run + 1:
            # the lowest missing seqs are the batches the edge dropped: no wait for them
            jump = min(credit, seq - run - 1)
            run = self.run_seq[g] = run + jump
            self.skip[g] = credit - jump
            self.gaps_given_up[g] += jump
            self._absorb(g)
            run = self.run_seq[g]
        pending = self.pending.get(g)
        if seq is None:
            self._advance(g, newest_ms)
        elif run is None or seq == run + 1:
            if run is None:
                self.first_seq[g] = seq
            self.run_seq[g] = seq
            self._advance(g, newest_ms)
            self._absorb(g)
        elif seq > run + 1:
            waiting = self.pending.setdefault(g, {})
            verdict = "duplicate" if seq in waiting else "gap"
            waiting[seq] = max(waiting.get(seq, NEVER), newest_ms)
            self.gap_since.setdefault(g, int(self.watermark[g]))
        elif oldest_ms > self.newest[g] and not pending:
            # a count that went back with data newer than anything seen: a reinstalled gateway
            self.run_seq[g] = seq
            self._advance(g, newest_ms)
            verdict = "restart"
        else:
            verdict = "replay"
        self.newest[g] = max(self.newest[g], newest_ms)
        self._note_times(np.array([g]), np.array([newest_ms]))
        self._give_up_old_gaps(g)
        return verdict

    def sent_again(self, g: int, seq: int | None, verdict: str) -> bool:
        """Whether a batch's verdict says it repeats one this engine took (not one of a
        backlog sent before the engine first heard the gateway)."""
        return (
            seq is not None
            and verdict in ("replay", "duplicate")
            and seq >= self.first_seq.get(g, seq)
        )

    def _advance(self, g: int, t_ms: int) -> None:
        self.watermark[g] = max(self.watermark[g], t_ms)

    def _absorb(self, g: int) -> None:
        waiting = self.pending.get(g)
        if not waiting:
            self.pending.pop(g, None)
            self.gap_since.pop(g, None)
            return
        while self.run_seq[g] + 1 in waiting:
            self.run_seq[g] += 1
            self._advance(g, waiting.pop(self.run_seq[g]))
        if not waiting:
            del self.pending[g]
            self.gap_since.pop(g, None)

    def _give_up_old_gaps(self, g: int) -> None:
        since = self.gap_since.get(g)
        if since is None or self.newest[g] - since <= self.rules.max_hold_ms:
            return
        lowest = min(self.pending[g])
        self.gaps_given_up[g] += lowest - self.run_seq[g] - 1
        self.run_seq[g] = lowest - 1
        self._absorb(g)
        if g in self.pending:
            self.gap_since[g] = int(self.watermark[g])

    # --- replay: runs without seq, many gateways at once ----------------------------------

    def runs(self, gateway: IntArray, t_ms: IntArray, arrival_ms: int) -> None:
        """Account rows that arrived together without seq (in arrival order; gateway −1: not
        a gateway's): each run of one gateway and data time is one batch."""
        clock_runs(gateway, t_ms, arrival_ms, self.last_arrival, self.online, self.watermark,
                   self.newest, self.times, self.interval)  # fmt: skip

    def _note_times(self, gateway: IntArray, t_ms: IntArray) -> None:
        """Append each gateway's new distinct batch times (in order) and renew its interval:
        the shortest recent spacing, once there are two spacings at least — the one spacing
        of a gateway's first two batches may be a silence (one batch, weeks off, then
        regular ones), which as an interval would close the weeks ahead and make everything
        in them late (compiled: ``kernels.note_times``)."""
        note_times(gateway, t_ms, self.times, self.interval)

    # --- what is complete --------------------------------------------------------------------

    def heard(self) -> BoolArray:
        return self.last_arrival > NEVER

    def complete_until(self, now_ms: int) -> IntArray:
        """Per gateway, the data time before which its slots are complete at park clock
        ``now_ms`` (NEVER for a gateway never heard from)."""
        if self.final_ms is not None:
            return np.where(self.heard(), self.final_ms, NEVER)
        complete = np.where(self.watermark > NEVER, self.watermark + self.interval, NEVER)
        held = ~self.online
        if self.pending:
            held = held.copy()
            held[list(self.pending)] = True
        silent_for = now_ms - np.maximum(
            np.maximum(self.last_arrival, self.watermark), self.online_since
        )
        # silent: the allowance past the batch its interval says is due (a gateway polling
        # every 5 minutes is not silent 3 minutes after its last batch)
        silent = ~held & (silent_for > self.rules.silence_ms + self.interval)
        out = np.where(held, np.maximum(complete, now_ms - self.rules.max_hold_ms), complete)
        out = np.where(silent, np.maximum(complete, now_ms - self.rules.silence_ms), out)
        return np.where(self.heard(), out, NEVER)

    # --- state ---------------------------------------------------------------------------------

    _ARRAYS = (
        "watermark",
        "newest",
        "last_arrival",
        "online",
        "online_since",
        "interval",
        "times",
        "gaps_given_up",
    )

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k).copy() for k in self._ARRAYS}
        out["final_ms"] = self.final_ms
        out["run_seq"] = [[g, s] for g, s in self.run_seq.items()]
        out["pending"] = [[g, [[s, t] for s, t in p.items()]] for g, p in self.pending.items()]
        out["gap_since"] = [[g, t] for g, t in self.gap_since.items()]
        out["first_seq"] = [[g, n] for g, n in self.first_seq.items()]
        out["dropped_seen"] = [[g, n] for g, n in self.dropped_seen.items()]
        out["skip"] = [[g, n] for g, n in self.skip.items()]
        return out

    def restore(self, state: dict[str, Any]) -> None:
        for k in self._ARRAYS:
            if k in state:  # (a snapshot from before online_since keeps the default)
                setattr(self, k, np.array(state[k]))
        self.final_ms = state["final_ms"]
        self.run_seq = {int(g): int(s) for g, s in state["run_seq"]}
        self.pending = {int(g): {int(s): int(t) for s, t in p} for g, p in state["pending"]}
        self.gap_since = {int(g): int(t) for g, t in state["gap_since"]}
        self.first_seq = {int(g): int(n) for g, n in state.get("first_seq", [])}
        self.dropped_seen = {int(g): int(n) for g, n in state.get("dropped_seen", [])}
        self.skip = {int(g): int(n) for g, n in state.get("skip", [])}
