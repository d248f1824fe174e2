"""Tariffs as data: what a unit of each utility costs, and an electricity bill.

``tariffs:`` in park.yaml. ``prices`` is a flat price per utility, in ¥ per unit of the
utility's main counter (kWh, m³, Nm³, t, GJ). ``electricity`` (the park's default) and
``enterprises`` (per enterprise) name an electricity tariff: a built-in one from
``parkwatch/data/tariffs/*.yaml`` by name, or one written inline with the same fields —
time-of-use periods (critical peak, peak, flat, valley) by season, optionally a whole day in
the valley on some day types, tiers (a monthly energy above a threshold priced at a multiple)
and a maximum-demand or capacity charge with the 105 %/double rule of 发改办价格〔2016〕1583号
(:class:`DemandCharge`). A tariff may carry ``effective_from``/``effective_to``; a park lists a
tariff's versions, and a month is billed at the version in force on its first day.

Detectors price their estimates through :func:`unit_price`; the accounting bills a month with
:func:`monthly_bill` and prices moving load out of the peak with :func:`load_shift_savings`.
Period boundaries are quarter hours of the park's local clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Literal, Self
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from parkwatch import calendar
from parkwatch.quantities import Utility

TARIFF_DIR = Path(__file__).parent / "data" / "tariffs"
QUARTER_MS = 900_000
QUARTERS_PER_DAY = 96
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TouPeriod(StrEnum):
    CRITICAL = "critical"  # 尖峰
    PEAK = "peak"  # 高峰
    FLAT = "flat"  # 平段
    VALLEY = "valley"  # 低谷


PERIODS = list(TouPeriod)  # codes: the index in this list
PERIOD_CODE = {p: i for i, p in enumerate(PERIODS)}


def _quarter(text: str) -> int:
    hours, _, minutes = text.partition(":")
    q = int(hours) * 4 + int(minutes or 0) // 15
    if int(minutes or 0) % 15 or not 0 <= q <= QUARTERS_PER_DAY:
        raise ValueError(f"{text!r}: expected HH:MM on a quarter hour, 00:00 to 24:00")
    return q


class TouWindow(_Model):
    period: TouPeriod
    start: str  # "HH:MM", local clock
    end: str  # "HH:MM"; "24:00" is midnight at the day's end

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not _quarter(self.start) < _quarter(self.end):
            raise ValueError(f"window {self.start}-{self.end}: start must be before end")
        return self


class Season(_Model):
    name: str = ""
    months: list[int] = Field(min_length=1)
    windows: list[TouWindow] = Field(min_length=1)  # together they cover the day exactly

    @model_validator(mode="after")
    def _covers_day(self) -> Self:
        covered = np.zeros(QUARTERS_PER_DAY, np.int64)
        for w in self.windows:
            covered[_quarter(w.start) : _quarter(w.end)] += 1
        if not (covered == 1).all():
            raise ValueError(f"season {self.name!r}: windows must cover 24 h once each")
        if any(not 1 <= m <= 12 for m in self.months):
            raise ValueError(f"season {self.name!r}: months are 1-12")
        return self


class Tier(_Model):
    """Monthly energy above ``above_kwh`` is priced at ``multiplier`` × its period price."""

    above_kwh: float = Field(ge=0)
    multiplier: float = Field(gt=0)


class DemandCharge(_Model):
    """The basic charge of a two-part tariff (两部制), after 发改办价格〔2016〕1583号 [S], as
    transcribed (a quiz page quotes the same wording from 国家电网财〔2016〕633号, S-weak): the
    contract demand (合同最大需量) is billed; "实际最大需量超过合同确定值105%时，超过105%部分的
    基本电费加一倍收取；未超过合同确定值105%的，按合同确定值收取"; a contract demand may not be
    set below 40 % of the transformer capacity plus high-voltage motors. An enterprise without a
    contract demand is billed on the month's measured maximum (no floor: none is sourced).
    ``price_per_kw_month`` is per kW of the billed demand."""

    basis: Literal["demand", "capacity"] = "demand"
    price_per_kw_month: float = Field(default=0.0, ge=0)  # on maximum or contracted demand
    price_per_kva_month: float = Field(default=0.0, ge=0)  # on transformer capacity
    excess_threshold: float = Field(default=1.05, ge=1)  # above contract × this…
    excess_multiplier: float = Field(default=2.0, ge=1)  # …the excess costs this many times
    # what the demand up to the threshold is billed as once the threshold is exceeded. The
    # text says only that the part above 105 % pays double (加一倍: its price once more);
    # "threshold" bills the rest of the measured demand once, up to 105 % of the contract
    # (contract × 1.05 + 2 × excess), "contract" bills the contract only (contract + 2 ×
    # excess). Which one grid companies apply is not verified [U]: set it per tariff.
    excess_base: Literal["threshold", "contract"] = "threshold"
    # the contract demand counts as at least this share of the transformer capacity given
    # (accounting.capacity_kva; 1583号's 40 % [S]; 0: no floor)
    contract_floor_share: float = Field(default=0.4, ge=0, le=1)


class ElectricityTariff(_Model):
    name: str
    description: str = ""
    currency: str = "CNY"
    source: str = ""
    prices: dict[TouPeriod, float]  # per kWh
    seasons: list[Season] = Field(min_length=1)
    light_all_day_on: list[Literal["saturday", "sunday", "holiday"]] = []  # valley all day
    tiers: list[Tier] = []
    demand: DemandCharge | None = None
    # in force from this day (inclusive) to that day (exclusive), on the park's calendar; none:
    # unbounded. A park lists a tariff's versions, each with its dates (Tariffs)
    effective_from: date | None = None
    effective_to: date | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (
            self.effective_from is not None
            and self.effective_to is not None
            and not self.effective_from < self.effective_to
        ):
            raise ValueError(f"tariff {self.name!r}: effective_from must be before effective_to")
        months = sorted(m for s in self.seasons for m in s.months)
        if months != list(range(1, 13)):
            raise ValueError(f"tariff {self.name!r}: seasons must cover each month once")
        used = {w.period for s in self.seasons for w in s.windows}
        if self.light_all_day_on:
            used.add(TouPeriod.VALLEY)
        missing = used - set(self.prices)
        if missing:
            raise ValueError(f"tariff {self.name!r}: no price for {sorted(missing)}")
        return self

    def in_force(self, day: date) -> bool:
        return (self.effective_from is None or self.effective_from <= day) and (
            self.effective_to is None or day < self.effective_to
        )

    @property
    def span(self) -> str:
        a = self.effective_from.isoformat() if self.effective_from else "…"
        b = self.effective_to.isoformat() if self.effective_to else "…"
        return f"{self.name} [{a}, {b})"

    @property
    def table(self) -> npt.NDArray[np.int8]:
        """[month 1-12 → row 0-11, quarter of the day] → period code."""
        return _table(self)


_Windows = tuple[tuple[tuple[int, ...], tuple[tuple[str, str, str], ...]], ...]


@cache
def _table_cached(windows: _Windows) -> npt.NDArray[np.int8]:
    out = np.full((12, QUARTERS_PER_DAY), -1, np.int8)
    for months, wins in windows:
        for period, start, end in wins:
            for m in months:
                out[m - 1, _quarter(start) : _quarter(end)] = PERIOD_CODE[TouPeriod(period)]
    out.setflags(write=False)
    return out


def _table(tariff: ElectricityTariff) -> npt.NDArray[np.int8]:
    key = tuple(
        (tuple(s.months), tuple((w.period.value, w.start, w.end) for w in s.windows))
        for s in tariff.seasons
    )
    return _table_cached(key)


TariffRef = str | ElectricityTariff
# one tariff, or its versions over time (each with effective_from/effective_to)
TariffVersions = TariffRef | list[TariffRef]


class TariffNotInForceError(ValueError):
    """A tariff is configured, but none of its versions is in force on the day asked for."""


def _versions(ref: TariffVersions) -> list[ElectricityTariff]:
    refs = ref if isinstance(ref, list) else [ref]
    return [builtin(r) if isinstance(r, str) else r for r in refs]


def _checked(ref: TariffVersions) -> TariffVersions:
    versions = sorted(_versions(ref), key=lambda v: v.effective_from or date.min)
    for before, after in pairwise(versions):
        if before.effective_to is None or (
            after.effective_from is not None and before.effective_to > after.effective_from
        ):
            raise ValueError(f"tariff versions overlap: {before.span} and {after.span}")
    return ref


class Tariffs(_Model):
    # ¥ per kWh, m³, Nm³, t or GJ; a utility without a price has no cost estimate
    prices: dict[Utility, float] = Field(default_factory=dict)
    # the park's electricity tariff (a built-in name, or inline), or its dated versions
    electricity: TariffVersions | None = None
    enterprises: dict[str, TariffVersions] = Field(default_factory=dict)  # per enterprise

    @field_validator("electricity")
    @classmethod
    def _known(cls, value: TariffVersions | None) -> TariffVersions | None:
        return None if value is None else _checked(value)

    @field_validator("enterprises")
    @classmethod
    def _known_all(cls, value: dict[str, TariffVersions]) -> dict[str, TariffVersions]:
        for ref in value.values():
            _checked(ref)
        return value

    def has_electricity(self, enterprise: str | None = None) -> bool:
        return self.enterprises.get(enterprise or "", self.electricity) is not None

    def electricity_for(
        self, enterprise: str | None = None, on: date | None = None
    ) -> ElectricityTariff | None:
        """The enterprise's (else the park's) electricity tariff in force on ``on`` (default:
        today). None: no tariff at all; :class:`TariffNotInForceError`: none on that day."""
        ref = self.enterprises.get(enterprise or "", self.electricity)
        if ref is None:
            return None
        day = on or date.today()
        versions = _versions(ref)
        for v in versions:
            if v.in_force(day):
                return v
        who = f"enterprise {enterprise!r}" if enterprise in self.enterprises else "the park"
        spans = ", ".join(v.span for v in versions)
        raise TariffNotInForceError(
            f"no electricity tariff of {who} in force on {day.isoformat()} (versions: {spans})"
        )


@cache
def builtin(name: str) -> ElectricityTariff:
    """A tariff shipped in ``parkwatch/data/tariffs/<name>.yaml``."""
    path = TARIFF_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in TARIFF_DIR.glob("*.yaml")))
        raise ValueError(f"unknown tariff {name!r} (built in: {known})")
    with open(path, encoding="utf-8") as fh:
        return ElectricityTariff.model_validate(yaml.safe_load(fh))


def tou_periods(
    tariff: ElectricityTariff, t_ms: npt.NDArray[np.int64], zone: ZoneInfo
) -> npt.NDArray[np.int8]:
    """The period code (index into :data:`PERIODS`) in force at each instant."""
    local = calendar.local_ms(np.asarray(t_ms, np.int64), zone)
    day = local // calendar.DAY_MS
    quarter = (local - day * calendar.DAY_MS) // QUARTER_MS
    months = (day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12).astype(
        np.int64
    )
    codes: npt.NDArray[np.int8] = tariff.table[months, quarter].copy()
    if tariff.light_all_day_on:
        kinds = calendar.day_types(day)
        wanted = {
            "saturday": calendar.SATURDAY,
            "sunday": calendar.SUNDAY,
            "holiday": calendar.HOLIDAY,
        }
        off = np.isin(kinds, [wanted[d] for d in tariff.light_all_day_on])
        codes[off] = PERIOD_CODE[TouPeriod.VALLEY]
    return codes


@dataclass
class Bill:
    """One month of one enterprise's (or meter's) electricity."""

    currency: str
    kwh: dict[TouPeriod, float]
    energy_charge: dict[TouPeriod, float]
    tier_surcharge: float
    max_demand_kw: float | None
    billed_demand_kw: float | None
    demand_charge: float
    total: float
    notes: list[str] = field(default_factory=list)

    @property
    def total_kwh(self) -> float:
        return sum(self.kwh.values())


def monthly_bill(
    tariff: ElectricityTariff,
    kwh_by_period: dict[TouPeriod, float],
    *,
    max_demand_kw: float | None = None,
    contracted_kw: float | None = None,
    capacity_kva: float | None = None,
) -> Bill:
    """Energy by period × price, tiers on the month's total, and the demand charge."""
    kwh = {p: float(kwh_by_period.get(p, 0.0)) for p in PERIODS if p in tariff.prices}
    energy = {p: kwh[p] * tariff.prices[p] for p in kwh}
    total_kwh = sum(kwh.values())
    surcharge = 0.0
    notes: list[str] = []
    if total_kwh > 0:
        mean_price = sum(energy.values()) / total_kwh
        for tier in sorted(tariff.tiers, key=lambda t: t.above_kwh):
            above = max(total_kwh - tier.above_kwh, 0.0)
            # the part above each threshold is priced at its multiple of its own mean price
            surcharge += above * mean_price * (tier.multiplier - 1.0)
    demand_charge = 0.0
    billed: float | None = None
    d = tariff.demand
    if d is not None:
        if d.basis == "capacity":
            if capacity_kva is None:
                notes.append("capacity charge not billed: no transformer capacity given")
            else:
                demand_charge = capacity_kva * d.price_per_kva_month
        elif contracted_kw is not None:
            contract = contracted_kw
            if capacity_kva is not None and capacity_kva * d.contract_floor_share > contract:
                contract = capacity_kva * d.contract_floor_share
                notes.append(
                    f"contract demand {contracted_kw:g} kW below {100 * d.contract_floor_share:g} "
                    f"% of {capacity_kva:g} kVA: billed as {contract:g} kW"
                )
            threshold = d.excess_threshold * contract
            measured = max_demand_kw or 0.0
            if measured > threshold:
                base = threshold if d.excess_base == "threshold" else contract
                billed = base + d.excess_multiplier * (measured - threshold)
            else:
                billed = contract  # up to 105 %, the contract value
            demand_charge = billed * d.price_per_kw_month
        elif max_demand_kw is not None:
            billed = max_demand_kw
            demand_charge = billed * d.price_per_kw_month
        else:
            notes.append("demand charge not billed: no demand measured")
    total = sum(energy.values()) + surcharge + demand_charge
    return Bill(
        tariff.currency,
        kwh,
        energy,
        surcharge,
        max_demand_kw,
        billed,
        demand_charge,
        total,
        notes,
    )


