"""The edge agent: poll the gateway's meters, buffer each batch on disk, publish it with QoS 1.

Tasks in one task group, joined by the write-ahead buffer:

* the poller (:mod:`edge_agent.poller`) reads every device on its link's slot and, each
  ``poll_interval_s``, appends the interval's readings — with what the MQTT-native meters
  published — to the buffer as one batch (``seq`` + 1), whether or not the broker is there;
* with MQTT-native meters, the device subscriber (:mod:`edge_agent.mqtt_devices`) keeps its
  own session on the device broker and holds each meter's newest reading for the next batch;
* the publisher keeps an MQTT session (last will: ``offline``, retained, on the status topic)
  and announces ``online`` (retained: version and buffered count).

**The status' counts.** The will is fixed when the session connects, so it cannot know how many
batches will be buffered when the connection dies: its ``buffered`` and ``dropped`` are
``null`` (unknown), never a wrong 0; it is rebuilt at every connection and carries the counts
*as of that connection* under their own names (``buffered_at_connect``, ``dropped_at_connect``,
``connected_at`` in ms). While a session lasts, the retained ``online`` status is republished
whenever its counts changed, at most every ``STATUS_EVERY_S`` (a backlog draining, batches
dropped from a full buffer, batches piling up behind a slow broker), so the last status before
a will is at most that old. A clean stop publishes its own retained ``offline`` with the counts
as they are once the poller has stopped.

**Live first.** When a session comes up, the batches already in the buffer are the backlog;
batches appended from then on are live. Two publishers share the session: the live one sends
each new batch as soon as it is stored, the replay one sends the backlog oldest first, at most
``replay_rate`` batches a second, with the readings' original timestamps. So after an outage
the current readings are visible within a poll interval while the backlog drains behind them
at a rate the broker and ingest can absorb. Each batch is deleted only after its PUBACK;
whatever is not acknowledged when the session breaks is backlog for the next one.

Batches therefore reach the broker out of ``seq`` order after an outage (live ones first);
ingest counts the backlog's batches as late (not replays), and stores every batch as usual.

Stopping (cancellation) publishes ``offline`` before disconnecting, since a clean disconnect
does not fire the will.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import aiomqtt
import orjson

from edge_agent.buffer import StoredBatch, WalBuffer
from edge_agent.devices import GatewayDevices
from edge_agent.metrics import EdgeMetrics
from edge_agent.mqtt_devices import MqttDevices
from edge_agent.poller import Poller, Reading
from edge_agent.settings import EdgeSettings
from parkwatch import __version__, mqtt, topics
from parkwatch.retry import Backoff, OutageLog
from parkwatch.tasks import cancel_and_wait, honour_cancel

log = logging.getLogger(__name__)

REPLAY_CHUNK = 200  # batches fetched from disk at a time while replaying a backlog
STATUS_EVERY_S = 10.0  # a changed count is republished in the status at most this often


@dataclass(frozen=True)
class ConnectCounts:
    """The buffer's counts when a session connected: all a last will can know."""

    at_ms: int
    buffered: int
    dropped: int


def status_payload(
    state: str, buffered: int | None, dropped: int | None, connect: ConnectCounts | None = None
) -> bytes:
    """The retained status message; the same shape the simulated gateways publish. ``None``
    (JSON null) is a count the sender cannot know: the last will's, which says instead what
    the counts were when it was set (``connect``)."""
    doc: dict[str, object] = {
        "state": state,
        "version": __version__,
        "buffered": buffered,
        "dropped": dropped,
    }
    if connect is not None:
        doc |= {
            "connected_at": connect.at_ms,
            "buffered_at_connect": connect.buffered,
            "dropped_at_connect": connect.dropped,
        }
    return orjson.dumps(doc)


