"""What every meter of a park is to the simulator, worked out once per park.

:func:`build_layout` classifies each meter into a :class:`Kind` (how the model generates its own
load) from its utility, role and children, sizes it (``rated`` from park.yaml, else a default from
its enterprise's contracted demand and industry), and groups meters into the systems the
physics runs: compressors with their air meters, boilers with their gas meters, cooling water,
the storage tank. It also says which quantities each meter publishes and to how many decimals.

Roles (``MeterSpec.role``): ``pv``, ``battery``, ``compressor`` (electricity meters are the
compressors; air meters with this role are their outputs, paired in order within the
enterprise; air meters without a role measure the header), ``boiler`` (the steam meter, and the
gas meter that feeds it), ``heat_recovery`` and other hot-water heat meters, ``cooling`` (a
cooling-water make-up meter with loop temperatures), ``district``, and a storage tank
(``tank_in``, ``tank_out``, ``tank`` for the level). An ``env`` meter is the park's weather
station. Virtual meters (``formula``) are not simulated: analytics computes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from parkwatch.quantities import Utility
from parkwatch.site import Meter, Park
from simulators import industries
from simulators.physics import air, boiler, electric, water
from simulators.physics.noise import key, uniform

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

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

# what a meter's balance tree adds up, per utility
PRIMARY: dict[Utility, str] = {
    Utility.ELECTRICITY: "p_kw",
    Utility.WATER: "flow_m3h",
    Utility.GAS: "flow_nm3h",
    Utility.AIR: "flow_nm3h",
    Utility.STEAM: "steam_th",
    Utility.HEAT: "heat_kw",
}

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
DEFAULT_CONTRACTED_KW = 1000.0  # an enterprise (and the park itself) without one


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


@dataclass
class Layout:
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
    compressors: dict[int, list[air.Compressor]]
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
    return air.fad(value) if mine == Kind.COMPRESSOR_AIR else value


def quantities(kind: Kind, utility: Utility, bidirectional: bool) -> list[str]:
    """The quantities a meter of this kind and utility publishes, in order."""
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


def build_layout(park: Park) -> Layout:
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
        [DEFAULT_CONTRACTED_KW]
        + [e.contracted_demand_kw or DEFAULT_CONTRACTED_KW for e in park.enterprises]
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
            rated[i] = air.DEFAULT_MOTOR_KW
        elif k == Kind.BOILER:
            rated[i] = boiler.DEFAULT_STEAM_TH
        elif k == Kind.HEAT_RECOVERY:
            rated[i] = 0.1 * c
        elif k == Kind.TANK_IN:
            rated[i] = water.DEFAULT_INFLOW
        elif k == Kind.TANK_LEVEL:
            rated[i] = water.DEFAULT_HEIGHT
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
            rated[i] = boiler.gas_nm3h(steam_th, boiler.BOILER_EFFICIENCY)
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
            pf = (
                electric.PARENT_PF
                if kind[i] == Kind.PARENT
                else electric.ROLE_PF.get(role[i], electric.DEFAULT_PF)
            )
            tan_phi[i] = electric.tan_phi(pf)

    # a tank's outflow feeds back into the zone of the meter it hangs from: it counts
    # negatively upstream (main = Σ districts + tank_in − tank_out + ...)
    accumulate = np.eye(n)
    for i in range(n):
        sign = -1.0 if kind[i] == Kind.TANK_OUT else 1.0
        for a in ancestors[i]:
            accumulate[i, a] = sign

    published = [
        quantities(Kind(int(kind[i])), utility[i], bool(bidirectional[i])) for i in range(n)
    ]

    # --- systems -------------------------------------------------------------------------
    compressors: dict[int, list[air.Compressor]] = {}
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
                out = outputs[k] if k < len(outputs) else -1
                fad = float(rated[out]) if out >= 0 else air.fad(float(rated[motor]))
                phase_key = key("compressor-phase", meters[motor].id)
                phase = float(uniform(np.array([0]), np.array([phase_key]))[0, 0])
                group.append(air.Compressor(motor, out, fad, air.cycle_period_ms(k), phase))
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
    height = float(rated[tank[2]]) if tank[2] >= 0 else water.DEFAULT_HEIGHT
    volume, area = water.size(
        float(rated[tank[0]] if tank[0] >= 0 else water.DEFAULT_INFLOW), height
    )
    return Layout(
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
        quantities=published,
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
