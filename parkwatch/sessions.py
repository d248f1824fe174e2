"""The reconnect loop every MQTT service shares.

A session is one connection: connect, subscribe, consume until the connection breaks. The loop
runs sessions forever; a broken one is logged once per outage (``OutageLog``) and followed by a
jittered, growing wait — reset as soon as a session is up again, so the next outage starts
from a short wait rather than where the last one left off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiomqtt

from parkwatch.retry import Backoff, OutageLog
from parkwatch.tasks import honour_cancel


@dataclass
class SessionLoop:
    outage: OutageLog
    backoff: Backoff = field(default_factory=Backoff)
    up: asyncio.Event = field(default_factory=asyncio.Event)

    def connected(self) -> None:
        """Call once the session is subscribed: the broker is back, waits start short again.

        Raises ``CancelledError`` if a subscribe swallowed a cancellation: the session must not
        go on to wait for messages."""
        honour_cancel()
        self.outage.recovered()
        self.backoff.reset()
        self.up.set()

    async def run(
        self,
        session: Callable[[], Awaitable[None]],
        on_down: Callable[[], None] | None = None,
    ) -> None:
        """Run ``session`` again and again; return only by cancellation."""
        while True:
            try:
                await session()
            except aiomqtt.MqttError as exc:
                self.up.clear()
                if on_down is not None:
                    on_down()
                self.outage.failed(exc)
                # the failed connect may have swallowed a cancellation: never reconnect then
                honour_cancel()
                await asyncio.sleep(self.backoff.next_delay())
