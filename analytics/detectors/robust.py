"""Robust statistics shared by the detectors, in plain numpy (no numba: nothing to compile)."""

from __future__ import annotations

import numpy as np

from analytics.engine.contract import FloatArray


def nanmedian_rows(a: FloatArray) -> FloatArray:
    """``np.nanmedian(a, axis=1)`` by one sort, bit-identical for non-negative input (the
    middle value, or the two middle ones' (low + high) / 2; NaN for a row without values or
    with no columns); with negative values a zero median's sign may differ. For rows this
    short numpy takes a masked-array path that was ~3 % of the engine's time at 10,000
    meters."""
    if a.shape[1] == 0:
        return np.full(a.shape[0], np.nan)
    ordered = np.sort(a, axis=1)  # NaN sorts last
    n = (~np.isnan(a)).sum(axis=1)
    rows = np.arange(a.shape[0])
    low = ordered[rows, np.maximum(n - 1, 0) // 2]
    high = ordered[rows, n // 2 - (n == 0)]
    return np.where(n > 0, (low + high) / 2, np.nan)
