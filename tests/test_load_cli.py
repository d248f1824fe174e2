"""The short load test CI runs: ``parkwatch simulate --load`` as a real process against the
real broker, ingest writing to the real database; what the generator printed as sent is all
in InfluxDB."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from ingest.service import IngestService
from ingest.settings import IngestSettings
from parkwatch.influx import InfluxReader
from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.site import SiteRegistry
from simulators.load import LoadPlan, load_park
from tests.support import background, eventually

pytestmark = pytest.mark.anyio


async def test_load_generator_cli_nothing_lost(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings
) -> None:
    plan = LoadPlan(gateways=5, meters=400)
    service = IngestService(
        IngestSettings(
            mqtt=mqtt_settings,
            influx=influx_settings,
            client_id="load-cli",
            parks=["load"],
            session_expiry_s=0,
        ),
        SiteRegistry([load_park(plan)]),
    )
    async with background(service.run()), InfluxReader(influx_settings) as reader:
        await asyncio.wait_for(service.subscribed.wait(), timeout=10)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "parkwatch_cli",
            "simulate",
            "--load",
            "--gateways",
            "5",
            "--meters",
            "400",
            "--max-readings",
            "100000",
            "--duration",
            "60",
            "--mqtt-url",
            mqtt_settings.url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        report = json.loads(out.decode().strip().splitlines()[-1])
        assert report["readings"] == 100_000
        assert b"readings/s" in err

        async def stored() -> bool:
            return await reader.count("electricity", "p_kw") >= report["readings"]

        await eventually(stored, 60, "every generated reading stored")
        assert await reader.count("electricity", "p_kw") == report["readings"]
