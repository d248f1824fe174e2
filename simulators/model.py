"""A deterministic park model with ground truth: every meter's readings, computed with numpy.

``ParkModel(park, seed, faults)`` turns a ``park.yaml`` into readings. :meth:`ParkModel.frame`
computes a whole array of timestamps for every meter at once (``[time, series]`` arrays, one
series per meter and quantity); :meth:`ParkModel.step` and :meth:`ParkModel.step_by_gateway`
are the one-timestamp form the publisher and the Modbus servers use, and :meth:`batches` adds
late and duplicated deliveries. Stepping one timestamp at a time or computing them in blocks
gives the same values.

What is simulated
-----------------
* Enterprises follow their industry's shift calendar (:mod:`simulators.industries`) on the
  park's local clock, with weekends, Chinese public holidays, make-up working days and the
  Spring Festival shutdown (:mod:`simulators.calendar`), a day-to-day order-book factor and
  slow and fast noise. A consumer's load is ``rated × (standby + (1 − standby) × activity)``.
* Roles (``MeterSpec.role``): ``pv`` (clear-sky irradiance × a cloud model), ``battery``
  (peak/valley arbitrage: a daily state-of-charge curve), ``compressor`` (electricity meters
  are the compressors; air meters with this role are their outputs, paired in order within
  the enterprise; air meters without a role measure the header), ``boiler`` (the steam meter,
  and the gas meter that feeds it), ``heat_recovery`` and other hot-water heat meters,
  ``cooling`` (a cooling-water make-up meter with loop temperatures), ``district``, and a
  storage tank (``tank_in``, ``tank_out``, ``tank`` for the level). An ``env`` meter is the
  park's weather station. Virtual meters (``formula``) are not simulated: analytics computes
  them.

Conventions
-----------
* Sign: ``p_kw`` is power drawn through the meter towards its loads. PV generation and
  battery discharge are negative; ``e_kwh`` integrates the positive part and ``e_export_kwh``
  (on PV, battery and the meters upstream of them) the negative part. ``pf`` is
  ``|p| / sqrt(p² + q²)`` (1 when both are 0).
* Balance trees: a parent meter reads the sum of its children plus its own unmetered load
  (losses, small consumers). Electricity: ``parent = Σ children + own``. Water, with the
  storage tank floating on the network downstream of the main meter::

      main = Σ districts + tank_in − tank_out + own_losses + leaks(main zone)
      district = Σ sub-meters + own_unmetered + leaks(district zone)

  where ``tank_in − tank_out = area × d(level)/dt`` and a leak in a zone is measured by the
  zone's meter and every meter upstream of it, never by its children.
* Counters integrate the published (rounded) instantaneous values with the trapezoid rule,
  sample to sample: ``e_kwh[k] = e_kwh[k−1] + (p⁺[k−1] + p⁺[k]) / 2 × Δt_h`` (GJ from kW
  with 0.0036), exactly as generated, so analytics can check them against each other.
* Determinism: all randomness is a hash of (seed, meter id, time), not a random stream, so
  any timestamp's values are the same whichever way the model got there; counters start at
  seeded readings at the first timestamp simulated.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from parkwatch import calendar
from parkwatch.quantities import Utility
from parkwatch.site import Meter, Park
from simulators import industries
from simulators.faults import (
    PROCESS_KINDS,
    Delivery,
    Fault,
    FaultKind,
    FaultLayer,
    SeriesLayout,
    Target,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
U64Array = npt.NDArray[np.uint64]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# digits kept for each published quantity (what a real meter's register resolves)
DECIMALS: dict[str, int] = {
    "p_kw": 3,
    "q_kvar": 3,
    "pf": 3,
    "e_kwh": 3,
    "e_export_kwh": 3,
    "soc_pct": 2,
    "flow_m3h": 3,
    "vol_m3": 3,
    "level_m": 3,
    "flow_nm3h": 3,
    "vol_nm3": 3,
    "steam_th": 3,
    "steam_t": 3,
    "heat_kw": 3,
    "heat_gj": 4,
    "t_supply_c": 2,
    "t_return_c": 2,
    "t_flue_c": 2,
    "p_bar": 3,
    "t_air_c": 2,
    "rh_pct": 1,
    "irr_wm2": 1,
}

# counter -> (instantaneous source, factor to the counter's unit per hour, which part:
# +1 positive, -1 negative, 0 all)
COUNTERS: dict[str, tuple[str, float, int]] = {
    "e_kwh": ("p_kw", 1.0, 1),
    "e_export_kwh": ("p_kw", 1.0, -1),
    "vol_m3": ("flow_m3h", 1.0, 0),
    "vol_nm3": ("flow_nm3h", 1.0, 0),
    "steam_t": ("steam_th", 1.0, 0),
    "heat_gj": ("heat_kw", 0.0036, 0),  # kWh -> GJ
}

# what a meter's balance tree adds up, per utility
PRIMARY: dict[Utility, str] = {
    Utility.ELECTRICITY: "p_kw",
    Utility.WATER: "flow_m3h",
    Utility.GAS: "flow_nm3h",
    Utility.AIR: "flow_nm3h",
    Utility.STEAM: "steam_th",
    Utility.HEAT: "heat_kw",
}

# physics, with why
RHO_C = 1.163  # kWh per m³ and kelvin: the heat water carries
GAS_LHV_MJ = 35.9  # MJ per Nm³ of natural gas
STEAM_MJ_PER_T = 2550.0  # MJ to raise a tonne of 10 bar steam from ~90 °C feedwater
BOILER_EFFICIENCY = 0.92
EFFICIENCY_LOSS_PER_K = 0.0005  # a boiler loses ~1 % efficiency per 20 K of flue-gas rise
SPECIFIC_POWER_KW = 6.5  # kW per m³/min of free air delivery, a screw compressor
UNLOADED_SHARE = 0.28  # a screw compressor running unloaded still draws ~25-30 % of full power
PV_PERFORMANCE_RATIO = 0.8
BATTERY_HOURS = 2.0  # energy / power of the battery
BATTERY_EFFICIENCY = 0.95  # each way
BATTERY_AUX_SHARE = 0.003  # BMS and container HVAC, drawn all the time
# state of charge over a local day: charge in the night valley, discharge in the two peaks,
# top up at noon (flat tariff, PV surplus); the same every day, so it never drifts
SOC_HOURS = np.array([0.0, 1.0, 5.0, 10.0, 12.0, 14.0, 18.0, 21.0, 24.0])
SOC_PCT = np.array([20.0, 20.0, 90.0, 90.0, 40.0, 65.0, 65.0, 20.0, 20.0])
# the storage tank fills at night (23:00-07:00) and feeds the network by day (08:00-20:00)
TANK_FILL = (23.0, 7.0)
TANK_DRAIN = (8.0, 20.0)
TANK_LEVELS = (0.15, 0.85)  # of the tank's height: lowest at 20:00, highest at 07:00
DEFAULT_LOCATION = {"Asia/Shanghai": (29.56, 106.55)}  # Chongqing: the demo park's city


class Kind(IntEnum):
    """How the model generates a meter's own load, from its utility, role and children."""

    CONSUMER = 0
    PARENT = 1
    PV = 2
    BATTERY = 3
    COMPRESSOR = 4  # electricity: a compressor motor
    COMPRESSOR_AIR = 5  # air: one compressor's output
    AIR_HEADER = 6  # air: the header fed by an enterprise's compressors
    BOILER = 7  # steam: the boiler's output
    BOILER_GAS = 8  # gas: the boiler's fuel
    HEAT_RECOVERY = 9
    COOLING = 10
    TANK_IN = 11
    TANK_OUT = 12
    TANK_LEVEL = 13
    WEATHER = 14


