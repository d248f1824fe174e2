"""What every meter of a park is to the simulator, worked out once per park.

:func:`build_layout` classifies each meter into a :class:`Kind` (how the model generates its own
load) from its utility, role and children, sizes it (``rated`` from park.yaml, else a default from
its enterprise's contracted demand and industry), and groups meters into the systems the
physics runs: compressors with their air meters, boilers with their gas meters, cooling water,
the storage tank. It also says which quantities each meter publishes and to how many decimals.

Which meters go together — a compressor's motor and its air meter, a boiler and the gas meter
of its burner, cooling water, heat recovery, the tank's level, inlet and outlet — is read from
:class:`parkwatch.plant.Plant`, the reading of roles analytics shares. On top of it the
simulator's own kinds: an air meter with no sub-meters that is no compressor's output is the
header the compressors feed (when they have no output meters of their own); an ``env`` meter is
the park's weather station. Virtual meters (``formula``) are not simulated: analytics computes
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from parkwatch.plant import Plant
from parkwatch.quantities import Utility
from parkwatch.site import Meter, Park, Role
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
ROLE_STANDBY: dict[Role | None, float] = {
    Role.HVAC: 0.4,
    Role.COLD_STORAGE: 0.8,
    Role.REFRIGERATION: 0.8,
    Role.FURNACE: 0.2,
    Role.LIGHTING: 0.1,
    Role.OFFICE: 0.25,
    Role.IT: 0.9,
    Role.PUMP: 0.35,
    Role.HEAT_RECOVERY: 0.1,
    Role.COOLING: 0.3,
}
# power factor by role (others 0.9; a parent meter sees a mix, 0.95)
ROLE_PF: dict[Role | None, float] = {
    Role.FURNACE: 0.95,
    Role.COMPRESSOR: 0.86,
    Role.HVAC: 0.88,
    Role.COLD_STORAGE: 0.85,
}
DEFAULT_PF = 0.9
PARENT_PF = 0.95
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
    role: list[Role | None]
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
    heat_recovery: dict[int, list[int]]  # enterprise -> heat-recovery meters
    tank: tuple[int, int, int]  # tank_in, tank_out, level (-1 when absent)
    tank_area: float
    tank_height: float
    tank_volume: float  # filled each night and drawn each day, m³


def _kind(meter: Meter, has_children: bool, plant: Plant) -> Kind:
    role, u = meter.role, meter.utility
    if u is Utility.ENV:
        return Kind.WEATHER
    if role is Role.PV and u is Utility.ELECTRICITY:
        return Kind.PV
    if role is Role.BATTERY and u is Utility.ELECTRICITY:
        return Kind.BATTERY
    if role is Role.COMPRESSOR and u is Utility.ELECTRICITY:
        return Kind.COMPRESSOR
    if role is Role.COMPRESSOR and u is Utility.AIR:
        return Kind.COMPRESSOR_AIR
    boiler_here = plant.boiler(meter.id)
    if boiler_here is not None:
        return Kind.BOILER if boiler_here.steam.id == meter.id else Kind.BOILER_GAS
    if meter in plant.heat_recovery:
        return Kind.HEAT_RECOVERY
    if meter in plant.cooling:
        return Kind.COOLING
    if role is Role.TANK and u is Utility.WATER:
        return Kind.TANK_LEVEL
    if role is Role.TANK_IN and u is Utility.WATER:
        return Kind.TANK_IN
    if role is Role.TANK_OUT and u is Utility.WATER:
        return Kind.TANK_OUT
    if has_children:
        return Kind.PARENT
    if u is Utility.AIR:
        return Kind.AIR_HEADER  # fed by the enterprise's compressors when they have no outputs
    return Kind.CONSUMER


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
    tree, plant = park.tree, Plant(park)
    meters = [m for m in tree.meters.values() if not m.is_virtual]
    n = len(meters)
    index = {m.id: i for i, m in enumerate(meters)}
    children = [[index[c.id] for c in tree.children(m.id) if c.id in index] for m in meters]
    # a virtual meter's formula is no balance: the tree above the simulated meters stops there
    ancestors: list[list[int]] = []
    for m in meters:
        chain: list[int] = []
        for up in tree.ancestors(m.id):
            if up.id not in index:
                break
            chain.append(index[up.id])
        ancestors.append(chain)
    descendants: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for a in ancestors[i]:
            descendants[a].append(i)
    kind = np.array(
        [_kind(m, bool(children[i]), plant) for i, m in enumerate(meters)], dtype=np.int64
    )
    utility = [m.utility for m in meters]
    role = [m.role for m in meters]

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
        if given[i] is not None:
            continue
        if kind[i] == Kind.COMPRESSOR_AIR:
            # sized by its motor's free air delivery (an output without a motor: 1 Nm³/h)
            c = plant.compressor(meters[i].id)
            rated[i] = air.fad(float(rated[index[c.motor.id]])) if c is not None else 1.0
        if kind[i] == Kind.BOILER_GAS:
            b = plant.boiler(meters[i].id)
            steam_th = float(rated[index[b.steam.id]]) if b is not None else 0.0
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
        if u is Utility.WATER and ent[i] == 0 and not ancestors[i]:
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
            pf = PARENT_PF if kind[i] == Kind.PARENT else ROLE_PF.get(role[i], DEFAULT_PF)
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
    for e, ent_id in enumerate(ent_ids):
        system = plant.air.get(ent_id)
        air_meters[e] = [index[m.id] for m in system.meters] if system else []
        if system is None or not system.compressors:
            continue
        group = []
        for k, c in enumerate(system.compressors):
            motor = index[c.motor.id]
            out = index[c.output.id] if c.output is not None else -1
            fad = float(rated[out]) if out >= 0 else air.fad(float(rated[motor]))
            phase_key = key("compressor-phase", c.motor.id)
            phase = float(uniform(np.array([0]), np.array([phase_key]))[0, 0])
            group.append(air.Compressor(motor, out, fad, air.cycle_period_ms(k), phase))
        compressors[e] = group
        if not system.outputs:
            headers[e] = [i for i in air_meters[e] if kind[i] == Kind.AIR_HEADER]
            for h in headers[e]:
                rated[h] = own_rated[h] = sum(c.fad for c in group)
    cooling = {e: [index[m.id] for m in plant.cooling_of(ent)] for e, ent in enumerate(ent_ids)}
    recovery = {
        e: [index[m.id] for m in plant.heat_recovery_of(ent)] for e, ent in enumerate(ent_ids)
    }
    boilers = [
        (index[b.steam.id], index[b.fuel.id] if b.fuel is not None else -1) for b in plant.boilers
    ]

    first = plant.tanks[0] if plant.tanks else None
    tank = (
        index[first.inlet.id] if first and first.inlet else -1,
        index[first.outlet.id] if first and first.outlet else -1,
        index[first.level.id] if first and first.level else -1,
    )
    height = float(rated[tank[2]]) if tank[2] >= 0 else water.DEFAULT_HEIGHT
    volume, area = water.size(
        float(rated[tank[0]] if tank[0] >= 0 else water.DEFAULT_INFLOW), height
    )
    declared = [
        t.area
        for z in park.zones
        for t in z.tanks
        if first and first.level and t.level == first.level.id
    ]
    if declared:
        # the cross-section park.yaml gives the tank (its zone's): the level swings over the
        # same range, so the volume drawn each day follows from it
        area = declared[0]
        volume = area * (water.TANK_LEVELS[1] - water.TANK_LEVELS[0]) * height
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
        heat_recovery=recovery,
        tank=tank,
        tank_area=area,
        tank_height=height,
        tank_volume=volume,
    )
