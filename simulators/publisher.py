"""Publishes a simulated park over MQTT in the batch format, one client per gateway.

Each gateway connects with a last will (``offline`` on its status topic), announces
``online`` (retained), then publishes one QoS 1 batch per poll cycle with a growing ``seq``.
What was sent is recorded in a :class:`SentLog` so tests can prove nothing was lost.

Faults (a schedule, see :mod:`simulators.faults`) are injected as the run reaches them; with
``ground_truth`` the run keeps a ground-truth file true as it goes
(:class:`~simulators.groundtruth.LiveGroundTruth`). Gateways served another way
(``exclude_gateways``, e.g. Modbus meters read by a real edge agent) are not published, and a
fault that would show in their readings is refused: what serves them does not inject it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import numpy as np
import orjson

from parkwatch import __version__, mqtt, topics
from parkwatch.settings import MqttSettings
from parkwatch.site import Park
from parkwatch.wire import encode_batch
from simulators.faults import Fault, gateways_touched
from simulators.groundtruth import LiveGroundTruth
from simulators.model import ParkModel

log = logging.getLogger(__name__)
_SEQ_MEMORY = 100_000
DAY_MS = 86_400_000


@dataclass
class SentLog:
    """Every value handed to the broker (PUBACK received), keyed by (meter, quantity)."""

    messages: int = 0
    readings: int = 0
    values: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)

    def record(self, readings: list[dict[str, object]]) -> None:
        self.messages += 1
        for reading in readings:
            self.readings += 1
            q = reading["q"]
            assert isinstance(q, dict)
            t = reading["t"]
            assert isinstance(t, int)
            for name, value in q.items():
                self.values.setdefault((str(reading["m"]), name), {})[t] = float(value)

    @property
    def value_count(self) -> int:
        return sum(len(v) for v in self.values.values())


@dataclass(frozen=True)
class Schedule:
    """Which timestamps to simulate: real time, or a fast backfill of ``cycles`` steps."""

    interval_s: float = 5.0
    cycles: int | None = None  # None: until stopped
    start_ms: int | None = None  # None: real time (t = now at each cycle)
    realtime: bool = True  # False: publish the cycles back to back, as fast as acknowledged
    # real time from a start in the past: the cycles behind the wall clock are stepped every
    # ``catch_up_s`` and published back to back, then the run goes on every ``interval_s``
    catch_up_s: float = 60.0
    # cycles before this time are simulated but not published (an earlier run sent them):
    # the counters and each gateway's seq go on from where that run stopped
    quiet_until_ms: int | None = None
    until_ms: int | None = None  # stop before this data time


def status_payload(state: str, buffered: int = 0) -> bytes:
    return orjson.dumps({"state": state, "version": __version__, "buffered": buffered})


class ParkSimulator:
    def __init__(
        self,
        park: Park,
        settings: MqttSettings,
        *,
        seed: int = 0,
        schedule: Schedule = Schedule(),
        on_cycle: Callable[[int, int], None] | None = None,
        exclude_gateways: frozenset[str] = frozenset(),
        faults: Sequence[Fault] = (),
        ground_truth: Path | None = None,
    ) -> None:
        self.park = park
        self.settings = settings
        self.model = ParkModel(park, seed, faults)
        self.schedule = schedule
        self.sent = SentLog()
        self.on_cycle = on_cycle
        every = {m.gateway for m in self.model.meters}
        unknown = sorted(exclude_gateways - every)
        if unknown:
            raise ValueError(
                f"cannot exclude {', '.join(unknown)}: park {park.park!r} has no such gateway "
                f"(its gateways: {', '.join(sorted(every))})"
            )
        for fault in faults:
            hidden = gateways_touched(self.model.layout, fault) & exclude_gateways
            if hidden:
                raise ValueError(
                    f"fault {fault.kind} on {fault.target!r} would show in readings of "
                    f"{', '.join(sorted(hidden))}, which this simulator does not publish "
                    "(an excluded gateway): choose another target"
                )
        # gateways served another way (e.g. as Modbus meters read by a real edge agent)
        self.gateways = sorted(every - exclude_gateways)
        self.truth = (
            None
            if ground_truth is None
            else LiveGroundTruth(ground_truth, faults, self.model.fault_details)
        )

    async def run(self) -> SentLog:
        async with contextlib.AsyncExitStack() as stack:
            clients: dict[str, aiomqtt.Client] = {}
            for gw in self.gateways:
                status = topics.status_topic(self.park.park, gw)
                will = aiomqtt.Will(status, status_payload("offline"), qos=1, retain=True)
                client = mqtt.client(self.settings, f"sim-{self.park.park}-{gw}", will=will)
                clients[gw] = await stack.enter_async_context(client)
                await clients[gw].publish(status, status_payload("online"), qos=1, retain=True)
            if self.truth is not None:
                self.truth.flush()  # a scorer finds the file from the start
            try:
                await self._cycles(clients)
            finally:
                if self.truth is not None:
                    self.truth.flush()  # however the run ends, the file says what was injected
            for gw, connected in clients.items():
                status = topics.status_topic(self.park.park, gw)
                await connected.publish(status, status_payload("offline"), qos=1, retain=True)
        return self.sent

    async def _cycles(self, clients: dict[str, aiomqtt.Client]) -> None:
        seq = dict.fromkeys(self.gateways, 0)
        sent_seq: dict[tuple[str, int], int] = {}
        plan = self.schedule
        # one sample every interval from the start (now, in real time): a fixed grid, so the
        # model can be primed for it (a counter rollover wraps exactly at its start)
        start_ms = plan.start_ms or int(time.time() * 1000)
        catching_up = plan.realtime and plan.start_ms is not None
        first_step_s = plan.catch_up_s if catching_up else plan.interval_s
        self.model.prime(start_ms, round(first_step_s * 1000))
        cycle = 0
        t_ms = start_ms
        if plan.quiet_until_ms is not None and start_ms < plan.quiet_until_ms:
            t_ms = await self._step_quietly(start_ms, plan.quiet_until_ms, first_step_s, seq)
        first_ms = t_ms
        next_at = time.monotonic()
        while plan.cycles is None or cycle < plan.cycles:
            if plan.until_ms is not None and t_ms >= plan.until_ms:
                break
            sends = []
            # poll cycles, plus the late and duplicated batches of transport faults
            for batch in self.model.batches(t_ms):
                gw = batch.gateway
                if gw not in clients or not batch.readings:
                    continue
                first_t = batch.readings[0]["t"]
                if batch.duplicate and (gw, first_t) in sent_seq:
                    number = sent_seq[(gw, first_t)]  # a duplicate repeats its original
                else:
                    seq[gw] += 1
                    number = sent_seq[(gw, first_t)] = seq[gw]
                    if len(sent_seq) > _SEQ_MEMORY:  # duplicates come soon after: forget old
                        del sent_seq[next(iter(sent_seq))]
                payload = encode_batch(gw, number, batch.readings)
                topic = topics.data_topic(self.park.park, gw)
                sends.append(self._publish(clients[gw], topic, payload, batch.readings))
            await asyncio.gather(*sends)
            if self.truth is not None:
                self.truth.advance(t_ms)
            cycle += 1
            if self.on_cycle is not None:
                self.on_cycle(cycle, self.sent.readings)
            if catching_up:
                # behind the wall clock: the next cycle at once; caught up: in real time
                now_ms = time.time() * 1000
                if t_ms + plan.catch_up_s * 1000 <= now_ms:
                    t_ms += round(plan.catch_up_s * 1000)
                else:
                    t_ms += round(plan.interval_s * 1000)
                    await asyncio.sleep(max(0.0, (t_ms - now_ms) / 1000))
                continue
            t_ms = first_ms + int(cycle * plan.interval_s * 1000)
            if plan.realtime:
                next_at += plan.interval_s
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _step_quietly(
        self, start_ms: int, until_ms: int, step_s: float, seq: dict[str, int]
    ) -> int:
        """Simulate ``[start_ms, until_ms)`` without publishing (an earlier run sent it), a day
        at a time: the counters go on from there, and each gateway's seq counts the batches
        it sent. Returns the first time to publish."""
        step_ms = round(step_s * 1000)
        gateway_of = {m.id: m.gateway for m in self.model.meters}
        series_gateway = np.array([gateway_of[m] for m, _ in self.model.series])
        t_ms = start_ms
        while t_ms < until_ms:
            times = np.arange(t_ms, min(until_ms, t_ms + DAY_MS), step_ms, dtype=np.int64)
            frame = self.model.frame(times, transport=True)
            for gw in self.gateways:
                cols = series_gateway == gw
                if frame.present is None:
                    seq[gw] += times.size if cols.any() else 0
                else:
                    seq[gw] += int(frame.present[:, cols].any(axis=1).sum())
            t_ms = int(times[-1]) + step_ms
            await asyncio.sleep(0)  # the broker clients keep their connection alive
        return t_ms

    async def _publish(
        self, client: aiomqtt.Client, topic: str, payload: bytes, readings: list[dict[str, object]]
    ) -> None:
        await client.publish(topic, payload, qos=1)  # returns after the broker's PUBACK
        self.sent.record(readings)
