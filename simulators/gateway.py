"""One simulated gateway's meters over all three protocols the edge agent reads.

:class:`MultiProtocolGateway` serves the meters of one gateway of a park from one park model:
the meters named in ``dlt645`` as DL/T 645-2007 meters on one line (behind a TCP transparent
converter, or on a serial line over a socat pseudo-terminal pair), those named in ``opcua`` as
devices of one OPC UA controller, and the rest as Modbus meters behind one Modbus TCP endpoint
(:class:`~simulators.modbus.SimulatedGateway`). :meth:`gateway_config` writes the
``gateway.yaml`` that reads them all — the agent needs nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge_agent.dlt645 import get_dlt645_profile
from edge_agent.opcua import get_opcua_profile
from edge_agent.profiles import NO_RATIOS, Ratios
from parkwatch.quantities import Utility
from parkwatch.site import Park
from simulators.dlt645 import Dlt645Bus, Dlt645SerialServer, Dlt645TcpServer, ServedDlt645Meter
from simulators.modbus import ModelFeed, PtyPair, SimulatedGateway
from simulators.modbus.park import GatewayConfigWriter, ratios_for
from simulators.opcua import OpcUaControllerServer, ServedOpcUaDevice
from simulators.served import Served

DLT645_PROFILE = "dlt645-2007-3ph"
OPCUA_PROFILE = "compressor-controller"


def dlt645_address(index: int) -> str:
    """The nameplate number of the index-th simulated DL/T 645 meter."""
    return f"{230_000_000_000 + index:012d}"


@dataclass
class MultiProtocolGateway(GatewayConfigWriter, Served):
    what = "simulator"
    park: Park
    gateway: str
    dlt645: Sequence[str] = ()  # meter ids served as DL/T 645 meters
    opcua: Sequence[str] = ()  # meter ids served by an OPC UA controller
    dlt645_line: Literal["tcp", "serial"] = "tcp"
    state_dir: Path | None = None  # a serial line's pseudo-terminals live here
    baudrate: int = 9600  # the DL/T 645 line's
    seed: int = 0
    refresh_s: float | None = 1.0
    modbus: SimulatedGateway = field(init=False)
    dlt645_ratios: dict[str, Ratios] = field(init=False)
    _bus_server: Dlt645TcpServer | Dlt645SerialServer | None = field(default=None, init=False)
    _pty: PtyPair | None = field(default=None, init=False)
    _opcua_server: OpcUaControllerServer | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        others = set(self.dlt645) | set(self.opcua)
        ours = [m.id for m in self.park.iter_meters() if m.gateway == self.gateway]
        if not others <= set(ours):
            raise ValueError(f"not meters of {self.gateway}: {sorted(others - set(ours))}")
        # both maps carry electricity quantities: another utility's meter cannot be served so
        utilities = {m.id: m.utility for m in self.park.iter_meters()}
        served_as = {DLT645_PROFILE: self.dlt645, OPCUA_PROFILE: self.opcua}
        wanted: dict[str, Utility] = {
            DLT645_PROFILE: get_dlt645_profile(DLT645_PROFILE).utility,
            OPCUA_PROFILE: get_opcua_profile(OPCUA_PROFILE).utility,
        }
        for profile_name, meters in served_as.items():
            for meter in meters:
                if utilities[meter] != wanted[profile_name]:
                    raise ValueError(
                        f"{meter} is a {utilities[meter]} meter; {profile_name} serves "
                        f"{wanted[profile_name]} meters"
                    )
        self.modbus = SimulatedGateway(
            self.park,
            self.gateway,
            meters=[m for m in ours if m not in others],
            seed=self.seed,
            refresh_s=self.refresh_s,
        )
        profile = get_dlt645_profile(DLT645_PROFILE)
        self.dlt645_ratios = {m: ratios_for(profile, self.feed.values(m)) for m in self.dlt645}

    @property
    def feed(self) -> ModelFeed:
        return self.modbus.feed

    async def start(self) -> None:
        await self.modbus.start()
        if self.dlt645:
            profile = get_dlt645_profile(DLT645_PROFILE)
            meters = [
                ServedDlt645Meter(
                    dlt645_address(i), profile, self.feed.provider(m), self.dlt645_ratios[m], m
                )
                for i, m in enumerate(self.dlt645, start=1)
            ]
            bus = Dlt645Bus(meters, baudrate=self.baudrate)
            if self.dlt645_line == "tcp":
                self._bus_server = Dlt645TcpServer(bus)
            else:
                if self.state_dir is None:
                    raise ValueError("a serial DL/T 645 line needs a state_dir")
                self._pty = PtyPair(self.state_dir / "dlt645").start()
                self._bus_server = Dlt645SerialServer(bus, serial_port=self._pty.device_end)
            await self._bus_server.start()
        if self.opcua:
            controller = get_opcua_profile(OPCUA_PROFILE)
            self._opcua_server = OpcUaControllerServer(
                [ServedOpcUaDevice(self.device_name(m), controller, self.feed.provider(m), m)
                 for m in self.opcua]
            )  # fmt: skip
            await self._opcua_server.start()

    async def stop(self) -> None:
        with contextlib.ExitStack() as finally_:
            if self._pty is not None:
                finally_.callback(self._pty.stop)
            if self._opcua_server is not None:
                await self._opcua_server.stop()
            if self._bus_server is not None:
                await self._bus_server.stop()
            await self.modbus.stop()

    @staticmethod
    def device_name(meter: str) -> str:
        """The controller's name for a compressor: its meter id, upper case (``STEELCO-C1``)."""
        return meter.upper()

    def device_configs(self) -> list[dict[str, Any]]:
        """The ``devices:`` of a gateway.yaml that reads every served meter."""
        devices = self.modbus.device_configs()
        if self.dlt645:
            assert self._bus_server is not None, "start the gateway first"
            if isinstance(self._bus_server, Dlt645TcpServer):
                line: dict[str, Any] = {
                    "kind": "tcp",
                    "host": "127.0.0.1",
                    "port": self._bus_server.port,
                }
            else:
                assert self._pty is not None
                line = {"kind": "serial", "port": self._pty.gateway_end, "baudrate": self.baudrate}
            for i, meter in enumerate(self.dlt645, start=1):
                device: dict[str, Any] = {
                    "meter": meter,
                    "profile": DLT645_PROFILE,
                    "address": dlt645_address(i),
                    "transport": dict(line),
                }
                ratios = self.dlt645_ratios[meter]
                if ratios != NO_RATIOS:
                    device["ct_ratio"] = ratios.ct
                    device["pt_ratio"] = ratios.pt
                devices.append(device)
        if self.opcua:
            assert self._opcua_server is not None, "start the gateway first"
            for meter in self.opcua:
                devices.append(
                    {
                        "meter": meter,
                        "profile": OPCUA_PROFILE,
                        "device": self.device_name(meter),
                        "transport": {"kind": "opcua", "url": self._opcua_server.url},
                    }
                )
        return devices
