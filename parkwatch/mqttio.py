"""A small asyncio MQTT v5 client for the hot paths: ingest's subscription and the load
generator's publishes.

aiomqtt (on paho) moves about 6,500 QoS 1 messages a second here, and real gateways and
MQTT-native meters send one small message per poll: at one reading per message that client,
not the database, would bound ingest. This one keeps the per-message work small: packets are
(de)serialised by ``mqtt5`` (Rust), every complete packet in a read is parsed in one go and
handed over as one chunk, and acknowledgements go out together in one write.

What it does, and only that: CONNECT (clean start or a persistent session with an expiry,
Receive Maximum, user name and password, TLS, a will), SUBSCRIBE, receiving QoS 0 and 1 with
*manual* acknowledgement (the caller acks after its work is stored, in arrival order, as MQTT
asks), publishing QoS 0 and 1 within the broker's Receive Maximum, keepalive, DISCONNECT.
QoS 2 is not used anywhere in parkwatch and is refused.

Conventions (DESIGN.md): the client is an async context manager that owns its one
background task (keepalive) and cancels and awaits it on exit; connecting, subscribing and
every PUBACK wait have timeouts; errors are :class:`MqttError` subclasses. Overflow policy:
messages handed over but not yet released hold their payload bytes against
``max_held_bytes``; above it the client stops reading the socket (TCP backpressure, the broker
keeps the rest queued for the session), and reads again below seven eighths of it (as soon
as one batch's worth is acknowledged: a deeper hysteresis starved the writer of large
messages). The broker's own
flow control (Receive Maximum) bounds the count. Optionally (``read_pause_s``, ingest's
``read_pause_ms``) a small read of messages leaves the socket unread that long, so that the
next read takes many messages at once: a chunk's handling costs about the same at 30 messages
as at 300. Reads of small messages (``small_message_bytes`` on average) may pause longer
(``small_pause_s``): their readings share a read's cost least. ``read_pause_s`` 0 turns both
off.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple, cast

import mqtt5

from parkwatch import hotpath
from parkwatch.mqtt import tls_context
from parkwatch.settings import MqttSettings

log = logging.getLogger(__name__)

# what a message held costs besides its payload (objects, the topic), counted against
# max_held_bytes so that many tiny QoS 0 messages are bounded too
MESSAGE_OVERHEAD = 256
# plain QoS 0/1 PUBLISHes read in C (parkwatch/_hotpath.pyx), or None where it is not built:
# the codec then reads them all; at one reading per message the codec's packet objects and
# their attributes cost about a fifth of ingest's CPU
_read_publishes = hotpath.read_publishes
_pubacks = hotpath.pubacks  # a chunk's PUBACKs, compiled (None: not built)

# PUBACK, success, no properties (MQTT v5 §3.4.2.1: the reason code may then be left out):
# 0x40, remaining length 2, the packet id. Packed here for a whole release at once — a
# codec object per acknowledgement cost as much as the rest of receiving a small message.
_PUBACK_FLAGS = 0x4002 << 16


class MqttError(Exception):
    """Base of this module's errors."""


class MqttConnectError(MqttError):
    """The broker could not be reached or refused the connection."""


class MqttConnectionLostError(MqttError):
    """The connection broke (or the broker closed it)."""


class MqttRefusedError(MqttError):
    """The broker answered a SUBSCRIBE or PUBLISH with a failure reason code."""


class Message(NamedTuple):  # a tuple: built once per message received, the cheapest to build
    topic: str
    payload: bytes
    qos: int
    packet_id: int  # 0 for QoS 0


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class _Protocol(asyncio.Protocol):
    """Bytes in → packets; everything else is the client's."""

    def __init__(self, client: FastClient) -> None:
        self.client = client
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's is not an asyncio.Transport subclass, so no isinstance)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        if buffer:
            buffer += data
            view = memoryview(buffer)
        else:
            view = memoryview(data)
        offset = 0
        size = len(view)
        read = mqtt5.read
        publishes = _read_publishes
        # mqtt5 packets, and runs of plain PUBLISHes read in C as (messages, payload bytes)
        packets: list[mqtt5.Packet | tuple[list[Message], int]] = []
        try:
            while offset < size:
                if publishes is not None:
                    messages, offset, payload_bytes = publishes(view, offset, Message)
                    if messages:
                        packets.append((messages, payload_bytes))
                    if offset >= size:
                        break
                try:
                    packet, used = read(view[offset:])
                except IndexError:  # "Not enough bytes": the rest comes in the next read
                    break
                packets.append(packet)
                offset += used
        except Exception as exc:  # malformed: this connection cannot go on
            view.release()
            self.client._lost(MqttConnectionLostError(f"bad packet from the broker: {exc}"))
            return
        rest = bytes(view[offset:]) if offset < size else b""
        view.release()
        self.buffer = bytearray(rest)
        self.client._received(packets, size)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost(
            MqttConnectionLostError(f"connection lost: {exc or 'closed by the broker'}")
        )


