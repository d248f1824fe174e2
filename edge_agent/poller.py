"""Poll scheduler: each link reads its devices on its own slot; every interval is one batch.

Devices are grouped by *link* — one TCP endpoint, one serial bus, one OPC UA session — and
each link has its own loop: it reads its devices one after the other (a bus carries one
request at a time anyway, and one connection per endpoint is all a meter or a converter
allows), then waits for its next slot. Links start at staggered offsets across the poll
interval (link *i* of *n* at ``i/n × interval``), so a hundred meters do not all fire at the
top of the second. A link that overruns its slot skips the slots it missed rather than firing
a burst of catch-up polls.

Every ``interval`` the readings made since the last cut — plus what MQTT-native sources
received (:class:`ReadingSource`) — become one batch, in configuration order.

A device that fails is logged once when it goes and once when it comes back
(:class:`parkwatch.retry.OutageLog`) and backs off: it is tried again after 1, 2, 4 … poll
intervals (at most ``backoff_cap_s``), so a dead meter costs its bus one timeout now and then
instead of one every cycle, and never holds up the devices on other links. Its readings are
simply absent — never repeated, never filled in.

Each reading's quality is flagged at the source (:mod:`edge_agent.counters`): counter
rollover, reset and replacement, and repeated values (``stale``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_agent.counters import SourceFlags, worst
from edge_agent.drivers import DriverError
from edge_agent.links import Link
from edge_agent.metrics import EdgeMetrics
from parkwatch.retry import OutageLog
from parkwatch.tasks import honour_cancel

log = logging.getLogger(__name__)

Reading = dict[str, Any]  # {"m": meter, "t": epoch ms, "q": {quantity: value}, "s": "ok"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Driver(Protocol):
    """What the poller needs of a device's driver, whatever the protocol."""

    meter: str

    @property
    def link(self) -> Link: ...

    @property
    def name(self) -> str: ...

    @property
    def identity(self) -> str | None: ...

    def counter_moduli(self) -> dict[str, float]: ...

    async def read(self) -> dict[str, float]: ...


class ReadingSource(Protocol):
    """Readings that arrive by themselves; each cycle takes those that came since the last."""

    def take(self, now: int) -> list[Reading]: ...


@dataclass
class DeviceState:
    driver: Driver
    index: int  # its place in the configuration: the order of readings in a batch
    outage: OutageLog
    flags: SourceFlags
    reads_ok: int = 0
    reads_failed: int = 0
    failed_in_a_row: int = 0
    retry_at: float = 0.0  # monotonic: not tried before (back-off after failures)
    read_s_total: float = 0.0  # time spent reading it, for the mean latency
    last_read_s: float = 0.0

    @property
    def mean_read_s(self) -> float:
        return self.read_s_total / self.reads_ok if self.reads_ok else 0.0


@dataclass
class PollStats:
    cycles: int = 0  # batches cut
    skipped_slots: int = 0  # link slots lost to reads that overran
    last_cycle_s: float = 0.0  # poll_once: how long reading every device took
    readings: int = 0


