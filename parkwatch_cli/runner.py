"""Running a service from the command line until it ends or is stopped."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import Any


def run_service(
    coro: Any, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
) -> None:
    """Run a service until it ends; SIGINT and SIGTERM cancel it, so its context managers
    close connections and stop child processes on the way out. ``loop_factory``: the event
    loop to run on (default: asyncio's)."""

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        def stop() -> None:
            # asyncio.wait_for in Python 3.11 (inside aiomqtt) can swallow a cancellation that
            # lands as its operation completes: cancel again until the task has ended
            if not task.done():
                task.cancel()
                loop.call_later(1.0, stop)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        with contextlib.suppress(asyncio.CancelledError):
            await coro

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
