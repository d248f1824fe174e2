"""Sun and weather at the park: clear-sky irradiance from the sun's position, a sky class per
day with clouds drifting within it, air temperature and humidity over the seasons and the day.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from parkwatch.site import Park
from simulators.physics.noise import slow, uniform

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
U64Array = npt.NDArray[np.uint64]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

DEFAULT_LOCATION = {"Asia/Shanghai": (29.56, 106.55)}  # Chongqing: the demo park's city
# sky classes of a day: (probability, mean clearness, spread within the day)
SKY = ((0.3, 0.95, 0.04), (0.4, 0.65, 0.30), (0.3, 0.25, 0.10))


def location(park: Park) -> tuple[float, float]:
    """(latitude, longitude) of the park's sun: a known city for its time zone, else a
    stand-in at latitude 30° with the longitude of the zone's standard offset."""
    known = DEFAULT_LOCATION.get(park.timezone)
    if known:
        return known
    offset = park.zone.utcoffset(None)
    hours = offset.total_seconds() / 3600 if offset is not None else 0.0
    return (30.0, 15.0 * hours)


def clear_sky_ghi(t_ms: IntArray, latitude: float, longitude: float) -> FloatArray:
    """Global horizontal irradiance under a clear sky, W/m² (Haurwitz), from the sun's
    position (a low-precision almanac, good to a fraction of a degree)."""
    d = (t_ms - 946_728_000_000) / DAY_MS  # days since J2000.0
    g = np.radians(357.529 + 0.98560028 * d)  # mean anomaly
    q = 280.459 + 0.98564736 * d  # mean longitude, degrees
    ecl_lon = np.radians(q + 1.915 * np.sin(g) + 0.020 * np.sin(2 * g))
    obliquity = np.radians(23.439 - 0.00000036 * d)
    decl = np.arcsin(np.sin(obliquity) * np.sin(ecl_lon))
    ra = np.degrees(np.arctan2(np.cos(obliquity) * np.sin(ecl_lon), np.cos(ecl_lon)))
    eot_deg = (q - ra + 180.0) % 360.0 - 180.0  # equation of time, in degrees of rotation
    utc_h = (t_ms % DAY_MS) / HOUR_MS
    hour_angle = np.radians(15.0 * (utc_h - 12.0) + longitude + eot_deg)
    lat = math.radians(latitude)
    cos_z = math.sin(lat) * np.sin(decl) + math.cos(lat) * np.cos(decl) * np.cos(hour_angle)
    safe = np.maximum(cos_z, 1e-6)
    return np.where(cos_z > 0, 1098.0 * cos_z * np.exp(-0.057 / safe), 0.0)


def weather(
    t: IntArray,
    day: IntArray,
    tod: FloatArray,
    keys: U64Array,
    where: tuple[float, float],
) -> dict[str, FloatArray]:
    """``t_air_c``, ``irr_wm2``, ``rh_pct`` and ``clear_sky`` at each timestamp (``day``: the
    local day number, ``tod``: local hour of the day; ``keys``: four of the park's noise keys).
    """
    dates = day.astype("datetime64[D]")
    doy = (dates - dates.astype("datetime64[Y]")).astype(np.int64)
    season = np.cos(2 * np.pi * (doy - 200) / 365.25)
    diurnal = np.cos(2 * np.pi * (tod - 15) / 24)
    t_air = 18.5 + 10.5 * season + 4 * diurnal + 2.5 * slow(t, keys[:1], 6 * HOUR_MS)[:, 0]
    ghi = clear_sky_ghi(t, *where)
    u = uniform(day, keys[1:2])[:, 0]
    cum = np.cumsum([p for p, _, _ in SKY])
    cls = np.searchsorted(cum, u, side="right").clip(0, len(SKY) - 1)
    mean = np.array([m for _, m, _ in SKY])[cls]
    spread = np.array([s for _, _, s in SKY])[cls]
    clearness = np.clip(mean + spread * slow(t, keys[2:3], 10 * MINUTE_MS)[:, 0], 0.05, 1.0)
    rh = np.clip(
        78 - 12 * diurnal - 15 * (clearness - 0.5) + 5 * slow(t, keys[3:4], 3 * HOUR_MS)[:, 0],
        25,
        100,
    )
    return {"t_air_c": t_air, "irr_wm2": ghi * clearness, "rh_pct": rh, "clear_sky": ghi}
