"""The site model: park → enterprise → workshop → meter, loaded from a ``park.yaml``.

Park-level meters (the park's substation, the water main) belong to the pseudo-enterprise
``park``; enterprises may not use that id.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from parkwatch.energy import AccountingOptions
from parkwatch.formula import FormulaError, parse_formula
from parkwatch.lineprotocol import series_key
from parkwatch.quantities import QUANTITIES, Kind, Quantity, Utility
from parkwatch.slugs import Slug
from parkwatch.tariffs import Tariffs

PARK_ENTERPRISE = "park"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Role(StrEnum):
    """What a meter measures, beyond its utility: analytics and the simulator read it.

    A meter without a role is a plain consumer (or, with children, a parent in its tree).
    """

    PV = "pv"  # on-site solar generation
    BATTERY = "battery"  # battery storage (charges and discharges)
    COMPRESSOR = "compressor"  # electricity: an air compressor's motor; air: its output
    BOILER = "boiler"  # steam: a boiler's output; gas: its burner's fuel
    HEAT_RECOVERY = "heat_recovery"  # a heat-recovery unit's heat meter
    COOLING = "cooling"  # cooling water (make-up or loop) with supply/return temperatures
    TANK = "tank"  # a storage tank's level meter
    TANK_IN = "tank_in"  # flow into a storage tank
    TANK_OUT = "tank_out"  # flow out of a storage tank
    DISTRICT = "district"  # a district (zone) inflow meter of a water network
    FURNACE = "furnace"
    HVAC = "hvac"
    COLD_STORAGE = "cold_storage"
    REFRIGERATION = "refrigeration"
    LIGHTING = "lighting"
    OFFICE = "office"
    IT = "it"
    PUMP = "pump"


class CustomQuantity(_Model):
    """A quantity a park measures that the registry does not have (``quantities:`` in
    park.yaml): any sensor a park has can be stored and monitored."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    unit: str
    kind: Kind = Kind.INSTANT
    utilities: list[Utility] = Field(min_length=1)
    description: str = ""
    low: float | None = None  # plausibility bounds; counters default to ≥ 0
    high: float = 1e12

    @field_validator("name")
    @classmethod
    def _not_registered(cls, value: str) -> str:
        if value in QUANTITIES:
            raise ValueError(f"quantity {value!r} is already in the registry; use it as it is")
        if value in ("quality", "time"):
            raise ValueError(f"quantity name {value!r} is reserved")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        low = self.low if self.low is not None else (0.0 if self.kind is Kind.COUNTER else -1e12)
        if not low < self.high:
            raise ValueError(f"quantity {self.name!r}: low ({low:g}) must be below high")
        return self

    def quantity(self) -> Quantity:
        low = self.low if self.low is not None else (0.0 if self.kind is Kind.COUNTER else -1e12)
        return Quantity(
            self.name,
            self.unit,
            self.kind,
            frozenset(self.utilities),
            self.description,
            low,
            self.high,
        )


class MeterSpec(_Model):
    id: Slug
    name: str = ""
    utility: Utility
    parent: Slug | None = None  # the meter upstream in the balance tree
    formula: str | None = None  # a virtual meter: e.g. "a1-main - a1-pv"
    gateway: Slug | None = None  # overrides the enterprise's gateway
    contracted_demand_kw: float | None = Field(default=None, gt=0)
    role: Role | None = None  # what it measures beyond its utility (None: a plain consumer)
    rated: float | None = Field(default=None, gt=0)  # nameplate, in the main quantity's unit
    interval_s: float | None = Field(default=None, gt=0)  # its poll interval, if not the park's
    # what it reports, when not what a meter of its kind reports (parkwatch.plant)
    quantities: list[str] | None = None

    @field_validator("role", mode="before")
    @classmethod
    def _role_lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class Workshop(_Model):
    id: Slug
    name: str = ""
    meters: list[MeterSpec] = []


class Enterprise(_Model):
    id: Slug
    name: str = ""
    industry: str = "general"
    value_added_cny: float | None = Field(default=None, ge=0)  # yearly industrial value added
    contracted_demand_kw: float | None = Field(default=None, gt=0)
    gateway: Slug | None = None
    workshops: list[Workshop] = []

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == PARK_ENTERPRISE:
            raise ValueError(f"enterprise id {PARK_ENTERPRISE!r} is reserved for park-level meters")
        return value


