"""A small town's water network of the shape public leak data has: two inflow meters and a
tank level, at 5-minute slots, with leaks whose ground truth is known.

Feed A pumps steadily, feed B switches on below 3 m and off above 5 m; the tank (80 m²)
takes up the difference, its level read to the millimetre. Demand has a morning and an
evening peak, less on weekends and holidays, days that use a few per cent more or less at
random, and optionally a seasonal swing over the year. ``town_network`` is the tests' town;
``year_scenario`` a year of it with about twenty leaks (bursts, small steps, incipient leaks
growing over weeks, some running for months before repair), sensor noise and gaps, for
``parkwatch bench town``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from parkwatch.calendar import WORKDAY, day_number, day_types
from parkwatch.site import Park

ZONE_ID = "town"
METERS = ("feed-a", "feed-b", "level")
STEP_MS = 300_000  # 5-minute slots
DAY_SLOTS = 288
DAY_MS = 86_400_000
START_DATE = date(2025, 3, 3)  # a Monday
START_MS = int(datetime(2025, 3, 3, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000)
AREA = 80.0  # m²
FloatArray = npt.NDArray[np.float64]


def town_park() -> Park:
    """The town as a park: one zone of two inflow meters and a tank level."""
    return Park.model_validate(
        {
            "park": "net",
            "analytics": {"step_s": STEP_MS / 1000},
            "tariffs": {"prices": {"water": 4.0}},  # ¥ per m³
            "meters": [
                {"id": "feed-a", "utility": "water"},
                {"id": "feed-b", "utility": "water"},
                {"id": "level", "utility": "water", "role": "tank"},
            ],
            "zones": [
                {
                    "id": ZONE_ID,
                    "utility": "water",
                    "inflow": ["feed-a", "feed-b"],
                    "tanks": [{"level": "level", "area_m2": AREA, "min_m": 0.0, "max_m": 8.0}],
                }
            ],
        }
    )


def town_network(
    days: int,
    seed: int,
    extra: FloatArray | None = None,
    steady_a: float | None = None,
    hold: tuple[int, float, float] | None = None,
    season: float = 0.0,
    feed_b_m3h: float = 30.0,
) -> FloatArray:
    """[3, slots]: feed A, feed B, the tank's level. ``extra``: water lost per slot (m³/h,
    the leaks); ``steady_a``: feed A reads exactly that from 00:00 to 07:00; ``hold`` (row,
    from day, to day): that meter stuck at its reading of the first slot, in between;
    ``season``: demand swings by this share over the year (highest in summer)."""
    rng = np.random.default_rng(seed)
    slots = days * DAY_SLOTS
    t = START_MS + np.arange(slots, dtype=np.int64) * STEP_MS
    hour = ((t - START_MS) % DAY_MS) / 3_600_000
    day = (t - START_MS) // DAY_MS
    # a town uses less on its rest days: weekends and public holidays (make-up workdays work)
    weekend = day_types(day_number(START_DATE) + day) != WORKDAY
    shape = 20 + 25 * np.exp(-(((hour - 8) / 2) ** 2)) + 20 * np.exp(-(((hour - 19) / 2.5) ** 2))
    daily = 1 + 0.04 * rng.standard_normal(days)[day]  # some days use more
    demand = shape * np.where(weekend, 0.85, 1.0) * daily * (1 + 0.03 * rng.standard_normal(slots))
    if season:
        # the start (early March) is near the year's mean, summer (day ~120) its top
        demand = demand * (1 + season * np.sin(2 * np.pi * (day + hour / 24) / 365.0))
    if extra is not None:
        demand = demand + extra
    feed_a = 18.0 + 0.5 * rng.standard_normal(slots)
    if steady_a is not None:
        feed_a = np.where(hour < 7, steady_a, feed_a)
    feed_b = np.zeros(slots)
    level = np.zeros(slots)
    h, pumping = 4.0, False
    step_h = STEP_MS / 3_600_000
    for k in range(slots):  # a pump with hysteresis: only a loop can say when it runs
        pumping = (h < 3.0) or (pumping and h < 5.0)
        feed_b[k] = feed_b_m3h + 0.3 * rng.standard_normal() if pumping else 0.0
        h += (feed_a[k] + feed_b[k] - demand[k]) * step_h / AREA
        level[k] = h
    values = np.vstack([feed_a, feed_b, np.round(level, 3)])
    if hold is not None:
        row, first, last = hold
        a, b = int(first * DAY_SLOTS), int(last * DAY_SLOTS)
        values[row, a:b] = values[row, a]
    return values


def step_leak(days: int, m3h: float, from_day: float) -> FloatArray:
    """Per slot: a leak of ``m3h`` from ``from_day`` (days since the start) on."""
    t = np.arange(days * DAY_SLOTS, dtype=np.int64) * STEP_MS
    hour = (t % DAY_MS) / 3_600_000
    out: FloatArray = np.where(t // DAY_MS + hour / 24 >= from_day, m3h, 0.0)
    return out


@dataclass(frozen=True)
class TownLeak:
    """One leak's ground truth: onset and repair (ms), its final size (m³/h), reached over
    ``ramp_days`` (0: a step)."""

    id: str
    kind: str  # "burst", "leak" (a small step), "incipient" (grows over weeks)
    onset_ms: int
    repair_ms: int
    m3h: float
    ramp_days: float

    def flow(self, t_ms: npt.NDArray[np.int64]) -> FloatArray:
        on = (t_ms >= self.onset_ms) & (t_ms < self.repair_ms)
        if self.ramp_days > 0:
            grown = np.clip((t_ms - self.onset_ms) / (self.ramp_days * DAY_MS), 0.0, 1.0)
        else:
            grown = np.ones(t_ms.shape)
        out: FloatArray = np.where(on, self.m3h * grown, 0.0)
        return out


@dataclass
class TownYear:
    values: FloatArray  # [3, slots], NaN where a reading is missing (a gap)
    t_ms: npt.NDArray[np.int64]
    leaks: list[TownLeak]
    gaps: list[tuple[str, int, int]]  # (meter or "all", from ms, to ms)
    days: int


def year_leaks(days: int, rng: np.random.Generator, count: int = 20) -> list[TownLeak]:
    """About ``count`` leaks over the year, none in its first three weeks (the baselines'
    learning): a third bursts (6–15 m³/h, repaired in 1–4 days), a third small steps (2–5
    m³/h, 5–60 days), a third incipient (growing to 2–8 m³/h over 7–30 days, repaired
    10–120 days after). They overlap as they fall."""
    leaks: list[TownLeak] = []
    first, last = 21.0, max(22.0, days - 5.0)
    for i in range(count):
        kind = ("burst", "leak", "incipient")[i % 3]
        onset = float(rng.uniform(first, last))
        if kind == "burst":
            size, ramp, lasts = rng.uniform(6, 15), 0.0, rng.uniform(1, 4)
        elif kind == "leak":
            size, ramp, lasts = rng.uniform(2, 5), 0.0, rng.uniform(5, 60)
        else:
            ramp = rng.uniform(7, 30)
            size, lasts = rng.uniform(2, 8), ramp + rng.uniform(10, 120)
        leaks.append(
            TownLeak(
                "",
                kind,
                START_MS + int(onset * DAY_MS),
                START_MS + int(min(onset + lasts, days + 1.0) * DAY_MS),
                round(float(size), 2),
                round(float(ramp), 1),
            )
        )
    leaks.sort(key=lambda leak: leak.onset_ms)
    return [replace(leak, id=f"L{i + 1:02d}") for i, leak in enumerate(leaks)]


def year_scenario(
    days: int = 365, seed: int = 1, leaks: int | None = None, season: float = 0.15
) -> TownYear:
    """The town over ``days`` with ``leaks`` leaks (default: 20 a year), a seasonal swing of
    ``season``, feed B sized for summer and every leak at once (45 m³/h), level noise of a
    millimetre, and gaps: one a month, 1–24 h, of the whole logger or of one meter."""
    rng = np.random.default_rng((seed, 11))
    slots = days * DAY_SLOTS
    t = START_MS + np.arange(slots, dtype=np.int64) * STEP_MS
    count = max(1, round(20 * days / 365)) if leaks is None else leaks
    truth = year_leaks(days, rng, count) if count else []
    extra = np.zeros(slots)
    for leak in truth:
        extra += leak.flow(t)
    values = town_network(days, seed, extra, season=season, feed_b_m3h=45.0)
    values[2] = np.round(values[2] + 0.001 * rng.standard_normal(slots), 3)
    gaps: list[tuple[str, int, int]] = []
    for n in range(max(1, days // 30)):
        a = int(rng.integers(0, slots))
        b = min(slots, a + int(rng.integers(12, 24 * 12 + 1)))
        which = "all" if n % 2 == 0 else METERS[int(rng.integers(0, 3))]
        rows = slice(None) if which == "all" else METERS.index(which)
        values[rows, a:b] = np.nan
        gaps.append((which, int(t[a]), int(t[b - 1]) + STEP_MS))
    return TownYear(values, t, truth, gaps, days)
