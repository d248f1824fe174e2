"""``parkwatch bench rollup-pass``: what one live pass of the rollup job costs.

A throwaway InfluxDB holds ``hours`` of one-minute counter readings of a park (the demo park,
or the accounting bench's synthetic 1,000-meter park); the rollup job makes its first pass
(the catch-up: every hour of the window), then ``passes`` live passes, each after one more
minute of readings is written, as the analytics service runs it every minute. Per pass: the
job's own CPU time (this process), InfluxDB's CPU time (the server process, answering the
job's queries and storing its points) and the wall time. The last line printed is one JSON
object.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from analytics.accounting.job import RollupConfig, RollupJob, ensure_retention
from analytics.accounting.rollup import accounting_series
from parkwatch.influx import InfluxReader, InfluxWriter, chunks
from parkwatch.lineprotocol import encode_point
from parkwatch.settings import InfluxSettings
from parkwatch.site import Park
from parkwatch_cli.bench_accounting import bench_park

MIN = 60_000
DEMO = Path(__file__).resolve().parent.parent / "simulators" / "parks" / "demo.yaml"


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _lines(park: Park, t_ms: np.ndarray, rng: np.random.Generator) -> list[str]:
    """One reading per counter series and minute: registers rising at a steady rate with
    noise, power beside every electricity register (the job cross-checks them)."""
    out: list[str] = []
    for k, cs in enumerate(accounting_series(park)):
        m = cs.meter
        rate = 1.0 + (k % 7)  # per minute
        values = 1000.0 + rate * (t_ms - int(t_ms[0]) + k * MIN) / MIN
        tags = {"park": park.park, "enterprise": m.enterprise, "meter": m.id}
        power = m.utility.value == "electricity" and cs.quantity == "e_kwh"
        for t, v in zip(t_ms.tolist(), values.tolist(), strict=True):
            fields: dict[str, float | int | str | bool] = {cs.quantity: v}
            if power:
                fields["p_kw"] = rate * 60 * (1 + 0.05 * rng.standard_normal())
            out.append(encode_point(m.utility.value, tags, fields, t))
    return out


async def _bench(influx_url: str, influx_pid: int, park: Park, hours: float, passes: int) -> Any:
    settings = InfluxSettings(url=influx_url, database="bench")
    rng = np.random.default_rng(3)
    now = (int(time.time() * 1000) // MIN) * MIN
    history = np.arange(now - int(hours * 3_600_000), now + 1, MIN, dtype=np.int64)
    config = RollupConfig()
    async with InfluxReader(settings) as reader:
        await reader.create_database()
        await ensure_retention(reader, config)
        async with (
            InfluxWriter(settings, flush_interval_s=0.05) as raw,
            InfluxWriter(settings, retention_policy=config.retention_policy) as out,
        ):
            for batch in chunks(_lines(park, history, rng), 20_000):
                await raw.write_now(batch)
            job = RollupJob(park, reader, out, config)

            async def timed(at: int) -> dict[str, float]:
                cpu, server, wall = time.process_time(), _cpu_s(influx_pid), time.perf_counter()
                points = await job.run(at)
                return {
                    "cpu_s": time.process_time() - cpu,
                    "influxdb_cpu_s": _cpu_s(influx_pid) - server,
                    "wall_s": time.perf_counter() - wall,
                    "points": points,
                }

            first = await timed(now)
            live = []
            for i in range(1, passes + 1):
                at = now + i * MIN
                await raw.write_now(_lines(park, np.array([at], np.int64), rng))
                live.append(await timed(at))
    return first, live


def main(demo: bool, meters: int, hours: float, passes: int) -> str:
    from parkwatch.stack import LocalStack

    if demo:
        park = Park.from_yaml(DEMO)
    else:
        per_workshop = 10
        workshops = 5
        park = bench_park(max(1, meters // (workshops * per_workshop)), workshops, per_workshop)
    series = len(accounting_series(park))
    with tempfile.TemporaryDirectory() as tmp, LocalStack(Path(tmp)) as stack:
        first, live = asyncio.run(_bench(stack.influx_url, stack.influxdb.pid, park, hours, passes))

    def median(key: str) -> float:
        return float(round(statistics.median(p[key] for p in live), 4))

    result = {
        "park": park.park,
        "meters": sum(1 for _ in park.iter_meters()),
        "counter_series": series,
        "hours_stored": hours,
        "first_pass": {k: round(v, 4) for k, v in first.items()},
        "live_passes": len(live),
        "live_cpu_s_median": median("cpu_s"),
        "live_influxdb_cpu_s_median": median("influxdb_cpu_s"),
        "live_wall_s_median": median("wall_s"),
        "live_cpu_s_max": round(max(p["cpu_s"] for p in live), 4),
        "live_points_median": median("points"),
    }
    print(
        f"{park.park}: {series} counter series; first pass (catch-up, {hours:g} h): "
        f"{first['cpu_s']:.2f} s CPU, {first['wall_s']:.2f} s wall; live pass (median of "
        f"{len(live)}): {result['live_cpu_s_median']:.3f} s CPU here + "
        f"{result['live_influxdb_cpu_s_median']:.3f} s InfluxDB, "
        f"{result['live_wall_s_median']:.3f} s wall"
    )
    return json.dumps(result)
