"""``edge probe`` against real Modbus servers: it finds the word order and the address offset
of a deliberately misconfigured meter, and which unit ids answer on a line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.drivers import ModbusLink
from edge_agent.probe import Order, decode, identify, probe, scan_units
from edge_agent.profiles import (
    MeterProfile,
    RegisterSpec,
    WordOrder,
    builtin_profiles,
    get_profile,
)
from edge_agent.settings import TcpTransport
from parkwatch.site import Park
from parkwatch_cli.app import app
from simulators.modbus import ModbusTcpMeterServer, ModelFeed, ServedMeter
from simulators.model import ParkModel

pytestmark = pytest.mark.anyio

T0 = 1_732_411_200_000


@pytest.fixture
def feed(demo_park_path: Path) -> ModelFeed:
    # a working hour held still: every value live and non-zero, the same at each read
    feed = ModelFeed(ParkModel(Park.from_yaml(demo_park_path), seed=3))
    feed.refresh(T0)
    return feed


def as_installed(profile: MeterProfile, shift: int, order: WordOrder) -> MeterProfile:
    """The meter as it really is: every register ``shift`` further on, words in ``order``,
    answering for a stretch of registers around them (as a real meter's table does)."""
    registers = [
        spec.model_copy(update={"address": spec.address + shift, "word_order": order})
        for spec in profile.registers
    ]
    first = min(s.address for s in registers)
    last = max(s.end for s in registers)
    # two more quantities just outside, so that reads one register off still get answers
    function = registers[0].function
    registers += [
        RegisterSpec(
            quantity=quantity, address=address, type="float32", word_order=order, function=function
        )
        for quantity, address in (("e_t1_kwh", first - 4), ("e_t2_kwh", last + 2))
    ]
    # validated afresh (not model_copy, which would carry the original's cached read plan)
    data = profile.model_dump() | {"registers": [r.model_dump() for r in registers], "max_gap": 16}
    return MeterProfile.model_validate(data)


def test_decode_in_every_order() -> None:
    spec = get_profile("eastron-sdm630").register("f_hz")
    words = spec.encode(50.02)  # ABCD
    assert decode(spec, words, Order.ABCD) == pytest.approx(50.02)
    assert decode(spec, words[::-1], Order.CDAB) == pytest.approx(50.02)
    swapped = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    assert decode(spec, swapped, Order.BADC) == pytest.approx(50.02)
    assert decode(spec, swapped[::-1], Order.DCBA) == pytest.approx(50.02)


@pytest.mark.integration
async def test_probe_finds_a_misconfigured_meters_word_order_and_offset(
    feed: ModelFeed,
) -> None:
    configured = get_profile("eastron-sdm630")  # what the integrator set up: ABCD, offset 0
    real = as_installed(configured, +1, WordOrder.LITTLE)  # what the meter is: CDAB, one on
    served = ServedMeter(3, real, feed.provider("steelco-furnace"), meter="steelco-furnace")
    async with ModbusTcpMeterServer([served]) as server:
        link = ModbusLink(TcpTransport(host="127.0.0.1", port=server.port), timeout_s=1.0)
        try:
            report = await probe(link, 3, configured, pause_s=0.5)
        finally:
            await link.aclose()
    best = report.best
    assert best is not None
    assert (best.offset, best.order) == (1, Order.CDAB)
    assert best.plausible == len(configured.registers)
    values = {v.quantity: v.value for v in best.verdicts}
    assert values["f_hz"] == pytest.approx(feed.values("steelco-furnace")["f_hz"], abs=0.01)
    # the configured reading is found implausible, not merely second best
    as_configured = next(c for c in report.candidates if (c.offset, c.order) == (0, Order.ABCD))
    assert as_configured.plausible < len(configured.registers) // 2
    advice = report.advice(configured)
    assert "add +1 to every address" in advice
    assert "word_order: little" in advice


@pytest.mark.integration
async def test_probe_confirms_a_right_configuration(feed: ModelFeed) -> None:
    profile = get_profile("schneider-pm5xxx")
    padded = as_installed(profile, 0, WordOrder.BIG)
    served = ServedMeter(1, padded, feed.provider("steelco-main"), meter="steelco-main")
    async with ModbusTcpMeterServer([served]) as server:
        link = ModbusLink(TcpTransport(host="127.0.0.1", port=server.port), timeout_s=1.0)
        try:
            report = await probe(link, 1, profile, pause_s=0.3)
            found = await scan_units(link, [1, 2, 3], profile)
        finally:
            await link.aclose()
    assert report.best is not None
    assert (report.best.offset, report.best.order) == (0, Order.ABCD)
    assert "reads this meter as it is" in report.advice(profile)
    assert [(u.unit, u.answered) for u in found] == [(1, True), (2, False), (3, False)]


@pytest.mark.integration
async def test_without_a_profile_the_meters_own_map_is_found(feed: ModelFeed) -> None:
    steam = get_profile("spirax-sarco-tva")
    served = ServedMeter(2, steam, feed.provider("chemco-boiler"), meter="chemco-boiler")
    async with ModbusTcpMeterServer([served]) as server:
        link = ModbusLink(TcpTransport(host="127.0.0.1", port=server.port), timeout_s=1.0)
        try:
            matches = await identify(link, 2, list(builtin_profiles().values()), pause_s=0.1)
        finally:
            await link.aclose()
    assert matches
    assert matches[0].profile.name == "spirax-sarco-tva"
    best = matches[0].report.best
    assert best is not None
    assert (best.offset, best.order) == (0, Order.ABCD)


@pytest.mark.integration
def test_probe_command_prints_the_advice(feed: ModelFeed) -> None:
    """The command line: a TCP endpoint, a unit, a profile → the table and the advice."""
    import asyncio
    import threading

    configured = get_profile("eastron-sdm630")
    real = as_installed(configured, -1, WordOrder.LITTLE)
    served = ServedMeter(5, real, feed.provider("steelco-air"), meter="steelco-air")
    ready = threading.Event()
    stop = threading.Event()
    port: list[int] = []

    def serve() -> None:
        async def main() -> None:
            async with ModbusTcpMeterServer([served]) as server:
                port.append(server.port)
                ready.set()
                await asyncio.to_thread(stop.wait)

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        result = CliRunner().invoke(
            app,
            ["edge", "probe", "--host", "127.0.0.1", "--port", str(port[0]), "--unit", "5",
             "--profile", "eastron-sdm630", "--pause", "0.3", "--scan", "4-6"],
        )  # fmt: skip
    finally:
        stop.set()
        thread.join(10)
    assert result.exit_code == 0, result.output
    assert "add -1 to every address" in result.output
    assert "use word_order: little" in result.output
    assert "unit 5: answered" in result.output
    assert "unit 4: silent" in result.output
