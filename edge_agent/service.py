"""The edge agent: poll the gateway's meters, buffer each batch on disk, publish it with QoS 1.

Two tasks in one task group, joined by the write-ahead buffer (three with MQTT-native meters):

* the poll loop reads every Modbus device each ``poll_interval_s``, adds what the MQTT-native
  meters published since the last cycle, and appends the cycle's readings to the buffer as
  one batch (``seq`` + 1), whether or not the broker is reachable;
* with MQTT-native meters, the device subscriber (:mod:`edge_agent.mqtt_devices`) keeps its
  own session on the device broker (``device_mqtt``, by default the same broker) and holds
  each meter's newest reading for the poll loop;
* the publish loop keeps an MQTT session (last will: ``offline``, retained, on the status
  topic), announces ``online`` (retained, with version and buffered count), then publishes the
  buffered batches in ``seq`` order, deleting each only after its PUBACK. When the broker goes
  away it reconnects with jittered backoff, logging the outage once; the backlog is replayed
  on the new connection before new batches.

Stopping (cancellation) publishes ``offline`` before disconnecting, since a clean disconnect
does not fire the will.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiomqtt
import orjson

from edge_agent.buffer import WalBuffer
from edge_agent.drivers import ModbusDrivers
from edge_agent.mqtt_devices import MqttDevices
from edge_agent.poller import Poller, Reading
from edge_agent.settings import EdgeSettings
from parkwatch import __version__, mqtt, topics
from parkwatch.retry import Backoff, OutageLog

log = logging.getLogger(__name__)

REPLAY_CHUNK = 200  # batches fetched from disk at a time while replaying a backlog


def status_payload(state: str, buffered: int = 0, dropped: int = 0) -> bytes:
    """The retained status message; the same shape the simulated gateways publish."""
    return orjson.dumps(
        {"state": state, "version": __version__, "buffered": buffered, "dropped": dropped}
    )


class EdgeAgent:
    """One gateway's agent; ``await agent.run()`` until cancelled."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.data_topic = topics.data_topic(settings.park, settings.gateway)
        self.status_topic = topics.status_topic(settings.park, settings.gateway)
        self.buffer = WalBuffer(settings.buffer_dir, settings.gateway, settings.buffer_max_batches)
        self.poller: Poller | None = None
        self.mqtt_devices: MqttDevices | None = None  # when some devices are MQTT-native
        self.published = 0  # batches acknowledged by the broker since start
        self.started = asyncio.Event()  # set once the buffer is open and the drivers exist
        self.connected = asyncio.Event()  # set while a broker session is up
        self._new_batch = asyncio.Event()

    async def run(self) -> None:
        s = self.settings
        with self.buffer:
            async with ModbusDrivers(s.devices, s.profiles(), s.request_timeout_s) as drivers:
                devices = self._mqtt_devices()
                self.poller = Poller(
                    drivers.drivers, s.max_concurrency, sources=[devices] if devices else []
                )
                log.info(
                    "edge agent %s/%s: %d Modbus and %d MQTT devices, every %.1fs, broker %s, "
                    "%d batches buffered",
                    s.park,
                    s.gateway,
                    len(drivers.drivers),
                    len(devices.devices) if devices else 0,
                    s.poll_interval_s,
                    s.mqtt.url,
                    self.buffer.count_sync(),
                )
                self.started.set()
                async with asyncio.TaskGroup() as group:
                    group.create_task(self.poller.run(s.poll_interval_s, self._store))
                    group.create_task(self._publish_loop())
                    if devices:
                        group.create_task(
                            devices.run(
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
            await asyncio.sleep(backoff.next_delay())

    async def _session(self, outage: OutageLog, backoff: Backoff) -> None:
        s = self.settings
        will = aiomqtt.Will(self.status_topic, status_payload("offline"), qos=1, retain=True)
        async with mqtt.client(s.mqtt, s.mqtt_client_id, will=will) as client:
            outage.recovered()
            backoff.reset()
            self.connected.set()
            try:
                await self._announce(client, "online")
                await self._drain(client)
            except asyncio.CancelledError:
                # a clean disconnect does not fire the will: say it ourselves, briefly
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    async with asyncio.timeout(2.0):
                        await self._announce(client, "offline")
                raise

    async def _announce(self, client: aiomqtt.Client, state: str) -> None:
        payload = status_payload(state, await self.buffer.count(), self.buffer.dropped_total)
        await client.publish(
            self.status_topic, payload, qos=1, retain=True, timeout=self.settings.publish_timeout_s
        )

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish buffered batches in seq order forever; returns only by raising."""
        backlog = False
        while True:
            # clear before looking, so an append between the look and the wait still wakes us
            self._new_batch.clear()
            batches = await self.buffer.pending(REPLAY_CHUNK)
            if not batches:
                if backlog:
                    backlog = False
                    await self._announce(client, "online")  # buffered count back to 0
                await self._new_batch.wait()
                continue
            backlog = backlog or len(batches) > 1
            for batch in batches:
                # returns after the broker's PUBACK; raises MqttError if the session breaks
                await client.publish(
                    self.data_topic, batch.payload, qos=1, timeout=self.settings.publish_timeout_s
                )
                await self.buffer.ack(batch.seq)
                self.published += 1


async def run_edge(settings: EdgeSettings) -> None:
    """Run the edge agent until cancelled (the ``parkwatch edge`` command)."""
    # pymodbus logs every failed request; our poller logs each outage once instead
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    await EdgeAgent(settings).run()
