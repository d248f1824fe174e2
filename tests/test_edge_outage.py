"""The gateway through a real outage, end to end: simulated Modbus meters → edge agent →
Mosquitto → ingest → InfluxDB. The broker is stopped for 60 seconds and the gateway is
restarted once while it is gone. Afterwards every reading the gateway produced is in
InfluxDB exactly once (compared value by value), and live readings are readable within
seconds of the broker's return while the backlog is still being replayed behind them."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent.service import EdgeAgent
from edge_agent.settings import EdgeSettings
from ingest.service import IngestService
from ingest.settings import IngestSettings
from parkwatch.influx import InfluxReader
from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.site import Park, SiteRegistry
from parkwatch.stack import LocalStack
from simulators.modbus import SimulatedGateway
from tests.support import background, eventually
from tests.test_end_to_end import stored_values

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

GATEWAY = "gw-steelco"
OUTAGE_S = 60.0
log = logging.getLogger(__name__)


class RecordingAgent(EdgeAgent):
    """The real agent, noting every batch it hands to its buffer: what was produced."""

    def __init__(self, settings: EdgeSettings, produced: list[dict[str, Any]]) -> None:
        super().__init__(settings)
        self.produced = produced

    async def _store(self, readings: list[dict[str, Any]]) -> None:
        self.produced.extend(readings)
        await super()._store(readings)


def settings_for(sim: SimulatedGateway, url: str, buffer: Path) -> EdgeSettings:
    return EdgeSettings(
        park=sim.park.park,
        gateway=GATEWAY,
        mqtt=MqttSettings(url=url, connect_timeout_s=2.0),
        devices=sim.device_configs(),
        poll_interval_s=1.0,
        request_timeout_s=0.5,
        buffer_dir=buffer,
        client_id="edge-outage-test",
        reconnect_base_s=0.2,
        reconnect_cap_s=1.0,
        replay_rate=2.0,  # a minute of backlog takes half a minute to replay
    )


async def newest(reader: InfluxReader, meter: str) -> int:
    series = await reader.query(
        f'SELECT last("p_kw") FROM "electricity" WHERE "meter" = {quote_literal(meter)}'
    )
    return int(series[0].values[0][0]) if series and series[0].values else 0


def quote_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def test_broker_down_60s_with_a_gateway_restart(demo_park_path: Path, tmp_path: Path) -> None:
    park = Park.from_yaml(demo_park_path)
    registry = SiteRegistry([park])
    produced: list[dict[str, Any]] = []
    buffer = tmp_path / "buffer"
    with LocalStack(tmp_path / "stack") as stack:
        influx = InfluxSettings(url=stack.influx_url, database="edge_outage")
        ingest = IngestService(
            IngestSettings(
                mqtt=MqttSettings(url=stack.mqtt_url),
                influx=influx,
                client_id="edge-outage-ingest",
            ),
            registry,
        )
        async with (
            SimulatedGateway(park, GATEWAY, refresh_s=0.5, seed=13) as sim,
            background(ingest.run(), "ingest"),
            InfluxReader(influx) as reader,
        ):
            await asyncio.wait_for(ingest.subscribed.wait(), timeout=20)
            first = RecordingAgent(settings_for(sim, stack.mqtt_url, buffer), produced)
            async with background(first.run(), "gateway, first run"):
                await eventually(_true(lambda: first.published >= 3), 20, "publishing")
                stack.mosquitto.stop()
                down_at = time.monotonic()
                await asyncio.sleep(OUTAGE_S / 2)
            # the gateway restarts while the broker is away; its buffer is on disk
            second = RecordingAgent(settings_for(sim, stack.mqtt_url, buffer), produced)
            async with background(second.run(), "gateway, second run"):
                await asyncio.sleep(OUTAGE_S - (time.monotonic() - down_at))
                held = second.buffer.count_sync()
                assert held >= OUTAGE_S - 5  # a batch a second, kept through the restart
                stack.mosquitto.start()  # same port, same persistence file
                back_at = time.time()
                back_ms = int(back_at * 1000)

                # live first: a reading taken after the broker's return is in InfluxDB
                # while the backlog is still being replayed
                async def live_stored() -> bool:
                    return await newest(reader, "steelco-main") >= back_ms

                await eventually(live_stored, 20, "a live reading stored")
                live_after_s = time.time() - back_at
                assert second.backlog_left > 0, "the backlog was done before live readings"
                assert second.buffer.count_sync() > 0
                log.warning(
                    "live readings readable %.1fs after the broker came back; %d of %d "
                    "buffered batches still to replay",
                    live_after_s,
                    second.backlog_left,
                    held,
                )

                await eventually(_true(lambda: second.backlog_left == 0), 90, "backlog replayed")
                # what was produced so far (the gateway goes on producing live readings)
                want = as_values(list(produced))
                until = {meter: max(points) for (meter, _), points in want.items()}

                async def upto() -> dict[tuple[str, str], dict[int, float]]:
                    got = await stored_values(reader, registry, park.park)
                    return {
                        key: {t: v for t, v in points.items() if t <= until.get(key[0], 0)}
                        for key, points in got.items()
                    }

                async def all_stored() -> bool:
                    got = await upto()
                    return all(set(points) <= set(got.get(key, {})) for key, points in want.items())

                await eventually(all_stored, 30, "every value stored")
                await asyncio.sleep(1.0)  # anything extra would show up now
                stored = await upto()

    assert live_after_s < 15.0
    assert second.replayed >= held - 2  # (a batch or two may have gone out live)
    assert second.published_live > 0
    # exactly what the gateway produced, across both runs: nothing lost, nothing extra
    for key in sorted(set(stored) | set(want)):
        got, expected = stored.get(key, {}), want.get(key, {})
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        wrong = [t for t in expected if t in got and got[t] != expected[t]]
        assert (missing[:5], extra[:5], wrong[:5]) == ([], [], []), key
    assert stored == want
    assert sum(len(points) for points in want.values()) > 100 * 10


def as_values(readings: list[dict[str, Any]]) -> dict[tuple[str, str], dict[int, float]]:
    out: dict[tuple[str, str], dict[int, float]] = {}
    for reading in readings:
        for quantity, value in reading["q"].items():
            points = out.setdefault((reading["m"], quantity), {})
            assert reading["t"] not in points, "a reading produced twice"
            points[reading["t"]] = float(value)
    return out


def _true(check: Any) -> Any:
    async def run() -> bool:
        return bool(check())

    return run