class EmissionFactors(_Model):
    """kg CO2 per unit. Not used by the accounting, which reads dated factors with their
    sources from ``parkwatch/data/emission_factors.yaml`` (a park overrides them in
    ``accounting.coefficients``); kept so that existing park.yaml files still load."""

    electricity_kg_per_kwh: float = 0.5703
    gas_kg_per_nm3: float = 2.162
    steam_kg_per_t: float = 250.0
    heat_kg_per_gj: float = 110.0


class AnalyticsOptions(_Model):
    """How analytics treats this park."""

    # the grid every series is aligned to: readings inside one step are averaged (instant
    # quantities) or the last one kept (counters); a meter polled less often has gaps between
    step_s: float = Field(default=60.0, ge=1, le=86_400)
    # the quantities whose level changing within minutes is a fault, not operation
    # (``analytics.detectors.shift``): a process's flow, pressure or temperature that runs
    # steady — not a rate that follows machines starting and stopping. None by default
    level_shift: list[str] = []


# --- networks: zones (district metered areas) and waste-heat recovery ------------------------
# Kept in their own classes (and their own validator on ``Park``) so that the accounting's
# additions to the site model do not meet these.

# the quantity a zone's flows are summed in, per utility it may be declared for
ZONE_FLOW: dict[Utility, str] = {
    Utility.WATER: "flow_m3h",
    Utility.AIR: "flow_nm3h",
    Utility.GAS: "flow_nm3h",
    Utility.STEAM: "steam_th",
}
# a zone's default accuracy (± % of reading) per utility: class 2 water meters (ISO 4064),
# class 1.5 gas, 5 % for compressed air (thermal mass-flow meters as installed) and 2.5 % for
# steam flow meters
ZONE_ACCURACY_PCT: dict[Utility, float] = {
    Utility.WATER: 2.0,
    Utility.AIR: 5.0,
    Utility.GAS: 1.5,
    Utility.STEAM: 2.5,
}
# roles that make a meter part of a network: once a utility has zones, such a meter in no zone
# is a mistake in park.yaml, not a choice (a tank's inlet and outlet meters may stay out: its
# level accounts for them)
NETWORK_ROLES = frozenset({Role.DISTRICT, Role.TANK})


class ZoneTank(_Model):
    """Storage inside a zone: a level meter (``level_m``) and the tank's cross-section, so
    that the water it takes in or gives out, ``area · d(level)/dt``, is not counted as
    consumption."""

    level: Slug  # the level meter
    area_m2: float | None = Field(default=None, gt=0)
    diameter_m: float | None = Field(default=None, gt=0)  # a round tank: area = π d² / 4
    min_m: float = Field(default=0.0, ge=0)  # the level range it works in (a reading
    max_m: float | None = Field(default=None, gt=0)  # outside it is a level meter's fault)

    @model_validator(mode="after")
    def _sized(self) -> Self:
        if (self.area_m2 is None) == (self.diameter_m is None):
            raise ValueError(
                f"tank {self.level!r}: give its cross-section as area_m2 or diameter_m "
                "(exactly one)"
            )
        if self.max_m is not None and not self.min_m < self.max_m:
            raise ValueError(f"tank {self.level!r}: min_m must be below max_m")
        return self

    @property
    def area(self) -> float:
        """Cross-section, m²."""
        if self.area_m2 is not None:
            return self.area_m2
        d = float(self.diameter_m or 0.0)
        return 3.141592653589793 * d * d / 4


class NetworkZone(_Model):
    """A zone (district metered area) of a water, compressed-air, gas or steam network: its
    consumption is ``Σ inflow − Σ outflow − Σ area · d(level)/dt``. A zone may be the whole
    park or one district; its clock is the park's."""

    id: Slug
    name: str = ""
    utility: Utility
    inflow: list[Slug] = Field(min_length=1)
    outflow: list[Slug] = []
    tanks: list[ZoneTank] = []
    accuracy_pct: float | None = Field(default=None, gt=0, le=20)  # default: ZONE_ACCURACY_PCT

    @field_validator("utility")
    @classmethod
    def _networked(cls, value: Utility) -> Utility:
        if value not in ZONE_FLOW:
            allowed = ", ".join(u.value for u in ZONE_FLOW)
            raise ValueError(f"zones are for {allowed} networks, not {value.value}")
        return value

    @property
    def flow_quantity(self) -> str:
        return ZONE_FLOW[self.utility]

    @property
    def accuracy(self) -> float:
        """± share of reading its meters are good for."""
        pct = (
            self.accuracy_pct if self.accuracy_pct is not None else ZONE_ACCURACY_PCT[self.utility]
        )
        return pct / 100.0

    @property
    def meter_ids(self) -> list[str]:
        return [*self.inflow, *self.outflow, *(t.level for t in self.tanks)]


