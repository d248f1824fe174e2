"""Devices for the edge polling benchmark, served from their own process (so the benchmark
measures the gateway's CPU alone): ``python -m simulators.bench_devices modbus 100`` serves
100 Modbus TCP meters, each on its own port, as a factory full of meters with Ethernet ports;
``… dlt645 20 --tty PATH --baudrate 2400`` serves 20 DL/T 645 meters on one serial line, paced
at the line's baud rate. The first line printed is the JSON list of the gateway.yaml
``devices`` that read them; then it serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any

from edge_agent.dlt645 import get_dlt645_profile
from edge_agent.profiles import NO_RATIOS, get_profile
from parkwatch.site import Park
from simulators import DEMO_PARK
from simulators.dlt645 import Dlt645Bus, Dlt645SerialServer, ServedDlt645Meter
from simulators.gateway import dlt645_address
from simulators.modbus import ModbusTcpMeterServer, ModelFeed, ServedMeter
from simulators.modbus.park import default_profile, ratios_for
from simulators.model import ParkModel

DLT645_PROFILE = "dlt645-2007-3ph"


def _meters(park: Park, feed: ModelFeed) -> list[tuple[str, str]]:
    """(meter, Modbus profile) of the demo park's meters whose model values fill a profile,
    in park order."""
    out = []
    for meter in park.iter_meters():
        name = default_profile(meter, park)
        if name is not None and set(get_profile(name).quantities) <= set(feed.values(meter.id)):
            out.append((meter.id, name))
    return out


async def serve_modbus(count: int, feed: ModelFeed, park: Park) -> None:
    meters = _meters(park, feed)
    servers: list[ModbusTcpMeterServer] = []
    devices: list[dict[str, Any]] = []
    for i in range(count):
        meter, name = meters[i % len(meters)]
        profile = get_profile(name)
        ratios = ratios_for(profile, feed.values(meter))
        server = ModbusTcpMeterServer(
            [ServedMeter(1, profile, feed.provider(meter), ratios, meter)]
        )
        await server.start()
        servers.append(server)
        device: dict[str, Any] = {
            "meter": f"bench-{i:03d}",
            "profile": name,
            "unit": 1,
            "transport": {"kind": "tcp", "host": "127.0.0.1", "port": server.port},
        }
        if ratios != NO_RATIOS:
            device |= {"ct_ratio": ratios.ct, "pt_ratio": ratios.pt}
        devices.append(device)
    print(json.dumps(devices), flush=True)
    try:
        await _until_stopped()
    finally:
        for server in servers:
            await server.stop()


async def serve_dlt645(
    count: int, feed: ModelFeed, park: Park, tty: str, baudrate: int, turnaround_s: float
) -> None:
    profile = get_dlt645_profile(DLT645_PROFILE)
    electricity = [
        m for m, name in _meters(park, feed) if get_profile(name).utility == "electricity"
    ]
    served = []
    devices: list[dict[str, Any]] = []
    for i in range(count):
        meter = electricity[i % len(electricity)]
        ratios = ratios_for(profile, feed.values(meter))
        address = dlt645_address(i + 1)
        served.append(ServedDlt645Meter(address, profile, feed.provider(meter), ratios, meter))
        devices.append(
            {"meter": f"bench-{i:03d}", "profile": DLT645_PROFILE, "address": address,
             "ct_ratio": ratios.ct, "pt_ratio": ratios.pt}
        )  # fmt: skip
    bus = Dlt645Bus(served, baudrate=baudrate, paced=True, turnaround_s=turnaround_s)
    async with Dlt645SerialServer(bus, serial_port=tty):
        print(json.dumps(devices), flush=True)
        await _until_stopped()


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["modbus", "dlt645"])
    parser.add_argument("count", type=int)
    parser.add_argument("--tty")
    parser.add_argument("--baudrate", type=int, default=2400)
    parser.add_argument("--turnaround", type=float, default=0.02)
    parser.add_argument("--t-ms", type=int, default=1_732_411_200_000)
    args = parser.parse_args(argv)
    park = Park.from_yaml(DEMO_PARK)
    # the model steps with the wall clock (a meter's values change between polls), starting
    # from a working hour so that every meter has live values
    started = time.time()
    feed = ModelFeed(
        ParkModel(park, seed=1),
        refresh_s=1.0,
        clock=lambda: args.t_ms / 1000 + (time.time() - started),
    )
    feed.refresh()
    if args.kind == "modbus":
        asyncio.run(serve_modbus(args.count, feed, park))
    else:
        if not args.tty:
            sys.exit("dlt645 needs --tty")
        asyncio.run(serve_dlt645(args.count, feed, park, args.tty, args.baudrate, args.turnaround))


if __name__ == "__main__":
    main()
