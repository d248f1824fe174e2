"""Modbus drivers: read a meter's registers over TCP or RTU and decode them with its profile.

One :class:`ModbusLink` per physical connection (a TCP endpoint, or a serial port): the devices
behind one RS-485-to-Ethernet gateway or on one RS-485 bus share it, and its lock keeps one
request on the wire at a time, as a bus requires. Each link connects lazily and reconnects on
the next read after a failure, so a meter that went away is simply retried at the next poll.

Every request has a timeout. pymodbus errors are translated here, at the boundary, into the
small tree below (``raise MeterTimeoutError(...) from exc``), so callers never see vendor
exceptions.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Mapping, Sequence

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from edge_agent.links import Link, LinkSet
from edge_agent.profiles import NO_RATIOS, Function, MeterProfile, Ratios, get_profile
from edge_agent.settings import DeviceConfig, RtuTransport, TcpTransport

log = logging.getLogger(__name__)


class DriverError(Exception):
    """Base of the errors of the meter-reading boundary."""


class MeterReadError(DriverError):
    """A meter could not be read: no connection, no answer, or an error answer."""

    def __init__(
        self, meter: str, function: Function, address: int, count: int, detail: str
    ) -> None:
        super().__init__(
            f"meter {meter}: reading {count} {function} registers at {address}: {detail}"
        )
        self.meter = meter
        self.function = function
        self.address = address
        self.count = count


class MeterConnectError(MeterReadError):
    """The link to the meter (TCP endpoint or serial port) could not be opened or broke."""


class MeterTimeoutError(MeterReadError):
    """The meter did not answer in time."""


class MeterRefusedError(MeterReadError):
    """The meter answered with a Modbus exception (2: illegal address, 4: device failure, …)."""

    def __init__(self, meter: str, function: Function, address: int, count: int, code: int) -> None:
        super().__init__(meter, function, address, count, f"Modbus exception code {code}")
        self.code = code


_Client = AsyncModbusTcpClient | AsyncModbusSerialClient


class ModbusLink(Link):
    """One Modbus connection shared by the units behind it; one request at a time."""

    def __init__(self, transport: TcpTransport | RtuTransport, timeout_s: float = 1.0) -> None:
        super().__init__(transport.key)
        self.transport = transport
        self.timeout_s = timeout_s
        self._client: _Client | None = None

    def _new_client(self) -> _Client:
        # retries=0 and reconnect_delay=0: the poller owns retrying (next cycle) and the
        # logging of outages; pymodbus' own background reconnect task would do neither.
        t = self.transport
        if isinstance(t, TcpTransport):
            return AsyncModbusTcpClient(
                t.host, port=t.port, timeout=self.timeout_s, retries=0, reconnect_delay=0
            )
        return AsyncModbusSerialClient(
            t.port,
            baudrate=t.baudrate,
            parity=t.parity,
            stopbits=t.stopbits,
            bytesize=t.bytesize,
            timeout=self.timeout_s,
            retries=0,
            reconnect_delay=0,
        )

    def _drop(self) -> None:
        """Forget the connection; the next read opens a fresh one."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def read(
        self,
        meter: str,
        unit: int,
        function: Function,
        address: int,
        count: int,
        timeout_s: float | None = None,
    ) -> list[int]:
        """Read ``count`` registers; raises a :class:`MeterReadError`. ``timeout_s`` bounds
        this request (a device's own timeout); pymodbus' per-request timeout is the link's."""
        args = (meter, function, address, count)
        # pymodbus' timeout (the link's: its slowest device's) should answer first, so that a
        # silent unit is a ModbusIOException and a serial bus stays open; only a device with
        # a shorter timeout of its own is cut off by the hard bound (and the link reset)
        hard = self.timeout_s * 2 + 0.5
        bound = hard if timeout_s is None or timeout_s >= self.timeout_s else timeout_s
        async with self.turn():
            try:
                # a hard bound over pymodbus' own per-request timeout, in case it hangs
                async with asyncio.timeout(bound):
                    if self._client is None or not self._client.connected:
                        self._drop()
                        self._client = self._new_client()
                        if not await self._client.connect():
                            self._drop()
                            raise MeterConnectError(*args, f"cannot connect to {self.name}")
                    if function is Function.HOLDING:
                        response = await self._client.read_holding_registers(
                            address, count=count, device_id=unit
                        )
                    else:
                        response = await self._client.read_input_registers(
                            address, count=count, device_id=unit
                        )
            except ConnectionException as exc:
                self._drop()
                raise MeterConnectError(*args, f"connection to {self.name} lost") from exc
            except ModbusIOException as exc:
                # TCP: a late answer could be taken for the next one: start afresh. A serial
                # bus stays open: one silent unit says nothing about the others on it.
                if isinstance(self.transport, TcpTransport):
                    self._drop()
                raise MeterTimeoutError(*args, f"no answer from unit {unit}") from exc
            except TimeoutError as exc:
                self._drop()
                raise MeterTimeoutError(*args, f"no answer within {bound}s") from exc
            except (ModbusException, OSError) as exc:
                self._drop()
                raise MeterConnectError(*args, f"{type(exc).__name__}: {exc}") from exc
        if response.isError():
            raise MeterRefusedError(*args, int(getattr(response, "exception_code", 0)))
        words = list(response.registers)
        if len(words) != count:
            raise MeterReadError(*args, f"answered {len(words)} registers")
        return words

    async def aclose(self) -> None:
        async with self._lock:
            self._drop()


