"""The edge agent reads Modbus, DL/T 645 and OPC UA devices through configuration alone: the
simulator serves one gateway's meters over all three, writes the gateway.yaml, and the real
agent — built from that file and nothing else — publishes what the meters hold."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from edge_agent.service import EdgeAgent
from edge_agent.settings import EdgeSettings
from parkwatch import topics
from parkwatch.settings import MqttSettings
from parkwatch.site import Park, SiteRegistry
from parkwatch.tasks import cancel_and_wait
from parkwatch.topics import DataTopic
from parkwatch.wire import parse_batch
from simulators.gateway import MultiProtocolGateway
from tests.test_edge_agent import subscriber

pytestmark = pytest.mark.anyio

GATEWAY = "gw-steelco"
DLT645 = ["steelco-furnace", "steelco-air"]
OPCUA = ["steelco-c1", "steelco-c2", "steelco-c3"]


async def test_three_protocols_through_configuration_alone(
    demo_park_path: Path, mqtt_settings: MqttSettings, tmp_path: Path
) -> None:
    park = Park.from_yaml(demo_park_path)
    sim = MultiProtocolGateway(
        park,
        GATEWAY,
        dlt645=DLT645,
        opcua=OPCUA,
        dlt645_line="serial",
        state_dir=tmp_path / "lines",
        refresh_s=None,  # the model holds still: values can be compared exactly
        seed=21,
    )
    async with sim:
        config = sim.write_gateway_config(
            tmp_path / "gateway.yaml",
            mqtt_url=mqtt_settings.url,
            poll_interval_s=0.3,
            buffer_dir="buffer",
        )
        settings = EdgeSettings.from_yaml(
            config,
            client_id="edge-protocols-test",
            metrics_port=0,  # 0: a free port
        )
        protocols = {d.meter: settings.profile(d).protocol for d in settings.devices}
        assert {protocols[m] for m in DLT645} == {"dlt645"}
        assert {protocols[m] for m in OPCUA} == {"opcua"}
        assert "modbus" in protocols.values()
        agent = EdgeAgent(settings)
        everyone = set(protocols)
        async with subscriber(mqtt_settings.url, "protocols-sub") as sub:
            await sub.subscribe(topics.data_topic(park.park, GATEWAY), qos=1)
            task = asyncio.create_task(agent.run())
            try:
                batch = await whole_batch(sub, everyone)
                assert agent.metrics_port is not None
                async with httpx.AsyncClient() as http:
                    page = await http.get(f"http://127.0.0.1:{agent.metrics_port}/metrics")
            finally:
                await cancel_and_wait(task)
        assert agent.devices is not None
        assert len(agent.devices.links) == 3  # Modbus endpoint, DL/T 645 line, OPC UA server

    # per-device latency and per-link utilisation, as Prometheus metrics
    metrics = page.text
    for meter in everyone:
        assert f'pw_edge_read_seconds_count{{meter="{meter}"}}' in metrics
    assert metrics.count("pw_edge_link_utilisation{") == 3
    assert 'pw_edge_reads_total{meter="steelco-c1",result="ok"}' in metrics

    parsed = parse_batch(
        orjson.dumps(batch),
        DataTopic(park.park, GATEWAY),
        SiteRegistry([park]),
        int(time.time() * 1000),
    )
    assert parsed.rejections == []
    for reading in batch["readings"]:
        meter = reading["m"]
        want = sim.feed.values(meter)
        device = next(d for d in settings.devices if d.meter == meter)
        assert set(reading["q"]) == set(settings.profile(device).quantities), meter
        # within what each protocol carries: BCD steps × transformer ratios, float32, …
        slack = max(0.1, 0.01 * device.ct_ratio * device.pt_ratio)
        for quantity, value in reading["q"].items():
            assert math.isclose(value, want[quantity], rel_tol=1e-3, abs_tol=slack), (
                meter,
                quantity,
                value,
                want[quantity],
            )


async def whole_batch(sub: Any, meters: set[str], within_s: float = 30.0) -> dict[str, Any]:
    """The first batch that carries a reading of every meter."""
    async with asyncio.timeout(within_s):
        async for message in sub.messages:
            assert isinstance(message.payload, bytes)
            batch: dict[str, Any] = orjson.loads(message.payload)
            if {r["m"] for r in batch["readings"]} == meters:
                return batch
    raise AssertionError("the subscription ended")


def test_only_electricity_meters_are_served_as_dlt645_or_by_the_compressor_controller(
    demo_park_path: Path,
) -> None:
    """Both maps carry electricity quantities: a water or gas meter served through them would
    publish kWh for a water meter, which ingest then rejects reading after reading."""
    park = Park.from_yaml(demo_park_path)
    with pytest.raises(ValueError, match="steelco-water is a water meter"):
        MultiProtocolGateway(park, GATEWAY, dlt645=["steelco-water"])
    with pytest.raises(ValueError, match="steelco-gas is a gas meter"):
        MultiProtocolGateway(park, GATEWAY, opcua=["steelco-gas"])
