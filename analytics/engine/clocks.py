"""Watermarks: up to which data time a gateway's readings are complete.

Windows close on data time, not on the wall clock, so a backlog is analysed as if it had come
on time. Per gateway:

* **seq**: batches carry a sequence number that grows per gateway. The watermark follows the
  contiguous run only: when batch 105 arrives before 101–104 (a backlog still queued at the
  edge while live data goes first), the watermark waits at 100's data time until the gap
  fills, or until it is older than ``max_hold_ms`` (then the gap is given up and counted). A
  batch at or below the run is a replay or duplicate — unless its data is newer than anything
  seen, which is a gateway that restarted its count.
* **interval**: the median spacing of the gateway's batch times. A slot is complete when the
  next reading expected (watermark + interval) falls after its end, so a slot closes as soon as
  its last poll arrives rather than when the next one does.
* **status**: a gateway whose retained status says ``offline`` is buffering at the edge: its
  watermark holds (up to ``max_hold_ms``). One that is online but silent is not: once it has
  been silent for ``silence_ms`` of the park's clock, its watermark follows that clock (minus
  the silence allowance) and its slots close as gaps, which is how a dead meter shows.

Replay feeds batches without seq, in arrival order, with the replay clock as arrival time, so
the same rules apply.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import pairwise
from statistics import median
from typing import Any

NEVER = -(2**62)


@dataclass
class ClockRules:
    max_hold_ms: int = 24 * 3_600_000  # longest a seq gap or an offline gateway holds windows
    silence_ms: int = 180_000  # an online gateway silent this long closes its slots as gaps
    intervals_kept: int = 15  # batch spacings the interval median is taken over


@dataclass
class GatewayClock:
    """One gateway's watermark: every reading at or before ``watermark_ms`` has arrived."""

    rules: ClockRules = field(default_factory=ClockRules)
    watermark_ms: int = NEVER
    newest_ms: int = NEVER  # newest data time seen, contiguous or not
    last_arrival_ms: int = NEVER
    run_seq: int | None = None  # last seq of the contiguous run
    pending: dict[int, int] = field(default_factory=dict)  # seq beyond a gap → its newest t
    gap_since_ms: int | None = None  # data time at which the oldest open gap appeared
    online: bool = True
    final_ms: int | None = None  # no more data will come: complete up to here
    seq_gaps_given_up: int = 0
    _times: deque[int] = field(default_factory=deque)  # recent distinct batch times

    interval_ms: int | None = None  # median spacing of recent batch times (None: unknown)

    def batch(self, seq: int | None, oldest_ms: int, newest_ms: int, arrival_ms: int) -> str:
        """Account one batch; returns ``"in_order"``, ``"gap"``, ``"replay"`` or ``"restart"``."""
        self.last_arrival_ms = max(self.last_arrival_ms, arrival_ms)
        self.online = True
        verdict = "in_order"
        if seq is None:
            self._advance(newest_ms)
        elif self.run_seq is None or seq == self.run_seq + 1:
            self.run_seq = seq
            self._advance(newest_ms)
            self._absorb()
        elif seq > self.run_seq + 1:
            self.pending[seq] = max(self.pending.get(seq, NEVER), newest_ms)
            if self.gap_since_ms is None:
                self.gap_since_ms = self.watermark_ms
            verdict = "gap"
        elif oldest_ms > self.newest_ms and not self.pending:
            # a count that went back with data newer than anything seen: a reinstalled gateway
            self.run_seq = seq
            self._advance(newest_ms)
            verdict = "restart"
        else:
            verdict = "replay"
        self.newest_ms = max(self.newest_ms, newest_ms)
        self._note_time(newest_ms)
        self._give_up_old_gaps()
        return verdict

    def runs(self, times: list[int], arrival_ms: int) -> None:
        """Account batches without seq (replay), in arrival order, by their data times."""
        self.last_arrival_ms = max(self.last_arrival_ms, arrival_ms)
        self.online = True
        newest = max(times)
        self._advance(newest)
        self.newest_ms = max(self.newest_ms, newest)
        for t in times[-(self.rules.intervals_kept + 1) :]:
            self._note_time(t)

    def _advance(self, t_ms: int) -> None:
        self.watermark_ms = max(self.watermark_ms, t_ms)

    def _absorb(self) -> None:
        assert self.run_seq is not None
        while self.run_seq + 1 in self.pending:
            self.run_seq += 1
            self._advance(self.pending.pop(self.run_seq))
        if not self.pending:
            self.gap_since_ms = None

    def _give_up_old_gaps(self) -> None:
        if (
            self.gap_since_ms is None
            or self.newest_ms - self.gap_since_ms <= self.rules.max_hold_ms
        ):
            return
        lowest = min(self.pending)
        assert self.run_seq is not None
        self.seq_gaps_given_up += lowest - self.run_seq - 1
        self.run_seq = lowest - 1
        self._absorb()
        if self.pending:
            self.gap_since_ms = self.watermark_ms

    def _note_time(self, t_ms: int) -> None:
        if self._times and t_ms <= self._times[-1]:
            return  # a repeat, a replay or several messages per cycle: not a new spacing
        self._times.append(t_ms)
        while len(self._times) > self.rules.intervals_kept + 1:
            self._times.popleft()
        if len(self._times) >= 3:
            self.interval_ms = int(median(b - a for a, b in pairwise(self._times)))

    def complete_until(self, now_ms: int) -> int:
        """Data time before which this gateway's slots are complete, at park clock ``now_ms``."""
        if self.final_ms is not None:
            return self.final_ms
        interval = self.interval_ms or 0
        complete = self.watermark_ms + interval if self.watermark_ms > NEVER else NEVER
        if self.pending or not self.online:
            # data is queued at the edge: wait for it, but not forever
            return max(complete, now_ms - self.rules.max_hold_ms)
        silent_for = now_ms - max(self.last_arrival_ms, self.watermark_ms)
        if silent_for > self.rules.silence_ms:
            return max(complete, now_ms - self.rules.silence_ms)
        return complete

    def state(self) -> dict[str, Any]:
        return {
            "watermark_ms": self.watermark_ms,
            "newest_ms": self.newest_ms,
            "last_arrival_ms": self.last_arrival_ms,
            "run_seq": self.run_seq,
            "pending": [[k, v] for k, v in self.pending.items()],
            "gap_since_ms": self.gap_since_ms,
            "online": self.online,
            "seq_gaps_given_up": self.seq_gaps_given_up,
            "times": list(self._times),
            "interval_ms": self.interval_ms,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.watermark_ms = int(state["watermark_ms"])
        self.newest_ms = int(state["newest_ms"])
        self.last_arrival_ms = int(state["last_arrival_ms"])
        self.run_seq = None if state["run_seq"] is None else int(state["run_seq"])
        self.pending = {int(k): int(v) for k, v in state["pending"]}
        gap = state["gap_since_ms"]
        self.gap_since_ms = None if gap is None else int(gap)
        self.online = bool(state["online"])
        self.seq_gaps_given_up = int(state["seq_gaps_given_up"])
        self._times = deque(int(t) for t in state["times"])
        interval = state.get("interval_ms")
        self.interval_ms = None if interval is None else int(interval)