class WasteHeatOptions(_Model):
    """What analytics counts as recoverable heat (``waste_heat:`` in park.yaml)."""

    # flue gas can be cooled to this: a conventional economiser stays above ~121 °C against
    # acid condensation (DOE Steam Tip Sheet #26A); a condensing one goes lower
    flue_recovery_c: float = 120.0
    water_recovery_c: float = 30.0  # warm water can give its heat down to this (heat pump)
    flue_gas_kg_per_nm3_fuel: float = 17.0  # flue gas per Nm³ of natural gas (≈10 % excess air)
    cny_per_gj: float | None = Field(default=None, ge=0)  # default: the park's heat tariff


def validate_zones(park: Park) -> None:
    """Every zone names meters of the park, of its utility, each at most once in one zone;
    tanks are level meters; once a utility has zones, no network meter is left out."""
    by_id = {m.id: m for m in park.iter_meters()}
    ids = [z.id for z in park.zones]
    if len(set(ids)) != len(ids):
        raise ValueError("zone ids must be unique")
    zoned: set[str] = set()
    unit_of = park.quantity_table
    for zone in park.zones:
        unit = unit_of[zone.flow_quantity].unit
        listed = zone.meter_ids
        twice = sorted({m for m in listed if listed.count(m) > 1})
        if twice:
            raise ValueError(f"zone {zone.id!r}: meter {twice[0]!r} is listed twice")
        for meter_id in [*zone.inflow, *zone.outflow]:
            meter = by_id.get(meter_id)
            if meter is None:
                raise ValueError(f"zone {zone.id!r}: meter {meter_id!r} is not in the park")
            if meter.utility is not zone.utility:
                other = ZONE_FLOW.get(meter.utility)
                their = f"{unit_of[other].unit}" if other else "no flow"
                raise ValueError(
                    f"zone {zone.id!r} ({zone.utility.value}, {unit}): meter {meter_id!r} is "
                    f"a {meter.utility.value} meter ({their}): units do not match"
                )
        for tank in zone.tanks:
            meter = by_id.get(tank.level)
            if meter is None:
                raise ValueError(
                    f"zone {zone.id!r}: tank level meter {tank.level!r} is not in the park"
                )
            if "level_m" not in meter.bounds:
                raise ValueError(
                    f"zone {zone.id!r}: tank {tank.level!r} is a {meter.utility.value} meter, "
                    "which reports no level (level_m, m)"
                )
            if zone.utility is not Utility.WATER:
                raise ValueError(f"zone {zone.id!r}: tanks (level · area) are for water zones")
        zoned.update(listed)
    utilities = {z.utility for z in park.zones}
    for meter in by_id.values():
        if meter.utility in utilities and meter.role in NETWORK_ROLES and meter.id not in zoned:
            raise ValueError(
                f"meter {meter.id!r} ({meter.role.value if meter.role else ''}) is in no zone: "
                f"list it in a {meter.utility.value} zone's inflow, outflow or tanks"
            )


