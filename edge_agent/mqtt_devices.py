"""MQTT-native meters: subscribe to what they publish, decode it with their JSON map, and hand
each new reading to the next poll cycle.

These meters are not polled: they publish when they like (Tasmota every TelePeriod, a Shelly on
every change). :class:`MqttDevices` holds, per subscribed topic, the latest decoded message;
each poll cycle :meth:`MqttDevices.take` puts what arrived since the last cycle into that
cycle's batch, next to the Modbus readings, and forgets it. So:

* a reading goes out **once**, with its source time (the message's own timestamp when its map
  has one, else the time the gateway received it), never repeated in later batches — a
  repeated sample would count twice in a demand window — and never filled in: a device that
  went quiet is simply absent from the batches, as a Modbus meter that stopped answering is;
* several messages on one topic within a cycle: the latest wins (the others are counted as
  ``superseded``); a message no newer than one already accepted on its topic (a redelivery,
  a second message within a device clock's whole second) is dropped as ``repeated``; a device
  whose messages say different things (a Shelly's power and its energy) gives one reading
  per message;
* quality is ``ok``, or ``stale`` when the value was already more than ``stale_after_s`` old
  when the batch was cut (a retained last value that the broker handed over on subscribing, a
  message that waited in a full queue). It is stored, flagged, rather than dropped: it is a real
  measurement at its real time. A retained message **without** a timestamp is dropped: its age
  is unknown, and stamping it "now" would fabricate a time.

A message that does not match its map (not JSON, wrong types, …) is dropped whole and logged
once per device per outage, as is a device that published nothing for its ``max_silence_s``
(only counted while the subscription is up, so a broker outage is one log line, not one per
device); the device's next usable message logs it back once. A live message whose own clock is
further than ``clock_tolerance_s`` from the gateway's is stamped with its arrival time instead,
logged once the same way. Nothing a device sends can raise out of :meth:`MqttDevices.handle`.

The subscriber is a second MQTT client, not the publisher's: it may need another broker
(``device_mqtt``: meters often talk to a broker on the factory network while batches go to the
park's broker over TLS) and other credentials, and its own reconnect loop keeps the two paths
independent — a device broker outage never holds up the write-ahead buffer's replay, and a
reconnect of the uplink never drops subscriptions. It subscribes with QoS 0 on a clean
session: a lost or missed message is replaced by the next one, and a backlog of old telemetry
after a reconnect would only be superseded. Incoming messages wait in a bounded queue
(``queue_size``) whose overflow policy drops the *oldest* message (the newest value is the one
that counts), counted in ``stats.overflow``; its depth is ``queue_depth``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import aiomqtt

from edge_agent.json_maps import JsonMap, MessageSpec, PayloadError, get_json_map, zone
from edge_agent.poller import Reading, now_ms
from edge_agent.settings import MqttMeterConfig
from parkwatch import mqtt
from parkwatch.retry import Backoff, OutageLog
from parkwatch.settings import MqttSettings
from parkwatch.tasks import honour_cancel

log = logging.getLogger(__name__)

EPOCH_2000_MS = 946_684_800_000  # ingest refuses earlier source times: an unset device clock


@dataclass
class DeviceLog(OutageLog):
    """:class:`OutageLog`'s once when it goes and once when it is back, worded for a device
    that publishes: it is not "unreachable" (the agent never calls it); its messages are
    unusable, or do not come, or carry a wrong time."""

    trouble: str = "no usable readings"

    def failed(self, error: BaseException | str) -> None:
        self.failures += 1
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.logger.warning(
                "%s: %s (logged once until it is over): %s", self.what, self.trouble, error
            )

    def recovered(self) -> None:
        if self.down_since is not None:
            self.logger.warning(
                "%s is back after %.1fs and %d failures",
                self.what,
                time.monotonic() - self.down_since,
                self.failures,
            )
            self.down_since = None
            self.failures = 0


@dataclass
class MqttDevice:
    """One configured MQTT-native meter and what is known about its health."""

    meter: str
    json_map: JsonMap
    zone: ZoneInfo | None
    max_silence_s: float
    health: DeviceLog
    clock: DeviceLog
    heard_at: float = 0.0  # monotonic time of the last live, usable message (or subscription)
    messages: int = 0
    unusable: int = 0
    issues: dict[str, str] = field(default_factory=dict)  # what is wrong now, by topic or kind

    def problem(self, key: str, detail: str) -> None:
        self.issues[key] = detail
        self.health.failed(detail)

    def fine(self, key: str) -> None:
        if self.issues.pop(key, None) is not None and not self.issues:
            self.health.recovered()


@dataclass(frozen=True, slots=True)
class _Latest:
    t_ms: int  # the source time that goes into the batch
    values: dict[str, float]
    sent_ms: int  # when the device sent it, as far as we know: the basis of "stale"


@dataclass
class _Inbox:
    """One subscribed topic: the device and message it belongs to, and its newest reading."""

    topic: str
    device: MqttDevice
    message: MessageSpec
    latest: _Latest | None = None
    last_t: int | None = None  # source time of the newest reading accepted


@dataclass
class MqttDeviceStats:
    messages: int = 0  # received on a subscribed topic
    readings: int = 0  # handed to a poll cycle
    stale: int = 0  # of those, with quality "stale"
    unusable: int = 0  # did not match their map
    superseded: int = 0  # replaced by a newer message before a cycle took them
    repeated: int = 0  # no newer than a reading already accepted (same or older source time)
    unknown_age: int = 0  # retained messages without a timestamp, dropped
    clock_off: int = 0  # stamped with their arrival time: the device's clock is off
    overflow: int = 0  # dropped from a full incoming queue (the oldest first)


class MqttDevices:
    """The MQTT-native meters of a gateway: subscriptions, decoding, the latest reading."""

    def __init__(
        self,
        devices: Sequence[MqttMeterConfig],
        json_maps: Mapping[str, JsonMap] | None = None,
        *,
        stale_after_s: float = 15.0,
        clock_tolerance_s: float = 60.0,
        queue_size: int = 1000,
        logger: logging.Logger = log,
        clock_ms: Callable[[], int] = now_ms,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stale_after_ms = round(stale_after_s * 1000)
        self.clock_tolerance_ms = round(clock_tolerance_s * 1000)
        self.queue_size = queue_size
        self.logger = logger
        self.clock_ms = clock_ms
        self.monotonic = monotonic
        self.stats = MqttDeviceStats()
        self.subscribed = asyncio.Event()  # set while the subscriptions are up
        self.devices: list[MqttDevice] = []
        self._inboxes: dict[str, _Inbox] = {}
        self._queue: asyncio.Queue[aiomqtt.Message] | None = None
        for config in devices:
            json_map = get_json_map(config.map, json_maps)
            what = f"MQTT meter {config.meter} ({config.name}, {json_map.name})"
            device = MqttDevice(
                meter=config.meter,
                json_map=json_map,
                zone=zone(config.timezone) if config.timezone else None,
                max_silence_s=config.max_silence_s,
                health=DeviceLog(logger, what),
                clock=DeviceLog(logger, f"clock of {what}", trouble="off"),
            )
            self.devices.append(device)
            for name, topic in config.topics_for(json_map).items():
                if topic in self._inboxes:
                    raise ValueError(f"{topic} is configured for two meters")
                self._inboxes[topic] = _Inbox(topic, device, json_map.message(name))

    @property
    def topics(self) -> list[str]:
        return list(self._inboxes)

    @property
    def queue_depth(self) -> int:
        return 0 if self._queue is None else self._queue.qsize()

    # --- receiving ---------------------------------------------------------------------

    def handle(
        self, topic: str, payload: bytes, *, retained: bool = False, received_ms: int | None = None
    ) -> None:
        """Take one message in; never raises for what a device sent."""
        inbox = self._inboxes.get(topic)
        if inbox is None:
            return  # not a topic of ours
        received = self.clock_ms() if received_ms is None else received_ms
        device = inbox.device
        device.messages += 1
        self.stats.messages += 1
        try:
            decoded = inbox.message.decode(payload, device.zone)
        except PayloadError as exc:
            self._unusable(inbox, str(exc))
            return
        except Exception as exc:  # a decoding bug must cost one message, never the agent
            self.logger.debug("decoding %s failed", topic, exc_info=True)
            self._unusable(inbox, f"{type(exc).__name__}: {exc}")
            return
        t_ms = decoded.t_ms
        if t_ms is None:
            if retained:
                # kept by the broker from some earlier time: with no timestamp its age is unknown
                self.stats.unknown_age += 1
                return
            t_ms = sent_ms = received
        else:
            skew = t_ms - received
            off = t_ms < EPOCH_2000_MS or skew > self.clock_tolerance_ms
            if not retained:
                off = off or skew < -self.clock_tolerance_ms
            if off:
                self.stats.clock_off += 1
                device.clock.failed(
                    f"its time {_show_ms(t_ms)} is {skew / 1000:+.0f}s from the gateway's clock; "
                    "using the arrival time instead"
                )
                if retained:
                    return  # neither its time nor its age can be trusted
                t_ms = received
            else:
                device.clock.recovered()
            # a live message left the device just now; a retained one when it was measured
            sent_ms = t_ms if retained else received
        device.fine(topic)
        if not retained:
            device.heard_at = self.monotonic()
            device.fine("silence")
        if inbox.last_t is not None and t_ms <= inbox.last_t:
            # a repeat (a redelivery; a device clock that counts whole seconds) or older than
            # what went out already: sent again, it would count twice in a demand window
            self.stats.repeated += 1
            return
        inbox.last_t = t_ms
        if inbox.latest is not None:
            self.stats.superseded += 1
        inbox.latest = _Latest(t_ms, decoded.values, sent_ms)

    def _unusable(self, inbox: _Inbox, detail: str) -> None:
        inbox.device.unusable += 1
        self.stats.unusable += 1
        inbox.device.problem(inbox.topic, f"unusable message on {inbox.topic}: {detail}")

    # --- the poll cycle ----------------------------------------------------------------

    def take(self, now: int) -> list[Reading]:
        """The readings that arrived since the last cycle (each given out once), in config
        order; also notes the devices that have gone silent."""
        readings: list[Reading] = []
        for inbox in self._inboxes.values():
            latest = inbox.latest
            if latest is None:
                continue
            inbox.latest = None
            stale = now - latest.sent_ms > self.stale_after_ms
            self.stats.stale += int(stale)
            readings.append(
                {
                    "m": inbox.device.meter,
                    "t": latest.t_ms,
                    "q": dict(latest.values),
                    "s": "stale" if stale else "ok",
                }
            )
        self.stats.readings += len(readings)
        self._check_silence()
        return readings

    def _check_silence(self) -> None:
        if not self.subscribed.is_set():
            return  # the broker is away: that is one outage, logged by the subscriber
        now = self.monotonic()
        for device in self.devices:
            quiet = now - device.heard_at
            if quiet > device.max_silence_s:
                device.problem("silence", f"no message for {quiet:.0f}s")

    def _heard_from_all(self) -> None:
        # silence is counted from when we could hear a device, not from before an outage
        now = self.monotonic()
        for device in self.devices:
            device.heard_at = now

    # --- the subscriber ----------------------------------------------------------------

    async def run(
        self,
        settings: MqttSettings,
        client_id: str,
        *,
        reconnect_base_s: float = 0.5,
        reconnect_cap_s: float = 30.0,
    ) -> None:
        """Keep the subscriptions up until cancelled, reconnecting with jittered backoff (the
        broker's outage logged once)."""
        backoff = Backoff(reconnect_base_s, reconnect_cap_s)
        outage = OutageLog(self.logger, f"device broker {settings.url}")
        while True:
            try:
                await self._session(settings, client_id, outage, backoff)
            except aiomqtt.MqttError as exc:
                outage.failed(exc)
            finally:
                self.subscribed.clear()
            # a cancellation swallowed by aiomqtt's wait_for as the connect failed: stop now,
            # since the task group that cancelled us will not cancel us again
            honour_cancel()
            await asyncio.sleep(backoff.next_delay())

    async def _session(
        self, settings: MqttSettings, client_id: str, outage: OutageLog, backoff: Backoff
    ) -> None:
        hub = self

        class DropOldest(asyncio.Queue[aiomqtt.Message]):
            """The client's incoming queue: when full, the oldest message makes room."""

            def __init__(self, maxsize: int = 0) -> None:
                super().__init__(maxsize)
                hub._queue = self

            def put_nowait(self, item: aiomqtt.Message) -> None:
                if self.full():
                    self.get_nowait()
                    hub.stats.overflow += 1
                super().put_nowait(item)

        async with mqtt.client(
            settings,
            client_id,
            queue_type=DropOldest,
            max_queued_incoming_messages=self.queue_size,
        ) as client:
            granted = await client.subscribe(
                [(topic, 0) for topic in self._inboxes], timeout=settings.connect_timeout_s
            )
            honour_cancel()  # not into a wait for messages with a swallowed cancellation
            self._check_granted(granted)
            outage.recovered()
            backoff.reset()
            self._heard_from_all()
            self.subscribed.set()
            async for message in client.messages:
                self.handle(message.topic.value, _bytes(message.payload), retained=message.retain)

    def _check_granted(self, granted: Iterable[object]) -> None:
        """A subscription the broker refused (ACL: 0x87 not authorised) is a device problem
        to log, not a reason to drop the others."""
        for topic, code in zip(self._inboxes, granted, strict=False):
            failure = getattr(code, "is_failure", None)
            refused = (
                failure if isinstance(failure, bool) else isinstance(code, int) and code >= 128
            )
            device = self._inboxes[topic].device
            if refused:
                device.problem(
                    f"subscribe {topic}", f"the broker refused the subscription to {topic} ({code})"
                )
            else:
                device.fine(f"subscribe {topic}")


def _bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return b"" if payload is None else str(payload).encode()


def _show_ms(t_ms: int) -> str:
    try:
        return datetime.fromtimestamp(t_ms / 1000, UTC).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):
        return f"{t_ms} ms"
