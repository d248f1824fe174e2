"""The profile catalogue: real products with cited manuals across the utilities, and every
built-in Modbus map served by the simulator and decoded back by the agent's driver."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edge_agent.catalog import builtin_catalog, load_catalog
from edge_agent.dlt645 import Dlt645Profile, builtin_dlt645_profiles, parse_format
from edge_agent.dlt645_driver import Dlt645Driver, Dlt645Link
from edge_agent.drivers import ModbusDrivers
from edge_agent.profiles import MeterProfile, ProfileError, Ratio, Transform, builtin_profiles
from edge_agent.settings import DeviceConfig, TcpTransport
from parkwatch.quantities import Utility
from parkwatch.site import Park
from simulators.dlt645 import Dlt645Bus, Dlt645TcpServer, ServedDlt645Meter
from simulators.modbus import ModbusMeterServer, ModelFeed
from simulators.modbus.park import ratios_for
from simulators.model import ParkModel

pytestmark = pytest.mark.anyio

T0 = 1_732_411_200_000


def test_ten_real_products_across_the_utilities() -> None:
    real = [p for p in builtin_catalog().values() if not p.illustrative]
    assert len(real) >= 10
    assert {p.utility for p in real} >= {
        Utility.ELECTRICITY,
        Utility.WATER,
        Utility.HEAT,
        Utility.GAS,
        Utility.STEAM,
    }
    for profile in real:
        # each cites where its addresses come from: a manual (and its version) or a standard
        assert len(profile.source) > 60, profile.name
    names = {p.name for p in real}
    assert {"schneider-iem3xxx", "acrel-adl3000", "dlt645-2007-3ph"} <= names


@pytest.mark.parametrize("name", sorted(builtin_catalog()))
def test_every_profile_cites_a_versioned_source_or_says_it_is_illustrative(name: str) -> None:
    profile = builtin_catalog()[name]
    if profile.illustrative:
        assert "llustrative" in profile.source  # and says so in words
        return
    # the manual's version or date as printed on it; a manual that prints none says so
    version = profile.source_version
    assert any(c.isdigit() for c in version) or version.startswith("none printed"), version


def test_a_dlt645_meter_behind_a_modbus_converter() -> None:
    """The converter profile reads the DL/T 645 data identifiers' values as Modbus registers;
    no converter's published register map was found, so it says it is illustrative."""
    converter = builtin_profiles()["dlt645-modbus-converter"]
    assert converter.illustrative
    native = builtin_catalog()["dlt645-2007-3ph"]
    assert native.protocol == "dlt645"
    assert set(converter.quantities) == {v.quantity for r in native.reads for v in r.values}


def test_a_dlt645_meter_with_its_converter_built_in_from_its_manual() -> None:
    """The CHINT DTSU666 leaves the factory speaking DL/T 645 and switches to Modbus: both
    sides are real profiles from its manuals, and either reads the same quantities."""
    catalog = builtin_catalog()
    native, switched = catalog["chint-dtsu666-dlt645"], catalog["chint-dtsu666"]
    assert native.protocol == "dlt645"
    assert switched.protocol == "modbus"
    assert not native.illustrative
    assert not switched.illustrative
    assert set(native.quantities) == set(switched.quantities)
    # the meter's DL/T 645 side has no tariff registers: the total alone, not the tariff block
    assert "e_t1_kwh" not in native.quantities


def test_schneider_power_factor_is_decoded() -> None:
    pf = builtin_profiles()["schneider-pm5xxx"].register("pf")
    assert pf.transform is Transform.PF_4Q
    # quadrant 1 as it is; lagging / leading values folded past ±1 are unfolded
    assert pf.decode(pf.encode(0.92)) == pytest.approx(0.92)
    assert Transform.PF_4Q.apply(1.2) == pytest.approx(0.8)
    assert Transform.PF_4Q.apply(-1.3) == pytest.approx(-0.7)
    assert Transform.PF_4Q.apply(-0.6) == pytest.approx(-0.6)


