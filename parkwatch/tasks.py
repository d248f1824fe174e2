"""Stopping asyncio tasks for good."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


def honour_cancel() -> None:
    """Stop if this task was asked to. ``asyncio.wait_for`` in Python 3.11 (inside pymodbus,
    asyncua and aiomqtt) can swallow a cancellation that lands as its operation completes; a
    loop that carried on would keep its task group — and its service — from ever stopping,
    since a task group cancels each task only once. Call it after such an operation."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended.

    Cancels again while it runs on: ``asyncio.wait_for`` in Python 3.11 (which aiomqtt uses
    for every operation) can swallow a cancellation that lands as its operation completes.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=1.0)
    with contextlib.suppress(asyncio.CancelledError):
        await task
