"""Reading DL/T 645-2007 meters over a serial bus or a TCP transparent converter.

One :class:`Dlt645Link` per serial port or converter endpoint; the meters behind it take
turns (a request, then its answer, then the next request). A meter is addressed by the
12-digit number on its nameplate, or ``auto``: the agent asks with the broadcast address
(``AAAAAAAAAAAA``) which meter is there — only right with one meter on the line, since every
meter answers a broadcast — and asks again after the meter stops answering, so a swapped
meter is found (and its counters flagged ``replaced``, since its address changed).

A data identifier the meter does not know (an error answer "no such data") drops that read's
quantities, logged once; the other reads go on. A timeout, a broken link or a corrupt answer
is a failed read of the whole meter (:class:`Dlt645ReadError`), translated here from socket
and serial errors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from edge_agent.dlt645 import (
    BROADCAST,
    Control,
    Dlt645Error,
    Dlt645Profile,
    ErrorWord,
    Frame,
    MeterRefused,
    address_text,
    decode_frame,
    di_bytes,
    read_address_request,
    read_answer,
    read_request,
)
from edge_agent.drivers import DriverError
from edge_agent.links import StreamLink
from edge_agent.profiles import NO_RATIOS, Ratios
from edge_agent.settings import RtuTransport, TcpTransport

log = logging.getLogger(__name__)


class Dlt645ReadError(DriverError):
    """A DL/T 645 meter could not be read."""

    def __init__(self, meter: str, what: str, detail: str) -> None:
        super().__init__(f"meter {meter}: {what}: {detail}")
        self.meter = meter


class Dlt645TimeoutError(Dlt645ReadError):
    """No (valid) answer in time."""


class Dlt645RefusedError(Dlt645ReadError):
    """The meter answered with an error status."""

    def __init__(self, meter: str, what: str, refused: MeterRefused) -> None:
        super().__init__(meter, what, str(refused))
        self.status = refused.status


class Dlt645Link(StreamLink):
    """One serial bus or converter endpoint carrying DL/T 645 frames."""

    def __init__(self, transport: TcpTransport | RtuTransport) -> None:
        super().__init__(transport)
        self._pending = bytearray()  # bytes read past the last frame (a late answer's rest)

    async def transact(
        self, request: Frame, timeout_s: float, accept: Callable[[Frame], bool]
    ) -> Frame:
        """Send ``request`` and return the first answer ``accept`` takes. Anything else on
        the line — an echo of our own request, a late answer to an earlier one, another
        meter's answer — is skipped. Raises ``TimeoutError`` or ``OSError``."""
        async with self.turn():
            try:
                async with asyncio.timeout(timeout_s):
                    reader, writer = await self.stream()
                    self._pending.clear()
                    writer.write(request.encode())
                    await writer.drain()
                    while True:
                        frame, used = decode_frame(self._pending)
                        del self._pending[:used]
                        if frame is not None:
                            if frame.is_response and accept(frame):
                                return frame
                            continue
                        chunk = await reader.read(512)
                        if not chunk:
                            raise ConnectionResetError("the connection was closed")
                        self._pending += chunk
            except TimeoutError:
                # on TCP a late answer could be taken for the next one: start afresh. A
                # serial bus stays open: one silent meter says nothing about the others.
                if not self.is_serial:
                    self.drop()
                raise
            except (OSError, EOFError):
                self.drop()
                raise


class Dlt645Driver:
    """Reads one DL/T 645 meter: every read of its profile, decoded to quantities."""

    protocol = "dlt645"

    def __init__(
        self,
        meter: str,
        address: str,
        profile: Dlt645Profile,
        link: Dlt645Link,
        ratios: Ratios = NO_RATIOS,
        timeout_s: float = 1.0,
    ) -> None:
        self.meter = meter
        self.configured_address = address
        self.profile = profile
        self.link = link
        self.ratios = ratios
        self.timeout_s = timeout_s
        self.address: str | None = None if address == "auto" else address
        self._unsupported: set[str] = set()

    @property
    def name(self) -> str:
        return (
            f"meter {self.meter} (DL/T 645 {self.configured_address} on {self.link.name}, "
            f"{self.profile.name})"
        )

    @property
    def identity(self) -> str | None:
        """The meter's own address: a change means another meter answers now."""
        return self.address

    def counter_moduli(self) -> dict[str, float]:
        return self.profile.counter_moduli(self.ratios)

    async def find_address(self) -> str:
        """Ask the line which meter is on it (broadcast read-address)."""

        def accept(frame: Frame) -> bool:
            return frame.function == Control.READ_ADDRESS

        frame = await self._exchange("reading the address", read_address_request(), accept)
        if frame.is_error or len(frame.data) != 6:
            raise Dlt645ReadError(self.meter, "reading the address", "no address in the answer")
        return address_text(frame.data)

    async def read(self) -> dict[str, float]:
        """The profile's quantities the meter reports."""
        if self.address is None:
            self.address = await self.find_address()
        address = self.address
        values: dict[str, float] = {}
        answered = 0
        for read in self.profile.reads:
            if read.di in self._unsupported:
                continue
            code = read.code

            def accept(frame: Frame, code: int = code) -> bool:
                return frame.address == address and (
                    frame.is_error or frame.data[:4] == di_bytes(code)
                )

            what = f"DI {read.di}"
            try:
                frame = await self._exchange(what, read_request(address, code), accept)
                raw = read_answer(frame, code)
            except MeterRefused as exc:
                if ErrorWord.NO_DATA in exc.status:
                    self._unsupported.add(read.di)
                    log.warning("%s has no %s (%s): left out from now on", self.name, what, exc)
                    continue
                raise Dlt645RefusedError(self.meter, what, exc) from exc
            except Dlt645Error as exc:
                raise Dlt645ReadError(self.meter, what, str(exc)) from exc
            answered += 1
            values.update(read.decode(raw, self.ratios))
        if not answered and self._unsupported:
            raise Dlt645ReadError(self.meter, "every read", "the meter knows none of them")
        return values

    async def _exchange(self, what: str, request: Frame, accept: Callable[[Frame], bool]) -> Frame:
        try:
            return await self.link.transact(request, self.timeout_s, accept)
        except TimeoutError as exc:
            if self.configured_address == "auto":
                self.address = None  # ask again next time: the meter may have been swapped
            raise Dlt645TimeoutError(
                self.meter, what, f"no answer within {self.timeout_s}s on {self.link.name}"
            ) from exc
        except (OSError, EOFError) as exc:
            raise Dlt645ReadError(
                self.meter, what, f"{self.link.name}: {type(exc).__name__}: {exc}"
            ) from exc


__all__ = [
    "BROADCAST",
    "Dlt645Driver",
    "Dlt645Link",
    "Dlt645ReadError",
    "Dlt645RefusedError",
    "Dlt645TimeoutError",
]
