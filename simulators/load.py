"""Load generation: N gateways × M meters publishing batches straight to the broker.

Every reading is unique and predictable — meter ``j`` of gateway ``g`` in cycle ``c`` has
timestamp ``start_ms + c * step_ms`` and ``p_kw = c + j / 1000`` — so a test or benchmark can
check afterwards that every one of them was stored exactly once. The report printed at the end
says what was handed to the broker (acknowledged with PUBACK).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from parkwatch import topics
from parkwatch.mqttio import FastClient, MqttConnectionLostError, MqttError
from parkwatch.retry import Backoff, OutageLog
from parkwatch.settings import MqttSettings
from parkwatch.site import Park
from parkwatch.wire import encode_batch

LOAD_PARK = "load"
_PUBACK_S = 5.0  # a PUBACK later than this means the connection is gone: reconnect, resend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadPlan:
    gateways: int = 10
    meters: int = 1000  # per gateway: one batch per gateway per cycle carries all its meters
    rate: float = 0.0  # readings per second over all gateways; 0 = as fast as acknowledged
    duration_s: float = 10.0
    max_readings: int | None = None  # stop after this many (whichever comes first)
    step_ms: int = 1000  # timestamp spacing between cycles
    start_ms: int | None = None  # None: six hours ago, so every timestamp is in the past
    park: str = LOAD_PARK
    qos: int = 1
    prebuild: bool = False  # with max_readings: encode every batch before the first publish
    # QoS 1 publishes a gateway keeps unacknowledged: 1 waits for each PUBACK, as a gateway
    # does; more keeps a fast stream of small messages from being bound by round trips
    window: int = 1


def gateway_id(g: int) -> str:
    return f"gw-{g:03d}"


def meter_id(g: int, j: int) -> str:
    return f"g{g:03d}-m{j:04d}"


def load_park(plan: LoadPlan) -> Park:
    """The synthetic park that the load's meters belong to (ingest needs to know them)."""
    return Park.model_validate(
        {
            "park": plan.park,
            "name": "load test park",
            "enterprises": [
                {
                    "id": f"e{g:03d}",
                    "gateway": gateway_id(g),
                    "workshops": [
                        {
                            "id": "w",
                            "meters": [
                                {"id": meter_id(g, j), "utility": "electricity"}
                                for j in range(plan.meters)
                            ],
                        }
                    ],
                }
                for g in range(plan.gateways)
            ],
        }
    )


def expected_value(cycle: int, j: int) -> float:
    return cycle + j / 1000


