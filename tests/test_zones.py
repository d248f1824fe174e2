"""Zones in the site model: what park.yaml may declare, the errors it gets when it is wrong, and a
zone's consumption ``Σ inflow − Σ outflow − area · d(level)/dt`` computed by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from analytics.detectors.networks import ZoneLayout, zone_net
from analytics.engine.contract import ParkContext
from parkwatch.site import Park
from simulators import DEMO_PARK


def _park(zones: list[dict[str, Any]], **extra: Any) -> Park:
    return Park.model_validate(
        {
            "park": "z",
            "meters": [
                {"id": "in-a", "utility": "water"},
                {"id": "in-b", "utility": "water"},
                {"id": "out", "utility": "water"},
                {"id": "tank", "utility": "water", "role": "tank"},
                {"id": "gas", "utility": "gas"},
                {"id": "power", "utility": "electricity"},
            ],
            "zones": zones,
            **extra,
        }
    )


TANK = {"level": "tank", "area_m2": 2.0}


def test_demo_park_declares_its_networks() -> None:
    park = Park.from_yaml(DEMO_PARK)
    kinds = {z.utility.value for z in park.zones}
    assert kinds == {"water", "air", "gas"}
    trunk = next(z for z in park.zones if z.id == "park-water-main")
    assert trunk.tanks[0].level == "park-tank"


def test_a_round_tank_has_the_area_of_its_diameter() -> None:
    park = _park(
        [
            {
                "id": "z",
                "utility": "water",
                "inflow": ["in-a"],
                "tanks": [{"level": "tank", "diameter_m": 2.0}],
            }
        ]
    )
    assert park.zones[0].tanks[0].area == pytest.approx(np.pi)


@pytest.mark.parametrize(
    ("zones", "message"),
    [
        (
            [{"id": "z", "utility": "water", "inflow": ["in-a"], "tanks": [{"level": "tank"}]}],
            "tank 'tank': give its cross-section as area_m2 or diameter_m",
        ),
        (
            [{"id": "z", "utility": "water", "inflow": ["in-a", "gas"], "tanks": [TANK]}],
            "zone 'z' (water, m³/h): meter 'gas' is a gas meter (Nm³/h): units do not match",
        ),
        (
            [{"id": "z", "utility": "water", "inflow": ["nope"], "tanks": [TANK]}],
            "zone 'z': meter 'nope' is not in the park",
        ),
        (
            [{"id": "z", "utility": "water", "inflow": ["in-a"]}],
            "meter 'tank' (tank) is in no zone",
        ),
        (
            [{"id": "z", "utility": "water", "inflow": ["in-a"], "outflow": ["in-a"]}],
            "zone 'z': meter 'in-a' is listed twice",
        ),
        (
            [{"id": "z", "utility": "electricity", "inflow": ["power"]}],
            "zones are for water, air, gas, steam networks, not electricity",
        ),
        (
            [{"id": "z", "utility": "water", "outflow": ["out"], "tanks": [TANK]}],
            "inflow",
        ),
        (
            [
                {"id": "z", "utility": "water", "inflow": ["in-a"], "tanks": [TANK]},
                {"id": "z", "utility": "water", "inflow": ["in-b"]},
            ],
            "zone ids must be unique",
        ),
        (
            [{"id": "z", "utility": "gas", "inflow": ["gas"], "tanks": [TANK]}],
            "tanks (level · area) are for water zones",
        ),
    ],
)
def test_a_wrong_zone_is_a_clear_error(zones: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=None) as info:
        _park(zones)
    assert message in str(info.value)


def test_net_consumption_with_a_filling_tank_by_hand() -> None:
    """Two inflows (10 and 6 m³/h), one outflow (3 m³/h), a 2 m² tank rising 0.5 m in an hour:
    the zone consumes 10 + 6 − 3 − 2 × 0.5 = 12 m³/h, in every one-minute slot."""
    park = _park(
        [
            {
                "id": "z",
                "utility": "water",
                "inflow": ["in-a", "in-b"],
                "outflow": ["out"],
                "tanks": [TANK],
            }
        ]
    )
    layout = ZoneLayout.of(ParkContext(park))
    assert [str(k) for k in layout.series] == [
        "in-a/flow_m3h",
        "in-b/flow_m3h",
        "out/flow_m3h",
        "tank/level_m",
    ]
    slots = 60
    values = np.vstack(
        [
            np.full(slots, 10.0),
            np.full(slots, 6.0),
            np.full(slots, 3.0),
            1.0 + 0.5 * np.arange(1, slots + 1) / slots,  # 1.0 m before the block, 1.5 m after
        ]
    )
    last = np.array([np.nan, np.nan, np.nan, 1.0])
    net, carry = zone_net(layout, values, last, 60_000)
    np.testing.assert_allclose(net, 12.0)
    assert carry[3] == pytest.approx(1.5)
    # the next block continues from the carried level; a level the tank cannot have (outside
    # its range) or a missing inflow gives no consumption for that slot, not a wrong one
    more = values.copy()
    more[3] = 1.5 + 0.5 * np.arange(1, slots + 1) / slots
    more[0, 5] = np.nan
    net2, _ = zone_net(layout, more, carry, 60_000)
    assert np.isnan(net2[0, 5])
    np.testing.assert_allclose(np.delete(net2[0], 5), 12.0)


def test_an_hour_of_a_coarse_level_still_adds_up() -> None:
    """A level read to the centimetre jumps in steps; over an hour the steps telescope to the
    true rise, so the hour's mean consumption is exact."""
    park = _park([{"id": "z", "utility": "water", "inflow": ["in-a"], "tanks": [TANK]}])
    layout = ZoneLayout.of(ParkContext(park))
    true_level = 2.0 + 0.37 * np.arange(1, 61) / 60
    values = np.vstack([np.full(60, 5.0), np.round(true_level, 2)])
    net, _ = zone_net(layout, values, np.array([np.nan, 2.0]), 60_000)
    assert net.mean() == pytest.approx(5.0 - 2.0 * 0.37)
