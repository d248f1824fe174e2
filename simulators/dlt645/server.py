"""DL/T 645-2007 meters on a simulated line: the meter side of :mod:`edge_agent.dlt645`.

A :class:`Dlt645Bus` is the meters on one line. It answers what a real line would: a read of
a data identifier its profile maps (the values encoded through the same map the agent decodes
with), an error answer "no such data" for one it does not, an error answer "other" while the
meter is failed, silence for an address nobody has; the broadcast read-address is answered
only when one meter is on the line (several would all answer at once and garble each other).

Served over TCP (:class:`Dlt645TcpServer`, like a transparent RS-485-to-Ethernet converter)
or on a serial line (:class:`Dlt645SerialServer`, one end of a socat pseudo-terminal pair).
A pseudo-terminal moves bytes instantly, so with ``paced=True`` the bus keeps the real line's
time: an answer is handed over only when the request and the answer would have crossed the
wire at the bus' baud rate (11 bits a byte: start, 8 data, even parity, stop), plus the
meter's turnaround — what the benchmark needs to compare the bus' capacity with what the
agent achieves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from edge_agent.dlt645 import (
    BROADCAST,
    Control,
    Dlt645Profile,
    Dlt645Read,
    ErrorWord,
    Frame,
    decode_frame,
    error_answer,
    read_data_answer,
)
from edge_agent.profiles import NO_RATIOS, Ratios
from simulators.served import Served

log = logging.getLogger(__name__)

ValuesFn = Callable[[], Mapping[str, float] | None]
BITS_PER_BYTE = 11


@dataclass(frozen=True)
class ServedDlt645Meter:
    """One simulated meter: its address, its map and where its values come from."""

    address: str
    profile: Dlt645Profile
    values: ValuesFn
    ratios: Ratios = NO_RATIOS
    meter: str = ""  # the meter id, for logs

    def read(self, di: int) -> Dlt645Read | None:
        for read in self.profile.reads:
            if read.code == di:
                return read
        return None


class Dlt645Bus:
    """The meters on one line, and what they answer."""

    def __init__(
        self,
        meters: Sequence[ServedDlt645Meter],
        *,
        baudrate: int = 2400,
        paced: bool = False,
        turnaround_s: float = 0.02,
    ) -> None:
        addresses = [m.address for m in meters]
        if len(set(addresses)) != len(addresses):
            raise ValueError(f"meter addresses must be unique on a line, got {addresses}")
        self.meters = {m.address: m for m in meters}
        self.baudrate = baudrate
        self.paced = paced
        self.turnaround_s = turnaround_s
        self.requests = 0

    def answer(self, request: Frame) -> Frame | None:
        """The answer to one request, or ``None`` for silence."""
        if request.is_response:
            return None  # another meter's answer on the line (or an echo)
        if request.function == Control.READ_ADDRESS:
            if request.address != BROADCAST or len(self.meters) != 1:
                return None
            (only,) = self.meters.values()
            return Frame(
                only.address, 0x80 | Control.READ_ADDRESS, bytes.fromhex(only.address)[::-1]
            )
        meter = self.meters.get(request.address)
        if meter is None and request.address == BROADCAST and len(self.meters) == 1:
            (meter,) = self.meters.values()
        if meter is None or request.function != Control.READ_DATA or len(request.data) != 4:
            return None
        di = int.from_bytes(request.data, "little")
        read = meter.read(di)
        if read is None:
            return error_answer(meter.address, Control.READ_DATA, ErrorWord.NO_DATA)
        values = meter.values()
        if values is None:
            return error_answer(meter.address, Control.READ_DATA, ErrorWord.OTHER)
        return read_data_answer(meter.address, di, read.encode(values, meter.ratios))

    def wire_time(self, *frames: bytes) -> float:
        return sum(len(f) for f in frames) * BITS_PER_BYTE / self.baudrate

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer requests on one byte stream until it closes."""
        pending = bytearray()
        while True:
            chunk = await reader.read(512)
            if not chunk:
                return
            pending += chunk
            while True:
                frame, used = decode_frame(pending)
                raw = bytes(pending[:used])
                del pending[:used]
                if frame is None:
                    break
                self.requests += 1
                answer = self.answer(frame)
                if answer is None:
                    continue
                out = answer.encode()
                if self.paced:
                    # the request crossed the line, the meter thought, the answer crosses back
                    await asyncio.sleep(self.wire_time(raw, out) + self.turnaround_s)
                writer.write(out)
                await writer.drain()


class _Server(Served):
    def __init__(self, bus: Dlt645Bus) -> None:
        self.bus = bus


class Dlt645TcpServer(_Server):
    """The line behind a TCP transparent converter; ``port=0`` picks a free port."""

    def __init__(self, bus: Dlt645Bus, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(bus)
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            await self.bus.serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("DL/T 645 converter on %s:%d: %s", self.host, self.port, list(self.bus.meters))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            # closing a connection ends its reader: the converter "goes away" for its clients
            for writer in list(self._clients):
                writer.transport.abort()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None


class Dlt645SerialServer(_Server):
    """The meters on a serial line (one end of a pseudo-terminal pair). A pseudo-terminal
    refuses parity settings (EINVAL), so the simulated line runs 8N1 where a real DL/T 645
    line runs 8E1; the pacing still counts 11 bits a byte."""

    def __init__(
        self, bus: Dlt645Bus, *, serial_port: str, parity: str = "N", stopbits: int = 1
    ) -> None:
        super().__init__(bus)
        self.serial_port = serial_port
        self.parity = parity
        self.stopbits = stopbits
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        import serial_asyncio_fast

        reader, self._writer = await serial_asyncio_fast.open_serial_connection(
            url=self.serial_port,
            baudrate=self.bus.baudrate,
            parity=self.parity,
            stopbits=self.stopbits,
        )
        self._task = asyncio.create_task(self.bus.serve(reader, self._writer))
        log.info("DL/T 645 meters on %s: %s", self.serial_port, list(self.bus.meters))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
