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
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from parkwatch import hotpath
from parkwatch.influx import InfluxReader, InfluxWriter, chunks
from parkwatch.lineprotocol import encode_float_fields, series_key
from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.stack import LocalStack, free_port, spawn, stop_process
from simulators.load import LoadPlan, expected_value, load_park, meter_id, run_load


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class BenchPlan:
    gateways: int = 10
    meters: int = 1000
    readings: int = 2_000_000
    replicas: int = 1
    batch_lines: int = 20_000
    writes_in_flight: int = 4
    gzip_level: int = 0  # ingest's default: plain bodies
    rate: float = 0.0  # readings/s, paced (a steady load); 0: as fast as acknowledged
    window: int = 64  # QoS 1 publishes each load gateway keeps unacknowledged


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
    async with InfluxWriter(
        settings, max_in_flight=plan.writes_in_flight, gzip_level=plan.gzip_level
    ) as writer:
        started = time.perf_counter()
        batches = list(chunks(lines, plan.batch_lines))
        sem = asyncio.Semaphore(plan.writes_in_flight)

        async def one(batch: list[str]) -> None:
            async with sem:
                await writer.write_now(batch)

        await asyncio.gather(*(one(b) for b in batches))
        return len(lines) / (time.perf_counter() - started)


async def _newest_cycle_per_gateway(reader: InfluxReader, load: LoadPlan) -> dict[int, int]:
    """Per gateway, the newest cycle whose point of the gateway's first meter is readable:
    a probe series per gateway, cheap to ask for (a full count scans every point)."""
    series = await reader.query(
        'SELECT last("p_kw") FROM "electricity" WHERE "meter" =~ /-m0000$/ GROUP BY "meter"'
    )
    return {
        int(s.tags["meter"][1:4]): (int(s.values[0][0]) - (load.start_ms or 0)) // load.step_ms
        for s in series
        if s.values
    }


def metric_total(metrics: str, name: str) -> float:
    """The sum of a metric's samples (over labels and replicas) in Prometheus text."""
    return sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " ")
    )


def ingest_chunks(metrics: str) -> dict[str, float | None]:
    """From ingest's metrics: how many messages a chunk (one socket read) held on average,
    how long a chunk took from its receipt to its points stored — the part of publish →
    readable spent in ingest (the rest is the broker's queue and the bench's polling) — and
    how many writes ingest made to InfluxDB, with their lines on average."""
    writes = metric_total(metrics, "pw_ingest_database_writes_total")
    per_write = {
        "ingest_writes": writes,
        "ingest_lines_per_write": (
            round(metric_total(metrics, "pw_ingest_readings_total") / writes) if writes else None
        ),
    }
    chunks = metric_total(metrics, "pw_ingest_write_seconds_count")
    if not chunks:
        return {
            "ingest_messages_per_chunk": None,
            "ingest_received_to_stored_ms": None,
            **per_write,
        }
    seconds = metric_total(metrics, "pw_ingest_write_seconds_sum")
    return {
        "ingest_messages_per_chunk": round(
            metric_total(metrics, "pw_ingest_messages_total") / chunks, 1
        ),
        "ingest_received_to_stored_ms": round(seconds / chunks * 1000, 1),
        **per_write,
    }


