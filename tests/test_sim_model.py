"""The simulated park: a week of the demo park, computed in one block, checked against the
physics and bookkeeping it promises (balances, counters, sun, battery, compressors, calendar)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pytest

from parkwatch import calendar
from parkwatch.quantities import QUANTITIES
from parkwatch.site import Park
from simulators.model import (
    COUNTERS,
    PV_PERFORMANCE_RATIO,
    RHO_C,
    Frame,
    Kind,
    ParkModel,
    clear_sky_ghi,
)

FloatArray = npt.NDArray[np.float64]
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Thursday 26 September 2024: two workdays, a Saturday, a make-up working Sunday (29th), a
# Monday, then the first two days of the National Day holiday
START = int(datetime(2024, 9, 26, tzinfo=SHANGHAI).timestamp() * 1000)
STEP_MS = 60_000
DAYS = 7
SEED = 7


@pytest.fixture(scope="module")
def park(demo_park_path: Path) -> Park:
    return Park.from_yaml(demo_park_path)


@pytest.fixture(scope="module")
def demo_park_path() -> Path:
    return Path(__file__).resolve().parent.parent / "simulators" / "parks" / "demo.yaml"


@pytest.fixture(scope="module")
def times() -> npt.NDArray[np.int64]:
    return START + np.arange(DAYS * 1440, dtype=np.int64) * STEP_MS


@pytest.fixture(scope="module")
def model(park: Park) -> ParkModel:
    return ParkModel(park, SEED)


@pytest.fixture(scope="module")
def week(model: ParkModel, times: npt.NDArray[np.int64]) -> Frame:
    return model.frame(times)


@pytest.fixture(scope="module")
def own(park: Park, times: npt.NDArray[np.int64]) -> FloatArray:
    return ParkModel(park, SEED).own_loads(times)


def series(model: ParkModel, frame: Frame, meter: str, quantity: str) -> FloatArray:
    values: FloatArray = frame.values[:, model.column[(meter, quantity)]]
    return values


def children(park: Park, meter: str) -> list[str]:
    return [m.id for m in park.iter_meters() if m.spec.parent == meter]


def daily(values: FloatArray) -> FloatArray:
    """Mean per local day of a per-minute series starting at local midnight."""
    means: FloatArray = values.reshape(DAYS, 1440).mean(axis=1)
    return means


def test_the_api_the_publisher_uses_still_works(park: Park) -> None:
    model = ParkModel(park, seed=7)
    readings = model.step(START)
    ids = {r["m"] for r in readings}
    assert {"steelco-main", "chemco-water", "park-main"} <= ids
    assert ids == {m.id for m in model.meters}
    assert all(r["t"] == START and r["q"] for r in readings)
    by_gateway = model.step_by_gateway(START + STEP_MS)
    assert sum(len(v) for v in by_gateway.values()) == len(readings)
    gateway = {m.id: m.gateway for m in model.meters}
    for gw, rs in by_gateway.items():
        assert all(gateway[r["m"]] == gw for r in rs)


def test_every_value_is_plausible_for_its_meter(model: ParkModel, week: Frame, park: Park) -> None:
    utility = {m.id: m.utility for m in park.iter_meters()}
    assert np.isfinite(week.values).all()
    for col, (meter, name) in enumerate(model.series):
        q = QUANTITIES[name]
        assert utility[meter] in q.utilities, (meter, name)
        values = week.values[:, col]
        assert values.min() >= q.low, (meter, name)
        assert values.max() <= q.high, (meter, name)
    # the 32-bit registers of the shipped meter profiles hold these counters for years
    vol = [c for c, (_, q) in enumerate(model.series) if q == "vol_m3"]
    assert week.values[:, vol].max() < 4_294_967


def test_electricity_parents_are_their_children_plus_their_own_load(
    model: ParkModel, week: Frame, park: Park, own: FloatArray
) -> None:
    index = {m.id: i for i, m in enumerate(model.meters)}
    parents = [m for m in model.meters if m.utility.value == "electricity" and children(park, m.id)]
    assert len(parents) >= 7
    for parent in parents:
        kids = children(park, parent.id)
        total = series(model, week, parent.id, "p_kw")
        summed = sum(series(model, week, k, "p_kw") for k in kids)
        unmetered = total - summed
        # published values are rounded to 0.001 kW each
        np.testing.assert_allclose(unmetered, own[:, index[parent.id]], atol=0.001 * len(kids))
        assert unmetered.min() > -0.01  # losses and small loads, never negative


def test_water_flows_balance_main_districts_tank_and_sub_meters(
    model: ParkModel, week: Frame, park: Park, own: FloatArray
) -> None:
    flow = {
        m.id: series(model, week, m.id, "flow_m3h")
        for m in model.meters
        if m.utility.value == "water" and m.spec.role != "tank"
    }
    index = {m.id: i for i, m in enumerate(model.meters)}
    districts = [m.id for m in model.meters if m.spec.role == "district"]
    assert len(districts) == 3
    # main = Σ districts + tank in − tank out + trunk losses
    imbalance = (
        flow["park-water-main"]
        - sum(flow[d] for d in districts)
        - flow["park-tank-in"]
        + flow["park-tank-out"]
    )
    np.testing.assert_allclose(imbalance, own[:, index["park-water-main"]], atol=0.004)
    assert 0 < imbalance.mean() < 0.03 * flow["park-water-main"].mean()
    # district = Σ sub-meters + unmetered use
    for d in districts:
        kids = children(park, d)
        unmetered = flow[d] - sum(flow[k] for k in kids)
        np.testing.assert_allclose(unmetered, own[:, index[d]], atol=0.001 * (len(kids) + 1))
        assert unmetered.min() >= -0.002
    # the tank fills at night and drains by day: its level is the integral of both flows
    level = series(model, week, "park-tank", "level_m")
    net = flow["park-tank-in"] - flow["park-tank-out"]
    area = model.layout.tank_area
    stored = np.concatenate([[0.0], np.cumsum((net[1:] + net[:-1]) / 2 / 60)])
    np.testing.assert_allclose(level - level[0], stored / area, atol=0.02)
    assert level.min() >= 0.1 * 6
    assert level.max() <= 0.9 * 6


def test_counters_integrate_the_published_values_with_the_trapezoid(
    model: ParkModel, week: Frame
) -> None:
    hours = np.diff(week.t_ms) / 3_600_000
    checked = 0
    for col, (meter, name) in enumerate(model.series):
        if name not in COUNTERS:
            continue
        source, factor, part = COUNTERS[name]
        rate = series(model, week, meter, source)
        if part > 0:
            rate = np.maximum(rate, 0)
        elif part < 0:
            rate = np.maximum(-rate, 0)
        expected = (rate[1:] + rate[:-1]) / 2 * hours * factor
        counter = week.values[:, col]
        np.testing.assert_allclose(np.diff(counter), expected, rtol=0, atol=1e-6)
        assert counter[0] > 0  # installed meters show a history
        checked += 1
    assert checked >= 40


def test_pv_is_zero_at_night_and_follows_the_clear_sky(model: ParkModel, week: Frame) -> None:
    clear = clear_sky_ghi(week.t_ms, *model.location)
    night = clear == 0
    assert 0.3 < night.mean() < 0.7
    for pv, kwp in (("steelco-pv", 1500), ("elecco-pv", 800), ("autoparts-pv", 1000)):
        p = series(model, week, pv, "p_kw")
        assert (p[night] == 0).all()
        assert (p <= 0).all()  # generation flows out of the PV meter
        bound = kwp * clear / 1000 * PV_PERFORMANCE_RATIO * 1.02 + 0.001
        assert (-p <= bound).all()
        export = series(model, week, pv, "e_export_kwh")
        assert export[-1] > export[0]
    # on the sunniest day the output has the clear-sky shape
    p = -series(model, week, "steelco-pv", "p_kw").reshape(DAYS, 1440)
    shape = clear.reshape(DAYS, 1440)
    ratio = p.sum(axis=1) / (shape.sum(axis=1) * 1.5 * PV_PERFORMANCE_RATIO)
    sunniest = int(np.argmax(ratio))
    assert ratio[sunniest] > 0.85
    assert np.corrcoef(p[sunniest], shape[sunniest])[0, 1] > 0.97
    # the weather station sees the same sky
    irr = series(model, week, "park-weather", "irr_wm2")
    assert (irr[night] == 0).all()
    assert (irr <= clear + 0.1).all()


def test_battery_charges_in_the_valley_and_discharges_at_peaks(
    model: ParkModel, week: Frame
) -> None:
    soc = series(model, week, "elecco-bess", "soc_pct")
    p = series(model, week, "elecco-bess", "p_kw")
    assert soc.min() >= 0
    assert soc.max() <= 100
    assert soc.max() - soc.min() > 50
    rising = np.diff(soc) > 0.01
    falling = np.diff(soc) < -0.01
    assert (p[:-1][rising] > 0).all()  # charging draws power (sampled as the interval starts)
    assert (p[:-1][falling] < 0).all()  # discharging gives it back
    local_hour = (week.t_ms - START) % 86_400_000 // 3_600_000
    assert (p[(local_hour >= 1) & (local_hour < 5)] > 0).all()  # the night valley
    assert (p[(local_hour >= 10) & (local_hour < 12)] < 0).all()  # the morning peak
    assert abs(p).max() <= 500


def test_compressors_cycle_between_load_and_unload(model: ParkModel, week: Frame) -> None:
    rated = 160.0
    trim = series(model, week, "steelco-c2", "p_kw")
    loaded = trim > 0.9 * rated
    unloaded = (trim > 0.2 * rated) & (trim < 0.35 * rated)
    assert loaded.mean() > 0.05
    assert unloaded.mean() > 0.05
    assert (loaded | unloaded | (trim == 0)).all()
    assert np.count_nonzero(np.diff(loaded.astype(int)) == 1) > 7 * 24  # many cycles a day
    # a loaded compressor delivers air, an unloaded one none
    air = series(model, week, "steelco-c2-air", "flow_nm3h")
    assert (air[unloaded] == 0).all()
    assert (air[loaded] > 1000).all()
    # the header carries what the compressors deliver; its pressure swings with the cycle
    header = series(model, week, "steelco-air-header", "flow_nm3h")
    outputs = sum(series(model, week, f"steelco-c{k}-air", "flow_nm3h") for k in (1, 2, 3))
    np.testing.assert_allclose(header, outputs, atol=0.003)
    pressure = series(model, week, "steelco-air-header", "p_bar")
    assert pressure.min() > 6.1
    assert pressure.max() < 7.6
    assert pressure.std() > 0.1
    # the compressor house meter adds its compressors up
    house = series(model, week, "steelco-air", "p_kw")
    motors = sum(series(model, week, f"steelco-c{k}", "p_kw") for k in (1, 2, 3))
    assert ((house - motors) > -0.005).all()


def test_boiler_and_heat_meters_are_consistent(model: ParkModel, week: Frame) -> None:
    steam = series(model, week, "chemco-boiler", "steam_th")
    gas = series(model, week, "chemco-boiler-gas", "flow_nm3h")
    flue = series(model, week, "chemco-boiler", "t_flue_c")
    assert flue.min() > 100
    assert flue.max() < 170
    # ~77 Nm³ of gas per tonne of steam at 92 % efficiency
    np.testing.assert_allclose(gas / steam, 2550 / (35.9 * 0.92), rtol=0.002)
    for meter in ("steelco-heat", "foodco-heat", "chemco-steam-heat"):
        heat = series(model, week, meter, "heat_kw")
        flow = series(model, week, meter, "flow_m3h")
        spread = series(model, week, meter, "t_supply_c") - series(model, week, meter, "t_return_c")
        assert (spread > 0).all()
        np.testing.assert_allclose(heat, RHO_C * flow * spread, rtol=0.01, atol=1.0)


def test_day_shift_industries_follow_the_calendar(model: ParkModel, week: Frame) -> None:
    press = daily(series(model, week, "autoparts-press", "p_kw"))
    thu, fri, sat, sun_makeup, mon, oct1, oct2 = press
    assert sat < 0.8 * thu  # a short Saturday shift
    assert oct1 < 0.4 * thu
    assert oct2 < 0.4 * thu
    assert sun_makeup > 0.85 * thu  # 29 September 2024 was worked (调休)
    assert abs(fri - thu) < 0.15 * thu
    assert abs(mon - thu) < 0.15 * thu
    # a continuous chemical plant barely notices
    reactors = daily(series(model, week, "chemco-reactors", "p_kw"))
    assert reactors[5] > 0.85 * reactors[0]
    # the shift shows within the day: auto parts run 08-20
    p = series(model, week, "autoparts-press", "p_kw").reshape(DAYS, 1440)
    assert p[0, 10 * 60 : 11 * 60].mean() > 3 * p[0, 2 * 60 : 3 * 60].mean()


def test_calendar_knows_the_holidays_and_make_up_days() -> None:
    days = np.array(
        [
            calendar.day_number(date(2024, 10, 1)),  # National Day
            calendar.day_number(date(2024, 9, 29)),  # make-up Sunday
            calendar.day_number(date(2024, 9, 28)),  # Saturday
            calendar.day_number(date(2024, 9, 22)),  # Sunday
            calendar.day_number(date(2025, 1, 28)),  # Spring Festival eve
            calendar.day_number(date(2026, 2, 14)),  # make-up Saturday
        ]
    )
    assert calendar.day_types(days).tolist() == [
        calendar.HOLIDAY,
        calendar.WORKDAY,
        calendar.SATURDAY,
        calendar.SUNDAY,
        calendar.HOLIDAY,
        calendar.WORKDAY,
    ]
    assert calendar.holiday_name(date(2026, 2, 17)) == "春节 Spring Festival"
    assert calendar.is_workday(date(2024, 9, 30))
    assert calendar.festival(np.array([calendar.day_number(date(2025, 2, 8))]))[0]


def test_deterministic_for_a_seed(park: Park, week: Frame) -> None:
    times = week.t_ms[:600]
    again = ParkModel(park, SEED).frame(times)
    np.testing.assert_array_equal(again.values, week.values[:600])
    other = ParkModel(park, SEED + 1).frame(times)
    assert not np.array_equal(other.values, again.values)
    # stepping one timestamp at a time gives the very same floats as a block
    stepper = ParkModel(park, SEED)
    stepped = np.vstack([stepper.frame(times[k : k + 1]).values for k in range(40)])
    np.testing.assert_array_equal(stepped, week.values[:40])


def test_roles_become_behaviours(model: ParkModel) -> None:
    kinds = {m.id: Kind(int(k)) for m, k in zip(model.meters, model.layout.kind, strict=True)}
    assert kinds["steelco-pv"] is Kind.PV
    assert kinds["elecco-bess"] is Kind.BATTERY
    assert kinds["steelco-c1"] is Kind.COMPRESSOR
    assert kinds["steelco-c1-air"] is Kind.COMPRESSOR_AIR
    assert kinds["autoparts-air"] is Kind.AIR_HEADER
    assert kinds["chemco-boiler"] is Kind.BOILER
    assert kinds["chemco-boiler-gas"] is Kind.BOILER_GAS
    assert kinds["park-tank"] is Kind.TANK_LEVEL
    assert kinds["water-d1"] is Kind.PARENT