def test_a_user_profile_of_any_protocol_from_a_directory(tmp_path: Path) -> None:
    (tmp_path / "my-meter.yaml").write_text(
        "name: my-meter\nvendor: me\nmodel: m1\nutility: water\nfunction: input\n"
        "word_order: big\nregisters:\n  - {quantity: flow_m3h, address: 4, type: float32}\n"
    )
    (tmp_path / "my-dlt.yaml").write_text(
        "protocol: dlt645\nname: my-dlt\nvendor: me\nmodel: d1\n"
        "reads:\n  - {di: '00010000', values: [{quantity: e_kwh, format: XXXXXX.XX}]}\n"
    )
    catalog = load_catalog([tmp_path])
    assert catalog["my-meter"].protocol == "modbus"
    assert catalog["my-dlt"].protocol == "dlt645"
    (tmp_path / "bad.yaml").write_text("protocol: bacnet\nname: x\n")
    with pytest.raises(ProfileError, match="bacnet"):
        load_catalog([tmp_path])


def _meter_for(profile: MeterProfile | Dlt645Profile, feed: ModelFeed, park: Park) -> str:
    """The park meter of the profile's utility whose values cover most of its quantities."""
    best, covered = "", -1
    for meter in park.iter_meters():
        if meter.utility != profile.utility:
            continue
        n = len(set(profile.quantities) & set(feed.values(meter.id)))
        if n > covered:
            best, covered = meter.id, n
    return best


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(builtin_profiles()))
async def test_every_modbus_profile_round_trips(name: str, demo_park_path: Path) -> None:
    park = Park.from_yaml(demo_park_path)
    feed = ModelFeed(ParkModel(park, seed=17))
    feed.refresh(T0)
    profile = builtin_profiles()[name]
    meter = _meter_for(profile, feed, park)
    want = feed.values(meter)
    ratios = ratios_for(profile, want)
    async with ModbusMeterServer(profile, 4, feed.provider(meter), ratios=ratios) as server:
        device = DeviceConfig(
            meter=meter,
            profile=name,
            unit=4,
            transport=TcpTransport(host="127.0.0.1", port=server.port),
            ct_ratio=ratios.ct,
            pt_ratio=ratios.pt,
        )
        async with ModbusDrivers([device]) as drivers:
            got = await drivers.drivers[0].read()
    assert len(profile.read_plan) <= len(profile.registers)
    compared = 0
    for quantity, value in got.items():
        if quantity not in want:
            continue  # the model has no such value: the simulated meter sends "not available"
        spec = profile.register(quantity)
        step = spec.resolution(ratios)
        float_eps = 2**-23 if spec.type == "float32" else 2**-52
        tolerance = step / 2 + abs(want[quantity]) * float_eps * 4 + 1e-9
        assert math.isclose(value, want[quantity], abs_tol=tolerance), (quantity, value)
        compared += 1
    assert compared >= 2, (name, meter, sorted(got))


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(builtin_dlt645_profiles()))
async def test_every_dlt645_profile_round_trips(name: str, demo_park_path: Path) -> None:
    """Each DL/T 645 map is served by a simulated meter behind a TCP transparent converter and
    read back by the agent's driver: every quantity, to the format's last digit."""
    park = Park.from_yaml(demo_park_path)
    feed = ModelFeed(ParkModel(park, seed=17))
    feed.refresh(T0)
    profile = builtin_dlt645_profiles()[name]
    meter = _meter_for(profile, feed, park)
    want = feed.values(meter)
    ratios = ratios_for(profile, want)
    served = ServedDlt645Meter("000000000161", profile, feed.provider(meter), ratios, meter)
    async with Dlt645TcpServer(Dlt645Bus([served])) as server:
        assert isinstance(server, Dlt645TcpServer)
        link = Dlt645Link(TcpTransport(host="127.0.0.1", port=server.port))
        driver = Dlt645Driver(meter, "000000000161", profile, link, ratios, timeout_s=1.0)
        try:
            got = await driver.read()
        finally:
            await link.aclose()
    assert set(got) == set(profile.quantities) & set(want)
    for read in profile.reads:
        for value in read.values:
            q = value.quantity
            if q is None or q not in want:
                continue
            _, decimals = parse_format(value.format)
            step = 10.0**-decimals * value.scale * ratios.factor(value.ratio)
            tolerance = step / 2 + 1e-9
            if sum(v.quantity == q for v in read.values) > 1:
                tolerance *= 1.5  # the mean of phases, each rounded
            assert math.isclose(got[q], want[q], abs_tol=tolerance), (q, got[q], want[q])


