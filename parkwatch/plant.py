"""A park's plant: the systems its meters belong to, read from roles, utilities and the tree.

A role (:class:`~parkwatch.site.Role`) says what one meter measures. Detectors, the API and the
simulator also need to know which meters go together, and they read it here so that all of them
read a ``park.yaml`` the same way:

* **compressed air**, per enterprise: each compressor's motor (an electricity meter with role
  ``compressor``) paired, in the order they are listed, with its own output meter (an air
  meter with role ``compressor``) when it has one; the enterprise's other air meters are its
  headers (those with no air meter above them) and the branches below them;
* **boilers**: each steam meter with role ``boiler``, paired in order within its enterprise with
  the gas meter (role ``boiler``) that feeds its burner; a ``boiler`` gas meter left over has no
  boiler to feed and counts as a plain gas consumer;
* **cooling water**: water meters with role ``cooling`` and no sub-meters (the loop a cooling
  tower serves; they report supply and return temperatures);
* **heat recovery**: heat meters with role ``heat_recovery``;
* **storage tanks**: a level meter (role ``tank``) with an inlet (``tank_in``) and an outlet
  (``tank_out``) meter, paired in order.

Virtual meters (``formula``) belong to no system.

:func:`reported_quantities` says which quantities each meter reports: what ``park.yaml``
declares, else what a meter of its kind reports (the simulator publishes exactly these; a test
holds the two together), so the API lists a meter's own quantities, not its utility's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from parkwatch.quantities import Utility
from parkwatch.site import Meter, Park, Role


@dataclass(frozen=True)
class Compressor:
    """An air compressor: its motor's electricity meter and, if metered, its output's air
    meter."""

    motor: Meter
    output: Meter | None = None


@dataclass(frozen=True)
class AirSystem:
    """One enterprise's compressed-air network: one set of compressors, one pressure."""

    enterprise: str
    compressors: tuple[Compressor, ...]
    outputs: tuple[Meter, ...]  # air meters of single compressors (paired or not)
    headers: tuple[Meter, ...]  # the other air meters with no air meter above them
    meters: tuple[Meter, ...]  # every air meter of the network

    @property
    def delivered(self) -> tuple[Meter, ...]:
        """The meters whose flows add up to all the air the compressors deliver: their own
        output meters when every compressor has one, else the headers."""
        if self.compressors and all(c.output is not None for c in self.compressors):
            return self.outputs
        return self.headers


@dataclass(frozen=True)
class Boiler:
    """A steam boiler: its steam output meter and the gas meter of its burner, if metered."""

    steam: Meter
    fuel: Meter | None = None


@dataclass(frozen=True)
class Tank:
    """A storage tank's meters: ``inlet − outlet = area × d(level)/dt``."""

    level: Meter | None
    inlet: Meter | None
    outlet: Meter | None


def _pair(first: list[Meter], second: list[Meter]) -> list[tuple[Meter, Meter | None]]:
    """The k-th of ``first`` with the k-th of ``second`` (None when ``second`` runs out)."""
    return [(a, second[k] if k < len(second) else None) for k, a in enumerate(first)]


