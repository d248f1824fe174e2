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
        """Add samples (one per element); returns the windows they closed."""
        closed: list[DemandInterval] = []
        if meter_idx.size == 0:
            return closed
        offset = self._offset_ms(int(t_ms[0]))
        local = t_ms + offset
        starts = local - local % WINDOW_MS - offset
        # samples for a later window close the meter's open one first
        order = np.lexsort((t_ms, meter_idx))
        meter_idx, t_ms, p_kw, starts = meter_idx[order], t_ms[order], p_kw[order], starts[order]
        moving = (self.start[meter_idx] >= 0) & (starts > self.start[meter_idx])
        for i in np.unique(meter_idx[moving]):
            closed.extend(self._close(np.array([i])))
        late = starts < self.closed_until[meter_idx]
        self.late_samples += int(late.sum())
        keep = ~late
        meter_idx, t_ms, p_kw, starts = meter_idx[keep], t_ms[keep], p_kw[keep], starts[keep]
        # a batch may span several windows of one meter: fold all but each meter's last
        last_start = np.full(len(self.meters), -1, dtype=np.int64)
        np.maximum.at(last_start, meter_idx, starts)
        current = starts == last_start[meter_idx]
        for i in np.unique(meter_idx[~current]):
            sel = (meter_idx == i) & ~current
            for s in np.unique(starts[sel]):
                part = sel & (starts == s)
                closed.append(
                    DemandInterval(
                        self.meters[i],
                        int(s),
                        float(p_kw[part].mean()),
                        float(p_kw[part].max()),
                        int(part.sum()),
                    )
                )
        if (~current).any():
            np.maximum.at(self.closed_until, meter_idx[~current], starts[~current] + WINDOW_MS)
        meter_idx, t_ms, p_kw, starts = (
            meter_idx[current],
            t_ms[current],
            p_kw[current],
            starts[current],
        )
        self.start[meter_idx] = starts
        np.add.at(self.total, meter_idx, p_kw)
        np.maximum.at(self.peak, meter_idx, p_kw)
        np.add.at(self.count, meter_idx, 1)
        np.maximum.at(self.newest, meter_idx, t_ms)
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
