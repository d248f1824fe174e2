"""The steel plant's half year through the accounting, checked against the raw rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics.accounting.steel import account_steel, read_steel

CSV = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "steel" / "steel_2018_h1.csv"

pytestmark = pytest.mark.skipif(not CSV.is_file(), reason=f"the steel dataset is not at {CSV}")


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