# standby share by role: what runs whatever production does
ROLE_STANDBY = {
    "hvac": 0.4,
    "cold_storage": 0.8,
    "refrigeration": 0.8,
    "furnace": 0.2,
    "lighting": 0.1,
    "office": 0.25,
    "it": 0.9,
    "pump": 0.35,
    "heat_recovery": 0.1,
    "cooling": 0.3,
}
UTILITY_STANDBY = {
    Utility.ELECTRICITY: 0.15,
    Utility.WATER: 0.2,
    Utility.GAS: 0.1,
    Utility.HEAT: 0.3,
    Utility.STEAM: 0.25,
    Utility.AIR: 0.2,
    Utility.ENV: 0.0,
}
ROLE_PF = {"furnace": 0.95, "compressor": 0.86, "hvac": 0.88, "cold_storage": 0.85}
# a parent's own load, as a share of what its children are rated
OWN_SHARE = {Utility.ELECTRICITY: 0.03, Utility.WATER: 0.05, Utility.GAS: 0.01}
TRUNK_LOSS_SHARE = 0.015  # water lost between the park's main meter and the districts
# default sizes per kW of an enterprise's contracted demand, for meters without ``rated``
SIZE_PER_KW = {
    Utility.GAS: 0.08,  # Nm³/h
    Utility.HEAT: 0.25,  # kW thermal
    Utility.STEAM: 0.0004,  # t/h
    Utility.AIR: 0.05,  # Nm³/h
}

_NOISE_FAST = 0.025
_NOISE_SLOW = 0.04


# --- deterministic noise: a hash of (seed, key, time) -------------------------------------

