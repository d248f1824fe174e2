"""What the simulator serves — a meter server, a bus, a controller, a gateway's devices — is
started and stopped the same way: ``start``, ``stop``, and ``async with`` for both."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self


class Served(abc.ABC):
    """Started by :meth:`start`, stopped by :meth:`stop` (which must be safe to call after a
    start that failed half way: ``async with`` stops what did start before re-raising)."""

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
