"""The site model: park → enterprise → workshop → meter, loaded from a ``park.yaml``.

Park-level meters (the park's substation, the water main) belong to the pseudo-enterprise
``park``; enterprises may not use that id.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from parkwatch.lineprotocol import series_key
from parkwatch.quantities import Utility
from parkwatch.slugs import Slug

PARK_ENTERPRISE = "park"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MeterSpec(_Model):
    id: Slug
    name: str = ""
    utility: Utility
    parent: Slug | None = None  # the meter upstream in the balance tree
    formula: str | None = None  # a virtual meter: e.g. "a1-main - a1-pv"
    gateway: Slug | None = None  # overrides the enterprise's gateway
    contracted_demand_kw: float | None = Field(default=None, gt=0)
    # what the meter measures, for analytics and the simulator: "pv", "battery", "compressor",
    # "boiler", "tank", "district", "heat_recovery", ... (free text; None: a plain consumer)
    role: str | None = None
    rated: float | None = Field(default=None, gt=0)  # nameplate, in the main quantity's unit


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
    """kg CO2 per unit; defaults are China's 2022 national grid average and IPCC fuel factors."""

    electricity_kg_per_kwh: float = 0.5703
    gas_kg_per_nm3: float = 2.162
    steam_kg_per_t: float = 250.0
    heat_kg_per_gj: float = 110.0


class Park(_Model):
    park: Slug
    name: str = ""
    timezone: str = "Asia/Shanghai"
    gateway: Slug = "gw-park"  # gateway of park-level meters
    emission_factors: EmissionFactors = EmissionFactors()
    meters: list[MeterSpec] = []  # park-level meters
    enterprises: list[Enterprise] = []

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

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

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
        return Meter(spec, enterprise, workshop, gw, series_key(spec.utility.value, tags))

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

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def utility(self) -> Utility:
        return self.spec.utility


class SiteRegistry:
    """Every known park and meter, indexed for the per-reading look-ups of ingest and the API."""

    def __init__(self, parks: list[Park]) -> None:
        self.parks: dict[str, Park] = {}
        self._meters: dict[str, dict[str, Meter]] = {}
        for park in parks:
            if park.park in self.parks:
                raise ValueError(f"park {park.park!r} is configured twice")
            self.parks[park.park] = park
            self._meters[park.park] = {m.id: m for m in park.iter_meters()}

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
