"""The poll schedule against real Modbus servers: one loop per link with staggered slots,
and a dead device backing off so that it costs its link a timeout now and then, never a
stall of the others."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from edge_agent.drivers import ModbusDrivers
from edge_agent.poller import Poller, Reading
from edge_agent.profiles import get_profile
from edge_agent.settings import DeviceConfig, TcpTransport
from parkwatch.site import Park
from parkwatch.stack import free_port
from parkwatch.tasks import cancel_and_wait
from simulators.modbus import ModbusTcpMeterServer, ModelFeed, ServedMeter
from simulators.model import ParkModel

pytestmark = pytest.mark.anyio

T0 = 1_732_411_200_000
INTERVAL = 0.2


@pytest.fixture
def feed(demo_park_path: Path) -> ModelFeed:
    feed = ModelFeed(ParkModel(Park.from_yaml(demo_park_path), seed=4), refresh_s=0.05)
    feed.refresh(T0)
    return feed


def device(meter: str, port: int, unit: int = 1) -> DeviceConfig:
    return DeviceConfig(
        meter=meter,
        profile="eastron-sdm630",
        unit=unit,
        transport=TcpTransport(host="127.0.0.1", port=port),
    )


@pytest.mark.integration
async def test_links_poll_on_staggered_slots_and_a_dead_device_backs_off(
    feed: ModelFeed,
) -> None:
    eastron = get_profile("eastron-sdm630")
    meters = ["steelco-furnace", "steelco-c1", "steelco-c2"]
    servers = [
        ModbusTcpMeterServer([ServedMeter(1, eastron, feed.provider(m), meter=m)]) for m in meters
    ]
    # a TCP port nobody listens on: every read fails at once (connection refused)
    dead = device("steelco-c3", free_port())
    for server in servers:
        await server.start()
    try:
        devices = [device(m, s.port) for m, s in zip(meters, servers, strict=True)] + [dead]
        batches: list[list[Reading]] = []

        async def keep(readings: list[Reading]) -> None:
            batches.append(readings)

        async with ModbusDrivers(devices, timeout_s=0.5) as drivers:
            assert len(drivers.links) == 4  # one connection per TCP device
            poller = Poller(drivers.drivers, interval_s=INTERVAL, backoff_cap_s=1.0)
            started = time.monotonic()
            task = asyncio.create_task(poller.run(INTERVAL, keep))
            await asyncio.sleep(3.0)
            await cancel_and_wait(task)
            elapsed = time.monotonic() - started
    finally:
        for server in servers:
            await server.stop()

    cycles = elapsed / INTERVAL
    healthy, gone = poller.devices[:3], poller.devices[3]
    for state in healthy:
        assert state.reads_ok >= cycles - 2  # every slot, whatever the dead one does
        assert state.reads_failed == 0
    # tried after 1, 2, 4, then every 5 intervals (capped at 1 s): 6 or 7 tries in 3 s,
    # where polling it every cycle would have been 15
    assert 3 <= gone.reads_failed <= 8, gone.reads_failed
    assert poller.stats.skipped_slots == 0
    full = [b for b in batches if {r["m"] for r in b} == set(meters)]
    assert len(full) >= len(batches) - 2
    # staggered: link i of 4 starts i/4 of an interval after the first, so the three live
    # meters' readings in a batch are spread over the interval, not bunched at its start
    spread = [max(r["t"] for r in b) - min(r["t"] for r in b) for b in full]
    assert sorted(spread)[len(spread) // 2] >= 0.3 * INTERVAL * 1000
