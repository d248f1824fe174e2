"""The shared MQTT session loop and the analytics service's broker loops stop when cancelled
once, even when Python 3.11's ``asyncio.wait_for`` (inside aiomqtt) swallows the cancellation:
a task group, and the analytics service's shutdown, cancel each task only once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

import aiomqtt
import pytest

from analytics.service import AnalyticsService
from analytics.settings import AnalyticsSettings
from parkwatch import mqtt
from parkwatch.events import Event, Family, Severity, State
from parkwatch.retry import Backoff, OutageLog
from parkwatch.sessions import SessionLoop
from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.site import Park, SiteRegistry
from parkwatch.tasks import cancel_and_wait

pytestmark = pytest.mark.anyio

_ids = itertools.count()
log = logging.getLogger(__name__)


async def swallow_a_cancellation(record: list[asyncio.Task[Any]]) -> None:
    """The first time: cancel the running task and drop the cancellation, as Python 3.11's
    ``wait_for`` does when its operation completes in the step the cancellation lands in."""
    if record:
        return
    task = asyncio.current_task()
    assert task is not None
    record.append(task)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(0)  # the cancellation, taken and dropped


class SubscribeSwallowsCancel(mqtt.Client):
    swallowed: ClassVar[list[asyncio.Task[Any]]] = []

    async def subscribe(self, *args: Any, **kwargs: Any) -> Any:
        result = await super().subscribe(*args, **kwargs)
        await swallow_a_cancellation(self.swallowed)
        return result


class PublishSwallowsCancel(mqtt.Client):
    swallowed: ClassVar[list[asyncio.Task[Any]]] = []

    async def publish(self, *args: Any, **kwargs: Any) -> None:
        await super().publish(*args, **kwargs)
        await swallow_a_cancellation(self.swallowed)


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.02)


async def ends_within(task: asyncio.Task[Any], seconds: float = 3.0) -> bool:
    """Whether ``task`` ended without being cancelled again; a stuck one is ended for the next
    test by cancelling it until it stops."""
    done, _ = await asyncio.wait([task], timeout=seconds)
    if not done:
        await cancel_and_wait(task)
    return bool(done)


def analytics(mqtt_settings: MqttSettings, influx_settings: InfluxSettings) -> AnalyticsService:
    park = Park.model_validate({"park": "sess", "meters": [{"id": "m", "utility": "electricity"}]})
    settings = AnalyticsSettings(
        mqtt=mqtt_settings, influx=influx_settings, client_id=f"analytics-sess-{next(_ids)}"
    )
    return AnalyticsService(settings, SiteRegistry([park]))


async def test_session_loop_stops_when_a_connect_swallows_its_cancellation() -> None:
    """The connect attempt fails in the step the loop is cancelled in: ``wait_for`` raises the
    connect's MqttError instead of the cancellation, and a loop that went on to wait and
    reconnect would never stop."""
    attempts: list[asyncio.Future[None]] = []
    first = asyncio.Event()

    async def session() -> None:
        attempt = asyncio.get_running_loop().create_future()
        attempts.append(attempt)
        first.set()
        try:
            await asyncio.wait_for(attempt, timeout=0.2)  # a connect, as aiomqtt makes it
        except TimeoutError:
            raise aiomqtt.MqttError("no answer from the broker") from None

    loop = SessionLoop(OutageLog(log, "a broker that is not there"), Backoff(0.01, 0.02))
    task = asyncio.create_task(loop.run(session))
    await asyncio.wait_for(first.wait(), 10)
    attempts[0].set_exception(aiomqtt.MqttError("connection refused"))
    task.cancel()  # lands as the refusal does
    assert await ends_within(task), f"the loop went on ({len(attempts)} connects)"


@pytest.mark.integration
async def test_analytics_session_stops_when_a_subscribe_swallows_its_cancellation(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscribe that lost the cancellation: the session must not go on to wait for warm-up
    and messages that a stopping service will never give it."""
    monkeypatch.setattr(SubscribeSwallowsCancel, "swallowed", [])
    monkeypatch.setattr(mqtt, "Client", SubscribeSwallowsCancel)
    service = analytics(mqtt_settings, influx_settings)
    task = asyncio.create_task(service.sessions.run(service._session, service._down))
    try:
        await until(lambda: bool(SubscribeSwallowsCancel.swallowed))
    finally:
        stopped = await ends_within(task)
    assert SubscribeSwallowsCancel.swallowed == [task]
    assert stopped, "the session kept waiting for messages"


@pytest.mark.integration
async def test_analytics_alert_publisher_stops_when_a_publish_swallows_its_cancellation(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An alert's PUBACK and the service's shutdown in the same step: the publisher must not
    go back to wait for the next alert (the shutdown cancels it once)."""
    monkeypatch.setattr(PublishSwallowsCancel, "swallowed", [])
    monkeypatch.setattr(mqtt, "Client", PublishSwallowsCancel)
    service = analytics(mqtt_settings, influx_settings)
    event = Event(
        id="e", kind="demand_peak", family=Family.DEMAND, state=State.OPENED, park="sess",
        meter="m", zone=None, start_ms=0, detected_at_ms=0, end_ms=None, severity=Severity.MAJOR,
    )  # fmt: skip
    async with mqtt.client(mqtt_settings, f"analytics-alerts-{next(_ids)}") as client:
        service.client = client
        await service.alerts.put(("sess", event, False))
        task = asyncio.create_task(service._publish_alerts())
        try:
            await until(lambda: bool(PublishSwallowsCancel.swallowed))
        finally:
            stopped = await ends_within(task)
    assert PublishSwallowsCancel.swallowed == [task]
    assert stopped, "the alert publisher kept waiting for alerts"
