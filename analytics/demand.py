"""15-minute demand: the average active power of each electricity meter per quarter hour.

Quarter hours are cut on the park's local clock (a 15-minute grid is the same in UTC only for
zones with whole-quarter offsets). State is one numpy row per meter, updated for a whole batch
at once; a window closes when the meter's newest reading, or the wall clock, has passed its
end plus a grace period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

import numpy as np
import numpy.typing as npt

WINDOW_MS = 15 * 60 * 1000


def window_start(t_ms: int, offset_ms: int) -> int:
    """Start (UTC epoch ms) of the local quarter hour holding ``t_ms``."""
    local = t_ms + offset_ms
    return local - local % WINDOW_MS - offset_ms


@dataclass(frozen=True, slots=True)
class DemandInterval:
    meter: str
    start_ms: int
    p_kw_avg: float
    p_kw_max: float
    samples: int


class DemandWindows:
    """Open quarter-hour windows for a fixed set of meters."""

    def __init__(self, meters: list[str], tz: tzinfo | None = None) -> None:
        self.meters = meters
        self.index = {m: i for i, m in enumerate(meters)}
        self.tz = tz
        n = len(meters)
        self.start = np.full(n, -1, dtype=np.int64)  # -1: no open window
        self.total = np.zeros(n)
        self.peak = np.full(n, -np.inf)
        self.count = np.zeros(n, dtype=np.int64)
        self.newest = np.zeros(n, dtype=np.int64)
        # everything before this is closed and written: a later sample for it is dropped
        self.closed_until = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
        self.late_samples = 0

    def _offset_ms(self, t_ms: int) -> int:
        if self.tz is None:
            return 0
        offset = datetime.fromtimestamp(t_ms / 1000, tz=self.tz).utcoffset()
        return int(offset.total_seconds() * 1000) if offset else 0

    def add(
        self,
        meter_idx: npt.NDArray[np.int64],
        t_ms: npt.NDArray[np.int64],
        p_kw: npt.NDArray[np.float64],
    ) -> list[DemandInterval]:
        """Add samples (one per element, any order); returns the windows they closed.

        A sample for a window before the meter's open one, or for one already written, is
        late: counted and dropped, so a written interval is never overwritten by a part of it.
        """
        closed: list[DemandInterval] = []
        if meter_idx.size == 0:
            return closed
        offset = self._offset_ms(int(t_ms[0]))
        local = t_ms + offset
        starts = local - local % WINDOW_MS - offset
        late = (starts < self.closed_until[meter_idx]) | (
            (self.start[meter_idx] >= 0) & (starts < self.start[meter_idx])
        )
        if late.any():
            self.late_samples += int(late.sum())
            keep = ~late
            meter_idx, t_ms, p_kw, starts = meter_idx[keep], t_ms[keep], p_kw[keep], starts[keep]
            if meter_idx.size == 0:
                return closed
        # one group per (meter, window), in time order within each meter
        order = np.lexsort((starts, meter_idx))
        meter_idx, t_ms, p_kw, starts = meter_idx[order], t_ms[order], p_kw[order], starts[order]
        first = np.flatnonzero(
            np.r_[True, (meter_idx[1:] != meter_idx[:-1]) | (starts[1:] != starts[:-1])]
        )
        sums = np.add.reduceat(p_kw, first)
        peaks = np.maximum.reduceat(p_kw, first)
        newest = np.maximum.reduceat(t_ms, first)
        counts = np.diff(np.r_[first, meter_idx.size])
        group_meter, group_start = meter_idx[first], starts[first]
        # the last group of each meter stays open; earlier ones are complete already
        last = np.r_[group_meter[1:] != group_meter[:-1], True]
        for g in range(first.size):
            m, s = int(group_meter[g]), int(group_start[g])
            if self.start[m] >= 0 and s > self.start[m]:
                closed.extend(self._close(np.array([m])))  # the open window is complete
            if self.start[m] == s:  # more samples for the open window
                self.total[m] += sums[g]
                self.peak[m] = max(self.peak[m], peaks[g])
                self.count[m] += counts[g]
                self.newest[m] = max(self.newest[m], newest[g])
            elif last[g]:  # opens a new window
                self.start[m] = s
                self.total[m], self.peak[m] = sums[g], peaks[g]
                self.count[m], self.newest[m] = counts[g], newest[g]
            else:  # a whole window inside this batch, before the meter's newest one
                closed.append(
                    DemandInterval(
                        self.meters[m],
                        s,
                        float(sums[g] / counts[g]),
                        float(peaks[g]),
                        int(counts[g]),
                    )
                )
                self.closed_until[m] = s + WINDOW_MS
        return closed

    def close_due(self, now_ms: int, grace_ms: int) -> list[DemandInterval]:
        """Close windows whose end plus grace has passed on the wall clock."""
        due = np.flatnonzero((self.start >= 0) & (self.start + WINDOW_MS + grace_ms <= now_ms))
        return self._close(due)

    def _close(self, idx: npt.NDArray[np.int64]) -> list[DemandInterval]:
        out = [
            DemandInterval(
                self.meters[i],
                int(self.start[i]),
                float(self.total[i] / self.count[i]),
                float(self.peak[i]),
                int(self.count[i]),
            )
            for i in idx
            if self.count[i] > 0
        ]
        opened = idx[self.start[idx] >= 0]
        self.closed_until[opened] = self.start[opened] + WINDOW_MS
        self.start[idx] = -1
        self.total[idx] = 0.0
        self.peak[idx] = -np.inf
        self.count[idx] = 0
        return out
