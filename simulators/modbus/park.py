"""A simulated park's meters served over Modbus, and the ``gateway.yaml`` that reads them.

:class:`ModelFeed` holds the latest step of a :class:`~simulators.model.ParkModel`, completed
with what real meters show and the model leaves out (voltage, frequency, current, export
energy). :class:`SimulatedGateway` serves the meters of one gateway of the park — each a unit
id with a real product's register map — on one Modbus TCP endpoint (like an RS-485-to-Ethernet
converter) or on a serial line (RTU over a ``socat`` pseudo-terminal pair), and writes the
matching ``gateway.yaml`` for the edge agent.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from edge_agent.dlt645 import Dlt645Profile
from edge_agent.profiles import NO_RATIOS, MeterProfile, Ratio, Ratios, get_profile
from parkwatch.quantities import Utility
from parkwatch.site import Meter, Park
from simulators.modbus.pty import PtyPair
from simulators.modbus.servers import (
    ModbusRtuMeterServer,
    ModbusTcpMeterServer,
    ServedMeter,
    ValuesFn,
)
from simulators.model import ParkModel
from simulators.served import Served

log = logging.getLogger(__name__)

NOMINAL_V = 230.0  # line-to-neutral, a Chinese LV grid
NOMINAL_HZ = 50.0
# primary/secondary ratios of standard x/5 A current transformers
STANDARD_CT = (10, 20, 30, 40, 60, 80, 100, 120, 160, 200, 300, 400, 600, 800, 1000, 1200)
# what a simulated secondary side may carry (5 A × 230 V × 3 phases ≈ 3.45 kW), with headroom
_SECONDARY_W = 3000.0


# how a multi-tariff meter's import splits over tariffs 1-4 (sharp, peak, flat, valley): fixed
# shares keep every tariff counter growing with the total, and their sum equal to it
TARIFF_SHARES = (0.1, 0.3, 0.35, 0.25)


def complete(utility: Utility, q: Mapping[str, float], t_ms: int = 0) -> dict[str, float]:
    """The model's quantities plus those a real meter of ``utility`` also shows: voltage and
    frequency (wandering a little, as a grid's do), current, export and tariff energies."""
    out = dict(q)
    if utility is Utility.ELECTRICITY and "p_kw" in out:
        pf = out.get("pf", 0.92) or 0.92
        phase = t_ms / 1000.0
        out.setdefault("v_v", round(NOMINAL_V + 2.0 * math.sin(phase / 97.0), 1))
        out.setdefault("f_hz", round(NOMINAL_HZ + 0.04 * math.sin(phase / 61.0), 2))
        out.setdefault("i_a", round(abs(out["p_kw"]) * 1000 / (3 * out["v_v"] * pf), 3))
        out.setdefault("e_export_kwh", 0.0)
        if "e_kwh" in out:
            for tariff, share in enumerate(TARIFF_SHARES, start=1):
                out.setdefault(f"e_t{tariff}_kwh", round(out["e_kwh"] * share, 2))
    return out


class ModelFeed:
    """The current values of every meter of a park model.

    With ``refresh_s`` the model steps to the wall clock whenever the values are older than
    that (lazily, when a meter is read: no background task); without it only :meth:`refresh`
    moves time, which makes tests deterministic.
    """

    def __init__(
        self,
        model: ParkModel,
        refresh_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model = model
        self.refresh_s = refresh_s
        self.clock = clock
        self.meters: dict[str, Meter] = {m.id: m for m in model.meters}
        self.t_ms: int | None = None
        self._values: dict[str, dict[str, float]] = {}
        self._stepped_at = -math.inf
        self.failed: set[str] = set()  # meters that answer "device failure" (fault injection)

    def refresh(self, t_ms: int | None = None) -> int:
        """Step the model to ``t_ms`` (default: now); returns the time stepped to."""
        t = int(self.clock() * 1000) if t_ms is None else t_ms
        for reading in self.model.step(t):
            meter = self.meters[reading["m"]]
            self._values[meter.id] = complete(meter.utility, reading["q"], t)
        self.t_ms = t
        self._stepped_at = time.monotonic()
        return t

    def values(self, meter_id: str) -> dict[str, float]:
        if self.t_ms is None or (
            self.refresh_s is not None and time.monotonic() - self._stepped_at >= self.refresh_s
        ):
            self.refresh()
        return dict(self._values[meter_id])

    def provider(self, meter_id: str) -> ValuesFn:
        if meter_id not in self.meters:
            raise KeyError(f"meter {meter_id!r} is not in park {self.model.park.park!r}")

        def values() -> Mapping[str, float] | None:
            return None if meter_id in self.failed else self.values(meter_id)

        return values


def default_profile(meter: Meter, park: Park) -> str | None:
    """A plausible product for a meter: big feeders get a Schneider PM5xxx, sub-meters an
    Eastron SDM630 or an Acrel (alternating), water an ultrasonic flow meter, and so on."""
    if meter.utility is Utility.ELECTRICITY:
        parents = {m.spec.parent for m in park.iter_meters()}
        if meter.id in parents:
            return "schneider-pm5xxx"
        return "eastron-sdm630" if sum(map(ord, meter.id)) % 2 == 0 else "acrel-dtsd-style"
    return {
        Utility.WATER: "water-ultrasonic-cdab",
        Utility.HEAT: "heat-meter",
        Utility.GAS: "gas-flow-computer",
    }.get(meter.utility)


def ratios_for(profile: MeterProfile | Dlt645Profile, values: Mapping[str, float]) -> Ratios:
    """A current-transformer ratio that keeps a secondary-side meter within its range, as an
    installer would choose one; meters that report primary values need none."""
    if isinstance(profile, MeterProfile):
        ratios = [spec.ratio for spec in profile.registers]
    else:
        ratios = [v.ratio for read in profile.reads for v in read.values]
    if all(ratio is Ratio.NONE for ratio in ratios):
        return Ratios()
    peak_w = abs(values.get("p_kw", 0.0)) * 1000 * 2  # headroom for the day's peak
    for ct in STANDARD_CT:
        if peak_w / ct <= _SECONDARY_W:
            return Ratios(ct=ct)
    # beyond the LV range: the meter sits behind a 10 kV / 100 V voltage transformer as well
    for ct in STANDARD_CT:
        if peak_w / (ct * 100) <= _SECONDARY_W:
            return Ratios(ct=ct, pt=100)
    return Ratios(ct=STANDARD_CT[-1], pt=100)


@dataclass(frozen=True)
class Assignment:
    """A meter served as ``unit`` with a register map and installation ratios."""

    meter: str
    unit: int
    profile: MeterProfile
    ratios: Ratios


class GatewayConfigWriter:
    """The ``gateway.yaml`` of a simulated gateway, from its ``device_configs()``."""

    park: Park
    gateway: str
    what = "Modbus simulator"  # who wrote the file, in its first line

    def device_configs(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def gateway_config(
        self,
        mqtt_url: str = "mqtt://127.0.0.1:1883",
        poll_interval_s: float = 5.0,
        buffer_dir: str = "edge-buffer",
    ) -> dict[str, Any]:
        return {
            "park": self.park.park,
            "gateway": self.gateway,
            "mqtt": {"url": mqtt_url},
            "poll_interval_s": poll_interval_s,
            "buffer_dir": buffer_dir,
            "devices": self.device_configs(),
        }

    def write_gateway_config(self, path: Path, **kwargs: Any) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(self.gateway_config(**kwargs), sort_keys=False, allow_unicode=True)
        path.write_text(
            f"# written by the {self.what} for {self.park.park}/{self.gateway}\n{text}",
            encoding="utf-8",
        )
        return path


@dataclass
class SimulatedGateway(GatewayConfigWriter, Served):
    """Serve the Modbus meters of one gateway of a park; ``async with`` starts and stops."""

    park: Park
    gateway: str
    transport: Literal["tcp", "rtu"] = "tcp"
    host: str = "127.0.0.1"
    port: int = 0  # TCP; 0 = a free port
    state_dir: Path | None = None  # RTU: where the pseudo-terminals live
    baudrate: int = 9600
    seed: int = 0
    refresh_s: float | None = 1.0
    profiles: Mapping[str, str] = field(default_factory=dict)  # meter id → profile override
    meters: Sequence[str] | None = None  # default: every meter of the gateway with a profile
    feed: ModelFeed = field(init=False)
    assignments: list[Assignment] = field(init=False)
    server: ModbusTcpMeterServer | ModbusRtuMeterServer | None = field(default=None, init=False)
    pty: PtyPair | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.feed = ModelFeed(ParkModel(self.park, self.seed), self.refresh_s)
        self.feed.refresh()
        chosen = set(self.meters) if self.meters is not None else None
        self.assignments = []
        for meter in self.park.iter_meters():
            if meter.gateway != self.gateway or (chosen is not None and meter.id not in chosen):
                continue
            name = self.profiles.get(meter.id) or default_profile(meter, self.park)
            if name is None:
                continue
            profile = get_profile(name)
            ratios = ratios_for(profile, self.feed.values(meter.id))
            self.assignments.append(
                Assignment(meter.id, len(self.assignments) + 1, profile, ratios)
            )
        if not self.assignments:
            raise ValueError(f"gateway {self.gateway!r} has no meter to serve over Modbus")

    def served(self) -> list[ServedMeter]:
        return [
            ServedMeter(a.unit, a.profile, self.feed.provider(a.meter), a.ratios, a.meter)
            for a in self.assignments
        ]

    async def start(self) -> None:
        if self.transport == "tcp":
            self.server = ModbusTcpMeterServer(self.served(), host=self.host, port=self.port)
        else:
            if self.state_dir is None:
                raise ValueError("an RTU gateway needs a state_dir for its pseudo-terminals")
            self.pty = PtyPair(self.state_dir).start()
            self.server = ModbusRtuMeterServer(
                self.served(), serial_port=self.pty.device_end, baudrate=self.baudrate
            )
        await self.server.start()
        if isinstance(self.server, ModbusTcpMeterServer):
            self.port = self.server.port

    async def stop(self) -> None:
        try:
            if self.server is not None:
                await self.server.stop()
        finally:
            if self.pty is not None:
                self.pty.stop()
                self.pty = None

    def device_configs(self) -> list[dict[str, Any]]:
        """The ``devices:`` of a gateway.yaml that reads these meters."""
        if self.transport == "tcp":
            transport: dict[str, Any] = {"kind": "tcp", "host": self.host, "port": self.port}
        else:
            assert self.pty is not None, "start the gateway first"
            transport = {"kind": "rtu", "port": self.pty.gateway_end, "baudrate": self.baudrate}
        out = []
        for a in self.assignments:
            device: dict[str, Any] = {
                "meter": a.meter,
                "profile": a.profile.name,
                "unit": a.unit,
                "transport": dict(transport),  # a copy each: no YAML anchors in the file
            }
            if a.ratios != NO_RATIOS:
                device["ct_ratio"] = a.ratios.ct
                device["pt_ratio"] = a.ratios.pt
            out.append(device)
        return out


async def serve_gateway(
    park: Park | Path | str,
    gateway: str,
    *,
    transport: Literal["tcp", "rtu"] = "tcp",
    host: str = "127.0.0.1",
    port: int = 5020,
    state_dir: Path | None = None,
    seed: int = 0,
    config_out: Path | None = None,
    mqtt_url: str = "mqtt://127.0.0.1:1883",
    poll_interval_s: float = 5.0,
) -> None:
    """Serve a gateway's meters over Modbus until cancelled (the simulator's CLI command);
    with ``config_out``, write the gateway.yaml that makes the edge agent read them."""
    if not isinstance(park, Park):
        park = Park.from_yaml(park)
    sim = SimulatedGateway(
        park,
        gateway,
        transport=transport,
        host=host,
        port=port,
        state_dir=state_dir,
        seed=seed,
        refresh_s=min(poll_interval_s, 1.0),
    )
    async with sim:
        for a in sim.assignments:
            log.info(
                "unit %3d  %-24s %-22s ct=%g pt=%g",
                a.unit,
                a.meter,
                a.profile.name,
                a.ratios.ct,
                a.ratios.pt,
            )
        if config_out is not None:
            sim.write_gateway_config(config_out, mqtt_url=mqtt_url, poll_interval_s=poll_interval_s)
            log.info("wrote %s", config_out)
        await asyncio.Event().wait()  # until cancelled