@dataclass
class Poller:
    drivers: Sequence[Driver]
    max_concurrency: int = 8
    sources: Sequence[ReadingSource] = ()
    clock_ms: Callable[[], int] = now_ms
    logger: logging.Logger = log
    interval_s: float = 1.0
    backoff_cap_s: float = 60.0
    metrics: EdgeMetrics | None = None
    stats: PollStats = field(default_factory=PollStats)
    devices: list[DeviceState] = field(init=False)
    links: dict[str, list[DeviceState]] = field(init=False)

    def __post_init__(self) -> None:
        self.devices = [
            DeviceState(d, i, OutageLog(self.logger, d.name), SourceFlags(d.counter_moduli()))
            for i, d in enumerate(self.drivers)
        ]
        self.links = {}
        for device in self.devices:
            self.links.setdefault(device.driver.link.name, []).append(device)
        self._limit = asyncio.Semaphore(self.max_concurrency)
        self._made: list[tuple[int, Reading]] = []

    # --- one device ----------------------------------------------------------------------

    async def _read(self, device: DeviceState) -> Reading | None:
        driver = device.driver
        started = time.monotonic()
        try:
            async with self._limit:
                values = await driver.read()
        except DriverError as exc:
            honour_cancel()
            self._failed(device, exc)
            return None
        except Exception as exc:
            # an error a driver did not translate (a library's ValueError, a bug): still
            # one device's failed read, never the end of the poll loop and of the agent
            honour_cancel()
            if not device.outage.is_down:
                self.logger.error("%s: unexpected error", driver.name, exc_info=exc)
            self._failed(device, exc)
            return None
        honour_cancel()
        took = time.monotonic() - started
        t = self.clock_ms()  # the source time: when the meter answered
        device.reads_ok += 1
        device.failed_in_a_row = 0
        device.retry_at = 0.0
        device.read_s_total += took
        device.last_read_s = took
        device.outage.recovered()
        if self.metrics:
            self.metrics.reads.labels(driver.meter, "ok").inc()
            self.metrics.read_seconds.labels(driver.meter).observe(took)
        if not values:
            return None
        quality = worst(
            getattr(driver, "quality", "ok"), device.flags.judge(values, driver.identity)
        )
        if quality != "ok" and self.metrics:
            self.metrics.flags.labels(driver.meter, quality).inc()
        return {"m": driver.meter, "t": t, "q": values, "s": quality}

    def _failed(self, device: DeviceState, exc: Exception) -> None:
        device.reads_failed += 1
        device.failed_in_a_row += 1
        device.outage.failed(exc)
        # 1, 2, 4 … intervals, capped: a dead device costs its bus a timeout now and then
        wait = min(self.backoff_cap_s, self.interval_s * 2 ** (device.failed_in_a_row - 1))
        device.retry_at = time.monotonic() + wait
        if self.metrics:
            self.metrics.reads.labels(device.driver.meter, "failed").inc()

    async def _read_link(self, devices: Sequence[DeviceState], respect_backoff: bool) -> None:
        for device in devices:
            if respect_backoff and time.monotonic() < device.retry_at:
                continue
            reading = await self._read(device)
            if reading is not None:
                self._made.append((device.index, reading))

    # --- one pass (tests, diagnosis) ----------------------------------------------------

    async def poll_once(self) -> list[Reading]:
        """Read every device once (back-off or not), links side by side; the readings of the
        devices that answered plus the sources', in configuration order."""
        started = time.monotonic()
        async with asyncio.TaskGroup() as group:
            for devices in self.links.values():
                group.create_task(self._read_link(devices, respect_backoff=False))
        self.stats.last_cycle_s = time.monotonic() - started
        return self.cut()

    def cut(self) -> list[Reading]:
        """The readings made since the last cut, in configuration order, and the sources'."""
        made, self._made = self._made, []
        readings = [r for _, r in sorted(made, key=lambda pair: pair[0])]
        for source in self.sources:
            readings.extend(source.take(self.clock_ms()))
        self.stats.cycles += 1
        self.stats.readings += len(readings)
        return readings

    # --- the schedule ---------------------------------------------------------------------

    async def run(
        self,
        interval_s: float,
        on_readings: Callable[[list[Reading]], Awaitable[None]],
        cycles: int | None = None,
    ) -> None:
        """Poll every ``interval_s`` and hand each non-empty interval's readings on."""
        self.interval_s = interval_s
        start = time.monotonic()
        async with asyncio.TaskGroup() as group:
            count = max(1, len(self.links))
            for i, devices in enumerate(self.links.values()):
                offset = interval_s * i / count
                group.create_task(self._link_loop(devices, start + offset, interval_s, cycles))
            await self._cut_loop(start, interval_s, on_readings, cycles)
        rest = self.cut() if cycles is not None else []
        if rest:  # a bounded run hands on what its last reads made
            await on_readings(rest)

    async def _link_loop(
        self, devices: Sequence[DeviceState], first: float, interval_s: float, cycles: int | None
    ) -> None:
        link = devices[0].driver.link
        slot = first
        done = 0
        window = link.stats.snapshot()
        counted = link.stats.requests
        while cycles is None or done < cycles:
            await asyncio.sleep(max(0.0, slot - time.monotonic()))
            await self._read_link(devices, respect_backoff=True)
            done += 1
            slot += interval_s
            late = time.monotonic() - slot
            if late > 0:
                missed = int(late // interval_s) + 1
                self.stats.skipped_slots += missed
                slot += missed * interval_s
                if self.metrics:
                    self.metrics.skipped_slots.inc(missed)
            if self.metrics:
                self.metrics.link_busy.labels(link.name).set(link.stats.utilisation(window))
                window = link.stats.snapshot()
                self.metrics.link_requests.labels(link.name).inc(link.stats.requests - counted)
                counted = link.stats.requests

    async def _cut_loop(
        self,
        start: float,
        interval_s: float,
        on_readings: Callable[[list[Reading]], Awaitable[None]],
        cycles: int | None,
    ) -> None:
        done = 0
        cut_at = start
        while cycles is None or done < cycles:
            cut_at += interval_s
            late = time.monotonic() - cut_at
            if late > 0:
                cut_at += int(late // interval_s) * interval_s
            await asyncio.sleep(max(0.0, cut_at - time.monotonic()))
            readings = self.cut()
            done += 1
            if readings:
                await on_readings(readings)
