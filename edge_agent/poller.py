"""Poll scheduler: every cycle, read every device (a bounded number at once) into one batch.

A device that stops answering is logged once when it goes and once when it comes back
(:class:`parkwatch.retry.OutageLog`), however many cycles it misses; meanwhile its readings are
simply absent from the batches — never repeated, never filled in.

Meters that publish by themselves (MQTT-native: :mod:`edge_agent.mqtt_devices`) are reading
*sources*: each cycle takes what they received since the last one into the same batch.

Cycles start on a fixed grid (``start + k × interval``); a cycle that overruns its slot makes
the scheduler skip the slots it missed rather than fire a burst of catch-up polls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_agent.drivers import DriverError, MeterDriver
from parkwatch.retry import OutageLog

log = logging.getLogger(__name__)

Reading = dict[str, Any]  # {"m": meter, "t": epoch ms, "q": {quantity: value}, "s": "ok"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ReadingSource(Protocol):
    """Readings that arrive by themselves; each cycle takes those that came since the last."""

    def take(self, now: int) -> list[Reading]: ...


@dataclass
class DeviceState:
    driver: MeterDriver
    outage: OutageLog
    reads_ok: int = 0
    reads_failed: int = 0


@dataclass
class PollStats:
    cycles: int = 0
    skipped_slots: int = 0  # grid slots lost to cycles that overran
    last_cycle_s: float = 0.0
    readings: int = 0


@dataclass
class Poller:
    drivers: Sequence[MeterDriver]
    max_concurrency: int = 8
    sources: Sequence[ReadingSource] = ()
    clock_ms: Callable[[], int] = now_ms
    logger: logging.Logger = log
    stats: PollStats = field(default_factory=PollStats)
    devices: list[DeviceState] = field(init=False)

    def __post_init__(self) -> None:
        self.devices = [DeviceState(d, OutageLog(self.logger, d.name)) for d in self.drivers]

    async def poll_once(self) -> list[Reading]:
        """Read every device once; the readings of the devices that answered, in config order."""
        started = time.monotonic()
        limit = asyncio.Semaphore(self.max_concurrency)
        results: list[Reading | None] = [None] * len(self.devices)

        async def read(index: int, device: DeviceState) -> None:
            async with limit:
                try:
                    values = await device.driver.read()
                except DriverError as exc:
                    device.reads_failed += 1
                    device.outage.failed(exc)
                    return
            # the source time: when the meter answered
            t = self.clock_ms()
            device.reads_ok += 1
            device.outage.recovered()
            if values:
                results[index] = {"m": device.driver.meter, "t": t, "q": values, "s": "ok"}

        async with asyncio.TaskGroup() as group:
            for index, device in enumerate(self.devices):
                group.create_task(read(index, device))
        readings = [r for r in results if r is not None]
        for source in self.sources:
            readings.extend(source.take(self.clock_ms()))
        self.stats.cycles += 1
        self.stats.readings += len(readings)
        self.stats.last_cycle_s = time.monotonic() - started
        return readings

    async def run(
        self,
        interval_s: float,
        on_readings: Callable[[list[Reading]], Awaitable[None]],
        cycles: int | None = None,
    ) -> None:
        """Poll every ``interval_s`` and hand each non-empty cycle's readings on."""
        next_at = time.monotonic()
        done = 0
        while cycles is None or done < cycles:
            readings = await self.poll_once()
            done += 1
            if readings:
                await on_readings(readings)
            next_at += interval_s
            late = time.monotonic() - next_at
            if late > 0:
                missed = int(late // interval_s) + 1
                self.stats.skipped_slots += missed
                next_at += missed * interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
