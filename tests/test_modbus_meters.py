"""Meter profiles against real Modbus servers: what the simulated meters encode from the park
model, the edge agent's drivers read back and decode to the same values (TCP and RTU)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

import pytest

from edge_agent.devices import GatewayDevices
from edge_agent.drivers import (
    DriverError,
    MeterReadError,
    MeterRefusedError,
    MeterTimeoutError,
    ModbusDrivers,
    ModbusLink,
)
from edge_agent.poller import Poller
from edge_agent.profiles import (
    NO_RATIOS,
    Function,
    MeterProfile,
    Ratios,
    WordOrder,
    builtin_profiles,
    get_profile,
)
from edge_agent.settings import DeviceConfig, EdgeSettings, RtuTransport, TcpTransport
from parkwatch.site import Park
from simulators.modbus import (
    ModbusMeterServer,
    ModbusRtuMeterServer,
    ModbusTcpMeterServer,
    ModelFeed,
    PtyPair,
    ServedMeter,
    SimulatedGateway,
)
from simulators.modbus.park import ratios_for
from simulators.model import ParkModel

pytestmark = pytest.mark.anyio

T0 = 1_732_411_200_000  # 2024-11-24 09:20 in Shanghai: factories at work

# one demo-park meter per profile, each read as its own unit id
METER_FOR_PROFILE = {
    "eastron-sdm630": "steelco-furnace",
    "schneider-pm5xxx": "park-main",
    "acrel-dtsd-style": "chemco-reactors",
    "water-ultrasonic-cdab": "steelco-water",
    "heat-meter": "foodco-heat",
    "gas-flow-computer": "steelco-gas",
}


@pytest.fixture
def feed(demo_park_path: Path) -> ModelFeed:
    feed = ModelFeed(ParkModel(Park.from_yaml(demo_park_path), seed=7))
    feed.refresh(T0)
    return feed


def assert_decoded(
    profile: MeterProfile, ratios: Ratios, got: Mapping[str, float], want: Mapping[str, float]
) -> None:
    """Equal within what the register can carry: float32 rounding or the integer step."""
    assert set(got) == set(profile.quantities)
    for quantity, value in got.items():
        spec = profile.register(quantity)
        expected = want[quantity]
        float_eps = 2**-23 if spec.type == "float32" else 2**-52
        tolerance = spec.resolution(ratios) / 2 + abs(expected) * float_eps + 1e-9
        assert math.isclose(value, expected, abs_tol=tolerance), (
            f"{profile.name} {quantity}: decoded {value}, model {expected}, ±{tolerance}"
        )


def tcp_device(meter: str, profile: str, unit: int, port: int, ratios: Ratios) -> DeviceConfig:
    return DeviceConfig(
        meter=meter,
        profile=profile,
        unit=unit,
        transport=TcpTransport(host="127.0.0.1", port=port),
        ct_ratio=ratios.ct,
        pt_ratio=ratios.pt,
    )


def test_every_builtin_profile_reads_in_few_requests() -> None:
    profiles = builtin_profiles()
    assert set(METER_FOR_PROFILE) <= set(profiles)
    for profile in profiles.values():
        plan = profile.read_plan
        assert sum(len(b.registers) for b in plan) == len(profile.registers)
        for block in plan:
            assert block.count <= profile.max_count
    # contiguous (or readable-gap) registers share a request
    assert len(get_profile("eastron-sdm630").read_plan) == 1
    assert len(get_profile("schneider-pm5xxx").read_plan) == 6  # power factor: a block of its own


def test_word_order_and_scale_as_pymodbus_encodes_them() -> None:
    water = get_profile("water-ultrasonic-cdab")
    flow = water.register("flow_m3h")
    assert flow.word_order is WordOrder.LITTLE
    assert flow.encode(12.5) == [0x0000, 0x4148]  # 12.5f = 0x41480000, low word first
    assert get_profile("eastron-sdm630").register("v_v").encode(12.5) == [0x4148, 0x0000]
    total = water.register("vol_m3")  # uint32 litres
    assert total.encode(70_000.123) == [70_000_123 & 0xFFFF, 70_000_123 >> 16]
    assert total.decode(total.encode(70_000.123)) == pytest.approx(70_000.123)
    energy = get_profile("schneider-pm5xxx").register("e_kwh")  # INT64 Wh, ABCD
    assert energy.encode(1_834_567.2) == [0, 0, 1_834_567_200 >> 16, 1_834_567_200 & 0xFFFF]
    acrel = get_profile("acrel-dtsd-style").register("p_kw")  # int16 W secondary × PT × CT
    assert acrel.encode(412.5, Ratios(ct=40)) == [round(412_500 / 40)]
    assert acrel.decode([10_313], Ratios(ct=40)) == pytest.approx(412.52)


@pytest.mark.integration
async def test_each_profile_serves_the_model_and_decodes_back(feed: ModelFeed) -> None:
    servers: list[ModbusMeterServer] = []
    devices: list[DeviceConfig] = []
    ratios: dict[str, Ratios] = {}
    try:
        for unit, (name, meter) in enumerate(METER_FOR_PROFILE.items(), start=1):
            profile = get_profile(name)
            ratios[meter] = ratios_for(profile, feed.values(meter))
            server = ModbusMeterServer(
                profile, unit, feed.provider(meter), ratios=ratios[meter], meter=meter
            )
            await server.start()
            servers.append(server)
            devices.append(tcp_device(meter, name, unit, server.port, ratios[meter]))
        assert ratios["chemco-reactors"].ct > 1  # the Acrel meter reads secondary values

        async with ModbusDrivers(devices, timeout_s=1.0) as drivers:
            for step in range(2):  # live values: the next model step is served too
                if step:
                    feed.refresh(T0 + 60_000)
                for driver in drivers.drivers:
                    got = await driver.read()
                    assert_decoded(
                        driver.profile, ratios[driver.meter], got, feed.values(driver.meter)
                    )
    finally:
        for server in servers:
            await server.stop()


@pytest.mark.integration
async def test_a_gateway_serves_many_units_on_one_endpoint(demo_park_path: Path) -> None:
    park = Park.from_yaml(demo_park_path)
    async with SimulatedGateway(park, "gw-steelco", refresh_s=None, seed=3) as sim:
        devices = [DeviceConfig.model_validate(d) for d in sim.device_configs()]
        assert {d.meter for d in devices} == {
            m.id for m in park.iter_meters() if m.gateway == "gw-steelco"
        }
        async with ModbusDrivers(devices) as drivers:
            assert len(drivers.links) == 1  # one TCP connection carries every unit
            readings = await Poller(drivers.drivers).poll_once()
        assert len(readings) == len(devices)
        for reading, device in zip(readings, devices, strict=True):
            profile = get_profile(device.profile)
            assert reading["m"] == device.meter
            assert reading["s"] == "ok"
            assert_decoded(profile, device.ratios, reading["q"], sim.feed.values(device.meter))


@pytest.mark.integration
async def test_cdab_meter_needs_its_word_order(feed: ModelFeed) -> None:
    profile = get_profile("water-ultrasonic-cdab")
    want = feed.values("steelco-water")
    async with ModbusMeterServer(profile, 5, feed.provider("steelco-water")) as server:
        device = tcp_device("steelco-water", profile.name, 5, server.port, NO_RATIOS)
        async with ModbusDrivers([device]) as drivers:
            driver = drivers.drivers[0]
            (block,) = profile.read_plan
            words = await driver.read_words(block.function, block.address, block.count)
    for quantity in ("flow_m3h", "vol_m3"):
        spec = profile.register(quantity)
        own = words[spec.address : spec.address + spec.words]
        right = spec.decode(own)
        wrong = spec.model_copy(update={"word_order": WordOrder.BIG}).decode(own)
        assert right == pytest.approx(want[quantity], rel=1e-6, abs=spec.resolution())
        assert not math.isclose(wrong, want[quantity], rel_tol=1e-3), quantity


@pytest.mark.integration
async def test_wrong_map_gets_an_exception_answer(feed: ModelFeed) -> None:
    """A Schneider map against an Eastron: the addresses do not exist → exception 2."""
    eastron = get_profile("eastron-sdm630")
    async with ModbusMeterServer(eastron, 1, feed.provider("steelco-furnace")) as server:
        wrong = tcp_device("steelco-furnace", "schneider-pm5xxx", 1, server.port, NO_RATIOS)
        async with ModbusDrivers([wrong]) as drivers:
            with pytest.raises(MeterRefusedError) as info:
                await drivers.drivers[0].read()
            # the right addresses with the wrong function code (holding, not input): same
            with pytest.raises(MeterRefusedError):
                await drivers.drivers[0].read_words(Function.HOLDING, 0x34, 2)
    assert info.value.code == 2
    assert info.value.function is Function.HOLDING
    assert info.value.address == 3009


async def test_rtu_meters_over_a_serial_line(feed: ModelFeed, tmp_path: Path) -> None:
    water = get_profile("water-ultrasonic-cdab")
    acrel = get_profile("acrel-dtsd-style")
    acrel_ratios = ratios_for(acrel, feed.values("elecco-smt"))
    meters = [
        ServedMeter(7, water, feed.provider("elecco-water"), meter="elecco-water"),
        ServedMeter(3, acrel, feed.provider("elecco-smt"), acrel_ratios, "elecco-smt"),
    ]
    with PtyPair(tmp_path / "pty") as pty:
        line = RtuTransport(port=pty.gateway_end, baudrate=9600)
        server = ModbusRtuMeterServer(meters, serial_port=pty.device_end, baudrate=9600)
        async with server:
            devices = [
                DeviceConfig(meter="elecco-water", profile=water.name, unit=7, transport=line),
                DeviceConfig(
                    meter="elecco-smt",
                    profile=acrel.name,
                    unit=3,
                    transport=line,
                    ct_ratio=acrel_ratios.ct,
                    pt_ratio=acrel_ratios.pt,
                ),
                # a unit nobody serves on the bus stays silent: a timeout, the bus stays usable
                DeviceConfig(meter="nobody", profile=water.name, unit=9, transport=line),
            ]
            async with ModbusDrivers(devices, timeout_s=0.3) as drivers:
                assert len(drivers.links) == 1  # one bus (one open port), requests take turns
                readings = await Poller(drivers.drivers, max_concurrency=4).poll_once()
                with pytest.raises(MeterTimeoutError):
                    await drivers.drivers[2].read()
                again = await drivers.drivers[0].read()
    assert [r["m"] for r in readings] == ["elecco-water", "elecco-smt"]
    assert_decoded(water, NO_RATIOS, readings[0]["q"], feed.values("elecco-water"))
    assert_decoded(acrel, acrel_ratios, readings[1]["q"], feed.values("elecco-smt"))
    assert_decoded(water, NO_RATIOS, again, feed.values("elecco-water"))


@pytest.mark.integration
async def test_dead_device_is_logged_once_and_skipped(
    feed: ModelFeed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge_agent")
    eastron = get_profile("eastron-sdm630")
    water = get_profile("water-ultrasonic-cdab")
    dying = ModbusTcpMeterServer(
        [ServedMeter(1, eastron, feed.provider("elecco-smt"), meter="elecco-smt")]
    )
    async with (
        dying,
        ModbusMeterServer(water, 2, feed.provider("elecco-water")) as healthy,
    ):
        devices = [
            tcp_device("elecco-smt", eastron.name, 1, dying.port, NO_RATIOS),
            tcp_device("elecco-water", water.name, 2, healthy.port, NO_RATIOS),
        ]
        async with ModbusDrivers(devices, timeout_s=0.5) as drivers:
            poller = Poller(drivers.drivers)
            assert [r["m"] for r in await poller.poll_once()] == ["elecco-smt", "elecco-water"]

            await dying.stop()
            with pytest.raises(MeterReadError) as info:
                await drivers.drivers[0].read()
            assert isinstance(info.value, DriverError)
            assert info.value.__cause__ is not None  # the pymodbus error, chained
            for _ in range(4):
                readings = await poller.poll_once()
                assert [r["m"] for r in readings] == ["elecco-water"]  # absent, not invented

            await dying.start()  # same port: the meter is back
            assert [r["m"] for r in await poller.poll_once()] == ["elecco-smt", "elecco-water"]
            await poller.poll_once()

    ours = [r for r in caplog.records if r.name.startswith("edge_agent")]
    gone = [r for r in ours if "unreachable" in r.getMessage()]
    back = [r for r in ours if "is back after" in r.getMessage()]
    assert len(gone) == 1
    assert "elecco-smt" in gone[0].getMessage()
    assert len(back) == 1
    assert "elecco-smt" in back[0].getMessage()
    assert "4 failed attempts" in back[0].getMessage()
    state = poller.devices[0]
    assert state.reads_failed == 4
    assert state.reads_ok == 3


@pytest.mark.integration
async def test_a_silent_unit_leaves_the_agents_serial_bus_open(
    feed: ModelFeed, tmp_path: Path
) -> None:
    """The agent's drivers (one timeout per device, as gateway.yaml gives it): a unit that
    does not answer is a timeout, and the bus' port stays open for the units that do."""
    water = get_profile("water-ultrasonic-cdab")
    meters = [ServedMeter(7, water, feed.provider("elecco-water"), meter="elecco-water")]
    with PtyPair(tmp_path / "pty") as pty:
        line = RtuTransport(port=pty.gateway_end, baudrate=9600)
        settings = EdgeSettings(
            park="lj-demo",
            gateway="gw-elecco",
            request_timeout_s=0.3,
            devices=[
                DeviceConfig(meter="elecco-water", profile=water.name, unit=7, transport=line),
                DeviceConfig(meter="nobody", profile=water.name, unit=9, transport=line),
            ],
        )
        server = ModbusRtuMeterServer(meters, serial_port=pty.device_end, baudrate=9600)
        async with server, GatewayDevices(settings) as devices:
            (link,) = devices.links.values()
            assert isinstance(link, ModbusLink)
            await devices.drivers[0].read()
            port = link._client  # the open serial port
            assert port is not None
            with pytest.raises(MeterTimeoutError):
                await devices.drivers[1].read()
            assert link._client is port, "the bus was closed for one silent unit"
            again = await devices.drivers[0].read()
            assert link._client is port
    assert_decoded(water, NO_RATIOS, again, feed.values("elecco-water"))
