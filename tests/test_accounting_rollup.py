"""Calendar rollups: local edges, days from hours, groups from top meters; they add up."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.accounting.rollup import (
    Level,
    Period,
    Rolled,
    accounting_series,
    coarser,
    group_sums,
    groups,
    local_edges,
)
from parkwatch.quantities import Utility
from parkwatch.site import Park

SHANGHAI = ZoneInfo("Asia/Shanghai")
H = 3_600_000


def ms(*args: int, zone: ZoneInfo = SHANGHAI) -> int:
    return int(datetime(*args, tzinfo=zone).timestamp() * 1000)  # type: ignore[misc]


def test_days_start_at_local_midnight() -> None:
    # Shanghai is UTC+8: the day 2025-03-02 starts at 2025-03-01T16:00Z
    edges = local_edges(ms(2025, 3, 1, 12), ms(2025, 3, 3, 12), SHANGHAI, Period.DAY)
    assert edges.tolist() == [ms(2025, 3, 2), ms(2025, 3, 3)]
    assert edges[0] % 86_400_000 == 16 * H


def test_months_and_years_and_a_dst_zone() -> None:
    months = local_edges(ms(2025, 1, 15), ms(2025, 4, 1), SHANGHAI, Period.MONTH)
    assert months.tolist() == [ms(2025, 2, 1), ms(2025, 3, 1), ms(2025, 4, 1)]
    years = local_edges(ms(2024, 6, 1), ms(2026, 1, 1), SHANGHAI, Period.YEAR)
    assert years.tolist() == [ms(2025, 1, 1), ms(2026, 1, 1)]
    # Berlin's 2025-03-30 has 23 hours: its local hours still number 23 between midnights
    berlin = ZoneInfo("Europe/Berlin")
    days = local_edges(
        ms(2025, 3, 30, zone=berlin), ms(2025, 3, 31, zone=berlin), berlin, Period.DAY
    )
    hours = local_edges(int(days[0]), int(days[1]), berlin, Period.HOUR)
    assert hours.size - 1 == 23


def test_a_day_whose_midnight_the_clock_skips_still_starts() -> None:
    # Santiago starts summer time at midnight: 2024-09-08 runs from 01:00 (-03), 23 hours;
    # Cairo on 2024-04-26 the same. The day is not merged into the one before.
    for zone, day in ((ZoneInfo("America/Santiago"), 8), (ZoneInfo("Africa/Cairo"), 26)):
        month = 9 if day == 8 else 4
        edges = local_edges(
            ms(2024, month, day - 1, zone=zone),
            ms(2024, month, day + 1, zone=zone),
            zone,
            Period.DAY,
        )
        starts = [datetime.fromtimestamp(e / 1000, zone).strftime("%d %H:%M") for e in edges]
        assert starts == [f"{day - 1:02d} 00:00", f"{day:02d} 01:00", f"{day + 1:02d} 00:00"]
        assert (edges[2] - edges[1]) == 23 * H
        # its hours: 01:00 to 24:00
        hours = local_edges(int(edges[1]), int(edges[2]), zone, Period.HOUR)
        assert hours.size - 1 == 23


def test_a_day_is_the_sum_of_its_hours_with_completeness_and_estimates() -> None:
    # 48 local hours of 1 kWh, hour 5 unknown, hour 30 half covered and estimated 0.4:
    # day 1 = 23 kWh (completeness 23/24), day 2 = 24 kWh (completeness 23.5/24, 0.4 est.)
    start = ms(2025, 3, 2)
    hours = local_edges(start, start + 48 * H, SHANGHAI, Period.HOUR)
    value = np.ones((1, 48))
    value[0, 5] = np.nan
    completeness = np.ones((1, 48))
    completeness[0, 5] = 0.0
    completeness[0, 30] = 0.5
    estimated = np.zeros((1, 48))
    estimated[0, 30] = 0.4
    days = coarser(
        Rolled(hours, value, completeness, estimated),
        local_edges(start, start + 48 * H, SHANGHAI, Period.DAY),
    )
    assert days.value[0].tolist() == [23, 24]
    np.testing.assert_allclose(days.completeness[0], [23 / 24, 23.5 / 24])
    np.testing.assert_allclose(days.estimated[0], [0, 0.4])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 5))
def test_rollups_add_up_at_every_level(seed: int, rows: int) -> None:
    rng = np.random.default_rng(seed)
    start = ms(2024, 12, 20)
    end = ms(2025, 3, 10)
    hours = local_edges(start, end, SHANGHAI, Period.HOUR)
    value = rng.uniform(0, 50, (rows, hours.size - 1))
    value[rng.random(value.shape) < 0.02] = np.nan
    hourly = Rolled(hours, value, np.isfinite(value).astype(float), np.zeros_like(value))
    daily = coarser(hourly, local_edges(start, end, SHANGHAI, Period.DAY))
    monthly = coarser(daily, local_edges(start, end, SHANGHAI, Period.MONTH))
    direct = coarser(hourly, monthly.edges)
    np.testing.assert_allclose(monthly.value, direct.value)
    np.testing.assert_allclose(monthly.completeness, direct.completeness)
    # a month inside the hours: exactly its hours' sum
    a, b = np.searchsorted(hours, monthly.edges[:2])
    np.testing.assert_allclose(monthly.value[:, 0], np.nansum(value[:, a:b], axis=1))


def test_groups_sum_top_meters_only(demo_park_path: Path) -> None:
    park = Park.from_yaml(demo_park_path)
    series = accounting_series(park)
    found = groups(park, series)
    by = {(g.level, g.id, g.quantity): [series[i].meter.id for i in g.members] for g in found}
    # steelco's electricity is its intake, not the intake plus the furnace below it
    assert by[(Level.ENTERPRISE, "steelco", "e_kwh")] == ["steelco-main"]
    assert by[(Level.ENTERPRISE, "steelco", "pv_kwh")] == ["steelco-pv"]
    # the park's water is its main; districts and enterprise meters sit below it
    assert by[(Level.PARK, "lj-demo", "vol_m3")] == ["park-water-main"]
    assert "park-tank" not in by[(Level.PARK, "lj-demo", "vol_m3")]
    park_e = by[(Level.PARK, "lj-demo", "e_kwh")]
    assert park_e == ["park-main"]
    # sums
    k = 3
    values = np.arange(len(series) * k, dtype=float).reshape(len(series), k)
    rolled = group_sums(
        Rolled(np.arange(k + 1), values, np.ones_like(values), np.zeros_like(values)), found
    )
    g = next(
        i
        for i, x in enumerate(found)
        if (x.level, x.id, x.quantity) == (Level.ENTERPRISE, "steelco", "e_kwh")
    )
    np.testing.assert_allclose(rolled.value[g], values[found[g].members[0]])


def test_a_zone_is_its_inflows_minus_its_outflows(demo_park_path: Path) -> None:
    """The demo park's north water district (a district metered area of the site model):
    water-d1 in, the steel and chemical plants' meters out."""
    park = Park.from_yaml(demo_park_path)
    series = accounting_series(park)
    found = groups(park, series)
    zone = next(g for g in found if g.level is Level.ZONE and g.id == "water-d1")
    ids = [series[i].meter.id for i in zone.members]
    assert ids == ["water-d1", "steelco-water", "chemco-water"]
    assert zone.weights() == (1.0, -1.0, -1.0)
    assert zone.utility is Utility.WATER
    # 100 m³ into the district, 40 and 52 to the plants: 100 − 40 − 52 = 8 (its own use, leaks)
    values = np.zeros((len(series), 1))
    for i, v in zip(zone.members, (100.0, 40.0, 52.0), strict=True):
        values[i, 0] = v
    rolled = group_sums(
        Rolled(np.arange(2), values, np.ones_like(values), np.zeros_like(values)), found
    )
    assert rolled.value[found.index(zone), 0] == pytest.approx(8.0)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_groups_and_calendar_commute(seed: int) -> None:
    """Summing meters into groups and hours into months can be done in either order: the
    job sums the groups' months from the meters' months, a board could from the groups'
    hours; both give the same figures."""
    park = Park.from_yaml(Path(__file__).resolve().parent.parent / "simulators/parks/demo.yaml")
    series = accounting_series(park)
    found = groups(park, series)
    rng = np.random.default_rng(seed)
    start, end = ms(2025, 1, 30), ms(2025, 3, 3)
    hours = local_edges(start, end, SHANGHAI, Period.HOUR)
    value = rng.uniform(0, 10, (len(series), hours.size - 1))
    value[rng.random(value.shape) < 0.05] = np.nan
    hourly = Rolled(hours, value, np.isfinite(value).astype(float), np.zeros_like(value))
    months = local_edges(start, end, SHANGHAI, Period.MONTH)
    days = local_edges(start, end, SHANGHAI, Period.DAY)
    meters_first = group_sums(coarser(coarser(hourly, days), months), found)
    groups_first = coarser(coarser(group_sums(hourly, found), days), months)
    np.testing.assert_allclose(meters_first.value, groups_first.value)


def test_meters_below_a_virtual_parent_are_summed() -> None:
    # a virtual total (f1 + f2) declared as its feeders' parent is never summed itself, so the
    # park is f1 + f2: before, both feeders were dropped as "children" and the park had nothing
    park = Park.model_validate(
        {
            "park": "v",
            "meters": [
                {"id": "total", "utility": "electricity", "formula": "f1 + f2"},
                {"id": "f1", "utility": "electricity", "parent": "total"},
                {"id": "f2", "utility": "electricity", "parent": "total"},
                # below a virtual net meter (main - pv): main already measures it
                {"id": "main", "utility": "electricity"},
                {"id": "pv", "utility": "electricity", "role": "pv", "parent": "main"},
                {"id": "net", "utility": "electricity", "formula": "main - pv"},
                {"id": "load", "utility": "electricity", "parent": "net"},
            ],
        }
    )
    series = accounting_series(park)
    found = groups(park, series)
    park_kwh = next(g for g in found if g.level is Level.PARK and g.quantity == "e_kwh")
    assert sorted(series[i].meter.id for i in park_kwh.members) == ["f1", "f2", "main"]