def ingest_event_loop() -> str:
    """The event loop the spawned ingest runs on: it inherits this process's environment, so
    ``PW_INGEST_EVENT_LOOP`` here decides it (figures of the two loops differ, issue 12)."""
    from ingest.settings import IngestSettings

    return IngestSettings().event_loop


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


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
                "PW_INGEST_GZIP_LEVEL": str(plan.gzip_level),
                # replicas split the stream through a shared subscription
                "PW_INGEST_SHARE_GROUP": "bench" if plan.replicas > 1 else "",
            }
        )
        proc = spawn(
            [sys.executable, "-m", "parkwatch_cli", "ingest"], logs / f"ingest-{r}.log", env
        )
        replicas.append((proc, port))
    try:
        for proc, port in replicas:
            await _wait_healthy(f"http://127.0.0.1:{port}/health", proc)
        published: dict[tuple[int, int], float] = {}
        readable: dict[tuple[int, int], float] = {}
        cycles = plan.readings // (plan.gateways * plan.meters)
        pids = {
            "influxd": stack.influxdb.pid,
            "mosquitto": stack.mosquitto.pid,
            **{f"ingest-{i}": proc.pid for i, (proc, _) in enumerate(replicas)},
        }
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self_before = _self_cpu()
        async with InfluxReader(influx) as reader:
            seen = dict.fromkeys(range(plan.gateways), -1)

            async def poll() -> None:
                # the probes say when each message became readable; once every gateway's last
                # message is, one full count says whether everything is
                while True:
                    now = time.perf_counter()
                    newest = await _newest_cycle_per_gateway(reader, load)
                    for g, cycle in newest.items():
                        for c in range(seen[g] + 1, cycle + 1):
                            readable[(g, c)] = now
                        seen[g] = max(seen[g], cycle)
                    if all(c >= cycles - 1 for c in seen.values()) and (
                        await reader.count("electricity", "p_kw")
                        >= cycles * plan.gateways * plan.meters
                    ):
                        return
                    await asyncio.sleep(0.05)

            def on_ack(g: int, cycle: int, at: float) -> None:
                published[(g, cycle)] = at

            load_task = asyncio.create_task(
                run_load(MqttSettings(url=stack.mqtt_url), load, on_ack=on_ack)
            )
            poll_task = asyncio.create_task(poll())
            report = await load_task
            with contextlib.suppress(TimeoutError):  # then "lost" says what is missing
                await asyncio.wait_for(poll_task, timeout=600)
            finished = time.perf_counter()
            cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
            # this process: publishing, plus the polling of InfluxDB (not the payloads, which
            # were encoded before the clock started)
            cpu["generator"] = _self_cpu() - self_before - report.prebuild_cpu_s
            last = await reader.count("electricity", "p_kw")
            seconds = finished - report.publish_started
            async with httpx.AsyncClient() as http:
                metrics = "\n".join(
                    [
                        (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                        for _, port in replicas
                    ]
                )
        latencies = [readable[k] - published[k] for k in published if k in readable]
        return {
            "sent": report.readings,
            "stored": last,
            "seconds": seconds,
            "publish_readings_per_s": report.readings_per_s,
            "p50_latency_ms": _ms(_percentile(latencies, 50)),
            "p99_latency_ms": _ms(_percentile(latencies, 99)),
            "cpu_us_per_reading": {
                name: round(seconds_used / max(last, 1) * 1e6, 2)
                for name, seconds_used in cpu.items()
            },
            "rejected": metric_total(metrics, "pw_ingest_rejected_total"),
            **ingest_chunks(metrics),
        }
    finally:
        for proc, _ in replicas:
            stop_process(proc)


async def _wait_healthy(url: str, proc: Any, within: float = 180.0) -> None:
    # ingest loads and validates the whole site at start: at 10,000 meters per gateway (100,000
    # in all) that took longer than the 30 s this used to wait, and the run printed no result
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
        # every timestamp in the past (small messages make many cycles)
        step_ms=max(1, min(1000, 5 * 3600_000 // max(cycles, 1))),
        prebuild=True,
        rate=plan.rate,
        window=plan.window,
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
            influxd_before = cpu_seconds(stack.influxdb.pid)
            raw = asyncio.run(
                _reference(InfluxSettings(url=stack.influx_url, database="raw"), lines, plan)
            )
            raw_influxd_us = (cpu_seconds(stack.influxdb.pid) - influxd_before) / len(lines) * 1e6
            del lines
            event_loop = ingest_event_loop()
            print(
                f"end to end: load generator → Mosquitto → ingest ({event_loop}) → InfluxDB …",
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
        "ingest_messages_per_chunk": e2e["ingest_messages_per_chunk"],
        "ingest_received_to_stored_ms": e2e["ingest_received_to_stored_ms"],
        "ingest_writes_per_s": (
            round(e2e["ingest_writes"] / e2e["seconds"], 1) if e2e["seconds"] else None
        ),
        "ingest_lines_per_write": e2e["ingest_lines_per_write"],
        "p50_latency_ms": _round(e2e["p50_latency_ms"]),
        "p99_latency_ms": _round(e2e["p99_latency_ms"]),
        "publish_readings_per_s": round(e2e["publish_readings_per_s"]),
        # where the two cores went, in CPU µs per reading: influxd's own cost in the plain
        # bulk load, and every process's in the end-to-end run
        "raw_influxd_cpu_us_per_point": round(raw_influxd_us, 2),
        "cpu_us_per_reading": e2e["cpu_us_per_reading"],
        "gzip_level": plan.gzip_level,
        "ingest_event_loop": event_loop,
        # ingest's loops: compiled (parkwatch._hotpath) or the Python fallback; its processes
        # run this interpreter's installation
        "compiled": hotpath.COMPILED,
        "paced_readings_per_s": plan.rate or None,
        "load_window": plan.window,
        "cpu_count": os.cpu_count(),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else max(0.0, seconds) * 1000


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
