"""Production activity and the loads that follow it.

An enterprise's activity in [0, 1.1] is its industry's shift table for the kind of day (workday,
weekend, holiday, Spring Festival shutdown) on the park's local clock, times an order-book
factor per day and a slow drift. A consumer draws ``rated × (standby + (1 − standby) ×
activity)`` with fast and slow noise; HVAC follows the air temperature too.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from parkwatch import calendar
from simulators import industries
from simulators.physics.noise import fast, slow, uniform

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
U64Array = npt.NDArray[np.uint64]

MINUTE_MS = 60_000

NOISE_FAST = 0.025
NOISE_SLOW = 0.04


def activity(
    t: IntArray,
    day: IntArray,
    tod: FloatArray,
    tables: FloatArray,
    table_of: IntArray,
    keys: U64Array,
) -> FloatArray:
    """Production activity per enterprise, ``[time, enterprise]``: ``tables`` are the shift
    tables ``[industry, day type, minute]``, ``table_of`` each enterprise's industry row,
    ``keys`` each enterprise's noise key."""
    minute = np.minimum((tod * 60).astype(np.int64), 1439)
    day_type = calendar.day_types(day)
    row = np.where(calendar.festival(day), industries.FESTIVAL_ROW, day_type).astype(np.int64)
    act = tables[table_of[None, :], row[:, None], minute[:, None]]
    # the order book: a factor per enterprise and day, eased from one day to the next
    today = uniform(day, keys)
    tomorrow = uniform(day + 1, keys)
    w = (tod / 24)[:, None]
    book = 1 + 0.06 * (2 * (today * (1 - w) + tomorrow * w) - 1)
    drift = 1 + 0.04 * slow(t, keys ^ np.uint64(0xAC7), 45 * MINUTE_MS)
    return np.clip(act * book * drift, 0.0, 1.1)


def wiggle(t: IntArray, keys: U64Array) -> FloatArray:
    """Every meter's load noise, ``[time, meter]``: fast and slow, around 1."""
    return (
        1
        + NOISE_FAST * fast(t, keys)
        + NOISE_SLOW * slow(t, keys ^ np.uint64(0x51), 20 * MINUTE_MS)
    )


def consumers(
    act: FloatArray, rated: FloatArray, standby: FloatArray, noise: FloatArray
) -> FloatArray:
    """Loads that follow their enterprise's activity (``act`` already per meter)."""
    return rated * (standby + (1 - standby) * act) * noise


def hvac_factor(t_air: FloatArray) -> FloatArray:
    """HVAC load relative to mild weather: cooling in summer, heating in winter."""
    return 0.8 + 0.03 * np.maximum(t_air - 20, 0) + 0.02 * np.maximum(10 - t_air, 0)
