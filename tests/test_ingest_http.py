"""Ingest's /metrics and /health over real HTTP: Prometheus text with the documented series,
and a health check that fails while the database or the broker is unreachable."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from ingest.service import IngestService
from ingest.settings import IngestSettings
from parkwatch import mqtt, topics
from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.site import Park, SiteRegistry
from parkwatch.stack import LocalStack, free_port
from parkwatch.wire import encode_batch
from tests.support import background, eventually

pytestmark = pytest.mark.anyio


@pytest.mark.integration
async def test_metrics_and_health(tmp_path: Path, demo_park_path: Path) -> None:
    registry = SiteRegistry([Park.from_yaml(demo_park_path)])
    with LocalStack(tmp_path / "stack") as stack:
        port = free_port()
        settings = IngestSettings(
            mqtt=MqttSettings(url=stack.mqtt_url),
            influx=InfluxSettings(url=stack.influx_url, database="http"),
            client_id="http-test",
            http_port=port,
            session_expiry_s=0,
        )
        service = IngestService(settings, registry)
        base = f"http://127.0.0.1:{port}"
        async with (
            background(service.run()),
            service.serve_http(),
            httpx.AsyncClient(base_url=base) as http,
        ):
            await asyncio.wait_for(service.subscribed.wait(), timeout=10)
            health = (await http.get("/health")).json()
            # one replica, no share group: it tracks each gateway's seq, and says so
            assert (health["status"], health["seq_tracking"]) == ("ok", True)
            now = int(time.time() * 1000)
            async with mqtt.client(settings.mqtt, "http-gw") as gateway:
                good = {"m": "foodco-main", "t": now, "q": {"p_kw": 5.0}}
                bad = {"m": "foodco-main", "t": now, "q": {"pf": 9.0}}
                payload = encode_batch("gw-foodco", 1, [good, bad])
                await gateway.publish(topics.data_topic("lj-demo", "gw-foodco"), payload, qos=1)

            async def counted() -> bool:
                text = (await http.get("/metrics")).text
                return "pw_ingest_readings_total 1.0" in text

            await eventually(counted, 10, "the reading counted")
            text = (await http.get("/metrics")).text
            for name in (
                "pw_ingest_messages_total 1.0",
                'pw_ingest_rejected_total{reason="implausible_value"} 1.0',
                "pw_ingest_messages_in_progress",
                "pw_ingest_write_seconds_bucket",
                "pw_ingest_lag_seconds",
                "pw_ingest_seq_gaps_total",
                "pw_ingest_seq_tracking 1.0",
            ):
                assert name in text, name

            stack.influxdb.stop()
            response = await http.get("/health")
            assert response.status_code == 503
            assert response.json()["database"] is False
            stack.influxdb.start()
            assert (await http.get("/health")).status_code == 200

            stack.mosquitto.stop()

            async def broker_down() -> bool:
                return (await http.get("/health")).status_code == 503

            await eventually(broker_down, 10, "health to notice the broker is gone")
            stack.mosquitto.start()

            async def healthy() -> bool:
                return (await http.get("/health")).status_code == 200

            await eventually(healthy, 30, "health back after the broker returns")