class Park(_Model):
    park: Slug
    name: str = ""
    timezone: str = "Asia/Shanghai"
    gateway: Slug = "gw-park"  # gateway of park-level meters
    emission_factors: EmissionFactors = EmissionFactors()
    tariffs: Tariffs = Tariffs()
    quantities: list[CustomQuantity] = []  # quantities beyond the registry's
    analytics: AnalyticsOptions = AnalyticsOptions()
    accounting: AccountingOptions = AccountingOptions()  # tce, CO₂, targets (parkwatch/energy.py)
    meters: list[MeterSpec] = []  # park-level meters
    enterprises: list[Enterprise] = []
    zones: list[NetworkZone] = []  # district metered areas of its networks
    waste_heat: WasteHeatOptions = WasteHeatOptions()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        seen: set[str] = set()
        for meter in self.iter_meters():
            if meter.spec.id in seen:
                raise ValueError(f"meter id {meter.spec.id!r} appears twice")
            seen.add(meter.spec.id)
        enterprise_ids = [e.id for e in self.enterprises]
        if len(set(enterprise_ids)) != len(enterprise_ids):
            raise ValueError("enterprise ids must be unique")
        names = [q.name for q in self.quantities]
        if len(set(names)) != len(names):
            raise ValueError("custom quantity names must be unique")
        if len(set(self.analytics.level_shift)) != len(self.analytics.level_shift):
            raise ValueError("analytics.level_shift: a quantity is listed twice")
        for name in self.analytics.level_shift:
            shifted = self.quantity_table.get(name)
            if shifted is None:
                raise ValueError(f"analytics.level_shift: unknown quantity {name!r}")
            # the detector watches the baseline's rows: rates and instant quantities
            if shifted.is_counter:
                raise ValueError(f"analytics.level_shift: {name!r} is a counter: name its rate")
        by_id = {m.spec.id: m for m in self.iter_meters()}
        for meter in by_id.values():
            declared = meter.spec.quantities or []
            if len(set(declared)) != len(declared):
                raise ValueError(f"meter {meter.id!r}: a quantity is listed twice")
            for name in declared:
                known = self.quantity_table.get(name)
                if known is None or meter.utility not in known.utilities:
                    raise ValueError(
                        f"meter {meter.id!r}: {name!r} is no {meter.utility.value} quantity"
                    )
        for meter in by_id.values():
            if meter.spec.formula is None:
                continue
            try:
                formula = parse_formula(meter.spec.formula, by_id)
            except FormulaError as exc:
                raise ValueError(f"meter {meter.id!r}: {exc}") from None
            for part in formula.meters:
                if part == meter.id or by_id[part].spec.formula is not None:
                    raise ValueError(
                        f"meter {meter.id!r}: its formula may name only real meters ({part!r})"
                    )
                if by_id[part].utility is not meter.utility:
                    raise ValueError(
                        f"meter {meter.id!r} ({meter.utility.value}): formula names {part!r}, "
                        f"a {by_id[part].utility.value} meter"
                    )
        parents = {m.spec.id: m.spec.parent for m in self.iter_meters()}
        for meter_id, parent in parents.items():
            if parent is not None and parent not in parents:
                raise ValueError(f"meter {meter_id!r} has unknown parent {parent!r}")
            # walk up: a cycle would never reach a root
            hops, node = 0, parent
            while node is not None:
                hops += 1
                if node == meter_id or hops > len(parents):
                    raise ValueError(f"meter {meter_id!r} is part of a parent cycle")
                node = parents[node]
        return self

    @model_validator(mode="after")
    def _zones_valid(self) -> Self:
        validate_zones(self)
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def quantity_table(self) -> Mapping[str, Quantity]:
        """The registry's quantities plus this park's own."""
        return {**QUANTITIES, **{q.name: q.quantity() for q in self.quantities}}

    @cached_property
    def _bounds(self) -> dict[Utility, dict[str, tuple[float, float]]]:
        table = self.quantity_table
        return {
            u: {q.name: (q.low, q.high) for q in table.values() if u in q.utilities}
            for u in Utility
        }

    @cached_property
    def tree(self) -> MeterTree:
        return MeterTree(list(self.iter_meters()))

    def iter_meters(self) -> Iterator[Meter]:
        for spec in self.meters:
            yield self._place(spec, PARK_ENTERPRISE, None, spec.gateway or self.gateway)
        for ent in self.enterprises:
            default_gateway = ent.gateway or f"gw-{ent.id}"[:64]
            for shop in ent.workshops:
                for spec in shop.meters:
                    yield self._place(spec, ent.id, shop.id, spec.gateway or default_gateway)

    def _place(self, spec: MeterSpec, enterprise: str, workshop: str | None, gw: str) -> Meter:
        tags = {"park": self.park, "enterprise": enterprise, "meter": spec.id}
        return Meter(
            spec,
            enterprise,
            workshop,
            gw,
            series_key(spec.utility.value, tags),
            self._bounds[spec.utility],
        )

    @classmethod
    def from_yaml(cls, path: Path | str) -> Park:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        return cls.model_validate(data)


