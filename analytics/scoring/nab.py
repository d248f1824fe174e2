"""The Numenta Anomaly Benchmark's scoring method, exactly as NAB v1.1 computes it.

NAB (Lavin and Ahmad, 2015; ``nab/sweeper.py`` of numenta/NAB) scores the alarms of a detector
on a file of rows with labelled *windows* (rows ``first..last`` around each anomaly):

* the first ``min(floor(0.15·N), 750)`` rows are the *probationary period*: alarms there are
  not scored, and a window counts only through its rows after it;
* an alarm at row ``i`` inside a window of ``w`` rows whose last row is ``r`` earns
  ``σ₅(−(r − i + 1)/w) / σ₅(−1)``, where ``σ₅(y) = 2/(1 + e^{5y}) − 1`` is NAB's scaled
  sigmoid: +1 at the window's first row, about 0.86 at its centre, near 0 at its end. Only the
  best (earliest) alarm of a window counts, times ``tpWeight``; a window without an alarm
  costs ``fnWeight``;
* an alarm outside every window costs ``fpWeight``: the whole of it before the first window;
  after a window, ``fpWeight·σ₅(|i − r|/(w − 1))``, which is about 0 next to the window's end
  and the whole cost from three window-widths on (``σ₅(y) = −1`` for ``y ≥ 3``);
* a corpus's raw score is the sum over its files; it is normalised to
  ``100·(S − S_null)/(S_perfect − S_null)``, where the null detector never alarms
  (``S_null = −fnWeight·windows``) and the perfect one alarms at the first row of every window
  (``S_perfect = tpWeight·windows``).

The three profiles (standard, reward low FP rate, reward low FN rate) are NAB's
``config/profiles.json``. Scores here take alarms as row indices: a detector with a continuous
score is thresholded before it is scored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

PROBATION_PERCENT = 0.15
# NAB caps the probationary period at 15 % of 5,000 rows
PROBATION_CAP = PROBATION_PERCENT * 5000


@dataclass(frozen=True, slots=True)
class CostMatrix:
    """One NAB profile's weights."""

    tp_weight: float
    fp_weight: float
    fn_weight: float


# NAB's config/profiles.json, for when the file is not at hand; ``load_profiles`` reads it
PROFILES: dict[str, CostMatrix] = {
    "standard": CostMatrix(1.0, 0.11, 1.0),
    "reward_low_FP_rate": CostMatrix(1.0, 0.22, 1.0),
    "reward_low_FN_rate": CostMatrix(1.0, 0.11, 2.0),
}


def load_profiles(path: Path) -> dict[str, CostMatrix]:
    """The profiles of a NAB ``profiles.json`` (name → cost matrix)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, CostMatrix] = {}
    for name, profile in doc.items():
        costs = profile["CostMatrix"]
        out[name] = CostMatrix(
            float(costs["tpWeight"]), float(costs["fpWeight"]), float(costs["fnWeight"])
        )
    return out


def scaled_sigmoid(y: float) -> float:
    """NAB's ``2/(1 + e^{5y}) − 1``, flat at −1 from ``y = 3`` on."""
    if y >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probation_length(rows: int, percent: float = PROBATION_PERCENT) -> int:
    """How many leading rows are not scored."""
    return int(min(math.floor(percent * rows), percent * 5000))


@dataclass(frozen=True, slots=True)
class Window:
    """A labelled anomaly window: rows ``first`` to ``last`` inclusive."""

    first: int
    last: int

    @property
    def width(self) -> int:
        return self.last - self.first + 1


def windows_from_times(
    times_ms: npt.NDArray[np.int64], limits_ms: Iterable[tuple[int, int]]
) -> list[Window]:
    """Row windows from NAB's (start, end) timestamps, which are rows' timestamps exactly."""
    out: list[Window] = []
    for start, end in limits_ms:
        first = int(np.searchsorted(times_ms, start))
        last = int(np.searchsorted(times_ms, end))
        if (
            first >= times_ms.size
            or last >= times_ms.size
            or times_ms[first] != start
            or times_ms[last] != end
        ):
            raise ValueError(f"window ({start}, {end}) does not start and end on rows of the file")
        out.append(Window(first, last))
    out.sort(key=lambda w: w.first)
    return out


