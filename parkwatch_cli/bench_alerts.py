"""``parkwatch bench alerts``: how long from a reading's publication to the alert it raises.

Real processes: Mosquitto and InfluxDB from a local stack, ``parkwatch analytics`` as its own
process, and a publisher playing G gateways × M meters on a one-minute poll, with simulated time
running ``speed`` times faster than the wall clock. Every meter has a contracted demand; in
some quarter hours its power steps above it, so its forecast crosses the contract a couple of
minutes in and analytics publishes a ``demand_peak`` alert. A slot closes when the poll that
completes it arrives, so each alert's trigger is the batch carrying the data at its
``detected_at`` minus one poll: latency = alert received − that batch published (wall clock).
The last line printed is one JSON object with the percentiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from parkwatch import mqtt, topics
from parkwatch.events import parse_time_ms
from parkwatch.settings import MqttSettings
from parkwatch.stack import LocalStack, free_port, spawn, stop_process, tcp_open
from parkwatch.wire import encode_batch

PARK = "bench-alerts"
STEP_MS = 60_000
T0_MS = 1_795_968_000_000  # a local midnight in Shanghai


def bench_park(gateways: int, meters: int) -> dict[str, Any]:
    return {
        "park": PARK,
        "enterprises": [
            {
                "id": f"e{g}",
                "gateway": f"gw-{g}",
                "workshops": [
                    {
                        "id": "w",
                        "meters": [
                            {"id": f"m{g}-{k}", "utility": "electricity",
                             "contracted_demand_kw": 1000}
                            for k in range(meters)
                        ],
                    }
                ],
            }
            for g in range(gateways)
        ],
    }  # fmt: skip


def power(g: int, k: int, minute: int) -> float:
    """800 kW, stepping to 1,300 kW in every third quarter hour (offset per meter)."""
    block = minute // 15
    return 1300.0 if (block + g + k) % 3 == 0 else 800.0


async def run(gateways: int, meters: int, minutes: int, speed: float, root: Path) -> dict[str, Any]:
    site = root / "park.yaml"
    site.write_text(yaml.safe_dump(bench_park(gateways, meters)))
    with LocalStack(root / "stack") as stack:
        env = {
            **os.environ,
            "PW_ANALYTICS_MQTT__URL": stack.mqtt_url,
            "PW_ANALYTICS_INFLUX__URL": stack.influx_url,
            "PW_ANALYTICS_SITES": json.dumps([str(site)]),
            "PW_ANALYTICS_WARMUP_S": "0",
            "PW_ANALYTICS_REBUILD_S": "0",
        }
        http = free_port()
        env["PW_ANALYTICS_HTTP_PORT"] = str(http)
        proc = spawn([sys.executable, "-m", "parkwatch_cli", "analytics"], root / "analytics.log",
                     env=env)  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not tcp_open("127.0.0.1", http):
                if time.monotonic() > deadline:
                    raise RuntimeError("analytics did not start (see analytics.log)")
                await asyncio.sleep(0.1)
            return await _measure(MqttSettings(url=stack.mqtt_url), gateways, meters, minutes,
                                  speed)  # fmt: skip
        finally:
            stop_process(proc)


async def _measure(
    settings: MqttSettings, gateways: int, meters: int, minutes: int, speed: float
) -> dict[str, Any]:
    published: dict[tuple[str, int], float] = {}
    latencies: list[float] = []
    async with mqtt.client(settings, "bench-alert-watch") as watcher, \
            mqtt.client(settings, "bench-alert-gateways") as publisher:  # fmt: skip
        await watcher.subscribe(topics.alerts_filter(PARK), qos=1)

        async def watch() -> None:
            async for message in watcher.messages:
                received = time.perf_counter()
                assert isinstance(message.payload, bytes)
                event = orjson.loads(message.payload)
                if event["state"] != "opened" or event["kind"] != "demand_peak":
                    continue
                gateway = "gw-" + str(event["meter"]).split("-")[0][1:]
                trigger = parse_time_ms(event["detected_at"]) - STEP_MS
                sent = published.get((gateway, trigger))
                if sent is not None:
                    latencies.append(received - sent)

        watching = asyncio.create_task(watch())
        await asyncio.sleep(1.0)  # analytics subscribes and warms up
        started = time.perf_counter()
        for minute in range(minutes):
            due = started + minute * STEP_MS / 1000 / speed
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            t = T0_MS + minute * STEP_MS
            for g in range(gateways):
                readings = [{"m": f"m{g}-{k}", "t": t, "q": {"p_kw": power(g, k, minute)}}
                            for k in range(meters)]  # fmt: skip
                payload = encode_batch(f"gw-{g}", minute + 1, readings)
                await publisher.publish(topics.data_topic(PARK, f"gw-{g}"), payload, qos=1)
                published[(f"gw-{g}", t)] = time.perf_counter()
        await asyncio.sleep(3.0)
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
    values = np.array(latencies) * 1000
    return {
        "gateways": gateways,
        "meters": gateways * meters,
        "simulated_minutes": minutes,
        "speed": speed,
        "alerts": int(values.size),
        "latency_ms_p50": round(float(np.percentile(values, 50)), 1) if values.size else None,
        "latency_ms_p99": round(float(np.percentile(values, 99)), 1) if values.size else None,
        "latency_ms_max": round(float(values.max()), 1) if values.size else None,
    }


def main(gateways: int, meters: int, minutes: int, speed: float) -> str:
    with tempfile.TemporaryDirectory(prefix="pw-bench-alerts-") as root:
        result = asyncio.run(run(gateways, meters, minutes, speed, Path(root)))
    print(
        f"{result['alerts']} demand-peak alerts from {result['meters']} meters: publish → alert "
        f"p50 {result['latency_ms_p50']} ms, p99 {result['latency_ms_p99']} ms, "
        f"max {result['latency_ms_max']} ms"
    )
    return json.dumps(result)
