"""Simulated meters as real Modbus servers: TCP on loopback, and RTU on a serial line.

Each served meter is a unit id whose registers are encoded, at every read, from a values
provider (``() -> {quantity: value}``, e.g. fed by :class:`simulators.model.ParkModel`) through
the same register map the edge agent decodes with (:mod:`edge_agent.profiles`): word order,
data type, scale and instrument-transformer ratios included.

The registers a meter defines are exactly those of its profile's read plan (mapped values plus
the gaps the profile declares readable); any other address answers Modbus exception 2, as a
real meter does, and a read with the wrong function code (holding vs input) fails the same
way. A provider that returns ``None`` makes the unit answer exception 4 (device failure).
Requests for a unit id that is not served go unanswered, as on an RS-485 bus.

Built on the pymodbus 3.16 server API (``SimDevice``/``SimData``; the older datastore classes
changed incompatibly, hence the pinned version).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore

from edge_agent.profiles import NO_RATIOS, Function, MeterProfile, Ratios
from simulators.served import Served

log = logging.getLogger(__name__)

ValuesFn = Callable[[], Mapping[str, float] | None]

_READ_FUNCTION = {3: Function.HOLDING, 4: Function.INPUT}


@dataclass(frozen=True)
class ServedMeter:
    """One simulated meter: a unit id answering with ``profile``'s registers."""

    unit: int
    profile: MeterProfile
    values: ValuesFn
    ratios: Ratios = NO_RATIOS  # the CT/PT the simulated meter is "installed" with
    meter: str = ""  # the meter id, for logs
    _warned: set[str] = field(default_factory=set, init=False, compare=False, repr=False)

    def device(self) -> SimDevice:
        """The pymodbus device: holding and input registers as separate tables."""
        tables: dict[Function, list[SimData]] = {f: [] for f in Function}
        for block in self.profile.read_plan:
            tables[block.function].append(
                SimData(
                    block.address,
                    values=[0] * block.count,
                    datatype=DataType.REGISTERS,
                    readonly=True,  # meters refuse writes to measurement registers
                )
            )
        for table in tables.values():
            if not table:
                # pymodbus wants every table non-empty: one register marked invalid
                table.append(SimData(0, datatype=DataType.INVALID))
        no_bits = [SimData(0, values=0, datatype=DataType.BITS)]
        return SimDevice(
            id=self.unit,
            simdata=(no_bits, list(no_bits), tables[Function.HOLDING], tables[Function.INPUT]),
            action=self._on_access,
        )

    async def _on_access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Called by pymodbus before it answers: rewrite the table from the current values."""
        function = _READ_FUNCTION.get(function_code)
        if function is None or set_values:
            return None  # writes were already refused (read-only registers)
        values = self.values()
        if values is None:
            return ExcCodes.DEVICE_FAILURE
        for block in self.profile.read_plan:
            if block.function is not function:
                continue
            words, missing = block.encode(values, self.ratios)
            offset = block.address - start_address
            registers[offset : offset + block.count] = words
            for quantity in missing:
                if quantity not in self._warned:
                    self._warned.add(quantity)
                    log.warning(
                        "simulated meter %s (unit %d) has no value for %s: it reads as "
                        "not available",
                        self.meter or "?",
                        self.unit,
                        quantity,
                    )
        return None


class _ServedUnitsOnly(SimCore):
    """pymodbus 3.16.1's ``SimCore`` raises ``KeyError`` for a unit id it does not serve, which
    the request handler answers with exception 4 and a logged traceback, so
    ``ignore_missing_devices`` has no effect. Raising ``NoSuchIdException`` instead makes an
    unserved unit stay silent, as on a real RS-485 bus."""

    def _check(self, device_id: int) -> None:
        if device_id not in self.devices:
            raise NoSuchIdException(f"unit {device_id}")

    async def async_getValues(  # noqa: N802 - pymodbus' name
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        self._check(device_id)
        return await super().async_getValues(device_id, func_code, address, count)

    async def async_setValues(  # noqa: N802 - pymodbus' name
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        self._check(device_id)
        return await super().async_setValues(device_id, func_code, address, values)


class _MeterServer(Served):
    """Common lifecycle: ``async with`` starts the server, leaving stops it."""

    def __init__(self, meters: Sequence[ServedMeter]) -> None:
        if not meters:
            raise ValueError("a server needs at least one meter")
        units = [m.unit for m in meters]
        if len(set(units)) != len(units):
            raise ValueError(f"unit ids must be unique, got {units}")
        if any(not 1 <= u <= 247 for u in units):
            raise ValueError("unit ids of served meters are 1..247")
        self.meters = list(meters)
        self._server: ModbusTcpServer | ModbusSerialServer | None = None

    @abc.abstractmethod
    def _build(self) -> ModbusTcpServer | ModbusSerialServer:
        """The pymodbus server for this transport."""

    def _listening(self, server: Any) -> None:
        """Hook after listening starts (the TCP server learns its port)."""

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        server = self._build()
        server.context = _ServedUnitsOnly([m.device() for m in self.meters])
        await server.serve_forever(background=True)
        self._server = server
        self._listening(server)

    async def stop(self) -> None:
        """Stop answering and drop the open connections (the meter 'goes away')."""
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()  # type: ignore[no-untyped-call]


class ModbusTcpMeterServer(_MeterServer):
    """Meters behind one Modbus TCP endpoint (one unit id each, like an RS-485 gateway).

    ``port=0`` picks a free port on start; it is kept for a restart after :meth:`stop`.
    """

    def __init__(
        self, meters: Sequence[ServedMeter], *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(meters)
        self.host = host
        self.port = port

    def _build(self) -> ModbusTcpServer:
        return ModbusTcpServer(
            [m.device() for m in self.meters],
            address=(self.host, self.port),
            ignore_missing_devices=True,
        )

    def _listening(self, server: Any) -> None:
        # port 0: the OS chose; ask the listening socket
        self.port = int(server.transport.sockets[0].getsockname()[1])
        log.info("Modbus TCP meters on %s:%d: units %s", self.host, self.port, self.units)

    @property
    def units(self) -> list[int]:
        return [m.unit for m in self.meters]


class ModbusMeterServer(ModbusTcpMeterServer):
    """One meter on its own Modbus TCP server: ``async with ModbusMeterServer(profile, 1,
    values) as srv: srv.port``."""

    def __init__(
        self,
        profile: MeterProfile,
        unit: int,
        values: ValuesFn,
        *,
        ratios: Ratios = NO_RATIOS,
        meter: str = "",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__([ServedMeter(unit, profile, values, ratios, meter)], host=host, port=port)


class ModbusRtuMeterServer(_MeterServer):
    """Meters on one serial line (an RS-485 bus), Modbus RTU framing."""

    def __init__(
        self,
        meters: Sequence[ServedMeter],
        *,
        serial_port: str,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
    ) -> None:
        super().__init__(meters)
        self.serial_port = serial_port
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.bytesize = bytesize

    def _build(self) -> ModbusSerialServer:
        return ModbusSerialServer(
            [m.device() for m in self.meters],
            port=self.serial_port,
            baudrate=self.baudrate,
            parity=self.parity,
            stopbits=self.stopbits,
            bytesize=self.bytesize,
            ignore_missing_devices=True,
        )

    def _listening(self, server: Any) -> None:
        log.info(
            "Modbus RTU meters on %s (%d %d%s%d): units %s",
            self.serial_port,
            self.baudrate,
            self.bytesize,
            self.parity,
            self.stopbits,
            [m.unit for m in self.meters],
        )
