"""Shift calendars by industry: how busy a plant is, minute by minute, on each kind of day.

An industry's table gives the production activity (0: nothing runs, 1: full output) for every
minute of a workday, a Saturday, a Sunday, a public holiday and the Spring Festival shutdown
(the rows follow :mod:`simulators.calendar`'s day types, festival last). Meters turn activity
into load with their own standby share, so a furnace that is kept hot and an office that is
dark at night can follow the same shift plan.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

MINUTES = 1440
FESTIVAL_ROW = 4  # after the four day types of simulators.calendar

Shift = tuple[float, float, float]  # start hour, end hour (may pass 24), activity
Break = tuple[float, float, float]  # start hour, end hour, factor applied to activity


def day(
    off: float,
    shifts: Sequence[Shift] = (),
    breaks: Sequence[Break] = (),
    ramp_min: int = 20,
) -> FloatArray:
    """One day's activity: ``off`` outside the shifts, ramps of ``ramp_min`` at the changes."""
    minute = np.arange(MINUTES)
    out = np.full(MINUTES, off)
    for start, end, level in shifts:
        a, b = int(start * 60), int(end * 60)
        inside = (minute >= a) & (minute < b)
        if b > MINUTES:  # a shift running past midnight covers the start of the same day too
            inside |= minute < b - MINUTES
        out[inside] = level
    for start, end, factor in breaks:
        a, b = int(start * 60), int(end * 60)
        out[(minute >= a) & (minute < b)] *= factor
    if ramp_min > 1:
        # machines start and stop over a few minutes: a circular moving average
        kernel = np.ones(ramp_min) / ramp_min
        padded = np.concatenate([out[-ramp_min:], out, out[:ramp_min]])
        out = np.convolve(padded, kernel, mode="same")[ramp_min:-ramp_min]
    return out


def _table(
    workday: FloatArray,
    saturday: FloatArray,
    sunday: FloatArray,
    holiday: FloatArray,
    festival: FloatArray,
) -> FloatArray:
    return np.stack([workday, saturday, sunday, holiday, festival])


_HANDOVER = [(7.9, 8.2, 0.85), (15.9, 16.2, 0.85), (23.9, 24.0, 0.85)]


def _casting() -> FloatArray:
    # induction furnaces melt mostly in the night valley tariff (23:00-07:00) and hold by day
    work = day(0.72, [(23, 31, 0.95)], _HANDOVER)
    return _table(work, work * 0.95, work * 0.85, day(0.35), day(0.22))


def _chemicals() -> FloatArray:
    # continuous process: barely a shift pattern, slightly lower on rest days
    work = day(0.90, breaks=_HANDOVER)
    return _table(work, work * 0.98, work * 0.97, work * 0.94, work * 0.88)


def _electronics() -> FloatArray:
    # two shifts 08-24 with meal breaks; Saturday one long shift; clean rooms never stop
    breaks = [(12, 13, 0.75), (18, 18.5, 0.8)]
    work = day(0.12, [(8, 24, 0.92)], breaks)
    saturday = day(0.10, [(8, 20, 0.70)], breaks)
    return _table(work, saturday, day(0.08), day(0.06), day(0.05))


def _auto_parts() -> FloatArray:
    # one long day shift with a lunch stop; a short Saturday shift
    work = day(0.06, [(8, 20, 0.90)], [(12, 13, 0.55)])
    saturday = day(0.05, [(8, 17, 0.55)], [(12, 13, 0.55)])
    return _table(work, saturday, day(0.04), day(0.03), day(0.02))


def _food() -> FloatArray:
    # early start, runs through weekends; a skeleton crew on holidays
    work = day(0.25, [(5, 21, 0.85)], [(11.5, 12.5, 0.85)])
    return _table(
        work,
        day(0.25, [(5, 21, 0.75)]),
        day(0.22, [(6, 18, 0.60)]),
        day(0.20, [(6, 14, 0.45)]),
        day(0.15),
    )


def _general() -> FloatArray:
    work = day(0.10, [(8, 18, 0.80)], [(12, 13, 0.6)])
    return _table(work, day(0.12, [(9, 15, 0.3)]), day(0.10), day(0.10), day(0.08))


def _park() -> FloatArray:
    # the park's own loads: pumps and offices by day, street lighting at night
    work = day(0.55, [(18, 30, 0.85), (8, 18, 0.65)])
    rest = day(0.50, [(18, 30, 0.85)])
    return _table(work, rest, rest, rest, rest)


INDUSTRIES: dict[str, FloatArray] = {
    "casting": _casting(),
    "chemicals": _chemicals(),
    "electronics": _electronics(),
    "auto_parts": _auto_parts(),
    "food": _food(),
    "general": _general(),
    "park": _park(),
}

# other names for the same pattern
ALIASES = {
    "steel": "casting",
    "foundry": "casting",
    "metals": "casting",
    "pharma": "chemicals",
    "pharmaceuticals": "chemicals",
    "materials": "chemicals",
    "semiconductors": "electronics",
    "automotive": "auto_parts",
    "machinery": "auto_parts",
    "beverages": "food",
}

# water drawn per MW of contracted electrical demand at full activity, m³/h
WATER_PER_MW = {
    "casting": 8.0,
    "chemicals": 15.0,
    "electronics": 10.0,
    "auto_parts": 4.0,
    "food": 12.0,
    "general": 3.0,
    "park": 2.0,
}


def canonical(industry: str) -> str:
    """The table an industry name uses ("general" when it is unknown)."""
    name = industry.strip().lower().replace("-", "_").replace(" ", "_")
    name = ALIASES.get(name, name)
    return name if name in INDUSTRIES else "general"