def test_the_dtsu666_energy_is_not_scaled_by_unconfirmed_ratios() -> None:
    """Its manual says only the 2000H block (voltage, current, power) is secondary; nothing
    read says the energy is, so neither side multiplies it by the installation ratios."""
    modbus = builtin_profiles()["chint-dtsu666"]
    assert modbus.register("e_kwh").ratio is Ratio.NONE
    assert modbus.register("e_export_kwh").ratio is Ratio.NONE
    assert modbus.register("p_kw").ratio is Ratio.PTCT  # the 2000H block stays secondary
    native = builtin_dlt645_profiles()["chint-dtsu666-dlt645"]
    energy = [v for r in native.reads for v in r.values if v.quantity in ("e_kwh", "e_export_kwh")]
    assert len(energy) == 2
    assert all(v.ratio is Ratio.NONE for v in energy)


@pytest.mark.integration
async def test_the_dtsu666_map_reads_a_meter_that_refuses_block_identifiers(
    demo_park_path: Path,
) -> None:
    """The manual does not say the meter answers block reads (0201FF00, 0202FF00): served by a
    meter that knows only the standard's single identifiers, the map still gives voltage and
    current (a refused block would drop them for good)."""
    park = Park.from_yaml(demo_park_path)
    feed = ModelFeed(ParkModel(park, seed=17))
    feed.refresh(T0)
    profile = builtin_dlt645_profiles()["chint-dtsu666-dlt645"]
    meter = _meter_for(profile, feed, park)
    want = feed.values(meter)
    ratios = ratios_for(profile, want)
    singles = Dlt645Profile.model_validate(
        {
            "protocol": "dlt645",
            "name": "single-identifiers-only",
            "vendor": "test",
            "model": "a meter without block reads",
            "reads": [
                {"di": di, "values": [{"quantity": q, "format": f, **extra}]}
                for di, q, f, extra in [
                    ("00010000", "e_kwh", "XXXXXX.XX", {}),
                    ("00020000", "e_export_kwh", "XXXXXX.XX", {}),
                    ("02010100", "v_v", "XXX.X", {"ratio": "pt"}),
                    ("02020100", "i_a", "XXX.XXX", {"signed": True, "ratio": "ct"}),
                    ("02030000", "p_kw", "XX.XXXX", {"signed": True, "ratio": "ptct"}),
                    ("02040000", "q_kvar", "XX.XXXX", {"signed": True, "ratio": "ptct"}),
                    ("02060000", "pf", "X.XXX", {"signed": True}),
                    ("02800002", "f_hz", "XX.XX", {}),
                ]
            ],
        }
    )
    served = ServedDlt645Meter("000000000162", singles, feed.provider(meter), ratios, meter)
    async with Dlt645TcpServer(Dlt645Bus([served])) as server:
        assert isinstance(server, Dlt645TcpServer)
        link = Dlt645Link(TcpTransport(host="127.0.0.1", port=server.port))
        driver = Dlt645Driver(meter, "000000000162", profile, link, ratios, timeout_s=1.0)
        try:
            got = await driver.read()
        finally:
            await link.aclose()
    for q, decimals, ratio in (("v_v", 1, ratios.pt), ("i_a", 3, ratios.ct)):
        assert q in got, sorted(got)
        assert math.isclose(got[q], want[q], abs_tol=10.0**-decimals * ratio / 2 + 1e-9)
