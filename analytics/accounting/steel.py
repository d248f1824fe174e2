"""The steel plant's half year, accounted end to end.

``../shared/datasets/steel/steel_2018_h1.csv`` (DAEWOO Steel, Gwangyang, Korea; the UCI "Steel
Industry Energy Consumption" data): one row per 15 minutes with the interval's ``Usage_kWh``,
stamped at the interval's **end** on the plant's clock (Asia/Seoul). The row stamped 00:00 is
dated with the day it closes, not the day it opens (``01/01/2018 00:00`` follows
``01/01/2018 23:45``), so it is moved a day on.

The interval energy is turned into the cumulative register a meter would show and goes
through the same code as a live park: counters → hourly consumption → local days → months;
15-minute demand for the maximum demand; time-of-use periods from the tariff data
(``kepco-industrial-2018``) for the bill, and their agreement with the dataset's own
``Load_Type`` (Light → valley, Medium → flat, Maximum → peak).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from analytics.accounting.consumption import consumption
from analytics.accounting.rollup import Period, Rolled, coarser, local_edges
from parkwatch.energy import AccountingOptions, conversion, kgce
from parkwatch.quantities import Utility
from parkwatch.tariffs import (
    PERIOD_CODE,
    PERIODS,
    ElectricityTariff,
    TouPeriod,
    builtin,
    load_shift_savings,
    monthly_bill,
    tou_periods,
)

DEFAULT_CSV = Path("../shared/datasets/steel/steel_2018_h1.csv")
ZONE = ZoneInfo("Asia/Seoul")
QUARTER_MS = 900_000
LOAD_TYPE_PERIOD = {
    "Light_Load": TouPeriod.VALLEY,
    "Medium_Load": TouPeriod.FLAT,
    "Maximum_Load": TouPeriod.PEAK,
}


@dataclass
class SteelData:
    end_ms: npt.NDArray[np.int64]  # each interval's end
    kwh: npt.NDArray[np.float64]
    co2_t: npt.NDArray[np.float64]  # the dataset's own CO2 column
    load_type: npt.NDArray[np.int8]  # period code of the dataset's Load_Type


def read_steel(path: Path = DEFAULT_CSV) -> SteelData:
    ends: list[int] = []
    kwh: list[float] = []
    co2: list[float] = []
    load: list[int] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            stamp = datetime.strptime(row["date"], "%d/%m/%Y %H:%M").replace(tzinfo=ZONE)
            if stamp.hour == 0 and stamp.minute == 0:
                stamp += timedelta(days=1)  # the midnight that closes the dated day
            ends.append(int(stamp.timestamp() * 1000))
            kwh.append(float(row["Usage_kWh"]))
            co2.append(float(row["CO2(tCO2)"]))
            load.append(PERIOD_CODE[LOAD_TYPE_PERIOD[row["Load_Type"]]])
    order = np.argsort(np.array(ends), kind="stable")
    return SteelData(
        np.array(ends, np.int64)[order],
        np.array(kwh)[order],
        np.array(co2)[order],
        np.array(load, np.int8)[order],
    )


@dataclass
class SteelMonth:
    month: str
    kwh: float
    direct_kwh: float  # Σ Usage_kWh of the month's rows, for the check
    completeness: float
    kgce_equal: float
    kgce_equivalent: float
    co2_t_dataset_factor: float
    co2_t_dataset_column: float
    co2_t_chongqing: float
    max_demand_kw: float
    kwh_by_period: dict[str, float]
    bill: float
    energy_charge: float
    demand_charge: float
    shift_savings_10pct: float


@dataclass
class SteelResult:
    tariff: str
    currency: str
    months: list[SteelMonth]
    agreement: dict[str, Any] = field(default_factory=dict)
    dataset_factor_kg_per_kwh: float = 0.0
    chongqing_factor: str = ""

    def totals(self) -> dict[str, float]:
        keys = ("kwh", "kgce_equal", "co2_t_dataset_factor", "bill")
        return {k: float(sum(getattr(m, k) for m in self.months)) for k in keys}


def account_steel(path: Path = DEFAULT_CSV, tariff: ElectricityTariff | None = None) -> SteelResult:
    tariff = tariff or builtin("kepco-industrial-2018")
    data = read_steel(path)
    # the register a meter would show: 0 at the first interval's start
    t = np.r_[data.end_ms[0] - QUARTER_MS, data.end_ms]
    register = np.r_[0.0, np.cumsum(data.kwh)]
    series = np.zeros(t.size, np.int64)
    start, end = int(t[0]), int(t[-1])
    hours = local_edges(start, end, ZONE, Period.HOUR)
    hourly_c = consumption(series, t, register, hours, 1, max_gap_ms=QUARTER_MS)
    hourly = Rolled(hours, hourly_c.value, hourly_c.completeness, hourly_c.estimated)
    days = coarser(hourly, local_edges(start, end, ZONE, Period.DAY))
    month_edges = local_edges(start, end, ZONE, Period.MONTH)
    months = coarser(days, month_edges)
    # 15-minute intervals: demand and time-of-use
    quarters = np.arange(start, end + 1, QUARTER_MS, dtype=np.int64)
    q = consumption(series, t, register, quarters, 1, max_gap_ms=QUARTER_MS).value[0]
    periods = tou_periods(tariff, quarters[:-1], ZONE)
    month_of = np.searchsorted(month_edges, quarters[:-1], side="right") - 1

    options = AccountingOptions(region="chongqing")
    factor_dataset = float(data.co2_t.sum() * 1000 / data.kwh.sum())
    out: list[SteelMonth] = []
    cq_id = ""
    for m in range(month_edges.size - 1):
        mine = month_of == m
        label = datetime.fromtimestamp(month_edges[m] / 1000, tz=ZONE).strftime("%Y-%m")
        by_period = {
            PERIODS[c]: float(np.nansum(q[mine & (periods == c)])) for c in range(len(PERIODS))
        }
        by_period = {p: v for p, v in by_period.items() if p in tariff.prices}
        max_kw = float(np.nanmax(q[mine]) * 4)
        bill = monthly_bill(tariff, by_period, max_demand_kw=max_kw)
        year = int(label[:4])
        conv = conversion(options, Utility.ELECTRICITY, year)
        assert conv is not None
        cq_id = conv.co2_source
        kwh = float(months.value[0, m])
        in_month = (data.end_ms > month_edges[m]) & (data.end_ms <= month_edges[m + 1])
        out.append(
            SteelMonth(
                month=label,
                kwh=kwh,
                direct_kwh=float(data.kwh[in_month].sum()),
                completeness=float(months.completeness[0, m]),
                kgce_equal=kgce(conv, kwh, "equal"),
                kgce_equivalent=kgce(conv, kwh, "equivalent"),
                co2_t_dataset_factor=kwh * factor_dataset / 1000,
                co2_t_dataset_column=float(data.co2_t[in_month].sum()),
                co2_t_chongqing=kwh * conv.co2_kg / 1000,
                max_demand_kw=max_kw,
                kwh_by_period={p.value: v for p, v in by_period.items()},
                bill=bill.total,
                energy_charge=sum(bill.energy_charge.values()),
                demand_charge=bill.demand_charge,
                shift_savings_10pct=load_shift_savings(tariff, by_period, 0.1),
            )
        )
    return SteelResult(
        tariff.name,
        tariff.currency,
        out,
        agreement(data, tariff),
        factor_dataset,
        cq_id,
    )


def agreement(data: SteelData, tariff: ElectricityTariff) -> dict[str, Any]:
    """How often the tariff's period for an interval is the dataset's Load_Type."""
    starts = data.end_ms - QUARTER_MS
    ours = tou_periods(tariff, starts, ZONE)
    every_day = tou_periods(tariff.model_copy(update={"light_all_day_on": []}), starts, ZONE)
    local_day = (starts + 9 * 3_600_000) // 86_400_000  # Asia/Seoul: UTC+9, no DST in 2018
    # a day the plant ran: the dataset marks some interval of it above light load
    light = PERIOD_CODE[TouPeriod.VALLEY]
    busy_days = np.unique(local_day[data.load_type != light])
    working = np.isin(local_day, busy_days)
    match = ours == data.load_type
    match_every = every_day == data.load_type
    return {
        "intervals": int(data.kwh.size),
        "with_tariff_rules": float(match.mean()),
        "periods_every_day": float(match_every.mean()),
        "working_days": int(busy_days.size),
        "days": int(np.unique(local_day).size),
        "on_working_days_every_day_periods": float(match_every[working].mean()),
        "on_days_off_every_day_periods": float(match_every[~working].mean())
        if (~working).any()
        else 1.0,
    }


def format_table(result: SteelResult) -> str:
    """The README's table (Markdown)."""
    head = (
        "| month | kWh | tce (equal value) | t CO₂ (dataset factor) | max demand kW "
        f"| valley / flat / peak kWh | bill {result.currency} | 10 % peak → valley saves |\n"
        "|---|---:|---:|---:|---:|---|---:|---:|\n"
    )
    rows = []
    for m in result.months:
        p = m.kwh_by_period
        rows.append(
            f"| {m.month} | {m.kwh:,.0f} | {m.kgce_equal / 1000:,.2f} | "
            f"{m.co2_t_dataset_factor:,.1f} | {m.max_demand_kw:,.1f} | "
            f"{p.get('valley', 0):,.0f} / {p.get('flat', 0):,.0f} / {p.get('peak', 0):,.0f} | "
            f"{m.bill:,.0f} | {m.shift_savings_10pct:,.0f} |"
        )
    return head + "\n".join(rows)
