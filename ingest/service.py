"""The ingest service: shared subscription → validate → InfluxDB → acknowledge.

Delivery guarantee: ingest subscribes with QoS 1 on a persistent session (``clean_start``
false, a session expiry) and acknowledges each message only after its points are stored, in
the order the messages arrived. A crash, a broker restart or a database outage therefore
leaves unacknowledged messages with the broker, which delivers them again; a re-delivered
batch writes the same points (same series and timestamp) and so overwrites, never duplicates.

Overflow policy: the broker sends at most ``receive_maximum`` unacknowledged messages (MQTT
v5 flow control), and the writer holds a bounded number of batches; when InfluxDB is slow or
down, writes wait, acknowledgements stop, and the broker stops sending — memory stays flat
and the backlog waits in the broker's queue for this session.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt

from ingest.counters import CounterWatch
from ingest.metrics import IngestMetrics
from ingest.sequence import SeqTracker, Verdict
from ingest.settings import IngestSettings
from parkwatch import mqtt, topics
from parkwatch.influx import InfluxRejectedError, InfluxWriter, ensure_database
from parkwatch.retry import Backoff, OutageLog
from parkwatch.site import SiteRegistry
from parkwatch.wire import (
    AcceptedReading,
    Limits,
    ParsedBatch,
    Quality,
    Reason,
    Rejection,
    deadletter_payload,
    parse_batch,
)

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    mid: int
    qos: int
    done: bool = False


class AckTracker:
    """Acknowledges messages in arrival order once each is handled (MQTT v5 §4.6 asks PUBACKs
    in the order the PUBLISHes came), even when later messages finish first."""

    def __init__(self, send_ack: Callable[[int, int], object]) -> None:
        self._send_ack = send_ack
        self._queue: deque[_Pending] = deque()

    def received(self, mid: int, qos: int) -> _Pending:
        entry = _Pending(mid, qos)
        self._queue.append(entry)
        return entry

    def done(self, entry: _Pending) -> None:
        entry.done = True
        while self._queue and self._queue[0].done:
            head = self._queue.popleft()
            if head.qos > 0:
                self._send_ack(head.mid, head.qos)

    def __len__(self) -> int:
        return len(self._queue)


def encode_lines(readings: list[AcceptedReading]) -> list[str]:
    """Accepted readings → line protocol. Every value is a float (``repr`` round-trips it),
    quantity names come from the registry and need no escaping, and the series key is
    computed once per meter by the site registry."""
    return [
        f"{r.meter.series} {','.join([f'{k}={v!r}' for k, v in r.q.items()])}"
        f"{'' if r.s == 'ok' else _QUALITY_FIELD[r.s]} {r.t}"
        for r in readings
    ]


_QUALITY_FIELD = {s.value: f',quality="{s.value}"' for s in Quality if s is not Quality.OK}


class IngestService:
    def __init__(
        self,
        settings: IngestSettings,
        registry: SiteRegistry,
        *,
        metrics: IngestMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics or IngestMetrics()
        self.clock = clock
        self.limits = Limits(max_bytes=settings.max_message_bytes)
        self.subscribed = asyncio.Event()
        self.broker_outage = OutageLog(log, f"MQTT broker at {settings.mqtt.url}")
        self.deadletter_outage = OutageLog(log, "the dead-letter topic")
        self.writer: InfluxWriter | None = None
        self.sequences = SeqTracker()
        m = self.metrics
        self._seq_counters = {
            Verdict.LATE: m.seq_late,
            Verdict.REPLAY: m.seq_replays,
            Verdict.RESTART: m.seq_restarts,
            Verdict.OUTLIER: m.seq_outliers,
        }
        self.counters = CounterWatch()

    async def run(self) -> None:
        s = self.settings
        writer = InfluxWriter(
            s.influx,
            batch_lines=s.batch_lines,
            flush_interval_s=s.flush_interval_s,
            max_in_flight=s.writes_in_flight,
            gzip_level=s.gzip_level,
        )
        async with writer:
            self.writer = writer
            # read at scrape time: 0 while the writer is retrying through an outage
            self.metrics.database_up.set_function(lambda: 0.0 if writer.outage.is_down else 1.0)
            await ensure_database(s.influx, log)
            backoff = Backoff()
            while True:
                try:
                    await self._session(writer)
                except aiomqtt.MqttError as exc:
                    self.subscribed.clear()
                    self.metrics.broker_up.set(0)
                    self.broker_outage.failed(exc)
                    await asyncio.sleep(backoff.next_delay())
                else:
                    return

    def topic_filters(self) -> list[str]:
        s = self.settings
        filters = [topics.data_filter(park) for park in s.parks] if s.parks else [topics.ALL_DATA]
        return [topics.shared(f, s.share_group) if s.share_group else f for f in filters]

    async def _session(self, writer: InfluxWriter) -> None:
        s = self.settings
        client = mqtt.client(
            s.mqtt,
            s.client_id,
            clean_start=False,
            session_expiry_s=s.session_expiry_s,
            receive_maximum=s.receive_maximum,
            # dead letters go out while messages are handled concurrently: paho's default of
            # 20 QoS 1 publishes in flight would make them queue and time out
            max_inflight_messages=s.receive_maximum,
        )
        # aiomqtt 2.5 has no public switch for manual acknowledgement; paho (which it wraps)
        # has, and it is what lets us acknowledge only after the write.
        client._client.manual_ack_set(True)
        async with client:
            filters = self.topic_filters()
            for topic_filter in filters:
                await client.subscribe(topic_filter, qos=1)
            self.broker_outage.recovered()
            self.metrics.broker_up.set(1)
            self.subscribed.set()
            log.info("ingest %s subscribed to %s", s.client_id, ", ".join(filters))
            acks = AckTracker(client._client.ack)
            # QoS 0 messages are not flow-controlled by the broker; this bounds them too
            slots = asyncio.Semaphore(s.receive_maximum)
            handlers: set[asyncio.Task[None]] = set()
            try:
                async for message in client.messages:
                    await slots.acquire()
                    entry = acks.received(message.mid, message.qos)
                    self.metrics.in_progress.inc()
                    task = asyncio.create_task(self._handle(client, writer, message))
                    handlers.add(task)
                    task.add_done_callback(handlers.discard)
                    task.add_done_callback(
                        lambda t, e=entry: self._finished(t, e, acks, slots)  # type: ignore[misc]
                    )
            finally:
                # The connection is gone: acknowledgements can no longer be sent, and the broker
                # will deliver these messages again. Stop working on them.
                for task in handlers:
                    task.cancel()
                await asyncio.gather(*handlers, return_exceptions=True)

    def _finished(
        self,
        task: asyncio.Task[None],
        entry: _Pending,
        acks: AckTracker,
        slots: asyncio.Semaphore,
    ) -> None:
        slots.release()
        self.metrics.in_progress.dec()
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            acks.done(entry)
        elif not isinstance(error, aiomqtt.MqttError):
            # not acknowledged, so the broker delivers it again after a reconnect
            log.error("message handling failed; left unacknowledged", exc_info=error)

    async def _handle(
        self, client: aiomqtt.Client, writer: InfluxWriter, message: aiomqtt.Message
    ) -> None:
        try:
            await self._process(client, writer, message)
        except (aiomqtt.MqttError, asyncio.CancelledError):
            raise
        except Exception as exc:
            # A bug, not bad input (parse_batch never raises on input). Record the whole
            # message as a dead letter so it can be replayed once fixed, and go on: leaving it
            # unacknowledged would stall every later acknowledgement behind it.
            log.exception("handling a message on %s failed; dead-lettered", message.topic)
            payload = bytes(message.payload) if isinstance(message.payload, bytes) else b""
            try:
                park = topics.parse_data_topic(str(message.topic))
            except topics.TopicError:
                return
            parsed = ParsedBatch(park.park, park.gateway, message_rejected=True)
            parsed.rejections.append(Rejection(Reason.INTERNAL_ERROR, repr(exc)))
            await self._deadletter(client, str(message.topic), parsed, payload, self.clock())

    async def _process(
        self, client: aiomqtt.Client, writer: InfluxWriter, message: aiomqtt.Message
    ) -> None:
        received = self.clock()
        self.metrics.messages.inc()
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = str(payload).encode()
        topic = str(message.topic)
        try:
            data_topic = topics.parse_data_topic(topic)
        except topics.TopicError as exc:
            log.warning("ignoring message on %s: %s", topic, exc)
            self.metrics.rejected.labels("bad_topic").inc()
            return
        parsed = parse_batch(
            bytes(payload), data_topic, self.registry, int(received * 1000), self.limits
        )
        # both in arrival order: nothing above awaits
        self._track_seq(parsed)
        for decrease in self.counters.flag(parsed.readings):
            self.metrics.counter_decreases.labels(decrease.quantity).inc()
            log.info(
                "%s of meter %s went back from %r to %r",
                decrease.quantity,
                decrease.meter,
                decrease.before,
                decrease.after,
            )
        lines = encode_lines(parsed.readings)
        if lines:
            await self._store(writer, parsed, lines)
        if parsed.rejections:
            await self._deadletter(client, topic, parsed, bytes(payload), received)
        self.metrics.write_latency.observe(self.clock() - received)

    def _track_seq(self, parsed: ParsedBatch) -> None:
        """Make gaps, late batches, replays and restarts visible (:mod:`ingest.sequence`).
        Every batch is written whatever its verdict: a replay overwrites the same points."""
        if parsed.seq is None or parsed.message_rejected:
            return
        before = self.sequences.counts.gaps
        for verdict in self.sequences.observe((parsed.park, parsed.gateway), parsed.seq):
            counter = self._seq_counters.get(verdict)
            if counter is not None:
                counter.inc()
        if self.sequences.counts.gaps > before:
            self.metrics.seq_gaps.inc(self.sequences.counts.gaps - before)

    async def _store(self, writer: InfluxWriter, parsed: ParsedBatch, lines: list[str]) -> None:
        try:
            await writer.write(lines)
        except InfluxRejectedError:
            # The batch this message shared was refused; try its own lines alone so that
            # another message's bad line cannot cost this one's good readings.
            try:
                await writer.write_now(lines)
            except InfluxRejectedError as exc:
                parsed.rejections.append(Rejection(Reason.DATABASE_REJECTED, str(exc)))
                return
        self.metrics.readings.inc(len(parsed.readings))
        self.metrics.values_written.inc(parsed.values_accepted)
        newest = max(r.t for r in parsed.readings)
        self.metrics.lag.set(max(0.0, self.clock() - newest / 1000))

    async def _deadletter(
        self,
        client: aiomqtt.Client,
        topic: str,
        parsed: ParsedBatch,
        payload: bytes,
        received: float,
    ) -> None:
        for rejection in parsed.rejections:
            self.metrics.rejected.labels(rejection.reason.value).inc()
        body = deadletter_payload(topic, parsed, payload, int(received * 1000))
        # a park that is not configured gets no topic of its own: the sender chose its name
        target = (
            topics.deadletter_topic(parsed.park)
            if parsed.park in self.registry.parks
            else topics.UNKNOWN_PARK_DEADLETTER
        )
        try:
            await client.publish(target, body, qos=1)
        except aiomqtt.MqttError as exc:
            # Best effort: the good points are stored and the rejections counted; holding the
            # message unacknowledged for its dead letter would stall every later ack (a broken
            # connection is noticed by the session loop, which reconnects).
            self.metrics.deadletters_failed.inc()
            self.deadletter_outage.failed(exc)
            return
        self.deadletter_outage.recovered()
        self.metrics.deadletters.inc()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("dead letter for %s seq=%s: %s", topic, parsed.seq, parsed.rejections)


async def run_ingest(settings: IngestSettings) -> None:
    """Entry point of ``parkwatch ingest``: the service plus its /metrics and /health."""
    # Ingest allocates a few short-lived dicts per reading and keeps little: with the default
    # thresholds the cyclic GC ran often enough to cost a fifth of the throughput. Freeze the
    # long-lived start-up objects and collect the young generation less often.
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
    registry = SiteRegistry.from_files(settings.sites)
    service = IngestService(settings, registry)
    async with contextlib.AsyncExitStack() as stack:
        if settings.http_port:
            from ingest.http import serve_http

            await stack.enter_async_context(serve_http(service))
        await service.run()