_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: U64Array) -> U64Array:
    """splitmix64's finaliser: a well-mixed 64-bit hash (array arithmetic wraps silently)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _C1
    x = x ^ (x >> np.uint64(27))
    x = x * _C2
    return x ^ (x >> np.uint64(31))


def _key(*parts: object) -> np.uint64:
    """A stable 64-bit key (Python's own hash() differs between processes)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    lo, hi = zlib.crc32(text), zlib.crc32(text[::-1] + b"\x00")
    return np.uint64(int(_mix(np.array([(hi << 32) | lo], dtype=np.uint64))[0]))


def _uniform(counter: IntArray, keys: U64Array) -> FloatArray:
    """Uniform [0, 1) for every (counter, key): shape [len(counter), len(keys)]."""
    c = _mix(counter.astype(np.uint64) * _GOLDEN)
    h = _mix(c[:, None] ^ keys[None, :])
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def _fast(t: IntArray, keys: U64Array) -> FloatArray:
    """Sample-to-sample noise in [-1, 1] (triangular: most values small)."""
    return _uniform(t, keys) + _uniform(t, keys ^ _GOLDEN) - 1.0


def _slow(t: IntArray, keys: U64Array, period_ms: int) -> FloatArray:
    """Smooth noise in [-1, 1]: random knots every ``period_ms``, eased in between."""
    k = t // period_ms
    f = ((t - k * period_ms) / period_ms)[:, None]
    ease = f * f * (3 - 2 * f)
    a, b = _uniform(k, keys), _uniform(k + 1, keys)
    return 2 * (a * (1 - ease) + b * ease) - 1


# --- sun and weather -------------------------------------------------------------------------


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


# sky classes of a day: (probability, mean clearness, spread within the day)
_SKY = ((0.3, 0.95, 0.04), (0.4, 0.65, 0.30), (0.3, 0.25, 0.10))


# --- layout: what every meter is, computed once per park ----------------------------------


@dataclass(frozen=True)
class Compressor:
    electric: int  # meter index of the motor
    air: int  # meter index of its air output meter, -1 when it has none
    fad: float  # free air delivery, Nm³/h
    period_ms: int  # load/unload cycle at half duty
    phase: float


@dataclass
class _Layout:
    meters: list[Meter]
    index: dict[str, int]
    kind: IntArray
    utility: list[Utility]
    role: list[str]
    ent: IntArray  # enterprise row per meter; 0 is the park itself
    ent_ids: list[str]
    ent_table: IntArray  # industry table per enterprise
    ent_contracted: FloatArray
    rated: FloatArray  # nameplate (parents: their children's total)
    own_rated: FloatArray  # the size of a meter's own load
    standby: FloatArray
    tan_phi: FloatArray
    accumulate: FloatArray  # [N, N]: total = own @ accumulate
    ancestors: list[list[int]]
    descendants: list[list[int]]
    bidirectional: BoolArray
    quantities: list[list[str]]
    compressors: dict[int, list[Compressor]]
    headers: dict[int, list[int]]  # enterprise -> air header meters fed by its compressors
    air_meters: dict[int, list[int]]  # enterprise -> every air meter (they share a pressure)
    boilers: list[tuple[int, int]]  # (steam meter, gas meter or -1)
    cooling: dict[int, list[int]]  # enterprise -> cooling-water meters
    tank: tuple[int, int, int]  # tank_in, tank_out, level (-1 when absent)
    tank_area: float
    tank_height: float
    tank_volume: float  # filled each night and drawn each day, m³


def _kind(meter: Meter, has_children: bool) -> Kind:
    role = (meter.spec.role or "").lower()
    u = meter.utility
    if u is Utility.ENV:
        return Kind.WEATHER
    if role == "pv" and u is Utility.ELECTRICITY:
        return Kind.PV
    if role == "battery" and u is Utility.ELECTRICITY:
        return Kind.BATTERY
    if role == "compressor" and u is Utility.ELECTRICITY:
        return Kind.COMPRESSOR
    if role == "compressor" and u is Utility.AIR:
        return Kind.COMPRESSOR_AIR
    if role == "boiler" and u is Utility.STEAM:
        return Kind.BOILER
    if role == "boiler" and u is Utility.GAS:
        return Kind.BOILER_GAS
    if role == "heat_recovery" and u is Utility.HEAT:
        return Kind.HEAT_RECOVERY
    if role == "cooling" and u is Utility.WATER and not has_children:
        return Kind.COOLING
    if role == "tank" and u is Utility.WATER:
        return Kind.TANK_LEVEL
    if role == "tank_in" and u is Utility.WATER:
        return Kind.TANK_IN
    if role == "tank_out" and u is Utility.WATER:
        return Kind.TANK_OUT
    if has_children:
        return Kind.PARENT
    if u is Utility.AIR:
        return Kind.AIR_HEADER
    return Kind.CONSUMER


def _fad(motor_kw: float) -> float:
    """Free air delivery of a screw compressor of this motor size, Nm³/h."""
    return motor_kw / SPECIFIC_POWER_KW * 60


def _paired(
    i: int,
    mine: Kind,
    other: Kind,
    kind: IntArray,
    ent: IntArray,
    rated: FloatArray,
    default: float,
) -> float:
    """The rating of the k-th ``other`` meter of i's enterprise, i being the k-th ``mine``
    (a compressor's air meter pairs with its motor, a boiler's gas meter with its steam);
    a compressor air meter is sized by its motor's free air delivery."""
    same = ent == ent[i]
    k = int(np.flatnonzero(same & (kind == mine)).tolist().index(i))
    partners = np.flatnonzero(same & (kind == other))
    if k >= partners.size:
        return default
    value = float(rated[partners[k]])
    return _fad(value) if mine == Kind.COMPRESSOR_AIR else value


def _quantities(kind: Kind, utility: Utility, bidirectional: bool) -> list[str]:
    if utility is Utility.ELECTRICITY:
        out = ["p_kw", "q_kvar", "pf", "e_kwh"]
        if bidirectional:
            out.append("e_export_kwh")
        if kind is Kind.BATTERY:
            out.append("soc_pct")
        return out
    if utility is Utility.WATER:
        if kind is Kind.TANK_LEVEL:
            return ["level_m"]
        if kind is Kind.COOLING:
            return ["flow_m3h", "vol_m3", "t_supply_c", "t_return_c"]
        return ["flow_m3h", "vol_m3"]
    if utility is Utility.GAS:
        return ["flow_nm3h", "vol_nm3"]
    if utility is Utility.AIR:
        return ["flow_nm3h", "vol_nm3", "p_bar"]
    if utility is Utility.STEAM:
        if kind is Kind.BOILER:
            return ["steam_th", "steam_t", "t_supply_c", "t_return_c", "t_flue_c", "p_bar"]
        return ["steam_th", "steam_t", "p_bar"]
    if utility is Utility.HEAT:
        return ["heat_kw", "heat_gj", "flow_m3h", "vol_m3", "t_supply_c", "t_return_c"]
    return ["t_air_c", "rh_pct", "irr_wm2"]


def _build(park: Park) -> _Layout:
    meters = [m for m in park.iter_meters() if m.spec.formula is None]
    n = len(meters)
    index = {m.id: i for i, m in enumerate(meters)}
    parent = [index.get(m.spec.parent or "", -1) for m in meters]
    children: list[list[int]] = [[] for _ in range(n)]
    for i, p in enumerate(parent):
        if p >= 0:
            children[p].append(i)
    ancestors: list[list[int]] = []
    for i in range(n):
        chain, p = [], parent[i]
        while p >= 0:
            chain.append(p)
            p = parent[p]
        ancestors.append(chain)
    descendants: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for a in ancestors[i]:
            descendants[a].append(i)
    kind = np.array([_kind(m, bool(children[i])) for i, m in enumerate(meters)], dtype=np.int64)
    utility = [m.utility for m in meters]
    role = [(m.spec.role or "").lower() for m in meters]
    for e_id in {m.enterprise for m in meters}:
        # a boiler's gas meter pairs with a boiler's steam meter; one left over is a consumer
        here = [i for i, m in enumerate(meters) if m.enterprise == e_id]
        fuel = [i for i in here if kind[i] == Kind.BOILER_GAS]
        boilers_here = sum(1 for i in here if kind[i] == Kind.BOILER)
        for i in fuel[boilers_here:]:
            kind[i] = Kind.CONSUMER

    ent_ids = ["park", *(e.id for e in park.enterprises)]
    ent_row = {e: i for i, e in enumerate(ent_ids)}
    table_names = list(industries.INDUSTRIES)
    ent_table = np.array(
        [table_names.index("park")]
        + [table_names.index(industries.canonical(e.industry)) for e in park.enterprises],
        dtype=np.int64,
    )
    ent_industry = ["park", *(industries.canonical(e.industry) for e in park.enterprises)]
    ent_contracted = np.array(
        [1000.0] + [e.contracted_demand_kw or 1000.0 for e in park.enterprises]
    )
    ent = np.array([ent_row[m.enterprise] for m in meters], dtype=np.int64)

    bidirectional = np.zeros(n, dtype=bool)
    for i in range(n):
        if kind[i] in (Kind.PV, Kind.BATTERY):
            bidirectional[i] = True
            bidirectional[ancestors[i]] = True

    # --- sizes ---------------------------------------------------------------------------
    rated = np.zeros(n)
    given = [m.spec.rated for m in meters]
    contracted = ent_contracted[ent]
    for i, m in enumerate(meters):
        g, k, c, e = given[i], kind[i], contracted[i], ent[i]
        same = [j for j in range(n) if ent[j] == e and utility[j] is m.utility]
        if g is not None:
            rated[i] = g
        elif k == Kind.PV:
            rated[i] = 0.2 * c
        elif k == Kind.BATTERY:
            rated[i] = 0.1 * c
        elif k == Kind.COMPRESSOR:
            rated[i] = 110.0
        elif k == Kind.BOILER:
            rated[i] = 10.0
        elif k == Kind.HEAT_RECOVERY:
            rated[i] = 0.1 * c
        elif k == Kind.TANK_IN:
            rated[i] = 60.0
        elif k == Kind.TANK_LEVEL:
            rated[i] = 6.0
        elif k == Kind.CONSUMER and m.utility is Utility.ELECTRICITY:
            if e == 0:
                rated[i] = 400.0
            else:
                leaves = [j for j in same if kind[j] == Kind.CONSUMER]
                unrated = [j for j in leaves if given[j] is None] or [i]
                sized = sum(
                    given[j] or 0.0 for j in same if kind[j] in (Kind.CONSUMER, Kind.COMPRESSOR)
                )
                rated[i] = max(0.8 * c - 0.6 * sized, 0.1 * c) / len(unrated)
        elif k in (Kind.CONSUMER, Kind.COOLING) and m.utility is Utility.WATER:
            per_mw = industries.WATER_PER_MW[ent_industry[e]]
            leaves = [j for j in same if kind[j] in (Kind.CONSUMER, Kind.COOLING)]
            rated[i] = per_mw * c / 1000 / max(1, len(leaves))
        elif k == Kind.CONSUMER and m.utility in SIZE_PER_KW:
            leaves = [j for j in same if kind[j] == Kind.CONSUMER]
            rated[i] = SIZE_PER_KW[m.utility] * c / max(1, len(leaves))
    # what compressors deliver and boilers burn, before parents add them up
    for i in range(n):
        if kind[i] == Kind.COMPRESSOR_AIR and given[i] is None:
            rated[i] = _paired(i, Kind.COMPRESSOR_AIR, Kind.COMPRESSOR, kind, ent, rated, 1.0)
        if kind[i] == Kind.BOILER_GAS and given[i] is None:
            steam_th = _paired(i, Kind.BOILER_GAS, Kind.BOILER, kind, ent, rated, 0.0)
            rated[i] = steam_th * STEAM_MJ_PER_T / (GAS_LHV_MJ * BOILER_EFFICIENCY)
    own_rated = rated.copy()
    # parents bottom-up: their rating is their children's, their own load a share of it
    for i in sorted(range(n), key=lambda j: -len(ancestors[j])):
        if kind[i] != Kind.PARENT:
            continue
        loads = [
            j
            for j in children[i]
            if kind[j] not in (Kind.PV, Kind.BATTERY, Kind.TANK_IN, Kind.TANK_OUT)
        ]
        total = float(rated[loads].sum()) if loads else 0.0
        u = utility[i]
        share = OWN_SHARE.get(u, 0.0)
        if u is Utility.WATER and ent[i] == 0 and parent[i] < 0:
            share = TRUNK_LOSS_SHARE
        own_rated[i] = share * total
        if given[i] is not None:
            own_rated[i] = max(float(given[i] or 0.0) - total, share * total)
        elif u is Utility.WATER and ent[i] != 0:
            # an enterprise's water meter with sub-meters: the process water nobody sub-meters
            expected = industries.WATER_PER_MW[ent_industry[ent[i]]] * contracted[i] / 1000
            own_rated[i] = max(expected - total, share * total)
        rated[i] = total + own_rated[i]

    standby = np.array(
        [
            ROLE_STANDBY.get(role[i], UTILITY_STANDBY[utility[i]])
            if kind[i] != Kind.PARENT
            else (1.0 if ent[i] == 0 and utility[i] is Utility.WATER else 0.6)
            for i in range(n)
        ]
    )
    tan_phi = np.zeros(n)
    for i in range(n):
        if utility[i] is Utility.ELECTRICITY and kind[i] not in (Kind.PV, Kind.BATTERY):
            pf = 0.95 if kind[i] == Kind.PARENT else ROLE_PF.get(role[i], 0.9)
            tan_phi[i] = math.tan(math.acos(pf))

    # a tank's outflow feeds back into the zone of the meter it hangs from: it counts
    # negatively upstream (main = Σ districts + tank_in − tank_out + ...)
    accumulate = np.eye(n)
    for i in range(n):
        sign = -1.0 if kind[i] == Kind.TANK_OUT else 1.0
        for a in ancestors[i]:
            accumulate[i, a] = sign

    quantities = [
        _quantities(Kind(int(kind[i])), utility[i], bool(bidirectional[i])) for i in range(n)
    ]

    # --- systems -------------------------------------------------------------------------
    compressors: dict[int, list[Compressor]] = {}
    headers: dict[int, list[int]] = {}
    air_meters: dict[int, list[int]] = {}
    cooling: dict[int, list[int]] = {}
    boilers: list[tuple[int, int]] = []
    for e in range(len(ent_ids)):
        mine = [i for i in range(n) if ent[i] == e]
        motors = [i for i in mine if kind[i] == Kind.COMPRESSOR]
        outputs = [i for i in mine if kind[i] == Kind.COMPRESSOR_AIR]
        if motors:
            group = []
            for k, motor in enumerate(motors):
                air = outputs[k] if k < len(outputs) else -1
                fad = float(rated[air]) if air >= 0 else _fad(float(rated[motor]))
                key = _key("compressor-phase", meters[motor].id)
                phase = float(_uniform(np.array([0]), np.array([key]))[0, 0])
                # periods incommensurate with whole-minute polling, so samples see every phase
                group.append(Compressor(motor, air, fad, (257 + 113 * k) * 1000, phase))
            compressors[e] = group
            if not outputs:
                headers[e] = [i for i in mine if kind[i] == Kind.AIR_HEADER]
                for h in headers[e]:
                    rated[h] = own_rated[h] = sum(c.fad for c in group)
        air_meters[e] = [i for i in mine if utility[i] is Utility.AIR]
        cooling[e] = [i for i in mine if kind[i] == Kind.COOLING]
        steam = [i for i in mine if kind[i] == Kind.BOILER]
        fuel = [i for i in mine if kind[i] == Kind.BOILER_GAS]
        for k, s in enumerate(steam):
            boilers.append((s, fuel[k] if k < len(fuel) else -1))

    def first(k: Kind) -> int:
        found = np.flatnonzero(kind == k)
        return int(found[0]) if found.size else -1

    tank = (first(Kind.TANK_IN), first(Kind.TANK_OUT), first(Kind.TANK_LEVEL))
    height = float(rated[tank[2]]) if tank[2] >= 0 else 6.0
    fill_h = (TANK_FILL[1] - TANK_FILL[0]) % 24
    volume = 0.8 * float(rated[tank[0]] if tank[0] >= 0 else 60.0) * fill_h
    area = volume / ((TANK_LEVELS[1] - TANK_LEVELS[0]) * height)
    return _Layout(
        meters=meters,
        index=index,
        kind=kind,
        utility=utility,
        role=role,
        ent=ent,
        ent_ids=ent_ids,
        ent_table=ent_table,
        ent_contracted=ent_contracted,
        rated=rated,
        own_rated=own_rated,
        standby=standby,
        tan_phi=tan_phi,
        accumulate=accumulate,
        ancestors=ancestors,
        descendants=descendants,
        bidirectional=bidirectional,
        quantities=quantities,
        compressors=compressors,
        headers=headers,
        air_meters=air_meters,
        boilers=boilers,
        cooling=cooling,
        tank=tank,
        tank_area=area,
        tank_height=height,
        tank_volume=volume,
    )


# --- frames and batches --------------------------------------------------------------------


@dataclass
class Frame:
    """Every series (one per meter and quantity: ``ParkModel.series``) at every timestamp.

    ``values[k, s]`` is what series ``s`` reports at ``t_ms[k]``; ``present`` is False where
    nothing is reported (communication loss, a batch that arrives late); ``t_offset_ms`` is
    added to the timestamp a source reports (clock skew). ``truth`` holds the values before
    meter faults. ``deliveries`` are late and duplicated batches, when asked for.
    """

    t_ms: IntArray
    values: FloatArray
    present: BoolArray | None = None
    t_offset_ms: IntArray | None = None
    truth: FloatArray | None = None
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def true_values(self) -> FloatArray:
        return self.values if self.truth is None else self.truth


@dataclass(frozen=True)
class Batch:
    """One gateway's readings as they arrive: a poll cycle, a late batch or a duplicate."""

    gateway: str
    readings: list[dict[str, Any]]
    arrival_ms: int
    late: bool = False
    duplicate: bool = False


# --- the model -----------------------------------------------------------------------------


class ParkModel:
    """Steps a park through time; see the module docstring for what and how.

    ``faults`` is a schedule (see :mod:`simulators.faults`): process faults change the
    physics, meter and transport faults what is reported. ``location`` (latitude, longitude)
    places the sun; the default follows the park's time zone.
    """

    def __init__(
        self,
        park: Park,
        seed: int = 0,
        faults: Iterable[Fault] = (),
        *,
        location: tuple[float, float] | None = None,
    ) -> None:
        self.park = park
        self.seed = seed
        self.faults = list(faults)
        self.location = location or DEFAULT_LOCATION.get(park.timezone) or _guess(park)
        self._zone = park.zone
        lay = self.layout = _build(park)
        n = len(lay.meters)
        self._keys = np.array([_key(seed, m.id) for m in lay.meters], dtype=np.uint64)
        self._ent_keys = np.array([_key(seed, "enterprise", e) for e in lay.ent_ids])
        self._park_keys = np.array([_key(seed, "weather", s) for s in range(4)])
        self._tables = np.stack(list(industries.INDUSTRIES.values()))  # [industry, row, minute]

        # series: one column per (meter, quantity), meters in park order
        self.series: list[tuple[str, str]] = []
        series_meter: list[int] = []
        for i, m in enumerate(lay.meters):
            for q in lay.quantities[i]:
                self.series.append((m.id, q))
                series_meter.append(i)
        self._series_meter = np.array(series_meter, dtype=np.int64)
        self.column = {s: k for k, s in enumerate(self.series)}
        self.decimals = np.array([DECIMALS[q] for _, q in self.series], dtype=np.int64)
        self.is_counter = np.array([q in COUNTERS for _, q in self.series], dtype=bool)
        self._meter_columns: list[list[int]] = [[] for _ in range(n)]
        for k, i in enumerate(series_meter):
            self._meter_columns[i].append(k)
        by_quantity: dict[str, list[int]] = {}
        for k, (_, q) in enumerate(self.series):
            if q not in COUNTERS:
                by_quantity.setdefault(q, []).append(k)
        self._instant_groups = {
            q: (np.array(cols), self._series_meter[cols]) for q, cols in by_quantity.items()
        }
        self._counter_cols = np.flatnonzero(self.is_counter)
        sources = [COUNTERS[self.series[k][1]] for k in self._counter_cols]
        self._counter_source = [s[0] for s in sources]
        self._counter_factor = np.array([s[1] for s in sources])
        self._counter_part = np.array([s[2] for s in sources])
        self._counter_meter = self._series_meter[self._counter_cols]
        # installed meters show some history: seeded opening readings (kept small enough for
        # a 32-bit litre or 0.01-unit register)
        opening = _uniform(
            np.array([7]), self._keys[self._counter_meter] ^ self._counter_cols.astype(np.uint64)
        )[0]
        scale = np.array([_OPENING.get(self.series[k][1], 1e4) for k in self._counter_cols])
        self._counter = np.round(scale * (0.1 + 0.9 * opening), 1)
        self._prev_t: int | None = None
        self._prev_rate = np.zeros(self._counter_cols.size)

        self._check_faults()
        self._process = [(i, f) for i, f in enumerate(self.faults) if f.kind in PROCESS_KINDS]
        gateways = {m.id: m.gateway for m in lay.meters}
        others = [f for f in self.faults if f.kind not in PROCESS_KINDS]
        self._layer: FaultLayer | None = None
        if others:
            self._layer = FaultLayer(
                SeriesLayout(
                    [s[0] for s in self.series],
                    [s[1] for s in self.series],
                    self.is_counter,
                    gateways,
                ),
                self.faults,
            )
        self._primed = False
        self._peak_cache: dict[int, dict[str, float]] = {}
        self._pending: list[Delivery] = []

    # --- public API ----------------------------------------------------------------------

    @property
    def meters(self) -> list[Meter]:
        return self.layout.meters

    def fault_details(self) -> dict[int, dict[str, Any]]:
        """What the simulation learnt about each fault while applying it (by schedule index):
        the readings a counter was reset or rolled over from, a demand peak's extra kW, ..."""
        out: dict[int, dict[str, Any]] = {i: dict(d) for i, d in self._peak_cache.items()}
        if self._layer is not None:
            for i, d in self._layer.details.items():
                out.setdefault(i, {}).update(d)
        return out

    def prime(self, start_ms: int, step_ms: int) -> None:
        """Tell the model the time grid it will be stepped on, from ``start_ms`` every
        ``step_ms``: a counter rollover must know the true counter at its start in advance
        (to wrap exactly then), so the model runs a twin up to it. Called by itself on the
        first frame (assuming its step, or 60 s) when the caller did not."""
        self._primed = True
        if self._layer is None or not self._layer.rollovers:
            return
        twin = ParkModel(
            self.park,
            self.seed,
            [f for f in self.faults if f.kind in PROCESS_KINDS],
            location=self.location,
        )
        todo = {i: (f, col) for i, f, col in self._layer.rollovers}
        chunk = max(1, DAY_MS // step_ms)
        t0, previous = start_ms, None
        while todo:
            times = t0 + np.arange(chunk, dtype=np.int64) * step_ms
            values = twin.frame(times).values
            for i, (fault, col) in list(todo.items()):
                hit = np.flatnonzero(times >= fault.start_ms)
                if hit.size:
                    r = int(hit[0])
                    at = float(values[r, col])
                    if r > 0:
                        before = float(values[r - 1, col])
                    else:
                        before = at if previous is None else float(previous[col])
                    self._layer.anchors[i] = (at, before)
                    del todo[i]
            previous, t0 = values[-1], int(times[-1]) + step_ms

    def frame(self, t_ms: Sequence[int] | IntArray, *, transport: bool = False) -> Frame:
        """Every series at the timestamps ``t_ms`` (increasing, normally after those of the
        previous call: counters integrate from one call to the next).

        Meter faults, communication loss and clock skew are applied; with ``transport`` late
        batches are taken out and returned, with duplicates, as ``frame.deliveries``.
        """
        t = np.asarray(t_ms, dtype=np.int64).ravel()
        if t.size == 0:
            raise ValueError("no timestamps")
        if np.any(np.diff(t) <= 0):
            raise ValueError("timestamps must increase")
        if not self._primed:
            self.prime(int(t[0]), int(t[1] - t[0]) if t.size > 1 else MINUTE_MS)
        instant = self._instant(t)
        values = np.empty((t.size, len(self.series)))
        for q, (cols, meters) in self._instant_groups.items():
            values[:, cols] = instant[q][:, meters]
        values[:, self._counter_cols] = self._integrate(t, instant)
        frame = Frame(t, values)
        if self._layer is not None:
            frame.truth = values.copy()
            frame.deliveries = self._layer.apply(frame, transport=transport)
        return frame

    def own_loads(self, t_ms: Sequence[int] | IntArray) -> FloatArray:
        """Each meter's own load ``[time, meter]`` in its primary quantity (``p_kw``,
        ``flow_m3h``, ...), before balance trees add children: for a parent, the unmetered
        load (losses, small consumers) and any leak in its zone. Ground truth for balances;
        it does not advance the model."""
        t = np.asarray(t_ms, dtype=np.int64).ravel()
        return self._instant(t)["_own"]

    def readings(self, frame: Frame, row: int) -> list[dict[str, Any]]:
        """The readings of one row of a frame in the wire format, meters in park order."""
        t = int(frame.t_ms[row])
        values = frame.values[row]
        present = None if frame.present is None else frame.present[row]
        offsets = None if frame.t_offset_ms is None else frame.t_offset_ms[row]
        out: list[dict[str, Any]] = []
        for i, m in enumerate(self.layout.meters):
            cols = self._meter_columns[i]
            q = {
                self.series[c][1]: round(float(values[c]), int(self.decimals[c]))
                for c in cols
                if present is None or present[c]
            }
            if q:
                skew = 0 if offsets is None else int(offsets[cols[0]])
                out.append({"m": m.id, "t": t + skew, "q": q})
        return out

    def step(self, t_ms: int) -> list[dict[str, Any]]:
        """Every meter's reading at ``t_ms`` (as its meter shows it; a meter that cannot be
        read is left out)."""
        return self.readings(self.frame([t_ms]), 0)

    def step_by_gateway(self, t_ms: int) -> dict[str, list[dict[str, Any]]]:
        gateway = {m.id: m.gateway for m in self.meters}
        out: dict[str, list[dict[str, Any]]] = {}
        for reading in self.step(t_ms):
            out.setdefault(gateway[reading["m"]], []).append(reading)
        return out

    def batches(self, t_ms: int) -> list[Batch]:
        """What arrives at ``t_ms``, in order: late batches that are due, each gateway's poll
        cycle, and duplicates. Use this instead of :meth:`step_by_gateway` to publish
        transport faults; a duplicate should be sent with the same ``seq`` as its original."""
        frame = self.frame([t_ms], transport=True)
        self._pending.extend(frame.deliveries)
        gateway = {m.id: m.gateway for m in self.meters}
        fresh: dict[str, list[dict[str, Any]]] = {}
        for reading in self.readings(frame, 0):
            fresh.setdefault(gateway[reading["m"]], []).append(reading)
        due = sorted((d for d in self._pending if d.arrival_ms <= t_ms), key=lambda d: d.arrival_ms)
        self._pending = [d for d in self._pending if d.arrival_ms > t_ms]
        out = [Batch(gw, rs, t_ms) for gw, rs in fresh.items()]
        early = [self._delivered(d) for d in due if d.arrival_ms < t_ms or not d.duplicate]
        late_dups = [self._delivered(d) for d in due if d.arrival_ms == t_ms and d.duplicate]
        return early + out + late_dups

    def delivery_readings(self, delivery: Delivery) -> list[dict[str, Any]]:
        """The readings a late or duplicated delivery carries, in the wire format."""
        by_meter: dict[int, dict[str, Any]] = {}
        for col, value, offset in zip(
            delivery.columns, delivery.values, delivery.t_offset_ms, strict=True
        ):
            i = int(self._series_meter[col])
            reading = by_meter.setdefault(
                i, {"m": self.layout.meters[i].id, "t": delivery.t_ms + int(offset), "q": {}}
            )
            reading["q"][self.series[col][1]] = round(float(value), int(self.decimals[col]))
        return [by_meter[i] for i in sorted(by_meter)]

    def _delivered(self, d: Delivery) -> Batch:
        return Batch(
            d.gateway,
            self.delivery_readings(d),
            d.arrival_ms,
            late=not d.duplicate,
            duplicate=d.duplicate,
        )

    # --- the physics ---------------------------------------------------------------------

    def _check_faults(self) -> None:
        lay = self.layout
        gateways = {m.gateway for m in lay.meters}
        for f in self.faults:
            if f.kind in (FaultKind.WATER_BURST, FaultKind.WATER_LEAK):
                i = lay.index.get(f.zone or "")
                if i is None or lay.utility[i] is not Utility.WATER:
                    raise ValueError(f"{f.kind}: zone {f.zone!r} is not a water meter")
            elif f.kind is FaultKind.AIR_LEAK:
                e = lay.ent_ids.index(f.zone) if f.zone in lay.ent_ids else -1
                if e < 0 or e not in lay.compressors:
                    raise ValueError(f"air_leak: {f.zone!r} is no enterprise with compressors")
            elif f.gateway is not None and f.gateway not in gateways:
                raise ValueError(f"{f.kind}: unknown gateway {f.gateway!r}")
            elif f.meter is not None and f.meter not in lay.index:
                raise ValueError(f"{f.kind}: unknown meter {f.meter!r}")
            if f.kind is FaultKind.FLUE_TEMP_RISE and not any(
                lay.meters[s].id == f.meter for s, _ in lay.boilers
            ):
                raise ValueError(f"flue_temp_rise: {f.meter!r} is not a boiler steam meter")
            if f.kind is FaultKind.DEMAND_PEAK:
                spec = lay.meters[lay.index[f.meter or ""]].spec
                if spec.contracted_demand_kw is None:
                    raise ValueError(f"demand_peak: {f.meter!r} has no contracted demand")

    def _integrate(self, t: IntArray, instant: dict[str, FloatArray]) -> FloatArray:
        """Counters: the trapezoid of each published rate, carried on from the last call."""
        rate = np.empty((t.size, self._counter_cols.size))
        for k, (source, meter) in enumerate(
            zip(self._counter_source, self._counter_meter, strict=True)
        ):
            rate[:, k] = instant[source][:, meter]
        part = self._counter_part
        rate = np.where(part > 0, np.maximum(rate, 0.0), rate)
        rate = np.where(part < 0, np.maximum(-rate, 0.0), rate)
        rate *= self._counter_factor
        if self._prev_t is None:
            self._prev_t, self._prev_rate = int(t[0]), rate[0].copy()
        # a caller whose clock repeats or steps back (a wall clock) holds the counters
        dt_h = np.maximum(np.diff(t, prepend=self._prev_t), 0) / HOUR_MS
        before = np.vstack([self._prev_rate[None, :], rate[:-1]])
        steps = (before + rate) / 2 * dt_h[:, None]
        # the running total starts from the carried counter, added in order, so stepping one
        # timestamp at a time and a block at once give the same floats
        out = np.cumsum(np.vstack([self._counter[None, :], steps]), axis=0)[1:]
        self._counter = out[-1].copy()
        self._prev_t, self._prev_rate = int(t[-1]), rate[-1].copy()
        return out

    def _activity(self, t: IntArray, day: IntArray, tod: FloatArray) -> FloatArray:
        """Production activity per enterprise, [T, E]."""
        lay = self.layout
        minute = np.minimum((tod * 60).astype(np.int64), 1439)
        row = np.where(
            calendar.festival(day), industries.FESTIVAL_ROW, calendar.day_types(day)
        ).astype(np.int64)
        act = self._tables[lay.ent_table[None, :], row[:, None], minute[:, None]]
        # the order book: a factor per enterprise and day, eased from one day to the next
        today = _uniform(day, self._ent_keys)
        tomorrow = _uniform(day + 1, self._ent_keys)
        w = (tod / 24)[:, None]
        book = 1 + 0.06 * (2 * (today * (1 - w) + tomorrow * w) - 1)
        drift = 1 + 0.04 * _slow(t, self._ent_keys ^ np.uint64(0xAC7), 45 * MINUTE_MS)
        return np.clip(act * book * drift, 0.0, 1.1)

    def _weather(self, t: IntArray, day: IntArray, tod: FloatArray) -> dict[str, FloatArray]:
        keys = self._park_keys
        dates = day.astype("datetime64[D]")
        doy = (dates - dates.astype("datetime64[Y]")).astype(np.int64)
        season = np.cos(2 * np.pi * (doy - 200) / 365.25)
        diurnal = np.cos(2 * np.pi * (tod - 15) / 24)
        t_air = 18.5 + 10.5 * season + 4 * diurnal + 2.5 * _slow(t, keys[:1], 6 * HOUR_MS)[:, 0]
        ghi = clear_sky_ghi(t, *self.location)
        u = _uniform(day, keys[1:2])[:, 0]
        cum = np.cumsum([p for p, _, _ in _SKY])
        cls = np.searchsorted(cum, u, side="right").clip(0, len(_SKY) - 1)
        mean = np.array([m for _, m, _ in _SKY])[cls]
        spread = np.array([s for _, _, s in _SKY])[cls]
        clearness = np.clip(mean + spread * _slow(t, keys[2:3], 10 * MINUTE_MS)[:, 0], 0.05, 1.0)
        rh = np.clip(
            78 - 12 * diurnal - 15 * (clearness - 0.5) + 5 * _slow(t, keys[3:4], 3 * HOUR_MS)[:, 0],
            25,
            100,
        )
        return {"t_air_c": t_air, "irr_wm2": ghi * clearness, "rh_pct": rh, "clear_sky": ghi}

    def _instant(self, t: IntArray, *, peaks: bool = True) -> dict[str, FloatArray]:
        """Every instantaneous quantity for every meter, [T, N] each, rounded as published."""
        lay = self.layout
        n = len(lay.meters)
        local = calendar.local_ms(t, self._zone)
        day = local // DAY_MS
        tod = (local - day * DAY_MS) / HOUR_MS
        weather = self._weather(t, day, tod)
        act = self._activity(t, day, tod)
        kind = lay.kind
        own = np.zeros((t.size, n))
        wiggle = (
            1
            + _NOISE_FAST * _fast(t, self._keys)
            + _NOISE_SLOW * _slow(t, self._keys ^ np.uint64(0x51), 20 * MINUTE_MS)
        )

        follows = np.flatnonzero(
            np.isin(
                kind,
                [Kind.CONSUMER, Kind.PARENT, Kind.COOLING, Kind.HEAT_RECOVERY, Kind.BOILER],
            )
        )
        a = act[:, lay.ent[follows]]
        s = lay.standby[follows]
        own[:, follows] = lay.own_rated[follows] * (s + (1 - s) * a) * wiggle[:, follows]
        hvac = np.array([lay.role[i] == "hvac" for i in range(n)])
        if hvac.any():
            # cooling in summer, heating in winter
            t_air = weather["t_air_c"][:, None]
            own[:, hvac] *= (
                0.8 + 0.03 * np.maximum(t_air - 20, 0) + 0.02 * np.maximum(10 - t_air, 0)
            )

        pv = np.flatnonzero(kind == Kind.PV)
        if pv.size:
            sun = weather["irr_wm2"][:, None] / 1000 * PV_PERFORMANCE_RATIO
            own[:, pv] = -lay.rated[pv] * sun * (1 + 0.01 * _fast(t, self._keys[pv]))

        battery = np.flatnonzero(kind == Kind.BATTERY)
        soc = np.interp(tod, SOC_HOURS, SOC_PCT)
        if battery.size:
            segment = np.clip(np.searchsorted(SOC_HOURS, tod, side="right") - 1, 0, 7)
            slope = (np.diff(SOC_PCT) / np.diff(SOC_HOURS))[segment]  # % per hour
            per_kw = np.where(
                slope > 0,
                BATTERY_HOURS * slope / 100 / BATTERY_EFFICIENCY,
                BATTERY_HOURS * slope / 100 * BATTERY_EFFICIENCY,
            )
            own[:, battery] = lay.rated[battery] * (per_kw[:, None] + BATTERY_AUX_SHARE)

        # process faults: leaks upstream of a zone's children, extra air demand, bypasses
        leaks: dict[int, FloatArray] = {}
        flue_rise = np.zeros((t.size, n))
        cooling_rise = np.zeros((t.size, n))
        bypass = np.zeros((t.size, n))
        for _, f in self._process:
            level = f.intensity(t)
            if not level.any():
                continue
            if f.kind in (FaultKind.WATER_BURST, FaultKind.WATER_LEAK):
                own[:, lay.index[f.zone or ""]] += f.magnitude * level
            elif f.kind is FaultKind.AIR_LEAK:
                e = lay.ent_ids.index(f.zone or "")
                leaks[e] = leaks.get(e, 0.0) + f.magnitude * level
            elif f.kind is FaultKind.FLUE_TEMP_RISE:
                flue_rise[:, lay.index[f.meter or ""]] += f.magnitude * level
            elif f.kind is FaultKind.COOLING_TEMP_RISE:
                cooling_rise[:, lay.index[f.meter or ""]] += f.magnitude * level
            elif f.kind is FaultKind.HEAT_RECOVERY_BYPASS:
                bypass[:, lay.index[f.meter or ""]] += min(f.magnitude, 1.0) * level
        bypass = np.minimum(bypass, 1.0)

        out: dict[str, FloatArray] = {}
        pressure = np.full((t.size, n), 7.0)
        for e, group in lay.compressors.items():
            self._compressors(t, e, group, act[:, e], leaks.get(e), own, pressure)

        flue = np.zeros((t.size, n))
        for s_idx, g_idx in lay.boilers:
            # flue gas runs hotter at high firing; fouling (the fault) adds to it and costs
            # efficiency, so the same steam burns more gas
            load = own[:, s_idx] / lay.rated[s_idx]
            flue[:, s_idx] = 120 + 35 * load + flue_rise[:, s_idx]
            if g_idx >= 0:
                efficiency = BOILER_EFFICIENCY - EFFICIENCY_LOSS_PER_K * flue_rise[:, s_idx]
                own[:, g_idx] = own[:, s_idx] * STEAM_MJ_PER_T / (GAS_LHV_MJ * efficiency)

        fill = _window(tod, *TANK_FILL)
        drain = _window(tod, *TANK_DRAIN)
        t_in, t_out, t_level = lay.tank
        fill_hours = (TANK_FILL[1] - TANK_FILL[0]) % 24
        drain_hours = (TANK_DRAIN[1] - TANK_DRAIN[0]) % 24
        if t_in >= 0:
            own[:, t_in] = fill * lay.tank_volume / fill_hours
        if t_out >= 0:
            own[:, t_out] = drain * lay.tank_volume / drain_hours

        heat = np.flatnonzero(np.array([u is Utility.HEAT for u in lay.utility]))
        basis = own.copy() if heat.size else own
        if heat.size:
            own[:, heat] *= 1 - bypass[:, heat]

        if peaks:
            self._demand_peaks(t, own)

        total = own @ lay.accumulate
        util = lay.utility
        p = total
        q = (own * lay.tan_phi) @ lay.accumulate
        apparent = np.hypot(p, q)
        out["p_kw"] = p
        out["q_kvar"] = q
        out["pf"] = np.where(apparent > 1e-9, np.abs(p) / np.maximum(apparent, 1e-12), 1.0)
        out["soc_pct"] = np.repeat(soc[:, None], n, axis=1)
        out["flow_nm3h"] = total
        out["p_bar"] = pressure + 0.01 * _fast(t, self._keys ^ np.uint64(0xBA))
        out["steam_th"] = total

        # water and hot-water heat: flow, and the two temperatures
        flow = total.copy()
        t_supply = np.zeros((t.size, n))
        t_return = np.zeros((t.size, n))
        slow_t = _slow(t, self._keys ^ np.uint64(0x7E), 2 * HOUR_MS)
        if heat.size:
            basis_total = basis @ lay.accumulate
            fraction = np.clip(basis_total[:, heat] / np.maximum(lay.rated[heat], 1e-9), 0, 1.2)
            nominal = np.where(kind[heat] == Kind.HEAT_RECOVERY, 15.0, 20.0)
            spread = nominal * (0.6 + 0.4 * fraction)
            carried = np.maximum(basis_total[:, heat], 0.0) / (RHO_C * spread)
            flow[:, heat] = carried
            back = np.where(kind[heat] == Kind.HEAT_RECOVERY, 40.0, 45.0) + 0.8 * slow_t[:, heat]
            back = back + cooling_rise[:, heat]
            t_return[:, heat] = back
            gain = np.where(carried > 1e-9, total[:, heat] / (RHO_C * np.maximum(carried, 1e-9)), 0)
            t_supply[:, heat] = back + gain
        for e, cool in lay.cooling.items():
            if not cool:
                continue
            # heat the recovery unit no longer takes out ends up in the cooling water
            recovered = [i for i in range(n) if lay.ent[i] == e and kind[i] == Kind.HEAT_RECOVERY]
            dumped = bypass[:, recovered].max(axis=1) if recovered else np.zeros(t.size)
            cols = np.array(cool)
            supply = 28 + 0.25 * (weather["t_air_c"] - 18)
            t_supply[:, cols] = supply[:, None] + 0.3 * slow_t[:, cols]
            t_return[:, cols] = (
                t_supply[:, cols]
                + 6
                + 4 * act[:, [e]]
                + 8 * dumped[:, None]
                + cooling_rise[:, cols]
            )
        for s_idx, _ in lay.boilers:
            t_supply[:, s_idx] = 184 + 0.5 * slow_t[:, s_idx]  # saturated steam at 10 bar(a)
            t_return[:, s_idx] = 88 + 1.5 * slow_t[:, s_idx] + cooling_rise[:, s_idx]
            out["p_bar"][:, s_idx] = 9.5 + 0.1 * slow_t[:, s_idx]
        steam_consumers = [
            i for i in range(n) if util[i] is Utility.STEAM and kind[i] != Kind.BOILER
        ]
        for i in steam_consumers:
            out["p_bar"][:, i] = 9.0 + 0.1 * slow_t[:, i]
        out["flow_m3h"] = flow
        out["heat_kw"] = total
        out["t_supply_c"] = t_supply
        out["t_return_c"] = t_return
        out["t_flue_c"] = flue + 1.5 * slow_t
        out["level_m"] = np.zeros((t.size, n))
        if t_level >= 0:
            low, high = TANK_LEVELS
            out["level_m"][:, t_level] = lay.tank_height * (low + (high - low) * _tank_shape(tod))
        out["t_air_c"] = np.repeat(weather["t_air_c"][:, None], n, axis=1)
        out["rh_pct"] = np.repeat(weather["rh_pct"][:, None], n, axis=1)
        out["irr_wm2"] = np.repeat(weather["irr_wm2"][:, None], n, axis=1)
        for name, arr in out.items():
            # +0.0 turns -0.0 into 0.0: a PV meter at night reads 0, not "-0"
            out[name] = np.round(arr, DECIMALS[name]) + 0.0
        out["_own"] = own
        return out

    def _compressors(
        self,
        t: IntArray,
        e: int,
        group: list[Compressor],
        activity: FloatArray,
        leak: FloatArray | None,
        own: FloatArray,
        pressure: FloatArray,
    ) -> None:
        """Load/unload control: the lead compressor takes the demand first, the next ones
        follow; the one that cannot run full cycles between loaded (full power, full air)
        and unloaded (~28 % power, no air) while the receiver pressure swings 6.5-7.5 bar."""
        lay = self.layout
        capacity = sum(c.fad for c in group)
        key = self._ent_keys[e : e + 1] ^ np.uint64(0xA1)
        wander = 1 + 0.05 * _slow(t, key, 30 * MINUTE_MS)[:, 0]
        demand = capacity * (0.12 + 0.55 * activity) * wander
        if leak is not None:
            demand = demand + leak
        remaining = demand.copy()
        header = np.full(t.size, 7.0)
        trimmed = np.zeros(t.size, dtype=bool)
        total_air = np.zeros(t.size)
        for k, c in enumerate(group):
            duty = np.clip(remaining / c.fad, 0.0, 1.0)
            remaining = remaining - duty * c.fad
            phase = (t / c.period_ms + c.phase) % 1.0
            cycling = (duty > 0.001) & (duty < 0.999)
            loaded = (duty >= 0.999) | (cycling & (phase < duty))
            running = (duty > 0.001) | (k == 0)
            share = np.where(loaded, 1.0, np.where(running, UNLOADED_SHARE, 0.0))
            keys = self._keys[[c.electric]]
            own[:, c.electric] = lay.rated[c.electric] * share * (1 + 0.01 * _fast(t, keys)[:, 0])
            air = c.fad * loaded * (1 + 0.01 * _fast(t, keys ^ np.uint64(0xA2))[:, 0])
            total_air += air
            if c.air >= 0:
                own[:, c.air] = air
            # the receiver fills while the trim compressor is loaded and empties while not
            saw = np.where(
                phase < duty,
                phase / np.maximum(duty, 1e-9),
                1 - (phase - duty) / np.maximum(1 - duty, 1e-9),
            )
            use = cycling & ~trimmed
            header = np.where(use, 6.5 + saw, header)
            trimmed |= use
        header = np.where(remaining > 1e-6, 6.2, header)  # demand beyond capacity: pressure sags
        for h in lay.headers.get(e, []):
            own[:, h] = total_air
        for i in lay.air_meters.get(e, []):
            pressure[:, i] = header

    def _demand_peaks(self, t: IntArray, own: FloatArray) -> None:
        """Coincident starts: for a demand peak, the site's leaf consumers all step up at
        once by what it takes to put the site ``magnitude`` above its contracted demand."""
        lay = self.layout
        for index, f in self._process:
            if f.kind is not FaultKind.DEMAND_PEAK:
                continue
            level = f.intensity(t)
            if not level.any():
                continue
            main = lay.index[f.meter or ""]
            leaves = [
                i
                for i in lay.descendants[main]
                if lay.kind[i] == Kind.CONSUMER and lay.utility[i] is Utility.ELECTRICITY
            ] or [main]
            if index not in self._peak_cache:
                contracted = float(lay.meters[main].spec.contracted_demand_kw or 0.0)
                at_start = self._instant(np.array([f.start_ms]), peaks=False)
                baseline = float(at_start["p_kw"][0, main])
                target = contracted * (1 + f.magnitude)
                extra = max(target - baseline, 0.05 * contracted)
                self._peak_cache[index] = {
                    "contracted_kw": contracted,
                    "baseline_kw": round(baseline, 3),
                    "extra_kw": round(extra, 3),
                    "target_kw": round(target, 3),
                }
            extra = self._peak_cache[index]["extra_kw"]
            weights = lay.rated[leaves] / max(float(lay.rated[leaves].sum()), 1e-9)
            own[:, leaves] += extra * level[:, None] * weights[None, :]


_OPENING = {  # order of magnitude of a counter's opening reading
    "e_kwh": 1e6,
    "e_export_kwh": 1e5,
    "vol_m3": 1e5,
    "vol_nm3": 1e5,
    "steam_t": 1e4,
    "heat_gj": 1e4,
}


def _window(tod: FloatArray, start: float, end: float) -> FloatArray:
    """1.0 inside [start, end) hours of the local day (may wrap midnight), else 0.0."""
    inside = (tod >= start) & (tod < end) if start <= end else (tod >= start) | (tod < end)
    return inside.astype(np.float64)


def _tank_shape(tod: FloatArray) -> FloatArray:
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


def _guess(park: Park) -> tuple[float, float]:
    """A stand-in location: latitude 30°, longitude from the zone's standard offset."""
    offset = park.zone.utcoffset(None)
    hours = offset.total_seconds() / 3600 if offset is not None else 0.0
    return (30.0, 15.0 * hours)


# --- which meter can suffer which fault (for random schedules) -----------------------------


def fault_targets(park: Park) -> list[Target]:
    """Every target each fault kind can hit in ``park``, with the scale of its magnitude."""
    lay = _build(park)
    fk = FaultKind
    out: list[Target] = []
    for i, m in enumerate(lay.meters):
        kind = lay.kind[i]
        if m.utility is Utility.WATER and kind == Kind.PARENT:
            out.append(Target(fk.WATER_BURST, "zone", m.id, float(lay.rated[i])))
            out.append(Target(fk.WATER_LEAK, "zone", m.id, float(lay.rated[i])))
        if kind == Kind.BOILER:
            out.append(Target(fk.FLUE_TEMP_RISE, "meter", m.id, 1.0))
        if kind == Kind.COOLING:
            out.append(Target(fk.COOLING_TEMP_RISE, "meter", m.id, 1.0))
        if kind == Kind.HEAT_RECOVERY:
            out.append(Target(fk.HEAT_RECOVERY_BYPASS, "meter", m.id, 1.0))
        if m.utility is Utility.ELECTRICITY and m.spec.contracted_demand_kw is not None:
            out.append(Target(fk.DEMAND_PEAK, "meter", m.id, 1.0))
        if kind in (Kind.CONSUMER, Kind.PARENT) and m.utility is not Utility.ENV:
            meter_faults = (
                fk.COUNTER_RESET,
                fk.COUNTER_ROLLOVER,
                fk.METER_REPLACEMENT,
                fk.STUCK_VALUE,
                fk.WORD_SWAP,
                fk.COMM_LOSS,
            )
            out.extend(Target(k, "meter", m.id, 1.0) for k in meter_faults)
    for e, group in lay.compressors.items():
        out.append(Target(fk.AIR_LEAK, "zone", lay.ent_ids[e], sum(c.fad for c in group)))
    for gw in sorted({m.gateway for m in lay.meters}):
        transport = (fk.COMM_LOSS, fk.CLOCK_SKEW, fk.DUPLICATE_BATCHES, fk.LATE_BATCHES)
        out.extend(Target(k, "gateway", gw, 1.0) for k in transport)
    return out
