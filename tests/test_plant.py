"""The plant read from a park.yaml: compressors with their outputs, headers, boilers with their
fuel, cooling water, heat recovery and tanks — the one reading analytics and the simulator share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from parkwatch.plant import Plant, reported_quantities
from parkwatch.site import Park
from simulators.layout import build_layout

DEMO = Path(__file__).resolve().parent.parent / "simulators" / "parks" / "demo.yaml"


def _park(park_meters: list[dict[str, Any]], **enterprises: list[dict[str, Any]]) -> Park:
    return Park.model_validate(
        {
            "park": "p",
            "meters": park_meters,
            "enterprises": [
                {"id": e, "workshops": [{"id": "w", "meters": meters}]}
                for e, meters in enterprises.items()
            ],
        }
    )


def _ids(meters: Any) -> list[str]:
    return [m.id for m in meters]


def test_compressors_pair_with_their_outputs_in_order_and_the_header_is_above_them() -> None:
    park = _park(
        [],
        a=[
            {"id": "a-c1", "utility": "electricity", "role": "compressor"},
            {"id": "a-c2", "utility": "electricity", "role": "compressor"},
            {"id": "a-header", "utility": "air"},
            {"id": "a-c1-air", "utility": "air", "role": "compressor", "parent": "a-header"},
            {"id": "a-c2-air", "utility": "air", "role": "compressor", "parent": "a-header"},
            {"id": "a-branch", "utility": "air", "parent": "a-header"},
        ],
        b=[
            {"id": "b-c1", "utility": "electricity", "role": "compressor"},
            {"id": "b-c2", "utility": "electricity", "role": "compressor"},
            {"id": "b-air", "utility": "air"},
        ],
    )
    plant = Plant(park)
    a, b = plant.air["a"], plant.air["b"]
    assert [(c.motor.id, c.output.id if c.output else None) for c in a.compressors] == [
        ("a-c1", "a-c1-air"),
        ("a-c2", "a-c2-air"),
    ]
    assert _ids(a.headers) == ["a-header"]  # the branch below it is no header
    assert _ids(a.delivered) == ["a-c1-air", "a-c2-air"]
    assert _ids(a.meters) == ["a-header", "a-c1-air", "a-c2-air", "a-branch"]
    # no output meters: the header measures what the compressors deliver
    assert [c.output for c in b.compressors] == [None, None]
    assert _ids(b.headers) == _ids(b.delivered) == ["b-air"]
    c1 = plant.compressor("a-c1-air")
    assert c1 is not None
    assert c1.motor.id == "a-c1"
    assert plant.compressor("a-branch") is None


def test_a_boiler_pairs_with_its_burner_and_a_leftover_burner_feeds_nothing() -> None:
    park = _park(
        [],
        chem=[
            {"id": "gas", "utility": "gas"},
            {"id": "burner-1", "utility": "gas", "parent": "gas", "role": "boiler"},
            {"id": "burner-2", "utility": "gas", "parent": "gas", "role": "boiler"},
            {"id": "boiler-1", "utility": "steam", "role": "boiler"},
        ],
        food=[{"id": "food-boiler", "utility": "steam", "role": "boiler"}],
    )
    plant = Plant(park)
    assert [(b.steam.id, b.fuel.id if b.fuel else None) for b in plant.boilers] == [
        ("boiler-1", "burner-1"),
        ("food-boiler", None),  # fuel is never paired across enterprises
    ]
    assert plant.boiler("burner-2") is None
    found = plant.boiler("burner-1")
    assert found is not None
    assert found.steam.id == "boiler-1"
    assert _ids(plant.boiler_fuel()) == ["burner-1"]


def test_cooling_water_heat_recovery_and_tanks() -> None:
    park = _park(
        [
            {"id": "main", "utility": "water"},
            {"id": "t1-in", "utility": "water", "parent": "main", "role": "tank_in"},
            {"id": "t1-out", "utility": "water", "parent": "main", "role": "tank_out"},
            {"id": "t1", "utility": "water", "role": "tank"},
            {"id": "t2", "utility": "water", "role": "tank"},
        ],
        steel=[
            {"id": "loop", "utility": "water", "role": "cooling", "parent": "main"},
            {"id": "loop-a", "utility": "water", "role": "cooling", "parent": "loop"},
            {"id": "hr", "utility": "heat", "role": "heat_recovery"},
            {"id": "hr-virtual", "utility": "heat", "role": "heat_recovery", "formula": "hr"},
        ],
    )
    plant = Plant(park)
    # a cooling meter with sub-meters is their parent, not a loop of its own
    assert _ids(plant.cooling) == ["loop-a"]
    assert _ids(plant.cooling_of("steel")) == ["loop-a"]
    assert plant.cooling_of("park") == []
    assert _ids(plant.heat_recovery) == ["hr"]  # virtual meters belong to no system
    first, second = plant.tanks
    assert (first.level, first.inlet, first.outlet) == (
        park.tree.meters["t1"],
        park.tree.meters["t1-in"],
        park.tree.meters["t1-out"],
    )
    assert second.level is not None
    assert second.level.id == "t2"
    assert (second.inlet, second.outlet) == (None, None)


def test_the_demo_park() -> None:
    plant = Plant(Park.from_yaml(DEMO))
    assert sorted(plant.air) == ["autoparts", "steelco"]
    assert _ids(plant.air["steelco"].headers) == ["steelco-air-header"]
    assert _ids(plant.air["steelco"].delivered) == [f"steelco-c{k}-air" for k in (1, 2, 3)]
    assert _ids(plant.air["autoparts"].delivered) == ["autoparts-air"]
    assert [(b.steam.id, b.fuel and b.fuel.id) for b in plant.boilers] == [
        ("chemco-boiler", "chemco-boiler-gas")
    ]
    assert _ids(plant.cooling) == ["steelco-cooling"]
    assert _ids(plant.heat_recovery) == ["steelco-heat"]
    (tank,) = plant.tanks
    assert tank.level is not None
    assert tank.level.id == "park-tank"


def test_each_meter_reports_what_the_simulator_publishes_for_it() -> None:
    """The API lists these (issue 11, item 10): the quantities of the meter, not of its
    utility — no soc_pct on every electricity meter."""
    park = Park.from_yaml(DEMO)
    layout = build_layout(park)
    reported = reported_quantities(park)
    assert {m.id: reported[m.id] for m in layout.meters} == {
        m.id: tuple(layout.quantities[i]) for i, m in enumerate(layout.meters)
    }
    assert reported["elecco-bess"][-1] == "soc_pct"
    assert [m for m, q in reported.items() if "soc_pct" in q] == ["elecco-bess"]
    assert "e_export_kwh" in reported["park-main"]  # above the PV: energy flows back
    assert reported["park-tank"] == ("level_m",)


def test_declared_quantities_win_and_a_virtual_meter_has_what_its_meters_share() -> None:
    park = _park(
        [],
        a=[
            {"id": "a-main", "utility": "electricity", "quantities": ["p_kw", "e_kwh"]},
            {"id": "a-pv", "utility": "electricity", "role": "pv"},
            {"id": "a-net", "utility": "electricity", "formula": "a-main - a-pv"},
        ],
    )
    reported = reported_quantities(park)
    assert reported["a-main"] == ("p_kw", "e_kwh")
    assert reported["a-pv"] == ("p_kw", "q_kvar", "pf", "e_kwh", "e_export_kwh")
    assert reported["a-net"] == ("p_kw", "e_kwh")


@pytest.mark.parametrize(
    ("declared", "error"),
    [
        (["p_kw", "flow_m3h"], "'flow_m3h' is no electricity quantity"),
        (["p_kw", "nonsense"], "'nonsense' is no electricity quantity"),
        (["p_kw", "p_kw"], "listed twice"),
    ],
)
def test_declared_quantities_are_checked(declared: list[str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        _park([{"id": "m", "utility": "electricity", "quantities": declared}])


def test_every_meter_of_the_demo_park_has_a_name() -> None:
    park = Park.from_yaml(DEMO)
    assert [m.id for m in park.tree.meters.values() if not m.spec.name.strip()] == []
