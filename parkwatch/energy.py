"""Standard coal equivalent (GB/T 2589) and CO₂, from versioned data files with sources.

``parkwatch/data/energy_coefficients.yaml`` holds the tce coefficients (equal value 当量值 and,
for electricity, equivalent value 等价值), ``emission_factors.yaml`` the grid factors by region
and data year (as the Ministry of Ecology and Environment publishes them) and the fuel factors
of the national accounting guidelines, ``benchmarks.yaml`` the 标杆/基准 levels. Every entry
carries its source and how well it is sourced; a park overrides any of them in park.yaml
(``accounting:``, :class:`AccountingOptions`).

On-site PV is explicit: its generation is reported on its own (``pv_kwh``); grid electricity
is what the intake meters import. Self-consumed PV is zero-carbon; in comprehensive energy it
counts as 0 by default (``pv_in_energy: false``) or at the equal value when a park's
authority asks for it. Green certificates (绿证, entered in MWh per period) take their energy
off the grid electricity's CO₂ (market-based), never off its tce.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from parkwatch.quantities import Utility

DATA_DIR = Path(__file__).parent / "data"

# the accounting's rollups in InfluxDB (written by analytics, read by the API and Grafana):
# one measurement per calendar period, in their own retention policy by default
ROLLUP_MEASUREMENTS = {
    "hour": "consumption_hourly",
    "day": "consumption_daily",
    "month": "consumption_monthly",
    "year": "consumption_yearly",
}
ROLLUP_RETENTION_POLICY = "rollups"
# figures entered through the API or a CSV: value added, production, green certificates
FIGURES_MEASUREMENT = "accounting_figure"
REPLACEMENT_MEASUREMENT = "meter_replacement"  # meter exchanges entered through the API

# the carrier each utility's consumption is converted as (air and on-site heat are produced
# inside the boundary from electricity or fuel already counted, so they have none)
CARRIER_OF_UTILITY: dict[Utility, str] = {
    Utility.ELECTRICITY: "electricity",
    Utility.GAS: "natural_gas",
    Utility.STEAM: "steam",
    Utility.HEAT: "heat",
    Utility.WATER: "water",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CoefficientOverride(_Model):
    equal_value: float | None = Field(default=None, ge=0)  # kgce per unit
    equivalent_value: float | None = Field(default=None, ge=0)
    # 等价值 changes every year (the year's average coal burned per kWh): a value per year
    # (the latest year at or before the period's), over ``equivalent_value``
    equivalent_by_year: dict[int, float] = Field(default_factory=dict)
    co2_kg: float | None = Field(default=None, ge=0)  # kg CO₂ per unit

    @field_validator("equivalent_by_year")
    @classmethod
    def _not_negative(cls, value: dict[int, float]) -> dict[int, float]:
        if any(v < 0 for v in value.values()):
            raise ValueError("equivalent_by_year: a coefficient cannot be negative")
        return value

    def equivalent_for(self, year: int) -> float | None:
        """This override's 等价值 for ``year`` (None: not overridden)."""
        years = [y for y in self.equivalent_by_year if y <= year]
        if years:
            return self.equivalent_by_year[max(years)]
        if self.equivalent_by_year and self.equivalent_value is None:
            # only later years given: the earliest of them, as grid_factor does
            return self.equivalent_by_year[min(self.equivalent_by_year)]
        return self.equivalent_value