def load_shift_savings(
    tariff: ElectricityTariff, kwh_by_period: dict[TouPeriod, float], share: float = 0.1
) -> float:
    """What moving ``share`` of the critical-peak and peak energy into the valley would have
    saved on energy charges (the demand charge is left as it was)."""
    valley = tariff.prices.get(TouPeriod.VALLEY)
    if valley is None:
        return 0.0
    saved = 0.0
    for p in (TouPeriod.CRITICAL, TouPeriod.PEAK):
        if p in tariff.prices:
            saved += share * kwh_by_period.get(p, 0.0) * (tariff.prices[p] - valley)
    return saved


def unit_price(tariffs: Tariffs, zone: ZoneInfo, utility: Utility, t_ms: int) -> float | None:
    """¥ per unit of ``utility`` at ``t_ms`` under a park's ``tariffs`` on its clock ``zone``
    (None: no price for it). Electricity with a time-of-use tariff in force then costs its
    period's price at that time."""
    if utility is Utility.ELECTRICITY:
        when = np.array([t_ms], np.int64)
        day = calendar.local_ms(when, zone)[0] // calendar.DAY_MS
        try:
            tariff = tariffs.electricity_for(on=date.fromordinal(EPOCH_ORDINAL + int(day)))
        except TariffNotInForceError:
            tariff = None  # the flat price, if the park has one
        if tariff is not None:
            code = int(tou_periods(tariff, when, zone)[0])
            return tariff.prices[PERIODS[code]]
    return tariffs.prices.get(utility)
