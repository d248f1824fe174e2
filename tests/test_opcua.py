"""OPC UA: the agent's driver against the simulator's controller server (asyncua on both
sides), polling and subscribing, with status codes as qualities and outages."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Literal

import pytest

from edge_agent.devices import GatewayDevices
from edge_agent.opcua import get_opcua_profile, quality_of
from edge_agent.opcua_driver import OpcUaDriver, OpcUaLink, OpcUaReadError
from edge_agent.poller import Poller
from edge_agent.settings import EdgeSettings, OpcUaTransport
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
            with pytest.raises(OpcUaReadError, match=r"every value Bad \(BadCommunicationError"):
                await c2.read()  # the device is gone (logged once), not an empty reading
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


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["poll", "subscribe"])
async def test_a_map_in_a_namespace_the_server_lacks_fails_alone(
    feed: ModelFeed, mode: Literal["poll", "subscribe"]
) -> None:
    """A map whose namespace URI the server does not serve (a typo, another firmware) is that
    device's failed read, logged and backed off like any other — not an error that ends the
    poll loop, and not a session that leaves the server's other devices unread."""
    profile = get_opcua_profile(MAP)
    typo = profile.model_copy(update={"name": "typo", "namespace": "urn:parkwatch:compresor"})
    async with controller(feed) as server:
        link = OpcUaLink(
            OpcUaTransport(url=server.url, mode=mode), timeout_s=2.0, publish_interval_s=0.1
        )
        good = OpcUaDriver("steelco-c1", "C1", profile, link)
        bad = OpcUaDriver("steelco-c2", "C2", typo, link)
        poller = Poller([good, bad], interval_s=0.1)
        try:
            with pytest.raises(OpcUaReadError, match="compresor"):
                await bad.read()
            deadline = asyncio.get_running_loop().time() + 5
            while True:  # a subscription's first values take a publishing interval
                readings = await poller.poll_once()
                if readings and set(readings[0]["q"]) == set(profile.quantities):
                    break
                assert asyncio.get_running_loop().time() < deadline, readings
                await asyncio.sleep(0.1)
        finally:
            await link.aclose()
    assert [r["m"] for r in readings] == ["steelco-c1"]
    assert_model(readings[0]["q"], feed.values("steelco-c1"))
    assert poller.devices[1].reads_failed >= 1
    assert poller.devices[1].outage.is_down


@pytest.mark.integration
async def test_a_good_value_that_is_not_a_number_is_left_out(feed: ModelFeed) -> None:
    """A controller may publish NaN or ∞ (with a Good status) for a value it does not have;
    like a float register's NaN it is never passed on — as JSON it would be null, a reading
    that ingest rejects, and a counter that is NaN would be flagged ``replaced``."""
    profile = get_opcua_profile(MAP)

    def values() -> dict[str, float]:
        return {**feed.values("steelco-c1"), "pf": math.nan, "q_kvar": math.inf}

    served = [ServedOpcUaDevice("C1", profile, values, "steelco-c1")]
    async with OpcUaControllerServer(served, refresh_s=0.05) as server:
        link = OpcUaLink(OpcUaTransport(url=server.url), timeout_s=2.0)
        c1 = OpcUaDriver("steelco-c1", "C1", profile, link)
        try:
            got = await c1.read()
        finally:
            await link.aclose()
    assert set(got) == {"p_kw", "e_kwh"}
    assert all(math.isfinite(v) for v in got.values())
    assert got["e_kwh"] == feed.values("steelco-c1")["e_kwh"]


async def test_a_servers_session_waits_as_long_as_its_slowest_device_asks() -> None:
    """Devices on one OPC UA server share its session: a device's own ``timeout_s`` must not
    be lost because another device of the server came first in gateway.yaml."""
    server = {"kind": "opcua", "url": "opc.tcp://127.0.0.1:4840/"}
    settings = EdgeSettings(
        park="lj-demo",
        gateway="gw-steelco",
        request_timeout_s=1.0,
        devices=[
            {"meter": "steelco-c1", "profile": MAP, "device": "C1", "transport": server},
            {
                "meter": "steelco-c2",
                "profile": MAP,
                "device": "C2",
                "transport": server,
                "timeout_s": 5.0,
            },
        ],
    )
    async with GatewayDevices(settings) as devices:  # nothing is opened before a read
        (link,) = devices.links.values()
        assert isinstance(link, OpcUaLink)
        assert link.timeout_s == 5.0


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["poll", "subscribe"])
async def test_a_device_name_the_server_lacks_is_a_failed_read(
    feed: ModelFeed, mode: Literal["poll", "subscribe"]
) -> None:
    """A ``device`` that is not on the server (a typo in gateway.yaml): every node id is
    unknown. Polling reads each value as BadNodeIdUnknown; a subscription refuses each
    monitored item with it — either way a failed read that names it, not empty readings
    counted as good ones for ever."""
    profile = get_opcua_profile(MAP)
    async with controller(feed) as server:
        link = OpcUaLink(
            OpcUaTransport(url=server.url, mode=mode), timeout_s=2.0, publish_interval_s=0.1
        )
        typo = OpcUaDriver("steelco-c1", "C9", profile, link)
        good = OpcUaDriver("steelco-c2", "C2", profile, link)
        try:
            with pytest.raises(OpcUaReadError, match="BadNodeIdUnknown"):
                await typo.read()
            deadline = asyncio.get_running_loop().time() + 5
            while set(await good.read()) != set(profile.quantities):  # the others go on
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.1)
        finally:
            await link.aclose()
