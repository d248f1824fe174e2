"""Tariffs as data (periods, bill, load shift) and tce/CO₂ from the dated data files."""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from pydantic import ValidationError

from parkwatch.energy import (
    AccountingOptions,
    CoefficientOverride,
    conversion,
    fuel_factors,
    grid_factor,
    grid_factors,
    kgce,
)
from parkwatch.quantities import Utility
from parkwatch.site import Park
from parkwatch.tariffs import (
    PERIODS,
    DemandCharge,
    ElectricityTariff,
    TariffNotInForceError,
    Tariffs,
    Tier,
    TouPeriod,
    builtin,
    load_shift_savings,
    monthly_bill,
    tou_periods,
    unit_price,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(*args: int) -> int:
    return int(datetime(*args, tzinfo=SHANGHAI).timestamp() * 1000)  # type: ignore[misc]


def test_chongqing_periods_by_season() -> None:
    tariff = builtin("cq-large-industry")
    times = np.array(
        [
            at(2025, 7, 15, 12, 30),  # July, 12-14: critical peak
            at(2025, 6, 15, 12, 30),  # June, 12-14: plain peak
            at(2025, 6, 15, 7, 45),  # valley until 08:00
            at(2025, 6, 15, 8, 0),  # flat from 08:00
            at(2025, 6, 15, 21, 0),  # evening peak 20-22
            at(2025, 6, 15, 23, 59),  # flat 22-24
        ]
    )
    got = [PERIODS[c].value for c in tou_periods(tariff, times, SHANGHAI)]
    assert got == ["critical", "peak", "valley", "flat", "peak", "flat"]


def test_a_tariff_must_cover_the_day_and_the_year() -> None:
    with pytest.raises(ValueError, match="cover 24 h"):
        ElectricityTariff.model_validate(
            {
                "name": "x",
                "prices": {"flat": 1},
                "seasons": [
                    {
                        "months": list(range(1, 13)),
                        "windows": [{"period": "flat", "start": "00:00", "end": "23:00"}],
                    }
                ],
            }
        )
    with pytest.raises(ValueError, match="unknown tariff"):
        Tariffs(electricity="no-such-tariff")


def test_monthly_bill_hand_computed() -> None:
    # prices: critical 1.2, peak 1.0, flat 0.625, valley 0.25 (the built-in Chongqing shape)
    # energy: 1 000 × 1.2 + 10 000 × 1.0 + 8 000 × 0.625 + 6 000 × 0.25
    #       = 1 200 + 10 000 + 5 000 + 1 500 = 17 700
    # demand (发改办价格〔2016〕1583号): contract 100 kW, maximum 110 kW. The 5 kW above
    # 105 % pays double, the demand up to 105 % once: 105 + 2 × 5 = 115 kW × 36.1 = 4 151.5
    tariff = builtin("cq-large-industry")
    kwh = {
        TouPeriod.CRITICAL: 1000.0,
        TouPeriod.PEAK: 10000.0,
        TouPeriod.FLAT: 8000.0,
        TouPeriod.VALLEY: 6000.0,
    }
    bill = monthly_bill(tariff, kwh, max_demand_kw=110.0, contracted_kw=100.0)
    assert sum(bill.energy_charge.values()) == pytest.approx(17_700)
    assert bill.billed_demand_kw == pytest.approx(115.0)
    assert bill.demand_charge == pytest.approx(4_151.5)
    assert bill.total == pytest.approx(21_851.5)
    # within 105 % the contract is billed: 104 kW measured → 100 kW × 36.1
    assert monthly_bill(
        tariff, kwh, max_demand_kw=104.0, contracted_kw=100.0
    ).demand_charge == pytest.approx(3_610.0)
    # moving 10 % of critical and peak into the valley:
    # 100 × (1.2 − 0.25) + 1 000 × (1.0 − 0.25) = 95 + 750 = 845
    assert load_shift_savings(tariff, kwh, 0.1) == pytest.approx(845.0)


def test_tiers_and_capacity_charge() -> None:
    # one flat price 0.5; above 1 000 kWh a month × 1.5: 1 500 kWh → 750 + 500 × 0.5 × 0.5
    # = 750 + 125; capacity 400 kVA × 22.6 = 9 040
    tariff = ElectricityTariff(
        name="t",
        prices={TouPeriod.FLAT: 0.5},
        seasons=[
            {
                "months": list(range(1, 13)),
                "windows": [{"period": "flat", "start": "00:00", "end": "24:00"}],
            }
        ],  # type: ignore[list-item]
        tiers=[Tier(above_kwh=1000, multiplier=1.5)],
        demand=DemandCharge(basis="capacity", price_per_kva_month=22.6),
    )
    bill = monthly_bill(tariff, {TouPeriod.FLAT: 1500.0}, capacity_kva=400.0)
    assert bill.tier_surcharge == pytest.approx(125.0)
    assert bill.demand_charge == pytest.approx(9_040.0)
    assert bill.total == pytest.approx(750 + 125 + 9_040)


def test_two_tiers_each_band_at_its_own_multiple() -> None:
    # flat 0.5; 1 000-2 000 kWh × 1.5, above 2 000 × 2: 2 500 kWh →
    # 1 000 × 0.5 + 1 000 × 0.75 + 500 × 1.0 = 500 + 750 + 500 = 1 750, of which the
    # surcharge is 1 000 × 0.25 + 500 × 0.5 = 250 + 250 = 500 (not 500 × 0.75 more: the
    # energy above 2 000 kWh costs twice the price, not 2.5 times)
    tariff = ElectricityTariff(
        name="t",
        prices={TouPeriod.FLAT: 0.5},
        seasons=[
            {
                "months": list(range(1, 13)),
                "windows": [{"period": "flat", "start": "00:00", "end": "24:00"}],
            }
        ],  # type: ignore[list-item]
        tiers=[Tier(above_kwh=2000, multiplier=2.0), Tier(above_kwh=1000, multiplier=1.5)],
    )
    bill = monthly_bill(tariff, {TouPeriod.FLAT: 2500.0})
    assert bill.tier_surcharge == pytest.approx(500.0)
    assert bill.total == pytest.approx(1_750.0)
    # below the second threshold only the first band: 1 500 kWh → 500 × 0.25 = 125
    assert monthly_bill(tariff, {TouPeriod.FLAT: 1500.0}).tier_surcharge == pytest.approx(125.0)


def _flat(**extra: object) -> ElectricityTariff:
    return ElectricityTariff.model_validate(
        {
            "name": "flat",
            "prices": {"flat": 0.5},
            "seasons": [
                {
                    "months": list(range(1, 13)),
                    "windows": [{"period": "flat", "start": "00:00", "end": "24:00"}],
                }
            ],
            **extra,
        }
    )


def test_demand_charge_follows_1583_105_percent_and_40_percent_floor() -> None:
    # 10 ¥/kW·month, contract 1 000 kW (threshold 1.05 × 1 000 = 1 050 kW)
    tariff = _flat(demand={"price_per_kw_month": 10.0})

    def billed(max_kw: float, **kw: float) -> tuple[float | None, float]:
        b = monthly_bill(tariff, {}, max_demand_kw=max_kw, contracted_kw=1000.0, **kw)
        return b.billed_demand_kw, b.demand_charge

    # below the contract: the contract is billed, 1 000 × 10 = 10 000
    assert billed(800.0) == (1000.0, pytest.approx(10_000.0))
    # up to 105 %: still the contract, 1 050 kW → 1 000 × 10 = 10 000
    assert billed(1050.0) == (1000.0, pytest.approx(10_000.0))
    # 1 200 kW: 1 050 once + (1 200 − 1 050) × 2 = 1 050 + 300 = 1 350 kW × 10 = 13 500
    assert billed(1200.0) == (pytest.approx(1350.0), pytest.approx(13_500.0))
    # 40 % floor: a 1 000 kW contract on 3 150 kVA counts as 0.4 × 3 150 = 1 260 kW;
    # 1 200 kW measured is within 105 % of it (1 323): 1 260 × 10 = 12 600
    got = monthly_bill(tariff, {}, max_demand_kw=1200.0, contracted_kw=1000.0, capacity_kva=3150)
    assert got.billed_demand_kw == pytest.approx(1260.0)
    assert got.demand_charge == pytest.approx(12_600.0)
    assert "40 %" in got.notes[0]
    # the other reading, configurable per tariff: contract + doubled excess,
    # 1 000 + 2 × 150 = 1 300 kW × 10 = 13 000
    other = _flat(demand={"price_per_kw_month": 10.0, "excess_base": "contract"})
    assert monthly_bill(
        other, {}, max_demand_kw=1200.0, contracted_kw=1000.0
    ).demand_charge == pytest.approx(13_000.0)
    # no contract: the month's maximum, 1 200 × 10 = 12 000
    assert monthly_bill(tariff, {}, max_demand_kw=1200.0).demand_charge == pytest.approx(12_000.0)


def test_the_built_in_chongqing_prices_are_labelled_placeholders() -> None:
    tariff = builtin("cq-large-industry")
    assert "placeholder" in tariff.description.lower()
    assert "placeholder" in tariff.source.lower()


def test_a_month_is_billed_at_the_tariff_version_in_force() -> None:
    old = _flat(name="cq-2024", effective_to="2025-01-01")
    new = _flat(name="cq-2025", prices={"flat": 0.6}, effective_from="2025-01-01")
    tariffs = Tariffs(electricity=[old, new], enterprises={"late": [new]})
    assert tariffs.electricity_for(on=date(2024, 12, 1)) == old
    assert tariffs.electricity_for(on=date(2025, 1, 1)) == new
    # the same 1 000 kWh: 1 000 × 0.5 = 500 in December 2024, 1 000 × 0.6 = 600 in January
    dec = monthly_bill(tariffs.electricity_for(on=date(2024, 12, 1)), {TouPeriod.FLAT: 1000.0})
    jan = monthly_bill(tariffs.electricity_for(on=date(2025, 1, 1)), {TouPeriod.FLAT: 1000.0})
    assert (dec.total, jan.total) == (pytest.approx(500.0), pytest.approx(600.0))
    with pytest.raises(TariffNotInForceError, match="enterprise 'late' in force on 2024-06-01"):
        tariffs.electricity_for("late", on=date(2024, 6, 1))
    with pytest.raises(ValueError, match="overlap"):
        Tariffs(electricity=[old, _flat(name="x", effective_from="2024-06-01")])
    # two versions open towards the past both run in 2024: which one bills is not a choice
    # to leave to the list's order
    with pytest.raises(ValueError, match="overlap"):
        Tariffs(electricity=[old, _flat(name="y", effective_to="2026-01-01")])
    with pytest.raises(ValueError, match="effective_from must be before"):
        _flat(effective_from="2025-01-01", effective_to="2025-01-01")


def test_every_published_regional_factor_is_in_the_data() -> None:
    # the 2022 and 2023 columns of MEE/NBS's regional factors (accounting-facts §2, S): a
    # park in East China in 2023 takes 2023's 0.5500, not 2022's 0.5617, and one in South
    # China its region's 0.3869, not the national 0.5366
    published = {
        ("north", 2022): 0.6776,
        ("north", 2023): 0.6361,
        ("northeast", 2022): 0.5564,
        ("northeast", 2023): 0.5122,
        ("east", 2022): 0.5617,
        ("east", 2023): 0.5500,
        ("central", 2022): 0.5395,
        ("central", 2023): 0.5271,
        ("northwest", 2022): 0.5857,
        ("northwest", 2023): 0.5543,
        ("south", 2022): 0.3869,
        ("south", 2023): 0.4042,
        ("southwest", 2022): 0.2268,
        ("southwest", 2023): 0.2472,
    }
    for (region, year), value in published.items():
        f = grid_factor(AccountingOptions(region=region), year)
        assert (f.region, f.data_year, f.value) == (region, year, value)


def test_tce_and_co2_from_the_data_files() -> None:
    options = AccountingOptions()
    # 10 000 kWh at the equal value 0.1229 kgce/kWh = 1 229 kgce; at Chongqing's 2022 factor
    # 0.5227 kg/kWh = 5 227 kg CO₂
    e = conversion(options, Utility.ELECTRICITY, 2022)
    assert e is not None
    assert kgce(e, 10_000, "equal") == pytest.approx(1_229.0)
    assert 10_000 * e.co2_kg == pytest.approx(5_227.0)
    # 1 000 Nm³ of gas: 1 214.3 kgce, 2 162 kg CO₂
    g = conversion(options, Utility.GAS, 2022)
    assert g is not None
    assert kgce(g, 1_000, "equal") == pytest.approx(1_214.3)
    assert 1_000 * g.co2_kg == pytest.approx(2_162.0)
    # water is an energy-carrying medium only when the park says so
    assert conversion(options, Utility.WATER, 2022) is None
    assert conversion(AccountingOptions(water_in_energy=True), Utility.WATER, 2022) is not None


def test_grid_factor_by_year_and_overrides() -> None:
    options = AccountingOptions(region="chongqing")
    assert grid_factor(options, 2022).value == 0.5227
    # 2025: Chongqing's latest published data year (2022) until a newer one is published
    assert grid_factor(options, 2025).id == "mee-2022-chongqing"
    assert grid_factor(AccountingOptions(region="southwest"), 2025).id == "mee-2023-southwest"
    assert grid_factor(AccountingOptions(grid_factor="mee-2022-compliance"), 2025).value == 0.5703
    own = AccountingOptions(
        coefficients={"electricity": CoefficientOverride(equal_value=0.1, co2_kg=0.4)}
    )
    e = conversion(own, Utility.ELECTRICITY, 2022)
    assert e is not None
    assert (e.kgce_equal, e.co2_kg) == (0.1, 0.4)


def test_an_unknown_region_factor_or_carrier_is_refused_when_the_park_loads() -> None:
    # "chongquing" used to take the national factor (0.5366 for 2022, not Chongqing's 0.5227)
    # without a word: every CO₂ figure 2.7 % off. Now park.yaml does not load, and the error
    # lists the regions there are.
    base = {"park": "p", "meters": [{"id": "m", "utility": "electricity"}]}
    with pytest.raises(ValidationError) as region:
        Park.model_validate({**base, "accounting": {"region": "chongquing"}})
    assert "unknown region 'chongquing'" in str(region.value)
    assert "chongqing, compliance, east" in str(region.value)
    with pytest.raises(ValidationError, match="unknown grid factor 'mee-2022-cq'"):
        Park.model_validate({**base, "accounting": {"grid_factor": "mee-2022-cq"}})
    # an override under a misspelt carrier was ignored: the default coefficient stayed
    with pytest.raises(ValidationError, match="unknown carrier 'electric' in coefficients"):
        Park.model_validate({**base, "accounting": {"coefficients": {"electric": {"co2_kg": 0.4}}}})
    assert Park.model_validate({**base, "accounting": {"region": "east"}}).accounting.region == (
        "east"
    )


def test_equivalent_value_per_park_and_per_year() -> None:
    # 等价值 has no sourced yearly series in the data (U): the default 0.3055 for every year,
    # a park's one value, or its values per year (the latest at or before the period's year)
    default = conversion(AccountingOptions(), Utility.ELECTRICITY, 2024)
    assert default is not None
    assert default.kgce_equivalent == 0.3055
    own = AccountingOptions(
        coefficients={
            "electricity": CoefficientOverride(
                equivalent_value=0.30, equivalent_by_year={2021: 0.302, 2023: 0.299}
            )
        }
    )

    def equivalent(options: AccountingOptions, year: int) -> float:
        c = conversion(options, Utility.ELECTRICITY, year)
        assert c is not None
        return c.kgce_equivalent

    # 10 000 kWh in 2022 at 2021's 0.302: 3 020 kgce; in 2024 at 2023's 0.299: 2 990 kgce;
    # 2020, before the first year given: the park's single value 0.30, 3 000 kgce
    assert 10_000 * equivalent(own, 2022) == pytest.approx(3_020.0)
    assert 10_000 * equivalent(own, 2024) == pytest.approx(2_990.0)
    assert 10_000 * equivalent(own, 2020) == pytest.approx(3_000.0)
    only_years = AccountingOptions(
        coefficients={"electricity": CoefficientOverride(equivalent_by_year={2023: 0.299})}
    )
    assert equivalent(only_years, 2020) == 0.299  # before the first: the first, not 0.3055


def test_light_all_day_on_sundays_and_kepco_seasons() -> None:
    seoul = ZoneInfo("Asia/Seoul")
    tariff = builtin("kepco-industrial-2018")

    def period(*args: int) -> str:
        t = int(datetime(*args, tzinfo=seoul).timestamp() * 1000)  # type: ignore[misc]
        return PERIODS[int(tou_periods(tariff, np.array([t]), seoul)[0])].value

    # Monday 2018-01-08 (winter): 17-20 is maximum load; in June 17-23 is medium
    assert period(2018, 1, 8, 18, 0) == "peak"
    assert period(2018, 6, 4, 18, 0) == "flat"
    assert period(2018, 6, 4, 14, 0) == "peak"
    assert period(2018, 6, 4, 23, 30) == "valley"
    # Sunday 2018-01-07: light all day
    assert period(2018, 1, 7, 18, 0) == "valley"


def test_green_certificates_take_off_the_grid_electricity_co2_only() -> None:
    from api.accounting import market_based_co2

    # 100 MWh from the grid at 0.5227 kg/kWh = 52.27 t, and gas 21.62 t: 73.89 t in all.
    # 20 MWh of certificates: 20 × 0.5227 = 10.454 t off → 63.436 t
    assert market_based_co2(73.89, 52.27, 20.0, 0.5227) == pytest.approx(63.436)
    # 200 MWh of certificates cover all 100 MWh bought (at most 52.27 t off): the gas's
    # 21.62 t stay
    assert market_based_co2(73.89, 52.27, 200.0, 0.5227) == pytest.approx(21.62)


def test_only_self_consumed_pv_counts_in_comprehensive_energy() -> None:
    from api.accounting import self_consumed_pv

    # 1 000 kWh generated, 300 kWh fed back through the intake: 700 kWh used on site, which at
    # the equal value is 700 × 0.1229 = 86.03 kgce (not 1 000 × 0.1229 = 122.9)
    used = self_consumed_pv({"e_kwh": 5_000.0, "pv_kwh": 1_000.0, "e_export_kwh": 300.0})
    assert used == pytest.approx(700.0)
    conv = conversion(AccountingOptions(pv_in_energy=True), Utility.ELECTRICITY, 2025)
    assert conv is not None
    assert used * conv.kgce_equal == pytest.approx(86.03)
    # an export larger than the generation (a battery discharging) never makes it negative
    assert self_consumed_pv({"pv_kwh": 100.0, "e_export_kwh": 250.0}) == 0.0
    assert self_consumed_pv({"e_kwh": 10.0}) == 0.0


def test_benchmark_levels_compare_in_their_own_unit() -> None:
    from parkwatch.energy import benchmark_level, benchmarks

    # ethylene's levels are kgoe/t (标杆 590, 基准 640); 1 kgoe = 10 000 / 7 000 kgce, so
    # 800 kgce/t = 800 × 0.7 = 560 kgoe/t: at the benchmark level, not "below 基准" as a
    # comparison of 800 with 640 would say
    value, level = benchmark_level(800.0, benchmarks()["ethylene"])
    assert value == pytest.approx(560.0)
    assert level == "标杆 benchmark"
    # 900 kgce/t = 630 kgoe/t: between 标杆 and 基准
    assert benchmark_level(900.0, benchmarks()["ethylene"])[1] == "基准 to 标杆"
    # clinker is in kgce/t already: 110 is between 100 and 117, 120 above 基准
    assert benchmark_level(110.0, benchmarks()["cement_clinker"]) == (110.0, "基准 to 标杆")
    assert benchmark_level(120.0, benchmarks()["cement_clinker"])[1] == "below 基准 baseline"


def test_the_estimated_share_weighs_energy_by_standard_coal() -> None:
    from api.accounting import estimated_energy_share

    # 1 440 kWh all measured (× 0.1229 = 176.976 kgce) and 2 400 Nm³ of gas of which 240 are
    # estimated (× 1.2143: 2 914.32 kgce, 291.432 estimated): 291.432 / 3 091.296 = 9.43 %.
    # Compressed air (12 000 Nm³, all estimated) is no energy carrier and counts nothing;
    # adding kWh, Nm³ and air as numbers would have said 12 240 / 15 840 = 77 %
    share = estimated_energy_share(
        AccountingOptions(),
        2025,
        {"e_kwh": 1440.0, "gas_nm3": 2400.0, "air_nm3": 12_000.0},
        {"e_kwh": 0.0, "gas_nm3": 240.0, "air_nm3": 12_000.0},
    )
    assert share == pytest.approx(291.432 / 3091.296)
    assert estimated_energy_share(AccountingOptions(), 2025, {}, {}) == 0.0


def test_emission_factors_are_dated_and_their_weak_sources_marked() -> None:
    factors = {f.id: f for f in grid_factors()}
    statuses = {"P", "S", "S-weak", "U"}
    for f in factors.values():
        assert f.status in statuses, f.id
        assert f.published_status in statuses, f.id
        # an announcement's date, to the precision known: YYYY-MM or YYYY-MM-DD
        assert re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", f.published), f.id
        assert f.source, f.id
        assert "accounting-facts" not in f.source, f.id  # a source, not a pointer
    # the 2021 national value has no repost on record: weak, though its announcement is not
    assert factors["mee-2021-national"].status == "S-weak"
    assert factors["mee-2021-national"].published == "2024-04-12"
    # 2026-01-15 is a newspaper's date; the 2023 announcement's own date is unverified
    for fid in ("mee-2023-national", "mee-2023-southwest", "mee-2023-central"):
        assert (factors[fid].published, factors[fid].published_status) == ("2026-01", "U")
    # 环办气候函〔2023〕43号 is of February 2023 (2023-02-15 is a repost's date)
    assert factors["mee-2022-compliance"].published == "2023-02"
    # the fuel factors that are weakly sourced say so
    fuels = fuel_factors()
    assert fuels["heat"]["status"] == "S-weak"
    assert fuels["steam"]["status"] == "U"


def test_unit_price_follows_the_tariff_version_in_force() -> None:
    # the flat 0.5 ¥/kWh version until 2025, 0.6 from 2025-01-01 (park-local days)
    old = _flat(name="v2024", effective_to="2025-01-01")
    new = _flat(name="v2025", prices={"flat": 0.6}, effective_from="2025-01-01")
    park = Park.model_validate(
        {"park": "p", "tariffs": {"electricity": [old, new], "prices": {"electricity": 0.9}}}
    )
    assert unit_price(park.tariffs, park.zone, Utility.ELECTRICITY, at(2024, 12, 31, 23, 59)) == 0.5
    assert unit_price(park.tariffs, park.zone, Utility.ELECTRICITY, at(2025, 1, 1, 0, 0)) == 0.6
    # before any version: the park's flat price
    early = Park.model_validate(
        {"park": "p", "tariffs": {"electricity": [new], "prices": {"electricity": 0.9}}}
    )
    assert unit_price(early.tariffs, early.zone, Utility.ELECTRICITY, at(2024, 6, 1)) == 0.9