def require_pyserial() -> None:
    # pymodbus' serial client needs pyserial and only says so when a client is built
    if importlib.util.find_spec("serial") is None:
        raise DriverError("Modbus RTU devices need pyserial: pip install 'pyserial>=3.5'")


class MeterDriver:
    """Reads one Modbus meter: every block of its profile's read plan, decoded to quantities."""

    protocol = "modbus"

    def __init__(
        self,
        meter: str,
        unit: int,
        profile: MeterProfile,
        link: ModbusLink,
        ratios: Ratios = NO_RATIOS,
        timeout_s: float | None = None,
    ) -> None:
        self.meter = meter
        self.unit = unit
        self.profile = profile
        self.link = link
        self.ratios = ratios
        self.timeout_s = timeout_s

    @property
    def name(self) -> str:
        return f"meter {self.meter} (unit {self.unit} on {self.link.name}, {self.profile.name})"

    @property
    def identity(self) -> str | None:
        return None  # Modbus maps carry no serial-number register (yet)

    def counter_moduli(self) -> dict[str, float]:
        return self.profile.counter_moduli(self.ratios)

    async def read(self) -> dict[str, float]:
        """All quantities of the profile that the meter reports as finite values."""
        values: dict[str, float] = {}
        for block in self.profile.read_plan:
            words = await self.link.read(
                self.meter, self.unit, block.function, block.address, block.count, self.timeout_s
            )
            values.update(block.decode(words, self.ratios))
        return values

    async def read_words(self, function: Function, address: int, count: int) -> list[int]:
        """Raw registers, for diagnosis (and for tests of word order)."""
        return await self.link.read(self.meter, self.unit, function, address, count)


class ModbusDrivers(LinkSet):
    """Modbus devices' drivers and the links they share; closes the links on exit."""

    def __init__(
        self,
        devices: Sequence[DeviceConfig],
        profiles: Mapping[str, MeterProfile] | None = None,
        timeout_s: float = 1.0,
    ) -> None:
        super().__init__()
        self.drivers: list[MeterDriver] = []
        if any(isinstance(d.transport, RtuTransport) for d in devices):
            require_pyserial()
        for device in devices:
            t = device.transport
            if not isinstance(t, TcpTransport | RtuTransport):
                raise DriverError(f"meter {device.meter}: not a Modbus transport: {t.key}")
            link = self.links.get(t.key)
            if link is None:
                link = self.links[t.key] = ModbusLink(t, timeout_s)
            assert isinstance(link, ModbusLink)
            profile = get_profile(device.profile, profiles)
            self.drivers.append(
                MeterDriver(device.meter, device.unit, profile, link, device.ratios)
            )
