"""The accounting's API: consumption, tce, CO₂, intensity, targets, bills and reports, per
enterprise and per park, all read from the rollups the analytics service writes.

``/parks/{park}/accounting/…``:

* ``consumption``: the stored rollups (hour, day, month, year; meter, workshop, enterprise,
  park), with completeness and the estimated part;
* ``summary``: one month or year per enterprise and for the park — consumption per utility,
  tce (equal and equivalent value, GB/T 2589), CO₂ (location-based; market-based after green
  certificates), PV, electricity's share of final energy, intensity per ¥10 000 of value added
  and per unit of product with the 标杆/基准 benchmark levels, land output intensity;
* ``balance``: each parent meter against its children (losses and unmetered use);
* ``targets``: a year's energy and water intensity against the 2020 baseline and the
  −14.5 % / −15 % targets;
* ``bill``: an enterprise's month recomputed from the hourly rollups and the 15-minute demand
  under its tariff, and what moving load out of the peak would have saved;
* ``figures`` (POST, JSON or CSV): value added, production, green certificates, baseline
  figures; ``meters/{meter}/replacements`` (POST): a meter exchange with its readings;
* ``report`` (in :mod:`api.reports`): the monthly report as CSV, HTML or PDF, in Chinese or
  English;
* ``factors``: the coefficients and emission factors in force, with their sources.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from api.common import EARLIEST, LATEST, State, StateDep, _in_store_range, _park, _query, shown
from parkwatch.energy import (
    FIGURES_MEASUREMENT,
    REPLACEMENT_MEASUREMENT,
    ROLLUP_MEASUREMENTS,
    AccountingOptions,
    CoefficientOverride,
    benchmark_level,
    benchmarks,
    coefficients,
    conversion,
    grid_factor,
)
from parkwatch.influx import InfluxError, InfluxQueryError, InfluxWriter, quote_ident
from parkwatch.influx import quote_string as qs
from parkwatch.lineprotocol import encode_point
from parkwatch.quantities import Utility
from parkwatch.site import Park
from parkwatch.tariffs import (
    PERIODS,
    Bill,
    TariffNotInForceError,
    TouPeriod,
    load_shift_savings,
    monthly_bill,
    tou_periods,
)

router = APIRouter(prefix="/parks/{park}", tags=["accounting"])

PeriodName = Literal["hour", "day", "month", "year"]
LevelName = Literal["meter", "workshop", "enterprise", "zone", "park"]
ENERGY_QUANTITIES = {
    "e_kwh": Utility.ELECTRICITY,
    "gas_nm3": Utility.GAS,
    "steam_t": Utility.STEAM,
    "heat_gj": Utility.HEAT,
    "vol_m3": Utility.WATER,
}


def _key(utility: str, quantity: str) -> str:
    """A summary's consumption key: the quantity, or for Nm³ the utility's (gas and compressed
    air share the counter's name, and only gas is an energy carrier)."""
    return f"{utility}_nm3" if quantity == "vol_nm3" else quantity


FigureKind = Literal[
    "value_added_cny",  # industrial value added, current prices
    "value_added_2020_cny",  # the same at comparable 2020 prices
    "production",  # output of a product (``product``, ``unit``)
    "green_certificates_mwh",  # green electricity certificates surrendered
    "energy_tce",  # comprehensive energy (baseline years the platform did not measure)
    "water_m3",  # water (idem)
]


def _rp(state: State) -> str:
    rp = state.settings.rollup_retention_policy
    return "" if rp is None else f"{quote_ident(rp)}."


def _checked_year(year: int) -> int:
    # a year InfluxDB cannot hold would be refused by it ("overflowed duration"): a 422 here
    if not EARLIEST.year < year < LATEST.year:
        raise HTTPException(422, f"year {year}: expected {EARLIEST.year + 1}..{LATEST.year - 1}")
    return year


def _month_bounds(park: Park, month: str) -> tuple[int, int]:
    try:
        first = datetime.strptime(month, "%Y-%m").replace(tzinfo=park.zone)
    except ValueError:
        raise HTTPException(422, f"month={month[:16]!r}: expected YYYY-MM") from None
    _checked_year(first.year)
    nxt = (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    )
    return int(first.timestamp() * 1000), int(nxt.timestamp() * 1000)


def _year_bounds(park: Park, year: int) -> tuple[int, int]:
    a = datetime(_checked_year(year), 1, 1, tzinfo=park.zone)
    b = datetime(year + 1, 1, 1, tzinfo=park.zone)
    return int(a.timestamp() * 1000), int(b.timestamp() * 1000)


# --- consumption ---------------------------------------------------------------------------


class RollupPoint(BaseModel):
    time: datetime
    value: float
    completeness: float
    estimated: float
    kgce: float | None = None
    co2_kg: float | None = None


class RollupSeries(BaseModel):
    level: str
    id: str
    utility: str
    quantity: str
    points: list[RollupPoint]


async def _rollups(
    state: State, park: Park, period: str, start_ms: int, end_ms: int, where: dict[str, str]
) -> list[tuple[dict[str, str], list[dict[str, Any]]]]:
    clause = "".join(f" AND {quote_ident(k)} = {qs(v)}" for k, v in where.items())
    try:
        series = await _query(
            state,
            f"SELECT * FROM {_rp(state)}{quote_ident(ROLLUP_MEASUREMENTS[period])} "
            f"WHERE park = {qs(park.park)}{clause} AND time >= {start_ms}ms AND time < {end_ms}ms "
            "GROUP BY level, id, utility, quantity",
        )
    except InfluxQueryError as exc:
        if "retention policy not found" not in str(exc):
            raise
        return []  # the rollup job has not run yet: there are no rollups to show
    return [(s.tags, s.records()) for s in series]


def _known(state: State, park: Park, level: str, id: str) -> None:
    """An id the park does not have is a 404, not an empty answer that reads as no data."""
    known: dict[str, set[str]] = {
        "enterprise": {e.id for e in park.enterprises},
        "zone": {z.id for z in park.zones},
        "park": {park.park},
    }
    if level == "meter":
        if state.registry.meter(park.park, id) is None:
            raise HTTPException(404, f"unknown meter {shown(id)} in park {park.park!r}")
    elif level in known and id not in known[level]:
        raise HTTPException(404, f"unknown {level} {shown(id)} in park {park.park!r}")


@router.get("/accounting/consumption")
async def consumption(
    state: StateDep,
    park: str,
    period: PeriodName = "day",
    level: LevelName = "enterprise",
    id: str | None = None,
    quantity: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[RollupSeries]:
    """Stored rollups; times are the periods' local starts."""
    p = _park(state, park)
    now = datetime.now(tz=p.zone)
    end_at = _in_store_range("end", end.replace(tzinfo=end.tzinfo or p.zone) if end else now)
    start_at = _in_store_range(
        "start",
        start.replace(tzinfo=start.tzinfo or p.zone)
        if start
        else end_at.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
    )
    if start_at >= end_at:
        raise HTTPException(422, "start must be before end")
    if period == "hour" and (end_at - start_at).days > 93:
        raise HTTPException(422, "hourly rollups for at most 93 days: use period=day")
    where: dict[str, str] = {"level": level}
    if id is not None:
        _known(state, p, level, id)
        where["id"] = id
    if quantity is not None:
        where["quantity"] = quantity
    found = await _rollups(
        state, p, period, int(start_at.timestamp() * 1000), int(end_at.timestamp() * 1000), where
    )
    return [
        RollupSeries(
            level=tags.get("level", ""),
            id=tags.get("id", ""),
            utility=tags.get("utility", ""),
            quantity=tags.get("quantity", ""),
            points=[
                RollupPoint(
                    time=datetime.fromtimestamp(int(r["time"]) / 1000, tz=p.zone),
                    value=float(r["value"]),
                    completeness=float(r.get("completeness") or 0.0),
                    estimated=float(r.get("estimated") or 0.0),
                    kgce=r.get("kgce"),
                    co2_kg=r.get("co2_kg"),
                )
                for r in records
                if r.get("value") is not None
            ],
        )
        for tags, records in found
    ]


# --- figures and replacements ----------------------------------------------------------------


class Figure(BaseModel):
    enterprise: str  # an enterprise id, or "park"
    kind: FigureKind
    period: str = Field(description="YYYY (a year) or YYYY-MM (a month)")
    value: float
    product: str = ""  # production: the product, e.g. a benchmark key such as cement_clinker
    unit: str = ""


def _period_start(park: Park, period: str) -> int:
    try:
        if len(period) == 4:
            return _year_bounds(park, int(period))[0]
        return _month_bounds(park, period)[0]
    except ValueError:
        raise HTTPException(422, f"period={period[:16]!r}: expected YYYY or YYYY-MM") from None


def _figure_line(park: Park, f: Figure) -> str:
    if f.enterprise != "park" and f.enterprise not in {e.id for e in park.enterprises}:
        raise HTTPException(422, f"unknown enterprise {shown(f.enterprise)}")
    span = "year" if len(f.period) == 4 else "month"
    tags = {"park": park.park, "enterprise": f.enterprise, "kind": f.kind, "span": span}
    if f.product:
        tags["product"] = f.product
    fields: dict[str, float | int | str | bool] = {"value": float(f.value)}
    if f.unit:
        fields["unit"] = f.unit
    return encode_point(FIGURES_MEASUREMENT, tags, fields, _period_start(park, f.period))


async def _write(state: State, lines: list[str]) -> None:
    try:
        async with InfluxWriter(state.settings.influx, flush_interval_s=0.05, max_retry_s=10) as w:
            await w.write(lines)
    except InfluxError as exc:
        raise HTTPException(503, f"database: {exc}") from exc


@router.post("/accounting/figures", status_code=201)
async def post_figures(state: StateDep, park: str, figures: list[Figure]) -> dict[str, int]:
    """Value added, production, green certificates or baseline figures, as JSON."""
    p = _park(state, park)
    await _write(state, [_figure_line(p, f) for f in figures])
    return {"stored": len(figures)}


@router.post("/accounting/figures.csv", status_code=201)
async def post_figures_csv(state: StateDep, park: str, request: Request) -> dict[str, int]:
    """The same from a CSV with the header ``enterprise,kind,period,value,product,unit``."""
    p = _park(state, park)
    text = (await request.body()).decode("utf-8-sig")
    figures = []
    for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            figures.append(
                Figure.model_validate({k: v for k, v in row.items() if v not in (None, "")})
            )
        except ValueError as exc:
            raise HTTPException(422, f"line {line}: {exc}") from None
    await _write(state, [_figure_line(p, f) for f in figures])
    return {"stored": len(figures)}


class ReplacementIn(BaseModel):
    time: datetime
    old_final: float = Field(ge=0)
    new_initial: float = Field(ge=0)
    quantity: str | None = None  # default: the meter's consumption counter


@router.post("/meters/{meter}/replacements", status_code=201)
async def post_replacement(
    state: StateDep, park: str, meter: str, body: ReplacementIn
) -> dict[str, str]:
    """A meter exchange: the old meter's final and the new one's initial reading. The
    accounting then counts the exchange exactly instead of estimating it; the rollup job's
    next run recomputes the hours around it, however long ago it was (up to
    ``replacement_lookback_s``, 400 days)."""
    p = _park(state, park)
    m = state.registry.meter(park, meter)
    if m is None:
        raise HTTPException(404, f"unknown meter {shown(meter)}")
    counter = {
        Utility.ELECTRICITY: "e_kwh",
        Utility.WATER: "vol_m3",
        Utility.GAS: "vol_nm3",
        Utility.AIR: "vol_nm3",
        Utility.STEAM: "steam_t",
        Utility.HEAT: "heat_gj",
    }.get(m.utility)
    quantity = body.quantity or counter
    if quantity is None:
        raise HTTPException(422, f"meter {meter!r} has no counter")
    # the counters the accounting reads for this meter: another name would be stored and never
    # applied
    counters = {counter, "e_export_kwh" if m.utility is Utility.ELECTRICITY else counter}
    if quantity not in counters:
        raise HTTPException(
            422, f"quantity {shown(quantity)}: meter {meter!r} counts {sorted(map(str, counters))}"
        )
    t = _in_store_range("time", body.time if body.time.tzinfo else body.time.replace(tzinfo=p.zone))
    line = encode_point(
        REPLACEMENT_MEASUREMENT,
        {"park": park, "meter": meter, "quantity": quantity},
        {"old_final": body.old_final, "new_initial": body.new_initial},
        int(t.timestamp() * 1000),
    )
    await _write(state, [line])
    return {"meter": meter, "quantity": quantity, "time": t.isoformat()}


async def _figures(state: State, park: Park, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    series = await _query(
        state,
        f"SELECT * FROM {quote_ident(FIGURES_MEASUREMENT)} WHERE park = {qs(park.park)} "
        f"AND time >= {start_ms}ms AND time < {end_ms}ms GROUP BY enterprise, kind, product, span",
    )
    out = []
    for s in series:
        for r in s.records():
            out.append({**s.tags, **r})
    return out


def entered(
    figures: list[dict[str, Any]],
    owner: str,
    kind: str,
    span: str,
    a: int,
    b: int,
    *,
    product: str | None = None,
    allocate_days: tuple[float, int] | None = None,
) -> tuple[float | None, str]:
    """An entered figure for the period [a, b) of ``span`` ("month" or "year"), from the
    figures of the period's whole year, and where it comes from.

    A month takes its own figure; without one, a yearly figure only where ``allocate_days``
    (the month's days, the year's) is given — value added, which is a yearly statistic, is
    allocated to the month pro rata of days and labelled so. A year takes its yearly figure,
    else the sum of its monthly ones (saying how many months were entered)."""
    mine = [
        f
        for f in figures
        if f.get("enterprise") == owner
        and f.get("kind") == kind
        and (product is None or (f.get("product") or "") == product)
        and f.get("value") is not None
    ]
    monthly = [float(f["value"]) for f in mine if f.get("span") == "month" and a <= f["time"] < b]
    yearly = [float(f["value"]) for f in mine if f.get("span") == "year" and a <= f["time"] < b]
    if span == "month":
        if monthly:
            return sum(monthly), "entered for the month"
        year_figures = [float(f["value"]) for f in mine if f.get("span") == "year"]
        if year_figures and allocate_days is not None:
            days, year_days = allocate_days
            return (
                sum(year_figures) * days / year_days,
                f"entered for the year, allocated pro rata of days ({days:g}/{year_days})",
            )
        return None, "none"
    if yearly:
        return sum(yearly), "entered for the year"
    if monthly:
        months = len({f["time"] for f in mine if f.get("span") == "month"})
        return sum(monthly), f"entered for {months} of 12 months, summed"
    return None, "none"


# --- the summary -----------------------------------------------------------------------------


class SubjectSummary(BaseModel):
    id: str  # enterprise id, or the park's
    level: Literal["enterprise", "park"]
    name: str
    # quantity → value: e_kwh, e_export_kwh, pv_kwh, vol_m3, gas_nm3, air_nm3, steam_t, heat_gj
    consumption: dict[str, float]
    completeness: float  # the least complete of its quantities
    estimated_share: float
    tce_equal: float
    tce_equivalent: float
    co2_t: float  # location-based (grid factor × grid import + fuels)
    co2_t_market: float  # after green certificates
    electricity_share: float | None  # electricity in final energy (equal value)
    value_added_cny: float | None
    value_added_source: str
    tce_per_10k_cny: float | None
    water_m3_per_10k_cny: float | None
    products: list[dict[str, Any]] = []  # per product: amount, kgce per unit, benchmark level
    land_cny_per_mu: float | None = None
    tce_per_mu: float | None = None


class Summary(BaseModel):
    park: str
    period: str
    start: datetime
    end: datetime
    convention: str
    grid_factor: dict[str, Any]
    subjects: list[SubjectSummary]
    # electricity's kgce per kWh in both conventions, as applied, with how well each is
    # sourced (the 等价值 is unverified unless the park sets its own): the report prints it
    electricity_kgce: dict[str, Any] = {}


def _parse_period(park: Park, period: str) -> tuple[str, int, int, int]:
    if len(period) == 4 and period.isdigit():
        a, b = _year_bounds(park, int(period))
        return "year", a, b, int(period)
    a, b = _month_bounds(park, period)
    return "month", a, b, int(period[:4])


@dataclass
class _Acc:
    consumption: dict[str, float] = field(default_factory=dict)
    completeness: float = 1.0
    estimated: dict[str, float] = field(default_factory=dict)  # per quantity, as consumption


def self_consumed_pv(consumption: dict[str, float]) -> float:
    """The PV generation used inside the subject: generated (``pv_kwh``) less what its intake
    meters fed back to the grid (``e_export_kwh``). Exported PV is someone else's energy, so
    only this part may count in comprehensive energy (``pv_in_energy``)."""
    generated = consumption.get("pv_kwh", 0.0)
    return max(generated - consumption.get("e_export_kwh", 0.0), 0.0)


def market_based_co2(
    co2_t: float, electricity_co2_t: float, green_mwh: float, grid_kg: float
) -> float:
    """CO₂ after green certificates: their MWh at the grid factor come off the grid
    electricity's CO₂ only — certificates beyond the electricity bought never take a fuel's
    emissions away."""
    return co2_t - min(max(green_mwh, 0.0) * grid_kg, electricity_co2_t)  # MWh × kg/kWh = t


def estimated_energy_share(
    options: AccountingOptions,
    year: int,
    consumption: dict[str, float],
    estimated: dict[str, float],
) -> float:
    """The estimated part of the subject's energy, weighted by standard coal: kWh, Nm³ and
    tonnes cannot be added, so each quantity's estimate counts at its kgce per unit."""
    total = part = 0.0
    for q, utility in ENERGY_QUANTITIES.items():
        conv = conversion(options, utility, year)
        if conv is None:
            continue
        total += consumption.get(q, 0.0) * conv.kgce_equal
        part += estimated.get(q, 0.0) * conv.kgce_equal
    return part / total if total > 0 else 0.0


async def summarize(state: State, park: Park, period: str) -> Summary:
    span, a, b, year = _parse_period(park, period)
    options = park.accounting
    found = await _rollups(state, park, span, a, b, {})
    acc: dict[tuple[str, str], _Acc] = {}
    for tags, records in found:
        level = tags.get("level", "")
        if level not in ("enterprise", "park"):
            continue
        key = (level, tags.get("id", ""))
        x = acc.setdefault(key, _Acc())
        q = _key(tags.get("utility", ""), tags.get("quantity", ""))
        for r in records:
            if r.get("value") is None:
                continue
            x.consumption[q] = x.consumption.get(q, 0.0) + float(r["value"])
            x.completeness = min(x.completeness, float(r.get("completeness") or 0.0))
            x.estimated[q] = x.estimated.get(q, 0.0) + float(r.get("estimated") or 0.0)
    # the whole year's figures: a month may take a share of a yearly figure (value added)
    figures = await _figures(state, park, *_year_bounds(park, year))
    factor = grid_factor(options, year)
    electricity = conversion(options, Utility.ELECTRICITY, year)
    # the factor actually applied: the published one, or the park's override
    grid_kg = electricity.co2_kg if electricity is not None else factor.value
    overridden = electricity is not None and electricity.co2_source == "park override"
    days = (b - a) / 86_400_000
    days_in_year = (date(year + 1, 1, 1) - date(year, 1, 1)).days
    subjects: list[SubjectSummary] = []
    names = {e.id: e.name or e.id for e in park.enterprises}
    keys = [("enterprise", e.id) for e in park.enterprises] + [("park", park.park)]
    for level, sid in keys:
        x = acc.get((level, sid), _Acc(completeness=0.0))
        owner = sid if level == "enterprise" else "park"
        mine = [f for f in figures if f.get("enterprise") == owner]
        tce_equal = tce_equiv = co2 = 0.0
        electricity_tce = electricity_co2 = 0.0
        for q, utility in ENERGY_QUANTITIES.items():
            amount = x.consumption.get(q, 0.0)
            conv = conversion(options, utility, year)
            if conv is None or amount == 0:
                continue
            tce_equal += amount * conv.kgce_equal / 1000
            tce_equiv += amount * conv.kgce_equivalent / 1000
            co2 += amount * conv.co2_kg / 1000
            if utility is Utility.ELECTRICITY:
                electricity_tce = amount * conv.kgce_equal / 1000
                electricity_co2 = amount * conv.co2_kg / 1000
        pv = self_consumed_pv(x.consumption)
        if options.pv_in_energy and pv:
            e = conversion(options, Utility.ELECTRICITY, year)
            if e is not None:
                tce_equal += pv * e.kgce_equal / 1000
                tce_equiv += pv * e.kgce_equal / 1000
                electricity_tce += pv * e.kgce_equal / 1000
        green = entered(figures, owner, "green_certificates_mwh", span, a, b)[0] or 0.0
        co2_market = market_based_co2(co2, electricity_co2, green, grid_kg)
        va, va_source = _value_added(park, level, sid, figures, span, a, b, days, days_in_year)
        # intensities in the park's convention (products stay at the equal value, in which the
        # 标杆/基准 levels are set)
        tce = tce_equal if options.convention == "equal" else tce_equiv
        water = x.consumption.get("vol_m3", 0.0)
        products = []
        names_of_products = sorted(
            {f.get("product") or "" for f in mine if f.get("kind") == "production"}
        )
        for product in names_of_products:
            # production is not allocated: a yearly figure gives a yearly intensity only
            made, _ = entered(figures, owner, "production", span, a, b, product=product)
            if not made:
                continue
            unit = next(
                (f.get("unit") or "" for f in mine if (f.get("product") or "") == product), ""
            )
            per_unit = tce_equal * 1000 / made
            entry: dict[str, Any] = {
                "product": product,
                "amount": made,
                "unit": unit,
                "kgce_per_unit": per_unit,
            }
            bench = benchmarks().get(product)
            if bench is not None:
                entry["benchmark"] = bench["benchmark"]
                entry["baseline"] = bench["baseline"]
                entry["benchmark_unit"] = bench["unit"]
                entry["per_unit_in_benchmark_unit"], entry["level"] = benchmark_level(
                    per_unit, bench
                )
            products.append(entry)
        subjects.append(
            SubjectSummary(
                id=sid,
                level=level,
                name=names.get(sid, park.name or sid),
                consumption=x.consumption,
                completeness=x.completeness if x.consumption else 0.0,
                estimated_share=estimated_energy_share(options, year, x.consumption, x.estimated),
                tce_equal=tce_equal,
                tce_equivalent=tce_equiv,
                co2_t=co2,
                co2_t_market=co2_market,
                electricity_share=electricity_tce / tce_equal if tce_equal else None,
                value_added_cny=va,
                value_added_source=va_source,
                tce_per_10k_cny=tce / (va / 1e4) if va else None,
                water_m3_per_10k_cny=water / (va / 1e4) if va and water else None,
                products=products,
                land_cny_per_mu=(va / options.area_mu)
                if level == "park" and va and options.area_mu
                else None,
                tce_per_mu=(tce / options.area_mu) if level == "park" and options.area_mu else None,
            )
        )
    return Summary(
        park=park.park,
        period=period,
        start=datetime.fromtimestamp(a / 1000, tz=park.zone),
        end=datetime.fromtimestamp(b / 1000, tz=park.zone),
        convention=options.convention,
        grid_factor={
            "id": "park override" if overridden else factor.id,
            "kg_per_kwh": grid_kg,
            "data_year": None if overridden else factor.data_year,
            "document": "accounting.coefficients in park.yaml" if overridden else factor.document,
            "status": "park" if overridden else factor.status,
            "published": None if overridden else factor.published,
            "source": "park.yaml" if overridden else factor.source,
        },
        subjects=subjects,
        electricity_kgce=_electricity_kgce(options, year),
    )


def _electricity_kgce(options: AccountingOptions, year: int) -> dict[str, Any]:
    """Electricity's coefficients in ``year`` in both conventions, each with its status: the
    data file's, or ``park`` where park.yaml overrides it."""
    e = conversion(options, Utility.ELECTRICITY, year)
    if e is None:
        return {}
    c = coefficients()["electricity"]
    own = options.coefficients.get("electricity", CoefficientOverride())
    return {
        "convention": options.convention,
        "equal": e.kgce_equal,
        "equal_status": "park" if own.equal_value is not None else c.status,
        "equivalent": e.kgce_equivalent,
        "equivalent_status": "park"
        if own.equivalent_for(year) is not None
        else c.equivalent_status,
    }


def _value_added(
    park: Park,
    level: str,
    sid: str,
    figures: list[dict[str, Any]],
    span: str,
    a: int,
    b: int,
    days: float,
    year_days: int,
) -> tuple[float | None, str]:
    """An enterprise's value added in the period: entered figures (a month without its own
    takes its year's, allocated pro rata of days), else its yearly figure in park.yaml prorated
    by days; the park's: its own entered figure, else its enterprises'."""

    def enterprise(e_id: str) -> tuple[float | None, str]:
        got = entered(figures, e_id, "value_added_cny", span, a, b, allocate_days=(days, year_days))
        if got[0] is not None:
            return got
        yearly = next((e.value_added_cny for e in park.enterprises if e.id == e_id), None)
        if yearly is None:
            return None, "none"
        return yearly * days / year_days, "park.yaml, yearly, prorated by days"

    if level == "enterprise":
        return enterprise(sid)
    own = entered(figures, "park", "value_added_cny", span, a, b, allocate_days=(days, year_days))
    if own[0] is not None:
        return own
    parts = [enterprise(e.id) for e in park.enterprises]
    known = [v for v, _ in parts if v is not None]
    if not known:
        return None, "none"
    sources = sorted({src for v, src in parts if v is not None})
    return sum(known), "sum of enterprises: " + "; ".join(sources)


@router.get("/accounting/summary")
async def summary(
    state: StateDep,
    park: str,
    period: Annotated[str, Query(description="YYYY-MM (a month) or YYYY (a year)")],
) -> Summary:
    return await summarize(state, _park(state, park), period)


# --- targets ---------------------------------------------------------------------------------


class TargetOut(BaseModel):
    subject: str
    year: int
    baseline_year: int
    energy_intensity: float | None  # tce per ¥10 000 (comparable prices when entered)
    baseline_energy_intensity: float | None
    energy_change: float | None
    energy_target: float
    energy_on_track: bool | None
    water_intensity: float | None
    baseline_water_intensity: float | None
    water_change: float | None
    water_target: float
    water_on_track: bool | None
    prices: str
    # where each baseline figure comes from: "entered …", "measured …" (the platform's own
    # rollups of the baseline year) or why there is none
    baseline_sources: dict[str, str] = {}


def _baseline_value_added(
    park: Park, owner: str, figures: list[dict[str, Any]], a: int, b: int
) -> tuple[float | None, str]:
    """The baseline year's value added: entered for the subject (current or comparable prices
    are the same in the base year), or for the park the sum of every enterprise's."""

    def own(who: str) -> tuple[float | None, str]:
        for kind in ("value_added_2020_cny", "value_added_cny"):
            got = entered(figures, who, kind, "year", a, b)
            if got[0] is not None:
                return got
        return None, "none"

    got = own(owner)
    if got[0] is not None or owner != "park":
        return got
    parts = [own(e.id) for e in park.enterprises]
    if park.enterprises and all(v is not None for v, _ in parts):
        return sum(v or 0.0 for v, _ in parts), "entered for every enterprise, summed"
    return None, "none"


def _in_convention(options: AccountingOptions, subject: SubjectSummary) -> float:
    """The subject's comprehensive energy in the park's electricity convention."""
    return subject.tce_equal if options.convention == "equal" else subject.tce_equivalent


def _baseline_measure(
    entered_value: tuple[float | None, str],
    measured: float | None,
    completeness: float,
    minimum: float,
    year: int,
) -> tuple[float | None, str]:
    """An entered baseline figure overrides the measured one; a measured one counts only when
    its rollups cover at least ``minimum`` of the year."""
    if entered_value[0] is not None:
        return entered_value
    if measured is None:
        return None, "none: not entered, not measured"
    share = f"{100 * completeness:.1f} %"
    if completeness < minimum:
        return None, f"none: measured {year} covers {share} of the year (< {100 * minimum:g} %)"
    return measured, f"measured (rollups of {year}, {share} complete)"


@router.get("/accounting/targets")
async def targets(
    state: StateDep, park: str, year: int, enterprise: str | None = None
) -> TargetOut:
    """Energy and water per value added against the baseline year (2020: −14.5 % and −15 %
    by 2025). Uses value added at comparable 2020 prices where entered. The baseline year's
    energy and water are the entered figures, else what the platform measured that year (its
    rollups, when complete enough); its value added is entered. ``baseline_sources`` says
    which was used."""
    p = _park(state, park)
    _checked_year(year)  # before the summary, whose own check names its period
    options = p.accounting
    owner = enterprise or "park"
    level, sid = ("enterprise", enterprise) if enterprise else ("park", p.park)
    now = await summarize(state, p, str(year))
    subject = next((s for s in now.subjects if s.id == sid and s.level == level), None)
    if subject is None:
        raise HTTPException(404, f"unknown enterprise {shown(enterprise)}")
    a, b = _year_bounds(p, year)
    figs = await _figures(state, p, a, b)
    comparable, _ = entered(figs, owner, "value_added_2020_cny", "year", a, b)
    va = comparable if comparable is not None else subject.value_added_cny
    prices = "comparable 2020 prices" if comparable is not None else "current prices"
    base_year = options.baseline_year
    ba, bb = _year_bounds(p, base_year)
    base_figs = await _figures(state, p, ba, bb)
    then = await summarize(state, p, str(base_year))
    base = next(s for s in then.subjects if s.id == sid and s.level == level)
    measured = bool(base.consumption)
    base_va, va_source = _baseline_value_added(p, owner, base_figs, ba, bb)
    base_energy, energy_source = _baseline_measure(
        entered(base_figs, owner, "energy_tce", "year", ba, bb),
        _in_convention(options, base) if measured else None,
        base.completeness,
        options.baseline_min_completeness,
        base_year,
    )
    base_water, water_source = _baseline_measure(
        entered(base_figs, owner, "water_m3", "year", ba, bb),
        base.consumption.get("vol_m3") if measured else None,
        base.completeness,
        options.baseline_min_completeness,
        base_year,
    )
    ei = _in_convention(options, subject) / (va / 1e4) if va else None
    wi = subject.consumption.get("vol_m3", 0.0) / (va / 1e4) if va else None
    bei = base_energy / (base_va / 1e4) if base_energy is not None and base_va else None
    bwi = base_water / (base_va / 1e4) if base_water is not None and base_va else None
    e_change = ei / bei - 1 if ei is not None and bei else None
    w_change = wi / bwi - 1 if wi is not None and bwi else None
    # on track: at least the target's share for the years elapsed of the five-year plan
    elapsed = min(max(year - base_year, 0) / 5, 1.0)
    return TargetOut(
        subject=sid,
        year=year,
        baseline_year=base_year,
        energy_intensity=ei,
        baseline_energy_intensity=bei,
        energy_change=e_change,
        energy_target=options.energy_target,
        energy_on_track=None if e_change is None else e_change <= options.energy_target * elapsed,
        water_intensity=wi,
        baseline_water_intensity=bwi,
        water_change=w_change,
        water_target=options.water_target,
        water_on_track=None if w_change is None else w_change <= options.water_target * elapsed,
        prices=prices,
        baseline_sources={
            "energy": energy_source,
            "water": water_source,
            "value_added": va_source,
        },
    )


# --- the bill --------------------------------------------------------------------------------


class BillOut(BaseModel):
    enterprise: str
    month: str
    tariff: str
    tariff_source: str  # with how well its prices are sourced (placeholders say so)
    currency: str
    kwh: dict[str, float]
    energy_charge: dict[str, float]
    tier_surcharge: float
    max_demand_kw: float | None
    contracted_kw: float | None
    billed_demand_kw: float | None
    demand_charge: float
    total: float
    shift_share: float
    shift_savings: float
    completeness: float
    notes: list[str]


async def compute_bill(
    state: State, park: Park, enterprise: str, month: str, share: float = 0.1
) -> BillOut:
    ent = next((e for e in park.enterprises if e.id == enterprise), None)
    if ent is None:
        raise HTTPException(404, f"unknown enterprise {shown(enterprise)}")
    a, b = _month_bounds(park, month)
    first = datetime.fromtimestamp(a / 1000, tz=park.zone).date()
    try:
        # the version in force on the month's first day bills the whole month
        tariff = park.tariffs.electricity_for(enterprise, on=first)
    except TariffNotInForceError as exc:
        raise HTTPException(422, f"{exc}: add a tariff version for {month}") from None
    if tariff is None:
        raise HTTPException(
            404, f"no electricity tariff for {shown(enterprise)} (tariffs.electricity)"
        )
    found = await _rollups(
        state, park, "hour", a, b, {"level": "enterprise", "id": enterprise, "quantity": "e_kwh"}
    )
    t: list[int] = []
    v: list[float] = []
    completeness = 1.0
    for _, records in found:
        for r in records:
            if r.get("value") is not None:
                t.append(int(r["time"]))
                v.append(float(r["value"]))
                completeness = min(completeness, float(r.get("completeness") or 0.0))
    hours = (b - a) / 3_600_000
    completeness = completeness * len(t) / hours if t else 0.0
    by_period: dict[TouPeriod, float] = {}
    notes: list[str] = []
    if t:
        codes = tou_periods(tariff, np.array(t, np.int64), park.zone)
        values = np.array(v)
        for c in np.unique(codes).tolist():
            by_period[PERIODS[c]] = float(values[codes == c].sum())
        if any(
            w.start[-2:] != "00" or w.end[-2:] != "00" for s in tariff.seasons for w in s.windows
        ):
            notes.append("the tariff has periods off the hour: hours are billed by their start")
    if completeness < 1:
        # the energy charges are for the hours measured: a partial month says so
        notes.append(
            f"readings cover {100 * completeness:.1f} % of the month's hours: the energy "
            "charges are for the hours measured"
        )
    last = datetime.fromtimestamp(b / 1000 - 1, tz=park.zone).date()
    if not tariff.in_force(last):
        notes.append(f"tariff {tariff.span} ends within the month: billed at it throughout")
    max_kw = await _max_demand(state, park, enterprise, a, b)
    contracted = ent.contracted_demand_kw
    bill: Bill = monthly_bill(
        tariff,
        by_period,
        max_demand_kw=max_kw,
        contracted_kw=contracted,
        capacity_kva=park.accounting.capacity_kva.get(enterprise),
    )
    return BillOut(
        enterprise=enterprise,
        month=month,
        tariff=tariff.name,
        tariff_source=tariff.source,
        currency=tariff.currency,
        kwh={p.value: x for p, x in bill.kwh.items()},
        energy_charge={p.value: x for p, x in bill.energy_charge.items()},
        tier_surcharge=bill.tier_surcharge,
        max_demand_kw=max_kw,
        contracted_kw=contracted,
        billed_demand_kw=bill.billed_demand_kw,
        demand_charge=bill.demand_charge,
        total=bill.total,
        shift_share=share,
        shift_savings=load_shift_savings(tariff, by_period, share),
        completeness=completeness,
        notes=notes + bill.notes,
    )


async def _max_demand(state: State, park: Park, enterprise: str, a: int, b: int) -> float | None:
    """The month's maximum 15-minute demand of the enterprise: the sum over its top
    electricity meters of the ``demand_15m`` blocks analytics writes, at each block."""
    meters = park.tree.of_enterprise(enterprise, Utility.ELECTRICITY)
    ids = {m.id for m in meters}
    # real meters only, none measured by another one here: a virtual net meter (main - pv)
    # beside its main would count the same load twice
    top = [
        m.id
        for m in meters
        if m.role is None and not m.is_virtual and not park.tree.covering(m.id) & ids
    ]
    if not top:
        return None
    series = await _query(
        state,
        f'SELECT "p_kw_avg" FROM "demand_15m" WHERE park = {qs(park.park)} '
        f"AND time >= {a}ms AND time < {b}ms GROUP BY meter",
    )
    total: dict[int, float] = {}
    for s in series:
        if s.tags.get("meter") not in top:
            continue
        for t, kw in s.values:
            if kw is not None:
                total[int(t)] = total.get(int(t), 0.0) + float(kw)
    return max(total.values()) if total else None


@router.get("/accounting/bill")
async def bill(
    state: StateDep,
    park: str,
    enterprise: str,
    month: str,
    shift_share: Annotated[float, Query(ge=0, le=1)] = 0.1,  # of the peak energy moved
) -> BillOut:
    return await compute_bill(state, _park(state, park), enterprise, month, shift_share)


# --- balances ---------------------------------------------------------------------------------


class BalanceOut(BaseModel):
    meter: str
    utility: str
    quantity: str
    value: float  # the parent meter's consumption (electricity: net of export)
    children: dict[str, float]  # each child meter's, the same way
    losses: float  # parent − Σ children: losses and unmetered consumers
    loss_share: float | None
    completeness: float  # the least complete of the parent and its children


@router.get("/accounting/balance")
async def balance(
    state: StateDep,
    park: str,
    period: Annotated[str, Query(description="YYYY-MM (a month) or YYYY (a year)")],
) -> list[BalanceOut]:
    """Each parent meter of the balance trees against its children over a month or year:
    what the children do not account for is the branch's losses and unmetered use.
    Electricity is balanced net (import − export), so PV and batteries below a meter count
    with their sign."""
    p = _park(state, park)
    span, a, b, _ = _parse_period(p, period)
    found = await _rollups(state, p, span, a, b, {"level": "meter"})
    net: dict[str, float] = {}
    complete: dict[str, float] = {}
    quantity_of: dict[str, str] = {}
    sign = {"e_export_kwh": -1.0, "pv_kwh": -1.0}
    for tags, records in found:
        mid, q = tags.get("id", ""), tags.get("quantity", "")
        known = [r for r in records if r.get("value") is not None]
        if not known:
            continue
        net[mid] = net.get(mid, 0.0) + sign.get(q, 1.0) * sum(float(r["value"]) for r in known)
        lowest = min(float(r.get("completeness") or 0.0) for r in known)
        complete[mid] = min(complete.get(mid, 1.0), lowest)
        if q not in sign:
            quantity_of[mid] = q
    out: list[BalanceOut] = []
    for meter in p.tree.meters.values():
        if meter.id not in net:
            continue
        kids = {
            c.id: net[c.id] for c in p.tree.children(meter.id) if c.id in net and not c.is_virtual
        }
        if not kids:
            continue
        value = net[meter.id]
        losses = value - sum(kids.values())
        out.append(
            BalanceOut(
                meter=meter.id,
                utility=meter.utility.value,
                quantity=quantity_of.get(meter.id, ""),
                value=value,
                children=kids,
                losses=losses,
                loss_share=losses / value if value else None,
                completeness=min([complete[meter.id], *(complete[k] for k in kids)]),
            )
        )
    return out


# --- factors -----------------------------------------------------------------------------------


@router.get("/accounting/factors")
async def factors(state: StateDep, park: str, year: int | None = None) -> dict[str, Any]:
    """The coefficients and emission factors the accounting uses, with their sources."""
    p = _park(state, park)
    y = year or datetime.now(tz=p.zone).year
    out: dict[str, Any] = {"year": y, "convention": p.accounting.convention, "utilities": {}}
    g = grid_factor(p.accounting, y)
    # the published factor for the year, with its status and date (a park override, if any,
    # shows in utilities.electricity.co2_source)
    out["grid_factor"] = {
        "id": g.id,
        "kg_per_kwh": g.value,
        "data_year": g.data_year,
        "published": g.published,
        "published_status": g.published_status,
        "document": g.document,
        "status": g.status,
        "source": g.source,
    }
    for utility in Utility:
        conv = conversion(p.accounting, utility, y)
        if conv is not None:
            c = coefficients()[conv.carrier]
            out["utilities"][utility.value] = {
                "carrier": conv.carrier,
                "unit": conv.unit,
                "kgce_equal": conv.kgce_equal,
                "kgce_equivalent": conv.kgce_equivalent,
                "co2_kg": conv.co2_kg,
                "co2_source": conv.co2_source,
                "coefficient_status": c.status,
                "coefficient_source": c.source,
            }
    return out
