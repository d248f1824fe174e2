"""``parkwatch bench edge``: how well the gateway polls, against what is possible.

Two runs, each with the devices served by their own process (``simulators.bench_devices``),
so the CPU figures are the gateway's alone:

1. **Modbus TCP** — N meters (100 by default), each on its own TCP port, polled every second
   through the agent's own scheduler and drivers, each cycle's batch committed to the
   write-ahead buffer. Printed: requests per cycle against the minimum possible (the fewest
   requests that cover each map's registers if the meter answered for every register in
   between), how full each batch was, the intervals between batches, skipped slots, the
   per-device read latency, and the gateway's CPU per device read.
2. **DL/T 645 on one serial bus** — M meters (20) at 2400 baud (8N1 on the pseudo-terminal,
   11 bits a byte counted, as on a real 8E1 line), the simulated line paced at that speed
   with each meter's turnaround. Printed: what the bus allows, computed from the frames'
   sizes (seconds per meter, per full round, reads a second), against what was achieved.

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_agent.buffer import WalBuffer
from edge_agent.catalog import get_any_profile
from edge_agent.devices import GatewayDevices
from edge_agent.dlt645 import Dlt645Profile, read_cost_s
from edge_agent.poller import Poller, Reading
from edge_agent.profiles import Function, MeterProfile
from edge_agent.settings import EdgeSettings
from parkwatch.tasks import cancel_and_wait
from simulators.modbus import PtyPair


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def min_requests(profile: MeterProfile) -> int:
    """The fewest requests that could read a map's registers: one per 125-register stretch
    of each function code, as if the meter answered for every register in between."""
    total = 0
    for function in Function:
        specs = [s for s in profile.registers if s.function is function]
        if specs:
            span = max(s.end for s in specs) - min(s.address for s in specs)
            total += math.ceil(span / profile.max_count)
    return total


async def _devices(args: list[str]) -> tuple[asyncio.subprocess.Process, list[dict[str, Any]]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators.bench_devices", *args,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 120)
    if not line:
        raise RuntimeError("the device simulator ended before serving")
    return proc, json.loads(line)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _poll(
    settings: EdgeSettings, seconds: float
) -> tuple[Poller, GatewayDevices, list[tuple[float, int]], float, float]:
    """Run the agent's poller for ``seconds``; (poller, devices, batches as (time, size),
    wall seconds, CPU seconds)."""
    batches: list[tuple[float, int]] = []
    with WalBuffer(settings.buffer_dir, settings.gateway) as buffer:
        async with GatewayDevices(settings) as devices:
            poller = Poller(
                devices.drivers,
                settings.max_concurrency,
                interval_s=settings.poll_interval_s,
                backoff_cap_s=settings.backoff_cap_s,
            )

            async def store(readings: list[Reading]) -> None:
                await buffer.append(readings)
                batches.append((time.monotonic(), len(readings)))

            cpu0, wall0 = _cpu_s(), time.monotonic()
            task = asyncio.create_task(poller.run(settings.poll_interval_s, store))
            await asyncio.sleep(seconds)
            await cancel_and_wait(task)
            return poller, devices, batches, time.monotonic() - wall0, _cpu_s() - cpu0


async def bench_modbus(count: int, seconds: float, work: Path) -> dict[str, Any]:
    proc, devices = await _devices(["modbus", str(count)])
    try:
        settings = EdgeSettings(
            park="bench",
            gateway="gw-bench",
            devices=devices,
            poll_interval_s=1.0,
            request_timeout_s=1.0,
            max_concurrency=count,
            buffer_dir=work / "modbus-buffer",
        )
        poller, gateway, batches, wall, cpu = await _poll(settings, seconds)
    finally:
        await _stop(proc)
    requests = sum(link.stats.requests for link in gateway.links.values())
    cycles = len(batches)
    profiles = [get_any_profile(d["profile"]) for d in devices]
    assert all(isinstance(p, MeterProfile) for p in profiles)
    planned = sum(len(p.read_plan) for p in profiles if isinstance(p, MeterProfile))
    lower = sum(min_requests(p) for p in profiles if isinstance(p, MeterProfile))
    latencies = sorted(d.last_read_s for d in poller.devices if d.reads_ok)
    means = [d.mean_read_s for d in poller.devices if d.reads_ok]
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(batches)]
    reads = sum(d.reads_ok for d in poller.devices)
    return {
        "devices": count,
        "links": len(gateway.links),
        "cycles": cycles,
        # a cycle here is one read of every device (the run may stop between slots)
        "requests_per_cycle": requests * count / max(1, reads),
        "requests_planned_per_cycle": planned,
        "requests_lower_bound_per_cycle": lower,
        "readings_per_batch_mean": statistics.fmean(n for _, n in batches) if batches else 0,
        "readings_per_batch_min": min((n for _, n in batches), default=0),
        "batch_interval_s_mean": statistics.fmean(gaps) if gaps else 0.0,
        "batch_interval_s_max": max(gaps, default=0.0),
        "skipped_slots": poller.stats.skipped_slots,
        "failed_reads": sum(d.reads_failed for d in poller.devices),
        "read_latency_ms_mean": 1000 * statistics.fmean(means) if means else 0.0,
        "read_latency_ms_p95_last": 1000 * latencies[int(0.95 * (len(latencies) - 1))]
        if latencies
        else 0.0,
        "gateway_cpu_s": cpu,
        "wall_s": wall,
        "cpu_us_per_device_read": 1e6 * cpu / max(1, reads),
        "cpu_share_of_one_core": cpu / wall,
    }


async def bench_dlt645(
    count: int, seconds: float, baudrate: int, turnaround_s: float, work: Path
) -> dict[str, Any]:
    with PtyPair(work / "pty") as pty:
        proc, devices = await _devices(
            ["dlt645", str(count), "--tty", pty.device_end, "--baudrate", str(baudrate),
             "--turnaround", str(turnaround_s)]
        )  # fmt: skip
        try:
            line = {"kind": "serial", "port": pty.gateway_end, "baudrate": baudrate}
            settings = EdgeSettings(
                park="bench",
                gateway="gw-bench-bus",
                devices=[d | {"transport": line} for d in devices],
                poll_interval_s=1.0,
                request_timeout_s=2.0,
                buffer_dir=work / "dlt645-buffer",
            )
            poller, gateway, _, wall, cpu = await _poll(settings, seconds)
        finally:
            await _stop(proc)
    profile = get_any_profile(devices[0]["profile"])
    assert isinstance(profile, Dlt645Profile)
    per_meter_s = sum(read_cost_s(r, baudrate, turnaround_s=turnaround_s) for r in profile.reads)
    (link,) = gateway.links.values()
    reads = sum(d.reads_ok for d in poller.devices)
    achieved_requests_per_s = link.stats.requests / wall
    return {
        "meters": count,
        "baudrate": baudrate,
        "turnaround_ms": 1000 * turnaround_s,
        "requests_per_meter": len(profile.reads),
        "computed_s_per_meter": per_meter_s,
        "computed_s_per_round": per_meter_s * count,
        "computed_requests_per_s": len(profile.reads) / per_meter_s,
        "achieved_requests_per_s": achieved_requests_per_s,
        "achieved_s_per_meter": wall / max(1, reads),
        "achieved_meter_reads": reads,
        "failed_reads": sum(d.reads_failed for d in poller.devices),
        "bus_utilisation": link.stats.utilisation(),
        "efficiency": achieved_requests_per_s * per_meter_s / len(profile.reads),
        "wall_s": wall,
        "gateway_cpu_s": cpu,
        "cpu_us_per_request": 1e6 * cpu / max(1, link.stats.requests),
    }


def run_edge_bench(
    modbus: int = 100,
    modbus_seconds: float = 30.0,
    dlt645: int = 20,
    dlt645_seconds: float = 60.0,
    baudrate: int = 2400,
    turnaround_s: float = 0.02,
) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="pw-bench-edge-") as tmp:
            work = Path(tmp)
            result: dict[str, Any] = {}
            if modbus:
                result["modbus"] = m = await bench_modbus(modbus, modbus_seconds, work)
                print(
                    f"Modbus TCP, {m['devices']} devices every 1 s for {m['cycles']} cycles: "
                    f"{m['requests_per_cycle']:.1f} requests a cycle (plan "
                    f"{m['requests_planned_per_cycle']}, lower bound "
                    f"{m['requests_lower_bound_per_cycle']}); batches of "
                    f"{m['readings_per_batch_mean']:.1f} readings (min "
                    f"{m['readings_per_batch_min']}) every {m['batch_interval_s_mean']:.3f} s "
                    f"(max {m['batch_interval_s_max']:.3f}); {m['skipped_slots']} skipped slots, "
                    f"{m['failed_reads']} failed reads; read latency "
                    f"{m['read_latency_ms_mean']:.1f} ms mean; gateway CPU "
                    f"{m['cpu_us_per_device_read']:.0f} µs per device read "
                    f"({100 * m['cpu_share_of_one_core']:.1f} % of a core)",
                    file=sys.stderr,
                )
            if dlt645:
                result["dlt645"] = d = await bench_dlt645(
                    dlt645, dlt645_seconds, baudrate, turnaround_s, work
                )
                print(
                    f"DL/T 645, {d['meters']} meters on one {d['baudrate']}-baud bus "
                    f"({d['requests_per_meter']} requests a meter, turnaround "
                    f"{d['turnaround_ms']:.0f} ms): the bus allows "
                    f"{d['computed_requests_per_s']:.2f} requests/s = one meter every "
                    f"{d['computed_s_per_meter']:.2f} s = every meter every "
                    f"{d['computed_s_per_round']:.1f} s; achieved "
                    f"{d['achieved_requests_per_s']:.2f} requests/s, one meter every "
                    f"{d['achieved_s_per_meter']:.2f} s ({100 * d['efficiency']:.0f} % of the "
                    f"bus; utilisation {100 * d['bus_utilisation']:.0f} %), "
                    f"{d['failed_reads']} failed reads",
                    file=sys.stderr,
                )
            return result

    return asyncio.run(main())
