"""A deterministic park model: every meter's readings at any moment, computed with numpy.

Loads follow each industry's shift pattern (hour of day × weekday/weekend in the park's time
zone) with seeded noise; parent meters carry the sum of their children plus their own
unmetered share, so balance trees add up; counters integrate the instantaneous values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from parkwatch.quantities import Utility
from parkwatch.site import Meter, Park

FloatArray = npt.NDArray[np.float64]

# fraction of rated load by hour of day, for a weekday and for a weekend day
_HOURS = np.arange(24)


def _shift(start: int, end: int, on: float, off: float) -> FloatArray:
    inside = (start <= _HOURS) & (end > _HOURS)
    return np.where(inside, on, off).astype(np.float64)


PROFILES: dict[str, tuple[FloatArray, FloatArray]] = {
    # three shifts, furnaces never cool down; weekends a bit lower
    "casting": (np.full(24, 0.82), np.full(24, 0.70)),
    # continuous process plants
    "chemicals": (np.full(24, 0.86), np.full(24, 0.84)),
    # two shifts 08-24, skeleton weekend
    "electronics": (_shift(8, 24, 0.90, 0.30), _shift(8, 20, 0.40, 0.25)),
    # one long shift, quiet nights and weekends
    "auto_parts": (_shift(8, 20, 0.88, 0.18), _shift(8, 16, 0.30, 0.12)),
    # early start, steady through the evening
    "food": (_shift(6, 22, 0.80, 0.35), _shift(6, 22, 0.60, 0.35)),
    "general": (_shift(8, 18, 0.80, 0.20), np.full(24, 0.20)),
}

# the rated size of a leaf meter, per utility, relative to its enterprise's contracted kW
_SIZE_PER_KW = {
    Utility.ELECTRICITY: 0.6,  # kW
    Utility.WATER: 0.012,  # m³/h
    Utility.GAS: 0.08,  # Nm³/h
    Utility.HEAT: 0.25,  # kW thermal
    Utility.STEAM: 0.0004,  # t/h
    Utility.AIR: 0.05,  # Nm³/h
    Utility.ENV: 0.0,
}
_UNMETERED_SHARE = 0.04  # a parent's own load beyond its children (losses, small consumers)
_NOISE = 0.03


@dataclass(frozen=True)
class _Layout:
    meters: list[Meter]
    rated: FloatArray  # rated instantaneous value of a meter's own load
    profile: npt.NDArray[np.int64]  # row into the profile table
    # parent index per meter (-1 for roots), in an order where children come before parents
    parent: npt.NDArray[np.int64]
    order: npt.NDArray[np.int64]


def _layout(park: Park) -> _Layout:
    meters = list(park.iter_meters())
    index = {m.id: i for i, m in enumerate(meters)}
    contracted = {e.id: e.contracted_demand_kw or 1000.0 for e in park.enterprises}
    industry = {e.id: e.industry for e in park.enterprises}
    names = list(PROFILES)
    children: dict[str, list[str]] = {}
    for m in meters:
        if m.spec.parent:
            children.setdefault(m.spec.parent, []).append(m.id)
    rated = np.zeros(len(meters))
    profile = np.zeros(len(meters), dtype=np.int64)
    for i, m in enumerate(meters):
        kw = contracted.get(m.enterprise, 1000.0)
        size = kw * _SIZE_PER_KW[m.utility]
        rated[i] = size * _UNMETERED_SHARE if m.id in children else size
        ind = industry.get(m.enterprise, "general")
        profile[i] = names.index(ind if ind in PROFILES else "general")
    parent = np.array([index[m.spec.parent] if m.spec.parent else -1 for m in meters])

    def depth(i: int) -> int:
        d = 0
        while parent[i] >= 0:
            i, d = int(parent[i]), d + 1
        return d

    order = np.array(sorted(range(len(meters)), key=depth, reverse=True), dtype=np.int64)
    return _Layout(meters, rated, profile, parent, order)


class ParkModel:
    """Steps a park through time; ``step(t_ms)`` returns every meter's reading at ``t_ms``."""

    def __init__(self, park: Park, seed: int = 0) -> None:
        self.park = park
        self.layout = _layout(park)
        self.rng = np.random.default_rng(seed)
        n = len(self.layout.meters)
        self._table = np.stack([np.stack(PROFILES[name]) for name in PROFILES])  # [p, 2, 24]
        # counters start at plausible non-zero readings, as installed meters do
        self.counters = self.rng.uniform(1e4, 1e6, size=n).round(1)
        self._last_t_ms: int | None = None
        self._last_value = np.zeros(n)

    @property
    def meters(self) -> list[Meter]:
        return self.layout.meters

    def load_factor(self, t_ms: int) -> FloatArray:
        local = datetime.fromtimestamp(t_ms / 1000, tz=self.park.zone)
        weekend = 1 if local.weekday() >= 5 else 0
        hour = local.hour + local.minute / 60
        h0 = int(hour) % 24
        h1 = (h0 + 1) % 24
        frac = hour - int(hour)
        rows = self._table[self.layout.profile, weekend]  # [n, 24]
        return np.asarray(rows[:, h0] * (1 - frac) + rows[:, h1] * frac, dtype=np.float64)

    def instantaneous(self, t_ms: int) -> FloatArray:
        lay = self.layout
        noise = 1 + self.rng.normal(0, _NOISE, size=len(lay.meters))
        own = lay.rated * self.load_factor(t_ms) * noise
        total = own.copy()
        for i in lay.order:  # children first, so each parent adds finished subtotals
            p = lay.parent[i]
            if p >= 0:
                total[p] += total[i]
        return np.maximum(total, 0.0)

    def step(self, t_ms: int) -> list[dict[str, Any]]:
        value = self.instantaneous(t_ms)
        if self._last_t_ms is not None:
            hours = max(t_ms - self._last_t_ms, 0) / 3_600_000
            # trapezoid: the counter grows by the mean of the two values over the interval
            self.counters += (self._last_value + value) / 2 * hours
        self._last_t_ms, self._last_value = t_ms, value
        return [
            {"m": m.id, "t": t_ms, "q": _quantities(m.utility, float(v), float(c))}
            for m, v, c in zip(self.meters, value, self.counters, strict=True)
        ]

    def step_by_gateway(self, t_ms: int) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for meter, reading in zip(self.meters, self.step(t_ms), strict=True):
            out.setdefault(meter.gateway, []).append(reading)
        return out


def _quantities(utility: Utility, value: float, counter: float) -> dict[str, float]:
    v, c = round(value, 3), round(counter, 3)
    if utility is Utility.ELECTRICITY:
        pf = 0.92
        return {"p_kw": v, "e_kwh": c, "pf": pf, "q_kvar": round(v * 0.426, 3)}
    if utility is Utility.WATER:
        return {"flow_m3h": v, "vol_m3": c}
    if utility in (Utility.GAS, Utility.AIR):
        return {"flow_nm3h": v, "vol_nm3": c}
    if utility is Utility.HEAT:
        # a hot-water loop: 20 K spread, flow follows power (kW = 1.163 kWh/m³K × m³/h × K)
        flow = round(value / (1.163 * 20), 3)
        return {
            "heat_kw": v,
            "heat_gj": round(counter * 0.0036, 4),
            "flow_m3h": flow,
            "t_supply_c": 80.0,
            "t_return_c": 60.0,
        }
    if utility is Utility.STEAM:
        return {"steam_th": v, "steam_t": c}
    return {"t_air_c": 20.0}
