"""The water network's storage tank: it fills at night and feeds the network by day.

``tank_in − tank_out = area × d(level)/dt`` holds exactly: the level is the integral of the
fill and drain windows.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

TANK_FILL = (23.0, 7.0)  # local hours: the tank fills 23:00-07:00 ...
TANK_DRAIN = (8.0, 20.0)  # ... and feeds the network 08:00-20:00
TANK_LEVELS = (0.15, 0.85)  # of the tank's height: lowest at 20:00, highest at 07:00
DEFAULT_INFLOW = 60.0  # m³/h, a tank inlet without ``rated``
DEFAULT_HEIGHT = 6.0  # m


def hours(span: tuple[float, float]) -> float:
    return (span[1] - span[0]) % 24


def window(tod: FloatArray, start: float, end: float) -> FloatArray:
    """1.0 inside [start, end) hours of the local day (may wrap midnight), else 0.0."""
    inside = (tod >= start) & (tod < end) if start <= end else (tod >= start) | (tod < end)
    return inside.astype(np.float64)


def size(inflow_m3h: float, height_m: float) -> tuple[float, float]:
    """(volume drawn each day in m³, cross-section in m²) of a tank whose inlet runs at 80 %
    of ``inflow_m3h`` through the night and whose level swings over ``TANK_LEVELS``."""
    volume = 0.8 * inflow_m3h * hours(TANK_FILL)
    area = volume / ((TANK_LEVELS[1] - TANK_LEVELS[0]) * height_m)
    return volume, area


def inflow(tod: FloatArray, volume: float) -> FloatArray:
    return window(tod, *TANK_FILL) * volume / hours(TANK_FILL)


def outflow(tod: FloatArray, volume: float) -> FloatArray:
    return window(tod, *TANK_DRAIN) * volume / hours(TANK_DRAIN)


def shape(tod: FloatArray) -> FloatArray:
    """The tank's level between its lowest (0) and highest (1) over a local day: the exact
    integral of the fill and drain windows, so the level and the flows agree."""
    fs, fe = TANK_FILL
    ds, de = TANK_DRAIN
    fill_h = (fe - fs) % 24
    since_fill = (tod - fs) % 24
    rising = np.clip(since_fill / fill_h, 0, 1)
    falling = np.clip((tod - ds) / (de - ds), 0, 1)
    # from the fill start to the drain start the level rises; from the drain start it falls
    in_day = (tod >= ds) & (tod < fs)
    return np.where(in_day, 1 - falling, rising)


def level(tod: FloatArray, height_m: float) -> FloatArray:
    low, high = TANK_LEVELS
    return height_m * (low + (high - low) * shape(tod))
