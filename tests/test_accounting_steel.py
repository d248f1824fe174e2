"""The steel plant's half year through the accounting, checked against the raw rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics.accounting.steel import account_steel, read_steel
from parkwatch.settings import InfluxSettings
from parkwatch_cli.accounting import write_steel_report

# ../shared beside the checkout holds the public datasets (never copied into the project); a
# checkout without it fails here, loudly, rather than skipping what it cannot check
CSV = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "steel" / "steel_2018_h1.csv"


def test_midnight_rows_close_their_day() -> None:
    data = read_steel(CSV)
    # 181 days × 96 quarter hours, strictly increasing, 15 minutes apart
    assert data.end_ms.size == 181 * 96
    steps = set((data.end_ms[1:] - data.end_ms[:-1]).tolist())
    assert steps == {900_000}


def test_half_year_end_to_end() -> None:
    result = account_steel(CSV)
    assert [m.month for m in result.months] == [f"2018-0{i}" for i in range(1, 7)]
    data = read_steel(CSV)
    for m in result.months:
        # counters → hours → local days → months gives every row's kWh, once
        assert m.kwh == pytest.approx(m.direct_kwh, abs=1e-6)
        assert m.completeness == 1.0
        # tce at the equal value: kWh × 0.1229 kgce
        assert m.kgce_equal == pytest.approx(m.kwh * 0.1229)
        assert sum(m.kwh_by_period.values()) == pytest.approx(m.kwh)
    assert sum(m.kwh for m in result.months) == pytest.approx(float(data.kwh.sum()))
    # maximum demand: the largest 15-minute energy × 4
    assert max(m.max_demand_kw for m in result.months) == pytest.approx(data.kwh.max() * 4)
    # the tariff's periods are the dataset's Load_Type on every day the plant ran
    assert result.agreement["on_working_days_every_day_periods"] == 1.0
    assert result.agreement["with_tariff_rules"] > 0.9


@pytest.mark.integration
@pytest.mark.anyio
async def test_the_report_through_influxdb_the_job_and_the_api(
    influx_settings: InfluxSettings, tmp_path: Path
) -> None:
    """``parkwatch accounting steel-report``: the same month through the whole platform gives
    the same kWh, demand and bill as the in-memory accounting."""
    written = await write_steel_report(
        influx_settings.url, CSV, "2018-01", tmp_path, influx_settings.database
    )
    assert sorted(p.name for p in written) == sorted(
        f"steel-2018-01-{lang}.{ext}" for lang in ("en", "zh") for ext in ("csv", "html", "pdf")
    )
    direct = account_steel(CSV).months[0]
    table = (tmp_path / "steel-2018-01-en.csv").read_text(encoding="utf-8-sig")
    assert f"Grid electricity,{direct.kwh:.1f},kWh" in table
    assert f"{direct.max_demand_kw:,.1f} kW" in table
    assert f"{direct.bill:,.2f} KRW" in table
    assert (tmp_path / "steel-2018-01-zh.pdf").read_bytes().startswith(b"%PDF")
    assert "月度能源报告" in (tmp_path / "steel-2018-01-zh.html").read_text(encoding="utf-8")