class AccountingOptions(_Model):
    """``accounting:`` in park.yaml."""

    region: str = "chongqing"  # the grid emission factor's region
    grid_factor: str | None = None  # pin one entry of emission_factors.yaml by id
    convention: Literal["equal", "equivalent"] = "equal"  # electricity's tce convention
    water_in_energy: bool = False  # fresh water as an energy-carrying medium (Annex B)
    pv_in_energy: bool = False  # self-consumed PV in comprehensive energy at the equal value
    coefficients: dict[str, CoefficientOverride] = Field(default_factory=dict)  # by carrier
    area_mu: float | None = Field(default=None, gt=0)  # the park's land, 亩 (land intensity)
    capacity_kva: dict[str, float] = Field(default_factory=dict)  # per enterprise
    # a meter's own register range in its counter's unit (a 6-digit kWh register: 1e6), where
    # it is none of the usual 16/32-bit or decimal widths
    register_max: dict[str, float] = Field(default_factory=dict)
    max_gap_s: float = Field(default=900.0, gt=0)  # readings further apart are a gap
    baseline_year: int = 2020
    # the baseline year's energy and water may come from the platform's own rollups of that
    # year (when not entered) only if they cover this share of it: a baseline from a part of
    # the year would compare seasons, not efficiency
    baseline_min_completeness: float = Field(default=0.95, gt=0, le=1)
    energy_target: float = -0.145  # change of energy per value added against the baseline
    water_target: float = -0.15

    # A misspelt key is refused when park.yaml loads, with the keys the data files know: an
    # unknown region used to fall back to the national grid factor unseen (another number in
    # every CO₂ figure), an unknown carrier's override to be ignored.
    @field_validator("region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        known = sorted({f.region for f in grid_factors()})
        if value not in known:
            raise ValueError(
                f"unknown region {value!r} (emission_factors.yaml has: {', '.join(known)})"
            )
        return value

    @field_validator("grid_factor")
    @classmethod
    def _known_factor(cls, value: str | None) -> str | None:
        known = [f.id for f in grid_factors()]
        if value is not None and value not in known:
            raise ValueError(
                f"unknown grid factor {value!r} (emission_factors.yaml has: {', '.join(known)})"
            )
        return value

    @field_validator("coefficients")
    @classmethod
    def _known_carriers(
        cls, value: dict[str, CoefficientOverride]
    ) -> dict[str, CoefficientOverride]:
        known = sorted(coefficients())
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(
                f"unknown carrier {', '.join(map(repr, unknown))} in coefficients "
                f"(energy_coefficients.yaml has: {', '.join(known)})"
            )
        return value


@dataclass(frozen=True)
class Coefficient:
    carrier: str
    unit: str
    equal_value: float  # kgce per unit
    equivalent_value: float | None
    status: str
    source: str
    equivalent_status: str = ""  # electricity's 等价值: how well it is sourced (U today)
    equivalent_source: str = ""


@dataclass(frozen=True)
class Factor:
    id: str
    region: str
    data_year: int
    value: float  # kg CO₂ per kWh (grid) or per unit (fuels)
    published: str  # YYYY-MM-DD, or YYYY-MM where only the month is known
    published_status: str  # how well that date is sourced (P, S, S-weak, U)
    document: str
    status: str
    source: str


@cache
def _load(name: str) -> dict[str, Any]:
    with open(DATA_DIR / name, encoding="utf-8") as fh:
        doc: dict[str, Any] = yaml.safe_load(fh)
    return doc


def coefficients() -> dict[str, Coefficient]:
    doc = _load("energy_coefficients.yaml")
    out: dict[str, Coefficient] = {}
    for carrier, c in doc["carriers"].items():
        out[carrier] = Coefficient(
            carrier,
            c["unit"],
            float(c["equal_value"]),
            float(c["equivalent_value"]) if "equivalent_value" in c else None,
            str(c.get("status") or c.get("equal_status", "")),
            str(c.get("source") or c.get("equal_source", "")),
            str(c.get("equivalent_status", "")),
            str(c.get("equivalent_source", "")),
        )
    return out


def grid_factors() -> list[Factor]:
    return [
        Factor(
            f["id"],
            f["region"],
            int(f["data_year"]),
            float(f["value"]),
            str(f["published"]),
            str(f["published_status"]),
            str(f["document"]),
            str(f["status"]),
            str(f["source"]),
        )
        for f in _load("emission_factors.yaml")["grid"]
    ]


def fuel_factors() -> dict[str, dict[str, Any]]:
    fuels: dict[str, dict[str, Any]] = _load("emission_factors.yaml")["fuels"]
    return fuels


def benchmarks() -> dict[str, dict[str, Any]]:
    products: dict[str, dict[str, Any]] = _load("benchmarks.yaml")["products"]
    return products


# 1 kgoe (kilogram of oil equivalent, 10 000 kcal) = 10 000 / 7 000 kgce: some levels (ethylene,
# GB 30251) are in kgoe per unit, the accounting's figures in kgce
KGCE_PER_KGOE = 10_000 / 7_000


def benchmark_level(kgce_per_unit: float, bench: dict[str, Any]) -> tuple[float, str]:
    """A product's energy per unit in the benchmark's own unit, and where it stands: at or
    below 标杆, between 标杆 and 基准, or above 基准 (lower is better)."""
    unit = str(bench.get("unit", ""))
    value = kgce_per_unit / KGCE_PER_KGOE if unit.startswith("kgoe") else kgce_per_unit
    if value <= bench["benchmark"]:
        return value, "标杆 benchmark"
    if value <= bench["baseline"]:
        return value, "基准 to 标杆"
    return value, "below 基准 baseline"


def grid_factor(options: AccountingOptions, year: int) -> Factor:
    """The grid factor for a period of ``year``: the pinned entry, else the region's factor
    for that data year or the latest earlier one (before its first, its first)."""
    factors = grid_factors()
    if options.grid_factor is not None:
        for f in factors:
            if f.id == options.grid_factor:
                return f
        raise ValueError(f"no emission factor {options.grid_factor!r}")
    # no fallback to the national factor: an unknown region is refused when park.yaml loads
    mine = [f for f in factors if f.region == options.region and f.data_year <= year]
    if mine:
        return max(mine, key=lambda f: f.data_year)
    later = [f for f in factors if f.region == options.region]
    if later:
        return min(later, key=lambda f: f.data_year)
    raise ValueError(f"no grid emission factor for {options.region!r}")


@dataclass(frozen=True)
class Conversion:
    """Per unit of one utility's consumption: kgce (both conventions) and kg CO₂."""

    carrier: str
    unit: str
    kgce_equal: float
    kgce_equivalent: float
    co2_kg: float
    co2_source: str


def conversion(options: AccountingOptions, utility: Utility, year: int) -> Conversion | None:
    """How one unit of ``utility`` converts in ``year`` (None: not an energy carrier here)."""
    carrier = CARRIER_OF_UTILITY.get(utility)
    if carrier is None or (carrier == "water" and not options.water_in_energy):
        return None
    c = coefficients()[carrier]
    override = options.coefficients.get(carrier, CoefficientOverride())
    equal = override.equal_value if override.equal_value is not None else c.equal_value
    own = override.equivalent_for(year)
    equivalent = (
        own
        if own is not None
        else (c.equivalent_value if c.equivalent_value is not None else equal)
    )
    if carrier == "electricity":
        f = grid_factor(options, year)
        co2, source = f.value, f"{f.id} ({f.document}; data year {f.data_year})"
    elif carrier in fuel_factors():
        fuel = fuel_factors()[carrier]
        co2, source = float(fuel["value"]), str(fuel["source"])
    else:
        co2, source = 0.0, "no direct emission"
    if override.co2_kg is not None:
        co2, source = override.co2_kg, "park override"
    return Conversion(carrier, c.unit, equal, equivalent, co2, source)


def kgce(conv: Conversion, amount: float, convention: Literal["equal", "equivalent"]) -> float:
    return amount * (conv.kgce_equal if convention == "equal" else conv.kgce_equivalent)