@dataclass(frozen=True, slots=True)
class Meter:
    """A meter placed in its park: its spec plus where it sits and which gateway reads it."""

    spec: MeterSpec
    enterprise: str
    workshop: str | None
    gateway: str
    series: str  # its InfluxDB series key: "<utility>,enterprise=…,meter=…,park=…"
    # quantity → plausibility bounds, for every quantity a meter of its utility may report in
    # its park (the registry's and the park's own): ingest's one look-up per value
    bounds: Mapping[str, tuple[float, float]] = field(repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def utility(self) -> Utility:
        return self.spec.utility

    @property
    def role(self) -> Role | None:
        return self.spec.role

    @property
    def is_virtual(self) -> bool:
        return self.spec.formula is not None


class MeterTree:
    """Look-ups over a park's balance tree (``parent`` links) and roles."""

    def __init__(self, meters: list[Meter]) -> None:
        self.meters = {m.id: m for m in meters}
        self._children: dict[str, list[str]] = {m.id: [] for m in meters}
        for m in meters:
            if m.spec.parent is not None:
                self._children[m.spec.parent].append(m.id)

    def parent(self, meter_id: str) -> Meter | None:
        parent = self.meters[meter_id].spec.parent
        return None if parent is None else self.meters[parent]

    def children(self, meter_id: str) -> list[Meter]:
        return [self.meters[c] for c in self._children[meter_id]]

    def descendants(self, meter_id: str) -> list[Meter]:
        out: list[Meter] = []
        stack = list(reversed(self._children[meter_id]))
        while stack:
            node = stack.pop()
            out.append(self.meters[node])
            stack.extend(reversed(self._children[node]))
        return out

    def ancestors(self, meter_id: str) -> list[Meter]:
        out: list[Meter] = []
        node = self.parent(meter_id)
        while node is not None:
            out.append(node)
            node = self.parent(node.id)
        return out

    def covering(self, meter_id: str) -> set[str]:
        """The real meters that already measure this one (a sum that holds one of them must
        leave this one out): its real parent, or, for a virtual parent (never summed itself),
        the meters its formula reads outside its own subtree ("main - pv" covers what hangs
        below it; "f1 + f2" declared as f1's and f2's parent covers neither), and so upward."""
        for a in self.ancestors(meter_id):
            if not a.is_virtual:
                return {a.id}
            below = {d.id for d in self.descendants(a.id)}
            reads = parse_formula(a.spec.formula or "", self.meters).meters
            outside = {x for x in reads if x not in below}
            if outside:
                return outside
        return set()

    def roots(self, utility: Utility | None = None) -> list[Meter]:
        return [
            m
            for m in self.meters.values()
            if m.spec.parent is None and (utility is None or m.utility is utility)
        ]

    def with_role(self, role: Role, utility: Utility | None = None) -> list[Meter]:
        return [
            m
            for m in self.meters.values()
            if m.role == role and (utility is None or m.utility is utility)
        ]

    def of_enterprise(self, enterprise: str, utility: Utility | None = None) -> list[Meter]:
        return [
            m
            for m in self.meters.values()
            if m.enterprise == enterprise and (utility is None or m.utility is utility)
        ]


class SiteRegistry:
    """Every known park and meter, indexed for the per-reading look-ups of ingest and the API."""

    def __init__(self, parks: list[Park]) -> None:
        self.parks: dict[str, Park] = {}
        self._meters: dict[str, dict[str, Meter]] = {}
        self._by_gateway: dict[tuple[str, str], dict[str, Meter]] = {}
        for park in parks:
            if park.park in self.parks:
                raise ValueError(f"park {park.park!r} is configured twice")
            self.parks[park.park] = park
            self._meters[park.park] = {m.id: m for m in park.iter_meters()}
            for meter in self._meters[park.park].values():
                self._by_gateway.setdefault((park.park, meter.gateway), {})[meter.id] = meter

    @classmethod
    def from_files(cls, paths: list[Path]) -> SiteRegistry:
        return cls([Park.from_yaml(p) for p in paths])

    def meter(self, park: str, meter_id: str) -> Meter | None:
        return self._meters.get(park, {}).get(meter_id)

    def meters(self, park: str) -> list[Meter]:
        return list(self._meters.get(park, {}).values())

    def park_meters(self, park: str) -> dict[str, Meter]:
        """Meter id → meter for one park (empty for an unknown park)."""
        return self._meters.get(park, {})

    def gateway_meters(self, park: str, gateway: str) -> dict[str, Meter]:
        """Meter id → meter for the meters one gateway reads (empty if it reads none): one
        look-up per reading answers both "known meter?" and "this gateway's?"."""
        return self._by_gateway.get((park, gateway), {})
