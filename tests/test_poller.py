"""The poll schedule against real Modbus servers: one loop per link with staggered slots,
and a dead device backing off so that it costs its link a timeout now and then, never a
stall of the others."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from edge_agent.drivers import ModbusDrivers
from edge_agent.links import Link
from edge_agent.metrics import EdgeMetrics
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


class Untranslated:
    """A driver whose library raised something it did not translate into a DriverError."""

    meter = "steelco-c3"
    name = "meter steelco-c3 (a driver with a bug)"
    identity = None
    quality = "ok"

    def __init__(self) -> None:
        self.link = Link("tcp://192.0.2.1:502")
        self.calls = 0

    def counter_moduli(self) -> dict[str, float]:
        return {}

    async def read(self) -> dict[str, float]:
        self.calls += 1
        raise ValueError("'urn:x' is not in list")


@pytest.mark.integration
async def test_an_untranslated_error_is_one_failed_read_not_the_end_of_polling(
    feed: ModelFeed, caplog: pytest.LogCaptureFixture
) -> None:
    eastron = get_profile("eastron-sdm630")
    server = ModbusTcpMeterServer([ServedMeter(1, eastron, feed.provider("steelco-c1"))])
    await server.start()
    broken = Untranslated()
    batches: list[list[Reading]] = []

    async def keep(readings: list[Reading]) -> None:
        batches.append(readings)

    try:
        async with ModbusDrivers([device("steelco-c1", server.port)], timeout_s=0.5) as drivers:
            poller = Poller([*drivers.drivers, broken], interval_s=INTERVAL, backoff_cap_s=0.4)
            await poller.run(INTERVAL, keep, cycles=8)  # ends by itself, or raises
    finally:
        await server.stop()
    assert sum(len(b) for b in batches) >= 7  # the healthy meter, every cycle
    assert all(r["m"] == "steelco-c1" for b in batches for r in b)
    assert 2 <= broken.calls < 8  # failed reads, backed off
    assert poller.devices[1].reads_failed == broken.calls
    errors = [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert len(errors) == 1  # with its traceback, once per outage
    assert errors[0].exc_info is not None


@pytest.mark.integration
async def test_link_metrics_count_requests_and_busy_time(feed: ModelFeed) -> None:
    eastron = get_profile("eastron-sdm630")
    meters = ["steelco-c1", "steelco-c2"]
    server = ModbusTcpMeterServer(
        [ServedMeter(u, eastron, feed.provider(m), meter=m) for u, m in enumerate(meters, 1)]
    )
    await server.start()
    metrics = EdgeMetrics()

    async def drop(readings: list[Reading]) -> None:
        pass

    try:
        devices = [device(m, server.port, unit=u) for u, m in enumerate(meters, 1)]
        async with ModbusDrivers(devices, timeout_s=0.5) as drivers:
            (link,) = drivers.links.values()  # two units behind one endpoint: one connection
            poller = Poller(drivers.drivers, interval_s=INTERVAL, metrics=metrics)
            await poller.run(INTERVAL, drop, cycles=3)
    finally:
        await server.stop()
    sample = metrics.registry.get_sample_value
    requests = sample("pw_edge_link_requests_total", {"link": link.name})
    assert requests == link.stats.requests == 3 * len(meters) * len(eastron.read_plan)
    busy = sample("pw_edge_link_utilisation", {"link": link.name})
    assert busy is not None
    assert 0 < busy < 1
    for meter in meters:
        assert sample("pw_edge_read_seconds_count", {"meter": meter}) == 3
