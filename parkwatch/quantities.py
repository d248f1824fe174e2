"""The quantity registry: every measurable thing a reading may carry, with unit and utility.

Names are the canonical keys of a reading's ``q`` map and the field names in InfluxDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Utility(StrEnum):
    """A utility is also the InfluxDB measurement its meters' readings are written to."""

    ELECTRICITY = "electricity"
    WATER = "water"
    GAS = "gas"
    STEAM = "steam"
    HEAT = "heat"
    AIR = "air"
    ENV = "env"


class Kind(StrEnum):
    INSTANT = "instant"  # a value at a moment (power, flow, temperature)
    COUNTER = "counter"  # a cumulative register (energy, volume); never naively subtracted


@dataclass(frozen=True, slots=True)
class Quantity:
    name: str
    unit: str
    kind: Kind
    utilities: frozenset[Utility]
    description: str
    low: float = -1e12  # plausibility bounds: a value outside is rejected, not stored
    high: float = 1e12

    @property
    def is_counter(self) -> bool:
        return self.kind is Kind.COUNTER


E, W, G, S, H, A, V = (
    Utility.ELECTRICITY,
    Utility.WATER,
    Utility.GAS,
    Utility.STEAM,
    Utility.HEAT,
    Utility.AIR,
    Utility.ENV,
)


def _q(
    name: str,
    unit: str,
    kind: Kind,
    utilities: set[Utility],
    description: str,
    low: float | None = None,
    high: float = 1e12,
) -> Quantity:
    if low is None:
        low = 0.0 if kind is Kind.COUNTER else -1e12  # counters never go negative
    return Quantity(name, unit, kind, frozenset(utilities), description, low, high)


_ALL = [
    _q("p_kw", "kW", Kind.INSTANT, {E}, "active power"),
    _q("e_kwh", "kWh", Kind.COUNTER, {E}, "imported active energy"),
    _q("e_export_kwh", "kWh", Kind.COUNTER, {E}, "exported active energy"),
    # imported energy by tariff period, as multi-tariff meters count it (DL/T 645 tariffs 1-4:
    # 尖 sharp, 峰 peak, 平 flat, 谷 valley in the State Grid convention)
    _q("e_t1_kwh", "kWh", Kind.COUNTER, {E}, "imported active energy, tariff 1 (sharp)"),
    _q("e_t2_kwh", "kWh", Kind.COUNTER, {E}, "imported active energy, tariff 2 (peak)"),
    _q("e_t3_kwh", "kWh", Kind.COUNTER, {E}, "imported active energy, tariff 3 (flat)"),
    _q("e_t4_kwh", "kWh", Kind.COUNTER, {E}, "imported active energy, tariff 4 (valley)"),
    _q("q_kvar", "kvar", Kind.INSTANT, {E}, "reactive power"),
    _q("pf", "1", Kind.INSTANT, {E}, "power factor", -1.0, 1.0),
    _q("v_v", "V", Kind.INSTANT, {E}, "line-to-neutral voltage, phase average"),
    _q("i_a", "A", Kind.INSTANT, {E}, "current, phase average"),
    _q("f_hz", "Hz", Kind.INSTANT, {E}, "grid frequency"),
    _q("soc_pct", "%", Kind.INSTANT, {E}, "battery state of charge", 0.0, 100.0),
    _q("flow_m3h", "m³/h", Kind.INSTANT, {W, H}, "volume flow"),
    _q("vol_m3", "m³", Kind.COUNTER, {W, H}, "volume"),
    _q("level_m", "m", Kind.INSTANT, {W}, "tank level"),
    _q("flow_nm3h", "Nm³/h", Kind.INSTANT, {G, A}, "normalised volume flow"),
    _q("vol_nm3", "Nm³", Kind.COUNTER, {G, A}, "normalised volume"),
    _q("steam_th", "t/h", Kind.INSTANT, {S}, "steam mass flow"),
    _q("steam_t", "t", Kind.COUNTER, {S}, "steam mass"),
    _q("heat_kw", "kW", Kind.INSTANT, {H, S}, "thermal power"),
    _q("heat_gj", "GJ", Kind.COUNTER, {H, S}, "thermal energy"),
    _q("t_supply_c", "°C", Kind.INSTANT, {H, S, W}, "supply temperature"),
    _q("t_return_c", "°C", Kind.INSTANT, {H, S, W}, "return temperature"),
    _q("t_flue_c", "°C", Kind.INSTANT, {S, H, G}, "flue-gas temperature"),
    _q("p_bar", "bar", Kind.INSTANT, {W, G, S, A}, "gauge pressure"),
    _q("t_air_c", "°C", Kind.INSTANT, {V}, "ambient temperature"),
    _q("rh_pct", "%", Kind.INSTANT, {V}, "relative humidity", 0.0, 100.0),
    _q("irr_wm2", "W/m²", Kind.INSTANT, {V}, "solar irradiance"),
]

QUANTITIES: dict[str, Quantity] = {q.name: q for q in _ALL}


class UnknownQuantityError(KeyError):
    pass


def quantity(name: str) -> Quantity:
    try:
        return QUANTITIES[name]
    except KeyError:
        raise UnknownQuantityError(name) from None


def quantities_for(utility: Utility) -> list[Quantity]:
    return [q for q in _ALL if utility in q.utilities]


# per utility, each allowed quantity's plausibility bounds: the one look-up per value on
# ingest's hot path
BOUNDS: dict[Utility, dict[str, tuple[float, float]]] = {
    u: {q.name: (q.low, q.high) for q in quantities_for(u)} for u in Utility
}
