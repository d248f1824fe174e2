"""Simulator → Mosquitto → ingest → InfluxDB → API, all real: every reading sent comes back
from the API, none lost, none duplicated."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.settings import ApiSettings
from ingest.service import IngestService
from ingest.settings import IngestSettings
from parkwatch import mqtt, topics
from parkwatch.influx import InfluxReader, quote_ident
from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.site import Park, SiteRegistry
from simulators.publisher import ParkSimulator, Schedule
from tests.support import background, eventually, serve

pytestmark = pytest.mark.anyio

CYCLES = 30
STEP_S = 60


async def stored_values(
    reader: InfluxReader, registry: SiteRegistry, park: str
) -> dict[tuple[str, str], dict[int, float]]:
    """Every stored value as (meter, quantity) → {t_ms: value}."""
    out: dict[tuple[str, str], dict[int, float]] = {}
    for utility in {m.utility.value for m in registry.meters(park)}:
        for series in await reader.query(f"SELECT * FROM {quote_ident(utility)} GROUP BY meter"):
            meter = series.tags["meter"]
            for record in series.records():
                for name, value in record.items():
                    if name in ("time", "enterprise", "park", "quality") or value is None:
                        continue
                    out.setdefault((meter, name), {})[int(record["time"])] = float(value)
    return out


async def test_simulated_park_round_trip(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, demo_park_path: Path
) -> None:
    park = Park.from_yaml(demo_park_path)
    registry = SiteRegistry([park])
    settings = IngestSettings(
        mqtt=mqtt_settings,
        influx=influx_settings,
        client_id="e2e-ingest",
        share_group="e2e",
        session_expiry_s=0,
    )
    service = IngestService(settings, registry)
    start_ms = (int(time.time()) // STEP_S - CYCLES - 5) * STEP_S * 1000
    async with background(service.run()), InfluxReader(influx_settings) as reader:
        await asyncio.wait_for(service.subscribed.wait(), timeout=10)
        sim = ParkSimulator(
            park,
            mqtt_settings,
            seed=7,
            schedule=Schedule(interval_s=STEP_S, cycles=CYCLES, start_ms=start_ms, realtime=False),
        )
        sent = await sim.run()
        assert sent.readings == CYCLES * len(registry.meters(park.park))
        # the simulator leaves its gateways' retained "offline" status on the broker, as a
        # gateway's last will would; clear it so later tests on this broker start clean
        async with mqtt.client(mqtt_settings, "e2e-cleanup") as cleanup:
            for gateway in sim.gateways:
                await cleanup.publish(topics.status_topic(park.park, gateway), b"", retain=True)

        async def all_stored() -> bool:
            written = service.metrics.registry.get_sample_value("pw_ingest_values_written_total")
            return (written or 0) >= sent.value_count

        await eventually(all_stored, what="every value written")
        stored = await stored_values(reader, registry, park.park)

    # exactly what was sent: same keys, same timestamps, same values — nothing more
    assert stored == sent.values

    api_settings = ApiSettings(influx=influx_settings)
    async with (
        serve(create_app(api_settings, registry)) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        health = await http.get("/health")
        assert health.status_code == 200
        parks = (await http.get("/parks")).json()
        assert parks[0]["park"] == "lj-demo"
        assert parks[0]["meters"] == len(registry.meters("lj-demo"))
        meters = (await http.get("/parks/lj-demo/meters")).json()
        assert {m["id"] for m in meters} == {m.id for m in registry.meters("lj-demo")}

        last_t = start_ms + (CYCLES - 1) * STEP_S * 1000
        latest = (await http.get("/parks/lj-demo/meters/steelco-main/latest")).json()
        assert latest["t_ms"] == last_t
        assert latest["values"]["p_kw"] == sent.values[("steelco-main", "p_kw")][last_t]
        assert latest["time"].endswith("+08:00")  # the park's time zone

        response = await http.get(
            "/parks/lj-demo/meters/chemco-water/series",
            params={
                "quantity": "flow_m3h",
                "start": _iso(start_ms),
                "end": _iso(last_t + 1),
                "every": "1m",
            },
        )
        assert response.status_code == 200, response.text
        points = response.json()["points"]
        expected = sent.values[("chemco-water", "flow_m3h")]
        assert len(points) == CYCLES
        assert [p["value"] for p in points] == [expected[t] for t in sorted(expected)]


def _iso(t_ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t_ms / 1000, tz=UTC).isoformat()
