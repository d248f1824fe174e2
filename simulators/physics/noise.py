"""Deterministic noise: a hash of (seed, key, time), not a random stream, so any timestamp's
values are the same whichever way the model got there (one step at a time or a block at once).
"""

from __future__ import annotations

import zlib

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
U64Array = npt.NDArray[np.uint64]

_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix(x: U64Array) -> U64Array:
    """splitmix64's finaliser: a well-mixed 64-bit hash (array arithmetic wraps silently)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _C1
    x = x ^ (x >> np.uint64(27))
    x = x * _C2
    return x ^ (x >> np.uint64(31))


def key(*parts: object) -> np.uint64:
    """A stable 64-bit key (Python's own hash() differs between processes)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    lo, hi = zlib.crc32(text), zlib.crc32(text[::-1] + b"\x00")
    return np.uint64(int(mix(np.array([(hi << 32) | lo], dtype=np.uint64))[0]))


def uniform(counter: IntArray, keys: U64Array) -> FloatArray:
    """Uniform [0, 1) for every (counter, key): shape [len(counter), len(keys)]."""
    c = mix(counter.astype(np.uint64) * GOLDEN)
    h = mix(c[:, None] ^ keys[None, :])
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def fast(t: IntArray, keys: U64Array) -> FloatArray:
    """Sample-to-sample noise in [-1, 1] (triangular: most values small)."""
    return uniform(t, keys) + uniform(t, keys ^ GOLDEN) - 1.0


def slow(t: IntArray, keys: U64Array, period_ms: int) -> FloatArray:
    """Smooth noise in [-1, 1]: random knots every ``period_ms``, eased in between."""
    k = t // period_ms
    f = ((t - k * period_ms) / period_ms)[:, None]
    ease = f * f * (3 - 2 * f)
    a, b = uniform(k, keys), uniform(k + 1, keys)
    return 2 * (a * (1 - ease) + b * ease) - 1
