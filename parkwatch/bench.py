"""``parkwatch bench ingest``: end-to-end ingest throughput against the database's own speed.

In one run, on one local stack:

1. *reference* — the same points ingest will write are written straight to InfluxDB by a plain
   bulk writer (pre-built lines, the same batch size, gzip and writes in flight);
2. *end to end* — ingest replicas run as their own processes; the load generator publishes
   N gateways × M meters to the broker as fast as it is acknowledged; the clock runs from the
   first publish until the last point is readable.

Latency is read off two cumulative curves: readings acknowledged by the broker over time (from
the generator) and readings readable in InfluxDB over time (polled). Both are in publish
order per gateway, so the k-th reading's latency is when the stored curve reaches k minus when
the published curve did. The last line printed is one JSON object.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from parkwatch.influx import InfluxReader, InfluxWriter, chunks
from parkwatch.lineprotocol import encode_float_fields, series_key
from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.stack import LocalStack, free_port, spawn, stop_process
from simulators.load import LoadPlan, expected_value, load_park, meter_id, run_load


@dataclass(frozen=True)
class BenchPlan:
    gateways: int = 10
    meters: int = 1000
    readings: int = 2_000_000
    replicas: int = 1
    batch_lines: int = 5000
    writes_in_flight: int = 4


def _reference_lines(plan: BenchPlan, load: LoadPlan, start_ms: int) -> list[str]:
    """The line protocol ingest writes for the load, built up front."""
    cycles = plan.readings // (plan.gateways * plan.meters)
    lines = []
    for g in range(plan.gateways):
        keys = [
            series_key(
                "electricity",
                {"park": load.park, "enterprise": f"e{g:03d}", "meter": meter_id(g, j)},
            )
            for j in range(plan.meters)
        ]
        for c in range(cycles):
            t = start_ms + c * load.step_ms
            for j, key in enumerate(keys):
                fields = encode_float_fields({"p_kw": expected_value(c, j), "e_kwh": 1e5 + c + j})
                lines.append(f"{key} {fields} {t}")
    return lines


async def _reference(settings: InfluxSettings, lines: list[str], plan: BenchPlan) -> float:
    async with InfluxReader(settings) as reader:
        await reader.create_database()
    async with InfluxWriter(settings, max_in_flight=plan.writes_in_flight) as writer:
        started = time.perf_counter()
        batches = list(chunks(lines, plan.batch_lines))
        sem = asyncio.Semaphore(plan.writes_in_flight)

        async def one(batch: list[str]) -> None:
            async with sem:
                await writer.write_now(batch)

        await asyncio.gather(*(one(b) for b in batches))
        return len(lines) / (time.perf_counter() - started)


async def _count(reader: InfluxReader) -> int:
    return await reader.count("electricity", "p_kw")


def _latencies(
    published: list[tuple[float, int]], stored: list[tuple[float, int]], total: int
) -> list[float]:
    """Per-percentile latency (s) from the two cumulative curves."""
    pub_counts = [c for _, c in published]
    out = []
    for q in range(1, 101):
        k = max(1, int(total * q / 100))
        i = bisect.bisect_left(pub_counts, k)
        if i >= len(published):
            continue
        j = bisect.bisect_left([c for _, c in stored], k)
        if j >= len(stored):
            continue
        out.append(max(0.0, stored[j][0] - published[i][0]))
    return out


async def _end_to_end(
    stack: LocalStack, plan: BenchPlan, load: LoadPlan, site: Path, logs: Path
) -> dict[str, Any]:
    influx = InfluxSettings(url=stack.influx_url, database="e2e")
    replicas = []
    for r in range(plan.replicas):
        port = free_port()
        env = dict(os.environ)
        env.update(
            {
                "PW_INGEST_MQTT__URL": stack.mqtt_url,
                "PW_INGEST_INFLUX__URL": stack.influx_url,
                "PW_INGEST_INFLUX__DATABASE": "e2e",
                "PW_INGEST_SITES": json.dumps([str(site)]),
                "PW_INGEST_CLIENT_ID": f"bench-ingest-{r}",
                "PW_INGEST_HTTP_PORT": str(port),
                "PW_INGEST_BATCH_LINES": str(plan.batch_lines),
                "PW_INGEST_WRITES_IN_FLIGHT": str(plan.writes_in_flight),
                # replicas split the stream through a shared subscription
                "PW_INGEST_SHARE_GROUP": "bench" if plan.replicas > 1 else "",
            }
        )
        proc = spawn([sys.executable, "-m", "parkwatch", "ingest"], logs / f"ingest-{r}.log", env)
        replicas.append((proc, port))
    try:
        for proc, port in replicas:
            await _wait_healthy(f"http://127.0.0.1:{port}/health", proc)
        published: list[tuple[float, int]] = []
        stored: list[tuple[float, int]] = []
        total = (plan.readings // (plan.gateways * plan.meters)) * plan.gateways * plan.meters
        async with InfluxReader(influx) as reader:
            first_publish = time.perf_counter()

            async def poll() -> None:
                while True:
                    n = await _count(reader)
                    stored.append((time.perf_counter(), n))
                    if n >= total:
                        return
                    await asyncio.sleep(0.05)

            load_task = asyncio.create_task(
                run_load(MqttSettings(url=stack.mqtt_url), load, on_ack=published.append)
            )
            poll_task = asyncio.create_task(poll())
            report = await load_task
            with contextlib.suppress(TimeoutError):  # then "lost" says what is missing
                await asyncio.wait_for(poll_task, timeout=600)
            last = stored[-1][1]
            seconds = stored[-1][0] - first_publish
            async with httpx.AsyncClient() as http:
                metrics = "\n".join(
                    [
                        (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                        for _, port in replicas
                    ]
                )
        lat = _latencies([(t, c) for t, c in published], stored, total)
        return {
            "sent": report.readings,
            "stored": last,
            "seconds": seconds,
            "publish_readings_per_s": report.readings_per_s,
            "p50_latency_ms": 1000 * lat[49] if len(lat) > 49 else None,
            "p99_latency_ms": 1000 * lat[98] if len(lat) > 98 else None,
            "rejected": sum(
                float(line.split()[-1])
                for line in metrics.splitlines()
                if line.startswith("pw_ingest_rejected_total")
            ),
        }
    finally:
        for proc, _ in replicas:
            stop_process(proc)


async def _wait_healthy(url: str, proc: Any, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"ingest exited with {proc.returncode}")
            try:
                if (await client.get(url, timeout=1)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not healthy within {within}s")


def run_ingest_bench(plan: BenchPlan, state_dir: Path | None = None) -> dict[str, Any]:
    cycles = plan.readings // (plan.gateways * plan.meters)
    start_ms = int(time.time() * 1000) - 6 * 3600_000
    load = LoadPlan(
        gateways=plan.gateways,
        meters=plan.meters,
        duration_s=3600,
        max_readings=cycles * plan.gateways * plan.meters,
        start_ms=start_ms,
    )
    with tempfile.TemporaryDirectory(prefix="pw-bench-") as tmp:
        root = state_dir or Path(tmp)
        logs = root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        site = root / "load-park.yaml"
        site.write_text(yaml.safe_dump(load_park(load).model_dump(mode="json")))
        with LocalStack(root / "stack") as stack:
            print(f"building {plan.readings:,} reference lines …", file=sys.stderr, flush=True)
            lines = _reference_lines(plan, load, start_ms)
            print("writing them straight to InfluxDB …", file=sys.stderr, flush=True)
            raw = asyncio.run(
                _reference(InfluxSettings(url=stack.influx_url, database="raw"), lines, plan)
            )
            del lines
            print(
                "end to end: load generator → Mosquitto → ingest → InfluxDB …",
                file=sys.stderr,
                flush=True,
            )
            e2e = asyncio.run(_end_to_end(stack, plan, load, site, logs))
    rate = e2e["stored"] / e2e["seconds"] if e2e["seconds"] else 0.0
    return {
        "readings": e2e["sent"],
        "gateways": plan.gateways,
        "meters_per_gateway": plan.meters,
        "replicas": plan.replicas,
        "readings_per_s": round(rate),
        "raw_influx_points_per_s": round(raw),
        "ratio": round(rate / raw, 3) if raw else None,
        "lost": max(0, e2e["sent"] - e2e["stored"]),
        "duplicated": max(0, e2e["stored"] - e2e["sent"]),
        "rejected": e2e["rejected"],
        "p50_latency_ms": _round(e2e["p50_latency_ms"]),
        "p99_latency_ms": _round(e2e["p99_latency_ms"]),
        "publish_readings_per_s": round(e2e["publish_readings_per_s"]),
        "cpu_count": os.cpu_count(),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
