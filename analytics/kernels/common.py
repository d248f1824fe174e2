"""What every kernel shares: the ``_compiled`` decorator (numba, cached on disk) and the scalar
helpers that keep the numpy code's NaN handling (``np.maximum`` and ``np.fmax`` differ on NaN).

numba checks a cached kernel against its own file's content only, yet a kernel has the helpers
it calls (these, ``feeding``'s routing in ``clocks``) compiled into its machine code: an edit
of a helper's file alone would leave the kernels that call it running the old helper, here and
in an upgraded image whose cache volume is kept. So every kernel is cached in ``CACHE_DIR``,
named by a digest of all the kernel modules' sources: any edit of any of them starts a fresh
cache, and ``analytics.warm.prune_kernel_caches`` removes the stale ones."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import numba
import numpy as np

F = TypeVar("F", bound=Callable[..., Any])

# numba's settings are module globals set from the environment at run time: untyped
_CONFIG: Any = numba.config

KERNELS = Path(__file__).resolve().parent
CACHE_PREFIX = "kernels-"


def sources_digest(folder: Path) -> str:
    """A digest of every ``*.py`` file's name and bytes in ``folder`` (16 hex digits)."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def _cache_root() -> Path:
    """Where the keyed caches live: ``NUMBA_CACHE_DIR`` if set (the image's volume), else the
    kernels' own ``__pycache__``, else (not writable: an installed package) the user's cache
    folder; never numba's own fallbacks, which are not keyed."""
    if _CONFIG.CACHE_DIR:
        return Path(_CONFIG.CACHE_DIR)
    in_tree = KERNELS / "__pycache__"
    if _writable(in_tree):
        return in_tree
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return user / "parkwatch-numba"


CACHE_DIR = _cache_root() / f"{CACHE_PREFIX}{sources_digest(KERNELS)}"


def _compiled(fn: F) -> F:
    # numba picks a kernel's cache folder when it is decorated (cache=True) from
    # config.CACHE_DIR: set to the keyed folder for our kernels only, not for other numba users
    kept = _CONFIG.CACHE_DIR
    _CONFIG.CACHE_DIR = str(CACHE_DIR)
    try:
        # error_model="numpy": x / 0 is inf or NaN, as in the numpy code, not an exception
        return cast(F, numba.njit(cache=True, nogil=True, error_model="numpy")(fn))
    finally:
        _CONFIG.CACHE_DIR = kept


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
