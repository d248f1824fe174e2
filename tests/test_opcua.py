"""OPC UA: the agent's driver against the simulator's controller server (asyncua on both
sides), polling and subscribing, with status codes as qualities and outages."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from edge_agent.opcua import get_opcua_profile, quality_of
from edge_agent.opcua_driver import OpcUaDriver, OpcUaLink, OpcUaReadError
from edge_agent.settings import OpcUaTransport
from parkwatch.site import Park
from simulators.modbus import ModelFeed
from simulators.model import ParkModel
from simulators.opcua import OpcUaControllerServer, ServedOpcUaDevice

pytestmark = pytest.mark.anyio

T0 = 1_732_411_200_000
MAP = "compressor-controller"


def test_status_codes_become_qualities() -> None:
    assert quality_of(0) == "ok"  # Good
    assert quality_of(0x40900000) == "stale"  # UncertainLastUsableValue
    assert quality_of(0x40930000) == "estimated"  # UncertainSubstituteValue
    assert quality_of(0x80310000) is None  # BadCommunicationError: left out


@pytest.fixture
def feed(demo_park_path: Path) -> ModelFeed:
    feed = ModelFeed(ParkModel(Park.from_yaml(demo_park_path), seed=9))
    feed.refresh(T0)
    return feed


def controller(feed: ModelFeed, port: int = 0) -> OpcUaControllerServer:
    profile = get_opcua_profile(MAP)
    return OpcUaControllerServer(
        [
            ServedOpcUaDevice("C1", profile, feed.provider("steelco-c1"), "steelco-c1"),
            ServedOpcUaDevice("C2", profile, feed.provider("steelco-c2"), "steelco-c2"),
        ],
        port=port,
        refresh_s=0.05,
    )


def assert_model(got: dict[str, float], want: dict[str, float]) -> None:
    assert set(got) == set(get_opcua_profile(MAP).quantities)
    for quantity, value in got.items():
        assert math.isclose(value, want[quantity], rel_tol=1e-12), quantity


@pytest.mark.integration
async def test_poll_reads_each_device_and_survives_a_server_restart(feed: ModelFeed) -> None:
    server = controller(feed)
    async with server:
        link = OpcUaLink(OpcUaTransport(url=server.url), timeout_s=2.0)
        profile = get_opcua_profile(MAP)
        c1 = OpcUaDriver("steelco-c1", "C1", profile, link)
        c2 = OpcUaDriver("steelco-c2", "C2", profile, link)
        try:
            assert_model(await c1.read(), feed.values("steelco-c1"))
            assert_model(await c2.read(), feed.values("steelco-c2"))
            assert c1.quality == "ok"
            feed.refresh(T0 + 60_000)
            await asyncio.sleep(0.3)  # the controller updates its variables
            assert_model(await c1.read(), feed.values("steelco-c1"))

            feed.failed.add("steelco-c2")  # the controller lost that drive: Bad values
            await asyncio.sleep(0.3)
            assert await c2.read() == {}
            feed.failed.clear()

            await server.stop()
            with pytest.raises(OpcUaReadError):
                await c1.read()
            await server.start()  # same port: the session is opened again
            await asyncio.sleep(0.3)
            assert_model(await c1.read(), feed.values("steelco-c1"))
        finally:
            await link.aclose()
    assert link.stats.requests >= 6


@pytest.mark.integration
async def test_subscription_delivers_changes(feed: ModelFeed) -> None:
    async with controller(feed) as server:
        transport = OpcUaTransport(url=server.url, mode="subscribe")
        link = OpcUaLink(transport, timeout_s=2.0, publish_interval_s=0.1)
        c1 = OpcUaDriver("steelco-c1", "C1", get_opcua_profile(MAP), link)
        try:
            first = await c1.read()  # opens the session and subscribes
            deadline = asyncio.get_running_loop().time() + 5
            while set(first) != set(get_opcua_profile(MAP).quantities):
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.1)
                first = await c1.read()
            assert_model(first, feed.values("steelco-c1"))
            feed.refresh(T0 + 120_000)
            want = feed.values("steelco-c1")
            while (await c1.read())["e_kwh"] != want["e_kwh"]:
                assert asyncio.get_running_loop().time() < deadline + 5
                await asyncio.sleep(0.1)
            assert_model(await c1.read(), want)
        finally:
            await link.aclose()
