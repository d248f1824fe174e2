"""What every kernel shares: the ``_compiled`` decorator (numba, cached on disk beside each
module) and the scalar helpers that keep the numpy code's NaN handling (``np.maximum`` and
``np.fmax`` differ on NaN).

numba re-checks a cached kernel against its own file only, yet these helpers are compiled into
the kernels of the modules that import them: after editing this file, delete those modules'
caches (``analytics/kernels/__pycache__/*.nb[ic]``, or ``NUMBA_CACHE_DIR``) or they keep running
the old helpers. An installed package is not affected (installing stamps every file anew)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np

F = TypeVar("F", bound=Callable[..., Any])


def _compiled(fn: F) -> F:
    # error_model="numpy": x / 0 is inf or NaN, as in the numpy code, not an exception
    return cast(F, numba.njit(cache=True, nogil=True, error_model="numpy")(fn))


@_compiled
def _maximum(a: float, b: float) -> float:
    """np.maximum of two numbers (NaN spreads)."""
    if a != a or b != b:
        return np.nan
    return a if a >= b else b


@_compiled
def _minimum(a: float, b: float) -> float:
    """np.minimum of two numbers (NaN spreads)."""
    if a != a or b != b:
        return np.nan
    return a if a <= b else b


@_compiled
def _fmax(a: float, b: float) -> float:
    """np.fmax of two numbers (NaN passed over)."""
    if a != a:
        return b
    if b != b:
        return a
    return a if a >= b else b


@_compiled
def _fmin(a: float, b: float) -> float:
    """np.fmin of two numbers (NaN passed over)."""
    if a != a:
        return b
    if b != b:
        return a
    return a if a <= b else b


@_compiled
def _clip(a: float, low: float, high: float) -> float:
    """np.clip of a number."""
    return _minimum(_maximum(a, low), high)