@dataclass
class LoadReport:
    gateways: int
    meters_per_gateway: int
    messages: int = 0
    readings: int = 0
    values: int = 0
    cycles: int = 0
    seconds: float = 0.0
    readings_per_s: float = 0.0
    first_t_ms: int = 0
    last_t_ms: int = 0
    # per gateway: the last seq sent (seq starts at 1, one message per cycle)
    last_seq: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    publish_started: float = 0.0  # time.perf_counter() when the first publish went out
    prebuild_cpu_s: float = 0.0  # CPU spent encoding payloads before that (prebuild only)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Pacer:
    """Spreads publishes so the total stays at ``rate`` readings per second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.started = time.monotonic()
        self.sent = 0

    async def wait(self, readings: int) -> None:
        self.sent += readings
        if self.rate > 0:
            due = self.started + self.sent / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)


def _stamp(at: list[float]) -> Callable[[asyncio.Future[None]], None]:
    def done(_: asyncio.Future[None]) -> None:
        at.append(time.perf_counter())

    return done


async def run_load(
    settings: MqttSettings,
    plan: LoadPlan,
    on_ack: Callable[[int, int, float], object] | None = None,
) -> LoadReport:
    """Publish the plan; ``on_ack(gateway index, cycle, time.perf_counter())`` after each
    PUBACK, for latency measurements."""
    start_ms = (
        plan.start_ms if plan.start_ms is not None else int(time.time() * 1000) - 6 * 3600_000
    )
    report = LoadReport(plan.gateways, plan.meters, first_t_ms=start_ms)
    ids = [[meter_id(g, j) for j in range(plan.meters)] for g in range(plan.gateways)]
    per_gateway_rate = plan.rate / plan.gateways if plan.rate else 0.0
    # per-gateway cap, so the total is exact however the gateways interleave
    max_cycles = (
        None if plan.max_readings is None else plan.max_readings // (plan.gateways * plan.meters)
    )
    cycles = [0] * plan.gateways

    def build(g: int, cycle: int) -> bytes:
        t = start_ms + cycle * plan.step_ms
        readings = [
            {"m": m, "t": t, "q": {"p_kw": expected_value(cycle, j), "e_kwh": 1e5 + cycle + j}}
            for j, m in enumerate(ids[g])
        ]
        return encode_batch(gateway_id(g), cycle + 1, readings)

    # a benchmark measures the platform, not the generator: build every payload up front
    prebuilt: dict[tuple[int, int], bytes] = {}
    if plan.prebuild and max_cycles is not None:
        cpu_before = time.process_time()
        prebuilt = {(g, c): build(g, c) for g in range(plan.gateways) for c in range(max_cycles)}
        report.prebuild_cpu_s = time.process_time() - cpu_before
    deadline = time.monotonic() + plan.duration_s
    report.publish_started = time.perf_counter()

    async def gateway(g: int) -> None:
        gw = gateway_id(g)
        topic = topics.data_topic(plan.park, gw)
        pacer = _Pacer(per_gateway_rate)
        outage = OutageLog(log, f"broker for load gateway {gw}")
        backoff = Backoff()
        cycle = 0  # the next cycle to build
        # built but not yet acknowledged, oldest first: sent again, in order, after a drop
        unacked: deque[tuple[int, bytes]] = deque()

        def more() -> bool:
            if max_cycles is not None and cycle >= max_cycles:
                return False
            return time.monotonic() < deadline

        def acknowledged(at: float) -> None:
            done, _ = unacked.popleft()
            cycles[g] = done + 1
            report.messages += 1
            report.readings += plan.meters
            report.values += 2 * plan.meters
            report.last_seq[gw] = done + 1
            report.last_t_ms = max(report.last_t_ms, start_ms + done * plan.step_ms)
            if on_ack is not None:
                on_ack(g, done, at)

        while more() or unacked:
            try:
                async with FastClient(
                    settings, f"load-{plan.park}-{gw}", max_inflight=plan.window
                ) as client:
                    outage.recovered()
                    backoff.reset()
                    resend = deque(unacked)
                    # (PUBACK future, when it came) per message sent, in order
                    in_flight: deque[tuple[asyncio.Future[None], list[float]]] = deque()

                    async def settle(
                        in_flight: deque[tuple[asyncio.Future[None], list[float]]], keep: int
                    ) -> None:
                        while len(in_flight) > keep or (in_flight and in_flight[0][0].done()):
                            future, at = in_flight[0]
                            if not future.done():
                                try:
                                    async with asyncio.timeout(_PUBACK_S):
                                        await asyncio.shield(future)
                                except TimeoutError as exc:
                                    raise MqttConnectionLostError("no PUBACK in time") from exc
                            future.result()  # a refused publish or a lost connection raises
                            in_flight.popleft()
                            acknowledged(at[0] if at else time.perf_counter())

                    while resend or more():
                        if resend:
                            _, payload = resend.popleft()
                        else:
                            key = (g, cycle)
                            payload = prebuilt.pop(key) if key in prebuilt else build(g, cycle)
                            unacked.append((cycle, payload))
                            cycle += 1
                        future = await client.send(topic, payload, qos=plan.qos)
                        at: list[float] = []  # the PUBACK's time, for latency figures
                        future.add_done_callback(_stamp(at))
                        in_flight.append((future, at))
                        await settle(in_flight, plan.window - 1)
                        await pacer.wait(plan.meters)
                    await settle(in_flight, 0)
                    return
            except MqttError as exc:
                outage.failed(exc)
                report.reconnects += 1
                await asyncio.sleep(backoff.next_delay())

    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for g in range(plan.gateways):
            group.create_task(gateway(g))
    report.seconds = time.monotonic() - started
    report.cycles = max(cycles) if cycles else 0
    report.readings_per_s = report.readings / report.seconds if report.seconds else 0.0
    return report