class EdgeAgent:
    """One gateway's agent; ``await agent.run()`` until cancelled."""

    def __init__(self, settings: EdgeSettings, metrics: EdgeMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or EdgeMetrics()
        self.data_topic = topics.data_topic(settings.park, settings.gateway)
        self.status_topic = topics.status_topic(settings.park, settings.gateway)
        self.buffer = WalBuffer(settings.buffer_dir, settings.gateway, settings.buffer_max_batches)
        self.poller: Poller | None = None
        self.devices: GatewayDevices | None = None
        self.mqtt_devices: MqttDevices | None = None  # when some devices are MQTT-native
        self.published = 0  # batches acknowledged by the broker since start
        self.published_live = 0
        self.replayed = 0
        self.backlog_left = 0  # batches of the current session's backlog not yet sent
        self._announced: tuple[int, int] | None = None  # the counts the status last said
        self.metrics_port: int | None = None  # where /metrics is served, when it is
        self.started = asyncio.Event()  # set once the buffer is open and the drivers exist
        self.connected = asyncio.Event()  # set while a broker session is up
        self._new_batch = asyncio.Event()
        self._poll_task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        s = self.settings
        with self.buffer, contextlib.ExitStack() as exits:
            if s.metrics_port is not None:
                self.metrics_port = self.metrics.serve(s.metrics_port, s.metrics_host)
                exits.callback(self.metrics.close)
                log.info("metrics on http://%s:%d/metrics", s.metrics_host, self.metrics_port)
            async with GatewayDevices(s) as devices:
                self.devices = devices
                native = self._mqtt_devices()
                self.poller = Poller(
                    devices.drivers,
                    s.max_concurrency,
                    sources=[native] if native else [],
                    interval_s=s.poll_interval_s,
                    backoff_cap_s=s.backoff_cap_s,
                    metrics=self.metrics,
                )
                log.info(
                    "edge agent %s/%s: %d polled devices on %d links, %d MQTT devices, every "
                    "%.1fs, broker %s, %d batches buffered",
                    s.park,
                    s.gateway,
                    len(devices.drivers),
                    len(devices.links),
                    len(native.devices) if native else 0,
                    s.poll_interval_s,
                    s.mqtt.url,
                    self.buffer.count_sync(),
                )
                self.metrics.buffered.set_function(self.buffer.count_sync)
                self.started.set()
                async with asyncio.TaskGroup() as group:
                    self._poll_task = group.create_task(
                        self.poller.run(s.poll_interval_s, self._store)
                    )
                    group.create_task(self._publish_loop())
                    if native:
                        group.create_task(
                            native.run(
                                s.device_broker,
                                f"{s.mqtt_client_id}-devices",
                                reconnect_base_s=s.reconnect_base_s,
                                reconnect_cap_s=s.reconnect_cap_s,
                            )
                        )

    def _mqtt_devices(self) -> MqttDevices | None:
        s = self.settings
        if not s.mqtt_meters:
            return None
        self.mqtt_devices = MqttDevices(
            s.mqtt_meters,
            s.mqtt_maps(),
            stale_after_s=s.stale_after_cycles * s.poll_interval_s,
            clock_tolerance_s=s.device_clock_tolerance_s,
        )
        return self.mqtt_devices

    async def _store(self, readings: list[Reading]) -> None:
        await self.buffer.append(readings)
        self.metrics.batches.inc()
        self._new_batch.set()

    async def _publish_loop(self) -> None:
        s = self.settings
        backoff = Backoff(s.reconnect_base_s, s.reconnect_cap_s)
        outage = OutageLog(log, f"MQTT broker {s.mqtt.url}")
        while True:
            try:
                await self._session(outage, backoff)
            except aiomqtt.MqttError as exc:
                outage.failed(exc)
            finally:
                self.connected.clear()
                self.metrics.connected.set(0)
            # a cancellation swallowed by aiomqtt's wait_for as the connect failed: stop now,
            # since the task group that cancelled us will not cancel us again
            honour_cancel()
            await asyncio.sleep(backoff.next_delay())

    async def _session(self, outage: OutageLog, backoff: Backoff) -> None:
        s = self.settings
        # the broker sends the will when the connection dies, whenever that is: the counts then
        # are unknown, those of now are all it can carry (rebuilt at every connection)
        connect = ConnectCounts(
            int(time.time() * 1000), await self.buffer.count(), self.buffer.dropped_total
        )
        will = aiomqtt.Will(
            self.status_topic, status_payload("offline", None, None, connect), qos=1, retain=True
        )
        async with mqtt.client(s.mqtt, s.mqtt_client_id, will=will) as client:
            outage.recovered()
            backoff.reset()
            # what is stored now is the backlog; what is appended from here on is live
            boundary = await self.buffer.next_seq()
            self.connected.set()
            self.metrics.connected.set(1)
            try:
                await self._announce(client, "online")
                await self._publish_until_broken(client, boundary)
            except asyncio.CancelledError:
                # a clean disconnect does not fire the will: say it ourselves, briefly, with
                # the counts once the poller (cancelled with us) can store no more batches
                if self._poll_task is not None:
                    await asyncio.wait([self._poll_task], timeout=1.0)
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    async with asyncio.timeout(2.0):
                        await self._announce(client, "offline")
                raise

    async def _publish_until_broken(self, client: aiomqtt.Client, boundary: int) -> None:
        """Run the live and the replay publisher until one fails (the MqttError of a broken
        session, raised for the loop) or we are cancelled.

        Not a TaskGroup: when a child fails while the group waits to exit, Python 3.11's
        TaskGroup cancels the waiting task and never takes that back (fixed in 3.12), so the
        publish loop, which checks for a pending cancellation, took every broken session for
        a stop and never reconnected."""
        publishers = [
            asyncio.create_task(self._live(client, boundary), name="edge-live"),
            asyncio.create_task(self._replay(client, boundary), name="edge-replay"),
            asyncio.create_task(self._keep_status(client), name="edge-status"),
        ]
        try:
            running = set(publishers)
            while running:  # the replay ends when the backlog is sent; the others never
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
        finally:
            # both stop, whichever failed: its error is already on its way up
            for task in publishers:
                task.cancel()
            for task in publishers:
                with contextlib.suppress(Exception):
                    await cancel_and_wait(task)

    async def _announce(self, client: aiomqtt.Client, state: str) -> None:
        counts = (await self.buffer.count(), self.buffer.dropped_total)
        payload = status_payload(state, *counts)
        await client.publish(
            self.status_topic, payload, qos=1, retain=True, timeout=self.settings.publish_timeout_s
        )
        self._announced = counts
        honour_cancel()  # the session's first step after a connect that may have swallowed one

    async def _keep_status(self, client: aiomqtt.Client) -> None:
        """Republish the retained ``online`` status whenever its counts changed, at most every
        ``STATUS_EVERY_S``: the last status before a will is then that fresh at worst."""
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            if (await self.buffer.count(), self.buffer.dropped_total) != self._announced:
                await self._announce(client, "online")

    async def _send(self, client: aiomqtt.Client, batch: StoredBatch, kind: str) -> None:
        # returns after the broker's PUBACK; raises MqttError if the session breaks
        await client.publish(
            self.data_topic, batch.payload, qos=1, timeout=self.settings.publish_timeout_s
        )
        honour_cancel()
        await self.buffer.ack(batch.seq)
        self.published += 1
        self.metrics.published.labels(kind).inc()

    async def _live(self, client: aiomqtt.Client, boundary: int) -> None:
        """Publish each batch stored since the session began, as soon as it is stored."""
        while True:
            honour_cancel()  # never wait for the next batch with a cancellation pending
            # clear before looking, so an append between the look and the wait still wakes us
            self._new_batch.clear()
            batches = await self.buffer.pending(REPLAY_CHUNK, since=boundary)
            if not batches:
                await self._new_batch.wait()
                continue
            for batch in batches:
                await self._send(client, batch, "live")
                self.published_live += 1

    async def _replay(self, client: aiomqtt.Client, boundary: int) -> None:
        """Publish the backlog (older than the session), oldest first, at ``replay_rate``."""
        gap = 1.0 / self.settings.replay_rate
        self.backlog_left = await self.buffer.count(before=boundary)
        if not self.backlog_left:
            return
        log.info(
            "replaying %d buffered batches behind the live ones, %.0f a second",
            self.backlog_left,
            self.settings.replay_rate,
        )
        next_at = time.monotonic()
        while True:
            batches = await self.buffer.pending(REPLAY_CHUNK, before=boundary)
            if not batches:
                break
            for batch in batches:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                await self._send(client, batch, "replay")
                self.replayed += 1
                self.backlog_left -= 1
                next_at = max(next_at + gap, time.monotonic() - gap)
        self.backlog_left = 0
        await self._announce(client, "online")  # the buffered count, back to (near) 0


async def run_edge(settings: EdgeSettings) -> None:
    """Run the edge agent until cancelled (the ``parkwatch edge`` command)."""
    # pymodbus and asyncua log every failed request; our poller logs each outage once instead
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    await EdgeAgent(settings).run()