class Plant:
    """The systems of one park (see the module docstring for how meters are paired)."""

    def __init__(self, park: Park) -> None:
        tree = park.tree
        meters = [m for m in tree.meters.values() if not m.is_virtual]

        def having(role: Role, utility: Utility, among: Iterable[Meter] = meters) -> list[Meter]:
            return [m for m in among if m.role is role and m.utility is utility]

        enterprises = list(dict.fromkeys(m.enterprise for m in meters))
        air: dict[str, AirSystem] = {}
        boilers: list[Boiler] = []
        for ent in enterprises:
            mine = [m for m in meters if m.enterprise == ent]
            motors = having(Role.COMPRESSOR, Utility.ELECTRICITY, mine)
            outputs = having(Role.COMPRESSOR, Utility.AIR, mine)
            network = [m for m in mine if m.utility is Utility.AIR]
            if motors or network:
                headers = [
                    m
                    for m in network
                    if m.role is not Role.COMPRESSOR
                    and not any(a.utility is Utility.AIR for a in tree.ancestors(m.id))
                ]
                air[ent] = AirSystem(
                    ent,
                    tuple(Compressor(m, o) for m, o in _pair(motors, outputs)),
                    tuple(outputs),
                    tuple(headers),
                    tuple(network),
                )
            steam = having(Role.BOILER, Utility.STEAM, mine)
            fuel = having(Role.BOILER, Utility.GAS, mine)
            boilers.extend(Boiler(s, f) for s, f in _pair(steam, fuel))
        self.air = air
        self.boilers = tuple(boilers)
        self.cooling = tuple(
            m for m in having(Role.COOLING, Utility.WATER) if not tree.children(m.id)
        )
        self.heat_recovery = tuple(having(Role.HEAT_RECOVERY, Utility.HEAT))
        levels = having(Role.TANK, Utility.WATER)
        inlets = having(Role.TANK_IN, Utility.WATER)
        outlets = having(Role.TANK_OUT, Utility.WATER)
        self.tanks = tuple(
            Tank(
                levels[k] if k < len(levels) else None,
                inlets[k] if k < len(inlets) else None,
                outlets[k] if k < len(outlets) else None,
            )
            for k in range(max(len(levels), len(inlets), len(outlets)))
        )
        self._compressor = {
            m.id: c for c in self.compressors for m in (c.motor, c.output) if m is not None
        }
        self._boiler = {m.id: b for b in self.boilers for m in (b.steam, b.fuel) if m is not None}

    @property
    def compressors(self) -> list[Compressor]:
        return [c for system in self.air.values() for c in system.compressors]

    def compressor(self, meter_id: str) -> Compressor | None:
        """The compressor whose motor or output ``meter_id`` measures."""
        return self._compressor.get(meter_id)

    def boiler(self, meter_id: str) -> Boiler | None:
        """The boiler whose steam or fuel ``meter_id`` measures."""
        return self._boiler.get(meter_id)

    def boiler_fuel(self) -> list[Meter]:
        """Gas meters that feed a boiler's burner."""
        return [b.fuel for b in self.boilers if b.fuel is not None]

    def cooling_of(self, enterprise: str) -> list[Meter]:
        return [m for m in self.cooling if m.enterprise == enterprise]

    def heat_recovery_of(self, enterprise: str) -> list[Meter]:
        return [m for m in self.heat_recovery if m.enterprise == enterprise]


def _by_kind(meter: Meter, plant: Plant, two_way: set[str], cooling: set[str]) -> list[str]:
    """The quantities a meter of this kind reports (as simulators.layout publishes them)."""
    u, role = meter.utility, meter.role
    if u is Utility.ELECTRICITY:
        out = ["p_kw", "q_kvar", "pf", "e_kwh"]
        if meter.id in two_way:  # PV, a battery, or a meter above one: energy flows back
            out.append("e_export_kwh")
        if role is Role.BATTERY:
            out.append("soc_pct")
        return out
    if u is Utility.WATER:
        if role is Role.TANK:
            return ["level_m"]
        if meter.id in cooling:
            return ["flow_m3h", "vol_m3", "t_supply_c", "t_return_c"]
        return ["flow_m3h", "vol_m3"]
    if u is Utility.GAS:
        return ["flow_nm3h", "vol_nm3"]
    if u is Utility.AIR:
        return ["flow_nm3h", "vol_nm3", "p_bar"]
    if u is Utility.STEAM:
        boiler = plant.boiler(meter.id)
        if boiler is not None and boiler.steam.id == meter.id:
            return ["steam_th", "steam_t", "t_supply_c", "t_return_c", "t_flue_c", "p_bar"]
        return ["steam_th", "steam_t", "p_bar"]
    if u is Utility.HEAT:
        return ["heat_kw", "heat_gj", "flow_m3h", "vol_m3", "t_supply_c", "t_return_c"]
    return ["t_air_c", "rh_pct", "irr_wm2"]


def reported_quantities(park: Park) -> Mapping[str, tuple[str, ...]]:
    """Meter id → the quantities it reports, in order: its ``quantities:`` in park.yaml, else
    those of its kind; a virtual meter has those its formula's meters all have."""
    from parkwatch.formula import parse_formula

    plant, tree = Plant(park), park.tree
    two_way: set[str] = set()
    for meter in tree.meters.values():
        if meter.utility is Utility.ELECTRICITY and meter.role in (Role.PV, Role.BATTERY):
            two_way.add(meter.id)
            for up in tree.ancestors(meter.id):
                if up.is_virtual:
                    break
                two_way.add(up.id)
    cooling = {m.id for m in plant.cooling}
    out: dict[str, tuple[str, ...]] = {}
    for meter in tree.meters.values():
        if meter.spec.quantities is not None:
            out[meter.id] = tuple(meter.spec.quantities)
        elif not meter.is_virtual:
            out[meter.id] = tuple(_by_kind(meter, plant, two_way, cooling))
    for meter in tree.meters.values():
        if meter.id in out or meter.spec.formula is None:
            continue
        parts = [out[p] for p in parse_formula(meter.spec.formula, tree.meters).meters]
        first = parts[0] if parts else ()
        out[meter.id] = tuple(q for q in first if all(q in other for other in parts[1:]))
    return out
