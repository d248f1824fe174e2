"""Peaks' running sums of a demand block: each 15-minute block's energy so far and the
last value held."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from analytics.kernels.common import _compiled, _maximum


@_compiled
def demand_running(
    values: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    low: npt.NDArray[np.float64],
    count: npt.NDArray[np.int32],
    a: int,
    b: int,
    ceiling: npt.NDArray[np.float64],
    same: npt.NDArray[np.bool_],
    carry_psum: npt.NDArray[np.float64],
    carry_slots: npt.NDArray[np.int64],
    carry_pmax: npt.NDArray[np.float64],
    carry_samples: npt.NDArray[np.int64],
    carry_last: npt.NDArray[np.float64],
    psum: npt.NDArray[np.float64],
    slots: npt.NDArray[np.int64],
    pmax: npt.NDArray[np.float64],
    samples: npt.NDArray[np.int64],
    last: npt.NDArray[np.float64],
) -> None:
    """A demand block's running sums over a block's slots ``a:b`` in one pass (``peaks.
    segments``' numpy code, its arithmetic in its order): per row and slot the Σ of slot means
    with data, their number, the highest reading, the readings and the latest mean, each
    continued from the carried block where the row is still in it (``same``). A slot whose
    extreme is above the row's ``ceiling`` (none where empty) counts as empty."""
    rows = values.shape[0]
    bounded = ceiling.size > 0
    for r in range(rows):
        c_psum = carry_psum[r] if same[r] else 0.0
        c_slots = carry_slots[r] if same[r] else 0
        c_pmax = carry_pmax[r] if same[r] else -np.inf
        c_samples = carry_samples[r] if same[r] else 0
        held = carry_last[r] if same[r] else np.nan
        run_sum = 0.0
        run_slots = 0
        run_max = -np.inf
        run_samples = 0
        for k in range(b - a):
            x = values[r, a + k]
            if bounded:
                hi = abs(high[r, a + k])
                lo = abs(low[r, a + k])
                # np.fmax: the other where one is NaN
                extreme = lo if hi != hi else (hi if lo != lo else _maximum(hi, lo))
                if extreme > ceiling[r]:
                    x = np.nan
            seen = np.isfinite(x)
            # np.cumsum starts from the first value itself, then adds in order
            y = x if seen else 0.0
            run_sum = y if k == 0 else run_sum + y
            psum[r, k] = run_sum + c_psum
            if seen:
                run_slots += 1
                run_samples += count[r, a + k]
                held = x
            slots[r, k] = run_slots + c_slots
            samples[r, k] = run_samples + c_samples
            m = _maximum(high[r, a + k] if seen else -np.inf, c_pmax)
            run_max = m if k == 0 else _maximum(run_max, m)
            pmax[r, k] = run_max
            last[r, k] = held