class FastClient:
    """``async with FastClient(settings, "id") as client:`` — see the module docstring."""

    def __init__(
        self,
        settings: MqttSettings,
        identifier: str,
        *,
        clean_start: bool = True,
        session_expiry_s: int = 0,
        receive_maximum: int = 65_535,
        max_held_bytes: int = 16 * 1024 * 1024,
        max_inflight: int = 1024,
        will: Will | None = None,
        timeout_s: float | None = None,
        read_pause_s: float = 0.0,
        read_pause_below: int = 64 * 1024,
        small_pause_s: float | None = None,
        small_message_bytes: int = 0,
    ) -> None:
        self.settings = settings
        self.identifier = identifier
        self.clean_start = clean_start
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.max_held_bytes = max_held_bytes
        self.will = will
        self.timeout_s = timeout_s if timeout_s is not None else settings.connect_timeout_s
        self.session_present = False
        self._max_inflight = max_inflight
        # coalescing reads: see _received
        self.read_pause_s = read_pause_s
        self.read_pause_below = read_pause_below
        # a read whose messages average under small_message_bytes pauses small_pause_s instead
        # (None: read_pause_s; read_pause_s 0: no pause at all): see _pause_to_coalesce
        self.small_pause_s = read_pause_s if small_pause_s is None else small_pause_s
        self.small_message_bytes = small_message_bytes
        self._pausing = False  # reading paused to coalesce (not the byte budget's pause)
        self._pause_timer: asyncio.TimerHandle | None = None
        self._protocol: _Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._connack: asyncio.Future[mqtt5.ConnAckPacket] | None = None
        self._waiting: dict[int, asyncio.Future[list[int]]] = {}  # SUBACK by packet id
        self._puback: dict[int, asyncio.Future[None]] = {}  # our QoS 1 publishes in flight
        self._ids = itertools.cycle(range(1, 65_536))
        self._slots: asyncio.Semaphore | None = None
        self._inbox: deque[list[Message]] = deque()
        self._inbox_ready = asyncio.Event()
        self._error: MqttError | None = None
        self._closing = False
        self._held = 0
        self._paused = False
        self._last_heard = 0.0
        self._keepalive: asyncio.Task[None] | None = None
        self._out = bytearray()  # packets queued for the next write

    # --- the connection ---------------------------------------------------------------

    async def __aenter__(self) -> FastClient:
        loop = asyncio.get_running_loop()
        s = self.settings
        self._connack = loop.create_future()
        try:
            async with asyncio.timeout(self.timeout_s):
                transport, protocol = await loop.create_connection(
                    lambda: _Protocol(self),
                    s.host,
                    s.port,
                    ssl=tls_context(s),
                    server_hostname=s.host if s.tls else None,
                )
                self._protocol = protocol
                # the returned transport, not protocol.transport: uvloop calls
                # connection_made only on a later turn of the loop
                self._transport = transport
                self._write(self._connect_packet().write())
                connack = await self._connack
        except (OSError, TimeoutError, MqttError) as exc:
            self._abort()
            raise MqttConnectError(
                f"cannot connect to {s.url}: {exc or type(exc).__name__}"
            ) from exc
        if connack.reason_code != mqtt5.ConnAckReasonCode.SUCCESS:
            self._abort()
            raise MqttConnectError(f"{s.url} refused the connection: {connack.reason_code.name}")
        self.session_present = connack.session_present
        self._slots = asyncio.Semaphore(min(connack.receive_max, self._max_inflight))
        self._last_heard = time.monotonic()
        self._keepalive = asyncio.create_task(
            self._keep_alive(), name=f"mqtt-keepalive-{self.identifier}"
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        if self._transport is not None and not self._transport.is_closing():
            self._out += mqtt5.DisconnectPacket().write()
            self._send_out()
            self._transport.close()
        self._fail(MqttConnectionLostError("client closed"))

    def _connect_packet(self) -> mqtt5.ConnectPacket:
        s = self.settings
        will = None
        if self.will is not None:
            will = mqtt5.Will(
                self.will.topic,
                payload=self.will.payload,
                qos=mqtt5.QoS(self.will.qos),
                retain=self.will.retain,
            )
        return mqtt5.ConnectPacket(
            self.identifier,
            username=s.username,
            password=s.password.get_secret_value().encode() if s.password else None,
            clean_start=self.clean_start,
            will=will,
            keep_alive=s.keepalive_s,
            session_expiry_interval=self.session_expiry_s,
            receive_max=self.receive_maximum,
        )

    async def _keep_alive(self) -> None:
        interval = self.settings.keepalive_s
        while True:
            await asyncio.sleep(interval / 2)
            # while reading is paused (the byte budget) the broker's answers wait unread:
            # silence then says nothing about the connection
            if self._paused:
                self._last_heard = time.monotonic()
            elif time.monotonic() - self._last_heard > 1.5 * interval:
                self._lost(
                    MqttConnectionLostError(f"nothing from the broker for {1.5 * interval:.0f} s")
                )
                return
            try:
                self._write(mqtt5.PingReqPacket().write())
            except MqttError:
                return  # the connection is gone; whoever reads chunks() hears why

    def _write(self, data: bytes) -> None:
        """Queue a packet; everything queued in one turn of the event loop goes out in one
        write (one system call for many publishes or acknowledgements)."""
        if self._transport is None or self._transport.is_closing():
            raise self._error or MqttConnectionLostError("not connected")
        if not self._out:
            asyncio.get_running_loop().call_soon(self._send_out)
        self._out += data

    def _send_out(self) -> None:
        if self._out and self._transport is not None and not self._transport.is_closing():
            self._transport.write(bytes(self._out))
        self._out.clear()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _lost(self, error: MqttError) -> None:
        self._abort()
        self._fail(error)

    def _fail(self, error: MqttError) -> None:
        if self._error is None:
            self._error = error
        if self._pause_timer is not None:  # closed or lost: nothing left to resume
            self._pause_timer.cancel()
            self._pause_timer = None
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(error)
        futures: list[asyncio.Future[list[int]] | asyncio.Future[None]] = [
            *self._waiting.values(),
            *self._puback.values(),
        ]
        for future in futures:
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a caller may have gone
        self._waiting.clear()
        self._puback.clear()
        self._inbox_ready.set()

    # --- receiving ----------------------------------------------------------------------

    def _received(
        self, packets: Sequence[mqtt5.Packet | tuple[list[Message], int]], size: int = 0
    ) -> None:
        self._last_heard = time.monotonic()
        chunk: list[Message] = []
        publish = mqtt5.PublishPacket
        new = tuple.__new__  # builds a Message in C (its own __new__ is Python code)
        for packet in packets:
            if type(packet) is tuple:  # PUBLISHes read in C: QoS 0 or 1
                messages, payload_bytes = packet
                chunk += messages
                self._held += payload_bytes + MESSAGE_OVERHEAD * len(messages)
            elif type(packet) is publish:
                qos = int(packet.qos)
                if qos == 2:
                    self._lost(MqttConnectionLostError("QoS 2 is not supported"))
                    return
                chunk.append(
                    new(Message, (packet.topic, packet.payload, qos, packet.packet_id or 0))
                )
                self._held += len(packet.payload) + MESSAGE_OVERHEAD
            elif isinstance(packet, mqtt5.PubAckPacket):
                future = self._puback.pop(packet.packet_id, None)
                if future is not None and not future.done():
                    if int(packet.reason_code) >= 0x80:
                        future.set_exception(MqttRefusedError(f"PUBACK {packet.reason_code.name}"))
                        future.exception()
                    else:
                        future.set_result(None)
            elif isinstance(packet, mqtt5.ConnAckPacket):
                if self._connack is not None and not self._connack.done():
                    self._connack.set_result(packet)
            elif isinstance(packet, mqtt5.SubAckPacket):
                waiter = self._waiting.pop(packet.packet_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result([int(code) for code in packet.reason_codes])
            elif isinstance(packet, mqtt5.DisconnectPacket):
                self._lost(
                    MqttConnectionLostError(f"broker disconnected: {packet.reason_code.name}")
                )
                return
        if chunk:
            self._inbox.append(chunk)
            self._inbox_ready.set()
            if self._held > self.max_held_bytes and not self._paused and self._transport:
                self._transport.pause_reading()
                self._paused = True
            elif self.read_pause_s and size < self.read_pause_below and not self._paused:
                # read_pause_s 0 turns both pauses off (ingest's PW_INGEST_READ_PAUSE_MS=0)
                if size < self.small_message_bytes * len(chunk):
                    pause = self.small_pause_s
                else:
                    pause = self.read_pause_s
                if pause:
                    self._pause_to_coalesce(pause)

    def _pause_to_coalesce(self, pause: float) -> None:
        """A small read of messages (``read_pause_below`` bytes): leave the socket unread for
        ``pause`` seconds, so that the next read takes what came meanwhile in one go. A chunk
        costs its read, a task and its acknowledgements' write whatever its size: at one
        reading per message, reads of ~30 messages spent most of ingest's CPU on that. A
        message waits at most ``pause`` more; one arriving after a quiet spell is read at once
        (nothing is paused then). The pause is longer (``small_pause_s``) for reads of small
        messages (``small_message_bytes`` on average): there the per-read cost is shared by
        fewer readings; larger messages already carry enough readings per read, and a longer
        pause only added latency (ingest23: at 10 readings per message p99 +150 ms, no CPU)."""
        transport = self._transport
        if self._pausing or transport is None or transport.is_closing():
            return
        transport.pause_reading()
        self._pausing = True
        self._pause_timer = asyncio.get_running_loop().call_later(pause, self._end_pause)

    def _end_pause(self) -> None:
        self._pausing = False
        self._pause_timer = None
        transport = self._transport
        # the byte budget's pause outlasts this one: release resumes reading then
        if not self._paused and transport is not None and not transport.is_closing():
            transport.resume_reading()

    async def chunks(self) -> AsyncIterator[list[Message]]:
        """Messages as they arrive, in order, several at a time. Raises :class:`MqttError`
        when the connection breaks. Each message must be :meth:`release`d (QoS 1: acked)."""
        while True:
            while self._inbox:
                yield self._inbox.popleft()
            if self._error is not None:
                raise self._error
            self._inbox_ready.clear()
            await self._inbox_ready.wait()

    def release(self, messages: Sequence[Message]) -> None:
        """Done with these messages (in arrival order): PUBACK the QoS 1 ones and free their
        bytes for reading."""
        packed = _pubacks(messages) if _pubacks is not None and type(messages) is list else None
        if packed is not None:  # compiled: per message, the Python here was a twentieth
            acks, payload_bytes = packed  # of a one-reading message's handling
        else:
            ids = [_PUBACK_FLAGS | message.packet_id for message in messages if message.qos]
            acks = struct.pack(f"!{len(ids)}I", *ids)
            payload_bytes = sum([len(message.payload) for message in messages])
        self._held -= payload_bytes + MESSAGE_OVERHEAD * len(messages)
        if acks and self._transport is not None and not self._transport.is_closing():
            self._write(acks)
        if self._paused and self._held <= self.max_held_bytes * 7 // 8 and self._transport:
            self._paused = False
            if not self._pausing:  # else the coalescing pause's end resumes it
                self._transport.resume_reading()

    async def subscribe(self, topic_filters: list[str], qos: int = 1) -> list[int]:
        """Subscribe and wait for the SUBACK; raises :class:`MqttRefusedError` on a failure code."""
        packet_id = self._next_id()
        waiter: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._waiting[packet_id] = waiter
        filters = [mqtt5.TopicFilter(f, max_qos=mqtt5.QoS(qos)) for f in topic_filters]
        self._write(mqtt5.SubscribePacket(packet_id, filters).write())
        try:
            async with asyncio.timeout(self.timeout_s):
                codes = await waiter
        except TimeoutError as exc:
            self._waiting.pop(packet_id, None)
            raise MqttConnectionLostError(f"no SUBACK within {self.timeout_s} s") from exc
        if any(code >= 0x80 for code in codes):
            raise MqttRefusedError(f"SUBSCRIBE {topic_filters} refused: {codes}")
        return codes

    # --- publishing ---------------------------------------------------------------------

    def _next_id(self) -> int:
        for packet_id in self._ids:
            if packet_id not in self._puback and packet_id not in self._waiting:
                return packet_id
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        """Publish without waiting for the PUBACK: waits only for room in the broker's
        Receive Maximum, and returns the future the PUBACK resolves (QoS 0: already done)."""
        if self._error is not None:
            raise self._error
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if qos == 0:
            self._write(mqtt5.PublishPacket(topic, payload, retain=retain).write())
            done.set_result(None)
            return done
        if qos != 1:
            raise ValueError("QoS 2 is not supported")
        assert self._slots is not None, "use FastClient as an async context manager"
        await self._slots.acquire()
        done.add_done_callback(lambda _: self._slots.release())  # type: ignore[union-attr]
        if self._error is not None:
            done.set_exception(self._error)
            done.exception()
            return done
        packet_id = self._next_id()
        self._puback[packet_id] = done
        packet = mqtt5.PublishPacket(
            topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE, retain=retain, packet_id=packet_id
        )
        self._write(packet.write())
        return done

    async def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 (the PUBACK wait only, as aiomqtt's)
    ) -> None:
        """Publish and wait for the PUBACK (QoS 1)."""
        done = await self.send(topic, payload, qos, retain)
        try:
            async with asyncio.timeout(timeout if timeout is not None else self.timeout_s):
                await asyncio.shield(done)
        except TimeoutError as exc:
            raise MqttConnectionLostError(f"no PUBACK for {topic} within the timeout") from exc
