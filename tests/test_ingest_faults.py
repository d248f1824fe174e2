"""Zero loss through crashes and outages, against real processes: ingest killed with SIGKILL
mid-stream, Mosquitto restarted mid-stream, InfluxDB stopped for 60 seconds. Each run ends with
every acknowledged reading in InfluxDB exactly once — counted and summed in the database, not
taken from logs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from parkwatch.influx import InfluxReader
from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.stack import LocalStack, free_port, spawn, stop_process
from simulators.load import LoadPlan, LoadReport, expected_value, load_park, run_load
from tests.support import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

DB = "faults"


class Ingest:
    """``parkwatch ingest`` as a real child process with a stable client id."""

    def __init__(self, stack: LocalStack, site: Path, logs: Path) -> None:
        self.port = free_port()
        self.log = logs / "ingest.log"
        self.env = dict(os.environ)
        self.env.update(
            {
                "PW_INGEST_MQTT__URL": stack.mqtt_url,
                "PW_INGEST_INFLUX__URL": stack.influx_url,
                "PW_INGEST_INFLUX__DATABASE": DB,
                "PW_INGEST_SITES": json.dumps([str(site)]),
                "PW_INGEST_CLIENT_ID": "faults-ingest-0",
                "PW_INGEST_HTTP_PORT": str(self.port),
            }
        )
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = spawn([sys.executable, "-m", "parkwatch_cli", "ingest"], self.log, self.env)

        async def healthy() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, self.log.read_text()
            try:
                async with httpx.AsyncClient() as http:
                    r = await http.get(f"http://127.0.0.1:{self.port}/health", timeout=1)
                    return r.status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(healthy, 30, "ingest healthy")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


@asynccontextmanager
async def scenario(tmp_path: Path, plan: LoadPlan) -> AsyncIterator[tuple[LocalStack, Ingest]]:
    site = tmp_path / "park.yaml"
    site.write_text(yaml.safe_dump(load_park(plan).model_dump(mode="json")))
    logs = tmp_path / "logs"
    logs.mkdir()
    with LocalStack(tmp_path / "stack") as stack:
        ingest = Ingest(stack, site, logs)
        await ingest.start()
        try:
            yield stack, ingest
        finally:
            ingest.stop()


async def assert_exactly_once(stack: LocalStack, plan: LoadPlan, report: LoadReport) -> None:
    """Every acknowledged reading is stored once: the count and the sum both match."""
    assert report.readings > 0
    cycles = report.last_seq  # per gateway, cycles 0 .. last_seq - 1 were acknowledged
    expected_sum = sum(
        expected_value(c, j)
        for last in cycles.values()
        for c in range(last)
        for j in range(plan.meters)
    )
    async with InfluxReader(InfluxSettings(url=stack.influx_url, database=DB)) as reader:

        async def all_there() -> bool:
            try:
                return await reader.count("electricity", "p_kw") >= report.readings
            except Exception:
                return False

        await eventually(all_there, 120, f"{report.readings} readings stored")
        await asyncio.sleep(1.0)  # anything extra would show up now
        count = await reader.count("electricity", "p_kw")
        [series] = await reader.query('SELECT sum("p_kw") FROM "electricity"')
        total = series.values[0][1]
    assert count == report.readings
    assert total == pytest.approx(expected_sum, rel=1e-9)


PLAN = LoadPlan(gateways=5, meters=200, rate=20_000, duration_s=8.0)


async def test_ingest_killed_with_sigkill_mid_stream(tmp_path: Path) -> None:
    async with scenario(tmp_path, PLAN) as (stack, ingest):
        load = asyncio.create_task(run_load(MqttSettings(url=stack.mqtt_url), PLAN))
        await asyncio.sleep(3.0)
        ingest.kill()  # no goodbye: in-flight messages were never acknowledged
        await asyncio.sleep(1.0)
        await ingest.start()
        report = await load
        await assert_exactly_once(stack, PLAN, report)


async def test_mosquitto_restarted_mid_stream(tmp_path: Path) -> None:
    async with scenario(tmp_path, PLAN) as (stack, _ingest):
        load = asyncio.create_task(run_load(MqttSettings(url=stack.mqtt_url), PLAN))
        await asyncio.sleep(3.0)
        stack.mosquitto.stop()  # SIGTERM: Mosquitto writes its persistence file
        await asyncio.sleep(1.0)
        stack.mosquitto.start()  # same port, same state directory
        report = await load
        assert report.reconnects > 0  # the generator did see the broker go
        await assert_exactly_once(stack, PLAN, report)


async def test_influxdb_down_for_60_seconds(tmp_path: Path) -> None:
    plan = LoadPlan(gateways=5, meters=200, rate=20_000, duration_s=15.0)
    async with scenario(tmp_path, plan) as (stack, ingest):
        load = asyncio.create_task(run_load(MqttSettings(url=stack.mqtt_url), plan))
        await asyncio.sleep(2.0)
        stack.influxdb.stop()
        await asyncio.sleep(5.0)
        rss_early = ingest.rss_kib()
        report = await load  # the whole stream arrives while the database is down
        await asyncio.sleep(max(0.0, 60.0 - 13.0))
        rss_late = ingest.rss_kib()
        stack.influxdb.start()  # same port and data directory
        await assert_exactly_once(stack, plan, report)
    # backpressure, not buffering: ingest holds at most receive_maximum messages, so its
    # memory does not grow with the length of the outage
    assert rss_late - rss_early < 40_000, (rss_early, rss_late)