@dataclass(frozen=True, slots=True)
class FileScore:
    score: float
    windows: int  # windows scored (with a row after the probationary period)
    detected: int  # windows with an alarm
    false_alarms: int  # alarms outside every window, after the probationary period
    earliness: tuple[float, ...]  # the counted alarm's weight in each detected window


def row_weights(
    rows: int, windows: Sequence[Window], cost: CostMatrix
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """What an alarm at each row earns (NAB's ``sweepScore``) and the window it falls in
    (−1: none). Rows of the probationary period get a weight too; scoring skips them."""
    index = np.arange(rows)
    firsts = np.array([w.first for w in windows], dtype=np.int64)
    lasts = np.array([w.last for w in windows], dtype=np.int64)
    widths = (lasts - firsts + 1).astype(np.float64)
    # the window each row is in or after (−1: before the first)
    k = np.searchsorted(firsts, index, side="right") - 1
    inside = np.zeros(rows, dtype=bool)
    has = k >= 0
    inside[has] = index[has] <= lasts[k[has]]
    weight = np.full(rows, -cost.fp_weight)
    max_tp = scaled_sigmoid(-1.0)
    ki = k[inside]
    position = -(lasts[ki] - index[inside] + 1) / widths[ki]
    weight[inside] = _scaled_sigmoid(position) * cost.tp_weight / max_tp
    after = has & ~inside
    ka = k[after]
    # a one-row window would divide by zero in NAB; none exists in its labels
    distance = np.abs(lasts[ka] - index[after]) / np.maximum(widths[ka] - 1.0, 1.0)
    weight[after] = _scaled_sigmoid(distance) * cost.fp_weight
    window_of = np.where(inside, k, -1).astype(np.int64)
    return weight, window_of


def _scaled_sigmoid(y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    with np.errstate(over="ignore"):
        out = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y >= 3.0, -1.0, out)


def score_file(
    alarms: Iterable[int],
    rows: int,
    windows: Sequence[Window],
    cost: CostMatrix,
    probation: int | None = None,
) -> FileScore:
    """NAB's score of one file's alarms (row indices; repeats count once)."""
    if probation is None:
        probation = probation_length(rows)
    weight, window_of = row_weights(rows, windows, cost)
    scored = [k for k, w in enumerate(windows) if w.last >= probation]
    best: dict[int, float] = {}
    fp_total = 0.0
    false_alarms = 0
    for i in sorted(set(int(a) for a in alarms)):
        if i < probation or i >= rows:
            if i < 0 or i >= rows:
                raise ValueError(f"alarm at row {i} is outside the file's {rows} rows")
            continue
        k = int(window_of[i])
        if k < 0:
            fp_total += float(weight[i])
            false_alarms += 1
        elif k not in best:  # rows come in order: the first alarm is the best
            best[k] = float(weight[i])
    score = fp_total + sum(best.values()) - cost.fn_weight * (len(scored) - len(best))
    return FileScore(
        score, len(scored), len(best), false_alarms, tuple(best[k] for k in sorted(best))
    )


def null_score(windows: int, cost: CostMatrix) -> float:
    """A detector that never alarms."""
    return -cost.fn_weight * windows


def perfect_score(windows: int, cost: CostMatrix) -> float:
    """A detector that alarms at the first row of every window and nowhere else."""
    return cost.tp_weight * windows


def normalise(raw: float, windows: int, cost: CostMatrix) -> float:
    """NAB's normalised score: 0 never alarms, 100 is perfect (NaN without windows: a file
    set without anomalies has only false alarms to lose, its raw score says how many)."""
    if windows == 0:
        return math.nan
    null = null_score(windows, cost)
    return 100.0 * (raw - null) / (perfect_score(windows, cost) - null)


@dataclass(frozen=True, slots=True)
class CorpusScore:
    raw: float
    normalised: float
    windows: int
    detected: int
    false_alarms: int


def score_corpus(files: Mapping[str, FileScore], cost: CostMatrix) -> CorpusScore:
    """Sum of file scores, normalised over their windows."""
    raw = sum(f.score for f in files.values())
    windows = sum(f.windows for f in files.values())
    return CorpusScore(
        raw,
        normalise(raw, windows, cost),
        windows,
        sum(f.detected for f in files.values()),
        sum(f.false_alarms for f in files.values()),
    )
