"""The accounting API against a real InfluxDB, over rollups the job wrote: bill, summary,
figures, targets, reports (CSV, HTML, PDF; zh and en), replacements."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest

from analytics.accounting.job import RollupConfig, RollupJob, ensure_retention
from api.app import create_app
from api.settings import ApiSettings
from parkwatch.influx import InfluxReader, InfluxWriter
from parkwatch.lineprotocol import encode_point
from parkwatch.settings import InfluxSettings
from parkwatch.site import Park, SiteRegistry
from parkwatch.tariffs import builtin
from tests.support import serve

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SHANGHAI = ZoneInfo("Asia/Shanghai")
H = 3_600_000
TCE = 0.176976 + 2.91432  # the day's electricity and gas in tce (equal value)
DAY = int(datetime(2025, 7, 15, tzinfo=SHANGHAI).timestamp() * 1000)  # a July day: 尖峰 applies
PARK = {
    "park": "bill",
    "name": "计费园区",
    "tariffs": {"electricity": "cq-large-industry"},
    "accounting": {"region": "chongqing", "area_mu": 100},
    "meters": [{"id": "main", "utility": "electricity"}],
    "enterprises": [
        {
            "id": "ent-a",
            "name": "甲企业",
            "value_added_cny": 365_000_000,
            "contracted_demand_kw": 100,
            "workshops": [
                {
                    "id": "w",
                    "meters": [
                        {"id": "a-main", "utility": "electricity", "parent": "main"},
                        {"id": "a-gas", "utility": "gas"},
                        {"id": "a-air", "utility": "air"},
                    ],
                }
            ],
        }
    ],
}


@pytest.fixture
async def client(
    influx_settings: InfluxSettings, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    # a test may ask for the park with another electricity convention (indirect parameter)
    convention = getattr(request, "param", "equal")
    park = Park.model_validate(
        {**PARK, "accounting": {**PARK["accounting"], "convention": convention}}  # type: ignore[dict-item]
    )
    t = np.arange(DAY, DAY + 24 * H + 1, 5 * 60_000)
    lines = []
    # ent-a's intake draws 60 kWh an hour; the park's main 2 % more (its losses)
    for meter, rate in (("a-main", 60.0), ("main", 61.2)):
        tags = {"park": "bill", "enterprise": "x", "meter": meter}
        lines += [
            encode_point(
                "electricity", tags, {"e_kwh": float(5000.0 + rate * (ti - DAY) / H)}, int(ti)
            )
            for ti in t
        ]
    # 100 Nm³/h of natural gas and 500 Nm³/h of compressed air (made from the electricity)
    for meter, utility, rate in (("a-gas", "gas", 100.0), ("a-air", "air", 500.0)):
        tags = {"park": "bill", "enterprise": "ent-a", "meter": meter}
        lines += [
            encode_point(utility, tags, {"vol_nm3": float(rate * (ti - DAY) / H)}, int(ti))
            for ti in t
        ]
    # 15-minute demand: 60 kW, one block of 110 kW
    for k in range(96):
        kw = 110.0 if k == 50 else 60.0
        lines.append(
            encode_point(
                "demand_15m",
                {"park": "bill", "meter": "a-main"},
                {"p_kw_avg": kw},
                DAY + k * 900_000,
            )
        )
    config = RollupConfig(recent_s=26 * 3600)
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
        await ensure_retention(reader, config)
        async with InfluxWriter(influx_settings) as raw:
            await raw.write(lines)
        async with InfluxWriter(influx_settings, retention_policy="rollups") as out:
            await RollupJob(park, reader, out, config).run(DAY + 24 * H)
    app = create_app(ApiSettings(influx=influx_settings), SiteRegistry([park]))
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as c:
        yield c


async def test_bill_summary_figures_targets_and_reports(client: httpx.AsyncClient) -> None:
    # 60 kWh every hour of 2025-07-15. July periods: valley 0-8 (480), flat 8-11, 17-20,
    # 22-24 (480), peak 11-12, 14-17, 20-22 (360), critical 12-14 (120): 1 440 kWh.
    # energy: 120 × 1.2 + 360 × 1.0 + 480 × 0.625 + 480 × 0.25 = 144 + 360 + 300 + 120 = 924
    # demand: 110 kW against 100 contracted (1583号): 105 once + 2 × (110 − 105) = 115 kW
    # × 36.1 = 4 151.5
    bill = (
        await client.get(
            "/parks/bill/accounting/bill", params={"enterprise": "ent-a", "month": "2025-07"}
        )
    ).json()
    assert bill["kwh"] == pytest.approx({"critical": 120, "peak": 360, "flat": 480, "valley": 480})
    assert sum(bill["energy_charge"].values()) == pytest.approx(924.0)
    assert bill["max_demand_kw"] == 110.0
    assert bill["demand_charge"] == pytest.approx(4_151.5)
    assert bill["total"] == pytest.approx(5_075.5)
    assert "placeholder" in bill["tariff_source"]
    # 10 % of critical and peak into the valley: 12 × 0.95 + 36 × 0.75 = 11.4 + 27 = 38.4
    assert bill["shift_savings"] == pytest.approx(38.4)
    # one day of July's 744 hours is measured: the bill says so, and so does the report
    coverage = "readings cover 3.2 % of the month's hours"
    assert any(note.startswith(coverage) for note in bill["notes"])
    sheet = await client.get(
        "/parks/bill/accounting/report",
        params={"month": "2025-07", "enterprise": "ent-a", "format": "csv", "lang": "en"},
    )
    assert coverage in sheet.content.decode("utf-8-sig")

    summary = (
        await client.get("/parks/bill/accounting/summary", params={"period": "2025-07"})
    ).json()
    ent = next(s for s in summary["subjects"] if s["id"] == "ent-a")
    assert ent["consumption"]["e_kwh"] == pytest.approx(1440.0)
    # gas and compressed air are both Nm³, kept apart: only gas is an energy carrier
    assert ent["consumption"]["gas_nm3"] == pytest.approx(2400.0)
    assert ent["consumption"]["air_nm3"] == pytest.approx(12000.0)
    # electricity: 1 440 kWh × 0.1229 = 176.976 kgce, × 0.5227 = 752.688 kg CO₂
    # gas: 2 400 Nm³ × 1.2143 = 2 914.32 kgce, × 2.162 = 5 188.8 kg CO₂
    assert ent["tce_equal"] == pytest.approx(TCE)
    assert ent["co2_t"] == pytest.approx(0.752688 + 5.1888)
    assert ent["electricity_share"] == pytest.approx(0.176976 / TCE)
    # value added from park.yaml, prorated: 365 M¥ × 31/365 = 31 M¥ = 3 100 万元
    assert ent["value_added_source"].startswith("park.yaml")
    assert ent["tce_per_10k_cny"] == pytest.approx(TCE / 3100)

    figures = [
        {"enterprise": "ent-a", "kind": "value_added_cny", "period": "2025-07", "value": 1_000_000},
        {
            "enterprise": "ent-a",
            "kind": "green_certificates_mwh",
            "period": "2025-07",
            "value": 0.5,
        },
    ]
    assert (await client.post("/parks/bill/accounting/figures", json=figures)).status_code == 201
    csv_body = (
        "enterprise,kind,period,value,product,unit\n"
        "ent-a,production,2025-07,2,cement_clinker,t\n"
        "ent-a,value_added_cny,2020,200000,,\n"
        "ent-a,energy_tce,2020,1.0,,\n"
    )
    stored = await client.post("/parks/bill/accounting/figures.csv", content=csv_body.encode())
    assert stored.status_code == 201, stored.text
    bad = await client.post(
        "/parks/bill/accounting/figures.csv",
        content=b"enterprise,kind,period,value\nent-a,gold,2025,1\n",
    )
    assert bad.status_code == 422
    assert "line 2" in bad.json()["detail"]

    summary = (
        await client.get("/parks/bill/accounting/summary", params={"period": "2025-07"})
    ).json()
    ent = next(s for s in summary["subjects"] if s["id"] == "ent-a")
    # entered value added: 100 万元; green certificates 0.5 MWh × 0.5227 = 0.26135 t off
    assert ent["tce_per_10k_cny"] == pytest.approx(TCE / 100)
    assert ent["co2_t_market"] == pytest.approx(0.752688 + 5.1888 - 0.26135)
    # 3 091.296 kgce / 2 t of clinker = 1 545.648 kgce/t: above the 基准 level (117)
    (product,) = ent["products"]
    assert product["kgce_per_unit"] == pytest.approx(1545.648)
    assert product["level"].startswith("below")
    park = next(s for s in summary["subjects"] if s["level"] == "park")
    assert park["land_cny_per_mu"] == pytest.approx(1_000_000 / 100)

    # 2025 against 2020: 3.091296 tce / 100 万元 against 1.0 tce / 20 万元 = −38.2 %
    targets = (
        await client.get(
            "/parks/bill/accounting/targets", params={"year": 2025, "enterprise": "ent-a"}
        )
    ).json()
    assert targets["baseline_energy_intensity"] == pytest.approx(0.05)
    assert targets["energy_change"] == pytest.approx(TCE / 100 / 0.05 - 1)
    assert targets["energy_on_track"] is True

    # the report's per-product section: 2 t of clinker at 1 545.648 kgce/t (rounded to 0.01)
    # against 标杆 100 / 基准 117 kgce/t, worse than 基准; value added with its source
    product_words = {
        "zh": ["水泥熟料", "单位产品综合能耗", "标杆水平 / 基准水平", "未达到基准水平"],
        "en": ["Cement clinker", "energy per unit", "baseline (基准) level", "worse than the"],
    }
    for lang, word in (("zh", "月度能源报告"), ("en", "Monthly energy report")):
        page = await client.get(
            "/parks/bill/accounting/report",
            params={"month": "2025-07", "enterprise": "ent-a", "lang": lang},
        )
        assert page.status_code == 200
        assert word in page.text
        assert "1,440.0" in page.text
        assert "<svg" in page.text
        entered_month = {"zh": "当月录入值", "en": "entered for the month"}[lang]
        for text in [*product_words[lang], "1,545.65", "100 / 117", entered_month]:
            assert text in page.text, text
        assert "prices placeholders" in page.text  # the Chongqing prices say what they are
        sheet = await client.get(
            "/parks/bill/accounting/report",
            params={"month": "2025-07", "enterprise": "ent-a", "format": "csv", "lang": lang},
        )
        rows = [r for r in csv.reader(io.StringIO(sheet.content.decode("utf-8-sig"))) if r]
        per_unit = next(
            r for r in rows if r[0].startswith(product_words[lang][0]) and "kgce/t" in r
        )
        assert per_unit[1] == "1545.65"
        assert any(r[1:2] == ["100 / 117"] for r in rows)
        assert any(r[0] == {"zh": "工业增加值", "en": "Industrial value added"}[lang] for r in rows)
        table = await client.get(
            "/parks/bill/accounting/report",
            params={"month": "2025-07", "format": "csv", "lang": lang},
        )
        assert table.status_code == 200
        assert "1468.8" in table.content.decode("utf-8-sig")  # the park's: its main
        pdf = await client.get(
            "/parks/bill/accounting/report",
            params={"month": "2025-07", "enterprise": "ent-a", "format": "pdf", "lang": lang},
        )
        assert pdf.status_code == 200, pdf.text
        assert pdf.content.startswith(b"%PDF")

    hours = (
        await client.get(
            "/parks/bill/accounting/consumption",
            params={
                "period": "hour",
                "level": "enterprise",
                "id": "ent-a",
                "quantity": "e_kwh",
                "start": "2025-07-15T00:00:00",  # park-local
                "end": "2025-07-16T00:00:00",
            },
        )
    ).json()
    (series,) = hours
    assert [p["value"] for p in series["points"]] == pytest.approx([60.0] * 24)
    assert series["points"][0]["time"] == "2025-07-15T00:00:00+08:00"
    assert series["points"][0]["co2_kg"] == pytest.approx(60 * 0.5227)

    # the park's main against ent-a's intake below it: 24 × 61.2 = 1 468.8 against 1 440,
    # 28.8 kWh of losses, 28.8 / 1 468.8 = 1.96 %
    (branch,) = (
        await client.get("/parks/bill/accounting/balance", params={"period": "2025-07"})
    ).json()
    assert branch["meter"] == "main"
    assert branch["children"] == pytest.approx({"a-main": 1440.0})
    assert branch["losses"] == pytest.approx(28.8)
    assert branch["loss_share"] == pytest.approx(28.8 / 1468.8)

    # 10 MWh of certificates for the month (replacing the 0.5 entered; 10 × 0.5227 = 5.227 t),
    # more than the 1.44 MWh bought: they take all the grid electricity's 0.752688 t off,
    # never the gas's 5.1888 t
    more = [
        {"enterprise": "ent-a", "kind": "green_certificates_mwh", "period": "2025-07", "value": 10}
    ]
    assert (await client.post("/parks/bill/accounting/figures", json=more)).status_code == 201
    summary = (
        await client.get("/parks/bill/accounting/summary", params={"period": "2025-07"})
    ).json()
    ent = next(s for s in summary["subjects"] if s["id"] == "ent-a")
    assert ent["co2_t_market"] == pytest.approx(5.1888)

    too_long = await client.get(
        "/parks/bill/accounting/consumption",
        params={"period": "hour", "start": "2025-01-01T00:00:00", "end": "2025-07-01T00:00:00"},
    )
    assert too_long.status_code == 422
    assert "period=day" in too_long.json()["detail"]

    factors = (await client.get("/parks/bill/accounting/factors", params={"year": 2025})).json()
    assert factors["utilities"]["electricity"]["kgce_equal"] == 0.1229
    assert "公告2024年第33号" in factors["utilities"]["electricity"]["co2_source"]

    swap = await client.post(
        "/parks/bill/meters/a-main/replacements",
        json={"time": "2025-07-16T10:00:00", "old_final": 6440.0, "new_initial": 0.0},
    )
    assert swap.status_code == 201
    assert swap.json()["quantity"] == "e_kwh"


async def test_before_any_rollup_the_summary_is_empty_not_an_error(
    influx_settings: InfluxSettings,
) -> None:
    park = Park.model_validate(PARK)
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()  # no rollups policy yet: analytics never ran
    app = create_app(ApiSettings(influx=influx_settings), SiteRegistry([park]))
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as c:
        answer = await c.get("/parks/bill/accounting/summary", params={"period": "2025-07"})
        assert answer.status_code == 200, answer.text
        ent = next(s for s in answer.json()["subjects"] if s["id"] == "ent-a")
        assert ent["consumption"] == {}
        assert ent["completeness"] == 0.0


async def test_maximum_demand_counts_a_virtual_net_meter_once(
    influx_settings: InfluxSettings,
) -> None:
    # an enterprise's main (60 kW), its PV below it, and a virtual net meter main - pv (55 kW,
    # written by analytics for virtual meters too): the enterprise's demand is main's 60 kW,
    # not 60 + 55 = 115
    park = Park.model_validate(
        {
            "park": "vnet",
            "tariffs": {"electricity": "cq-large-industry"},
            "enterprises": [
                {
                    "id": "ent-v",
                    "workshops": [
                        {
                            "id": "w",
                            "meters": [
                                {"id": "v-main", "utility": "electricity"},
                                {
                                    "id": "v-pv",
                                    "utility": "electricity",
                                    "role": "pv",
                                    "parent": "v-main",
                                },
                                {
                                    "id": "v-net",
                                    "utility": "electricity",
                                    "formula": "v-main - v-pv",
                                },
                            ],
                        }
                    ],
                }
            ],
        }
    )
    lines = [
        encode_point(
            "demand_15m", {"park": "vnet", "meter": m}, {"p_kw_avg": kw}, DAY + k * 900_000
        )
        for k in range(4)
        for m, kw in (("v-main", 60.0), ("v-net", 55.0), ("v-pv", 5.0))
    ]
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
        async with InfluxWriter(influx_settings) as raw:
            await raw.write(lines)
    app = create_app(ApiSettings(influx=influx_settings), SiteRegistry([park]))
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as c:
        bill = (
            await c.get(
                "/parks/vnet/accounting/bill", params={"enterprise": "ent-v", "month": "2025-07"}
            )
        ).json()
    assert bill["max_demand_kw"] == pytest.approx(60.0)


async def test_a_month_without_a_tariff_in_force_is_a_clear_error(
    influx_settings: InfluxSettings,
) -> None:
    cq = builtin("cq-large-industry")
    park = Park.model_validate(
        {
            **PARK,
            "tariffs": {
                "electricity": [cq.model_copy(update={"effective_from": date(2026, 1, 1)})]
            },
        }
    )
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
    app = create_app(ApiSettings(influx=influx_settings), SiteRegistry([park]))
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as c:
        bill = await c.get(
            "/parks/bill/accounting/bill", params={"enterprise": "ent-a", "month": "2025-07"}
        )
        assert bill.status_code == 422
        assert "in force on 2025-07-01" in bill.json()["detail"]
        # the report still renders, saying why the bill is missing
        page = await c.get(
            "/parks/bill/accounting/report",
            params={"month": "2025-07", "enterprise": "ent-a", "lang": "en"},
        )
        assert page.status_code == 200
        assert "in force on 2025-07-01" in page.text
        pdf = await c.get(
            "/parks/bill/accounting/report",
            params={"month": "2025-07", "enterprise": "ent-a", "format": "pdf", "lang": "zh"},
        )
        assert pdf.status_code == 200, pdf.text
        assert pdf.content.startswith(b"%PDF")


async def test_value_added_entered_per_year_is_allocated_to_months(
    client: httpx.AsyncClient,
) -> None:
    # 36.5 M¥ entered for 2025 (ent-a's park.yaml figure, 365 M¥, is overridden)
    figures = [
        {"enterprise": "ent-a", "kind": "value_added_cny", "period": "2025", "value": 36.5e6}
    ]
    assert (await client.post("/parks/bill/accounting/figures", json=figures)).status_code == 201

    async def ent(period: str) -> dict[str, Any]:
        answer = await client.get("/parks/bill/accounting/summary", params={"period": period})
        return next(s for s in answer.json()["subjects"] if s["id"] == "ent-a")

    # July: 36.5 M¥ × 31 / 365 = 3.1 M¥ = 310 万元, labelled as an allocation
    july = await ent("2025-07")
    assert july["value_added_cny"] == pytest.approx(3.1e6)
    assert july["value_added_source"] == (
        "entered for the year, allocated pro rata of days (31/365)"
    )
    assert july["tce_per_10k_cny"] == pytest.approx(TCE / 310)
    # January takes its 31 days' share too, not the whole year (the yearly figure is stamped
    # on 1 January); February 36.5 M¥ × 28 / 365 = 2.8 M¥
    assert (await ent("2025-01"))["value_added_cny"] == pytest.approx(3.1e6)
    assert (await ent("2025-02"))["value_added_cny"] == pytest.approx(2.8e6)
    # the report labels the allocation, in both languages
    for lang, label in (
        ("en", "allocated pro rata of days (31/365)"),
        ("zh", "年度录入值按天数分摊（31/365）"),
    ):
        page = await client.get(
            "/parks/bill/accounting/report",
            params={"month": "2025-07", "enterprise": "ent-a", "lang": lang},
        )
        assert label in page.text
    # the year: the figure as entered
    year = await ent("2025")
    assert year["value_added_cny"] == pytest.approx(36.5e6)
    assert year["value_added_source"] == "entered for the year"
    # a month's own figure overrides the allocation, and does not change the year's
    figures = [
        {"enterprise": "ent-a", "kind": "value_added_cny", "period": "2025-07", "value": 1e6}
    ]
    assert (await client.post("/parks/bill/accounting/figures", json=figures)).status_code == 201
    july = await ent("2025-07")
    assert (july["value_added_cny"], july["value_added_source"]) == (1e6, "entered for the month")
    assert (await ent("2025"))["value_added_cny"] == pytest.approx(36.5e6)


async def test_targets_against_a_measured_baseline(
    client: httpx.AsyncClient, influx_settings: InfluxSettings
) -> None:
    # the platform's own rollups of 2020: ent-a 100 000 kWh and 5 000 m³, 99 % covered; the
    # park's 120 000 kWh only half covered
    start = int(datetime(2020, 1, 1, tzinfo=SHANGHAI).timestamp() * 1000)
    lines = []
    for level, sid, utility, quantity, value, share in (
        ("enterprise", "ent-a", "electricity", "e_kwh", 100_000.0, 0.99),
        ("enterprise", "ent-a", "water", "vol_m3", 5_000.0, 0.99),
        ("park", "bill", "electricity", "e_kwh", 120_000.0, 0.5),
    ):
        tags = {"park": "bill", "level": level, "id": sid, "utility": utility}
        tags["quantity"] = quantity
        fields: dict[str, float | int | str | bool] = {"value": value, "completeness": share}
        fields["estimated"] = 0.0
        lines.append(encode_point("consumption_yearly", tags, fields, start))
    async with InfluxWriter(influx_settings, retention_policy="rollups") as out:
        await out.write(lines)
    figures = [{"enterprise": "ent-a", "kind": "value_added_cny", "period": "2020", "value": 2e6}]
    assert (await client.post("/parks/bill/accounting/figures", json=figures)).status_code == 201

    async def targets(**params: Any) -> dict[str, Any]:
        answer = await client.get("/parks/bill/accounting/targets", params={"year": 2025, **params})
        assert answer.status_code == 200, answer.text
        got: dict[str, Any] = answer.json()
        return got

    # baseline: 100 000 kWh × 0.1229 kgce = 12.29 tce over 200 万元 = 0.06145 tce/万元;
    # water 5 000 m³ / 200 万元 = 25 m³/万元
    got = await targets(enterprise="ent-a")
    assert got["baseline_energy_intensity"] == pytest.approx(0.06145)
    assert got["baseline_water_intensity"] == pytest.approx(25.0)
    assert got["baseline_sources"] == {
        "energy": "measured (rollups of 2020, 99.0 % complete)",
        "water": "measured (rollups of 2020, 99.0 % complete)",
        "value_added": "entered for the year",
    }
    # 2025: 3.091296 tce over park.yaml's 365 M¥ = 36 500 万元; change against 0.06145
    assert got["energy_change"] == pytest.approx(TCE / 36_500 / 0.06145 - 1)
    # an entered figure overrides the measured one: 20 tce / 200 万元 = 0.1
    figures = [{"enterprise": "ent-a", "kind": "energy_tce", "period": "2020", "value": 20.0}]
    assert (await client.post("/parks/bill/accounting/figures", json=figures)).status_code == 201
    got = await targets(enterprise="ent-a")
    assert got["baseline_energy_intensity"] == pytest.approx(0.1)
    assert got["baseline_sources"]["energy"] == "entered for the year"
    # the park's 2020 is half measured: no baseline from it, and the answer says why; its
    # value added is its one enterprise's
    got = await targets()
    assert got["baseline_energy_intensity"] is None
    assert got["baseline_sources"]["energy"] == (
        "none: measured 2020 covers 50.0 % of the year (< 95 %)"
    )
    assert got["baseline_sources"]["value_added"] == "entered for every enterprise, summed"


async def test_unknown_ids_and_years_are_named(influx_settings: InfluxSettings) -> None:
    """Issue 11: an unknown meter's consumption was 200 [] (reads as "no data yet"), and
    targets for year 1 gave a 422 naming the period, which the caller never sent."""
    park = Park.model_validate(PARK)
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
    app = create_app(ApiSettings(influx=influx_settings), SiteRegistry([park]))
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as c:
        url = "/parks/bill/accounting/consumption"
        for level, id in (("meter", "nope"), ("enterprise", "nope"), ("zone", "nope")):
            answer = await c.get(url, params={"level": level, "id": id})
            assert answer.status_code == 404, answer.text
            assert answer.json()["detail"] == f"unknown {level} 'nope' in park 'bill'"
        known = await c.get(url, params={"level": "meter", "id": "a-main"})
        assert known.status_code == 200, known.text
        targets = await c.get("/parks/bill/accounting/targets", params={"year": 1})
        assert targets.status_code == 422
        assert targets.json()["detail"].startswith("year 1:"), targets.text


@pytest.mark.parametrize("client", ["equivalent"], indirect=True)
async def test_intensities_follow_the_parks_convention(
    client: httpx.AsyncClient, influx_settings: InfluxSettings
) -> None:
    # convention: equivalent. July: 1 440 kWh × 0.3055 = 439.92 kgce + gas 2 914.32 kgce =
    # 3.35424 tce, over park.yaml's 3 100 万元 (365 M¥ × 31/365)
    equivalent = 0.43992 + 2.91432
    answer = await client.get("/parks/bill/accounting/summary", params={"period": "2025-07"})
    ent = next(s for s in answer.json()["subjects"] if s["id"] == "ent-a")
    assert ent["tce_equivalent"] == pytest.approx(equivalent)
    assert ent["tce_per_10k_cny"] == pytest.approx(equivalent / 3100)
    # the report says which convention its intensities use and what each coefficient is
    # worth: the 等价值 is the data file's unverified default
    kgce = answer.json()["electricity_kgce"]
    assert kgce == {
        "convention": "equivalent",
        "equal": 0.1229,
        "equal_status": "P",
        "equivalent": 0.3055,
        "equivalent_status": "U",
    }
    for lang, row in (
        ("en", ["Electricity to coal (intensities)", "equivalent value (等价值)"]),
        ("zh", ["电力折标准煤方法（用于强度）", "等价值"]),
    ):
        sheet = await client.get(
            "/parks/bill/accounting/report",
            params={"month": "2025-07", "enterprise": "ent-a", "format": "csv", "lang": lang},
        )
        rows = [r for r in csv.reader(io.StringIO(sheet.content.decode("utf-8-sig"))) if r]
        said = next(r for r in rows if r[0] == row[0])
        assert said[1] == row[1]
        assert "0.3055 (U, " in said[2]
        assert "0.1229 (P)" in said[2]
    # the measured 2020 baseline the same way: 100 000 kWh × 0.3055 = 30.55 tce / 200 万元
    start = int(datetime(2020, 1, 1, tzinfo=SHANGHAI).timestamp() * 1000)
    tags = {"park": "bill", "level": "enterprise", "id": "ent-a", "utility": "electricity"}
    tags["quantity"] = "e_kwh"
    fields: dict[str, float | int | str | bool] = {"value": 100_000.0, "completeness": 1.0}
    async with InfluxWriter(influx_settings, retention_policy="rollups") as out:
        await out.write([encode_point("consumption_yearly", tags, fields, start)])
    figures = [{"enterprise": "ent-a", "kind": "value_added_cny", "period": "2020", "value": 2e6}]
    assert (await client.post("/parks/bill/accounting/figures", json=figures)).status_code == 201
    got = (
        await client.get(
            "/parks/bill/accounting/targets", params={"year": 2025, "enterprise": "ent-a"}
        )
    ).json()
    assert got["baseline_energy_intensity"] == pytest.approx(30.55 / 200)
    assert got["energy_intensity"] == pytest.approx(equivalent / 36_500)


async def test_parameters_out_of_range_are_422(influx_settings: InfluxSettings) -> None:
    park = Park.model_validate(PARK)
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
    app = create_app(ApiSettings(influx=influx_settings), SiteRegistry([park]))
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as c:
        # a share of the peak energy moved: 0 to 1 (150 % would "save" more than the peak)
        for share in (1.5, -0.1):
            bill = await c.get(
                "/parks/bill/accounting/bill",
                params={"enterprise": "ent-a", "month": "2025-07", "shift_share": share},
            )
            assert bill.status_code == 422, bill.text
        # an exchange of a counter the meter does not have would be stored and never applied
        swap = await c.post(
            "/parks/bill/meters/a-main/replacements",
            json={
                "time": "2025-07-16T10:00:00",
                "old_final": 1.0,
                "new_initial": 0.0,
                "quantity": "vol_m3",
            },
        )
        assert swap.status_code == 422, swap.text
        assert "e_kwh" in swap.json()["detail"]


async def test_the_reports_days_without_data_are_empty_not_zero(
    client: httpx.AsyncClient, influx_settings: InfluxSettings
) -> None:
    # August: ent-a's electricity has a daily rollup on the 1st only, its gas on the 1st and
    # 2nd (electricity meter down on the 2nd), nothing after
    lines = []
    for day, utility, quantity, value, co2 in (
        (1, "electricity", "e_kwh", 100.0, 52.27),
        (1, "gas", "vol_nm3", 10.0, 21.62),
        (2, "gas", "vol_nm3", 10.0, 21.62),
    ):
        tags = {"park": "bill", "level": "enterprise", "id": "ent-a", "utility": utility}
        tags["quantity"] = quantity
        fields: dict[str, float | int | str | bool] = {"value": value, "co2_kg": co2}
        fields["completeness"] = 1.0
        at = int(datetime(2025, 8, day, tzinfo=SHANGHAI).timestamp() * 1000)
        lines.append(encode_point("consumption_daily", tags, fields, at))
    async with InfluxWriter(influx_settings, retention_policy="rollups") as out:
        await out.write(lines)
    sheet = await client.get(
        "/parks/bill/accounting/report",
        params={"month": "2025-08", "enterprise": "ent-a", "format": "csv", "lang": "en"},
    )
    rows = list(csv.reader(io.StringIO(sheet.content.decode("utf-8-sig"))))
    head = rows.index(["Grid electricity per day (kWh)", "CO₂ per day (kg)", "day"])
    daily = rows[head + 1 :]
    assert len(daily) == 31  # every day of the month, a gap included
    assert daily[0] == ["100.000", "73.890", "08-01"]
    assert daily[1] == ["", "21.620", "08-02"]  # no electricity that day: unknown, not 0
    assert daily[2] == ["", "", "08-03"]
    page = await client.get(
        "/parks/bill/accounting/report",
        params={"month": "2025-08", "enterprise": "ent-a", "format": "pdf", "lang": "zh"},
    )
    assert page.status_code == 200, page.text
