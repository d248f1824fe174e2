"""What every physical connection of the gateway shares, whatever the protocol on it.

A *link* is one connection: a TCP endpoint (a meter's own port, or an RS-485-to-Ethernet
converter with several meters behind it), a serial port (one RS-485 bus), an OPC UA session.
The devices behind one link take turns on it: a lock keeps one request on the wire at a time,
as a bus requires, and the link's :class:`LinkStats` count how long it was busy — the bus
utilisation the agent reports. :class:`StreamLink` is the byte-stream connection of protocols
that frame their own messages (DL/T 645): opened lazily, reopened on the next request after a
failure, every step under a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from edge_agent.settings import RtuTransport, TcpTransport


@dataclass
class LinkStats:
    """Busy time and requests of one link, cumulative since start."""

    requests: int = 0
    failures: int = 0
    busy_s: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def utilisation(self, since: tuple[float, float] | None = None) -> float:
        """Share of wall time the link carried requests: since start, or since a
        ``snapshot()`` taken earlier."""
        now = time.monotonic()
        t0, busy0 = since if since is not None else (self.started, 0.0)
        wall = now - t0
        return 0.0 if wall <= 0 else min(1.0, (self.busy_s - busy0) / wall)

    def snapshot(self) -> tuple[float, float]:
        return time.monotonic(), self.busy_s


class Link:
    """A connection shared by the devices behind it; one request at a time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stats = LinkStats()
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold the link for one request; the time held counts as busy."""
        async with self._lock:
            started = time.monotonic()
            ok = False
            try:
                yield
                ok = True
            finally:
                self.stats.requests += 1
                self.stats.failures += not ok
                self.stats.busy_s += time.monotonic() - started

    async def aclose(self) -> None:
        """Close the connection (a subclass's job); the next request opens a new one."""


class StreamLink(Link):
    """A byte stream over TCP or a serial port, for protocols with their own framing."""

    def __init__(self, transport: TcpTransport | RtuTransport) -> None:
        super().__init__(transport.key)
        self.transport = transport
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def is_serial(self) -> bool:
        return isinstance(self.transport, RtuTransport)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        t = self.transport
        if isinstance(t, TcpTransport):
            return await asyncio.open_connection(t.host, t.port)
        import serial_asyncio_fast  # only gateways with a serial line need it

        return await serial_asyncio_fast.open_serial_connection(
            url=t.port, baudrate=t.baudrate, parity=t.parity, stopbits=t.stopbits,
            bytesize=t.bytesize,
        )  # fmt: skip

    async def stream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The open connection, opened now if need be (call with the link held)."""
        if self._writer is None or self._writer.is_closing():
            self.drop()
            self._reader, self._writer = await self._open()
        assert self._reader is not None
        return self._reader, self._writer

    def drop(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._reader = self._writer = None

    async def aclose(self) -> None:
        async with self._lock:
            self.drop()


class LinkSet:
    """Links by transport key; ``async with`` closes every one of them on the way out."""

    def __init__(self) -> None:
        self.links: dict[str, Link] = {}

    async def aclose(self) -> None:
        for link in self.links.values():
            with contextlib.suppress(Exception):  # closing must not hide the error that got us here
                await link.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
