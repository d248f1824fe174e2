"""The ingest service: shared subscription → validate → InfluxDB → acknowledge.

Delivery guarantee: ingest subscribes with QoS 1 on a persistent session (``clean_start``
false, a session expiry) and acknowledges each message only after its points are stored, in
the order the messages arrived. A crash, a broker restart or a database outage therefore
leaves unacknowledged messages with the broker, which delivers them again; a re-delivered
batch writes the same points (same series and timestamp) and so overwrites, never duplicates.

Messages come in chunks (every complete message of one socket read, :mod:`parkwatch.mqttio`);
a chunk is parsed and encoded in one go and its lines handed to the writer together.

Flush policy: the writer sends a batch at ``batch_lines`` lines (large batches are cheap for
InfluxDB), or when the messages waiting on it reach half the acknowledgement window
(``receive_maximum``) — the broker sends nothing past the window until acknowledgements come
back, so waiting for more lines would only stall it — or after ``flush_interval_s``. Opt-in
(``idle_flush_lines``, 0 by default): while no write is in flight, also at that many lines
(sooner under a steady load, for more database CPU).

Overflow policy: the broker sends at most ``receive_maximum`` unacknowledged messages (MQTT
v5 flow control), the client stops reading the socket while the messages it handed over hold
more than ``max_held_bytes``, and the writer holds a bounded number of batches; when InfluxDB
is slow or down, writes wait, acknowledgements stop, and the broker stops sending — memory
stays flat and the backlog waits in the broker's queue for this session.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import operator
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from typing import Any, cast

import orjson

from ingest import counters
from ingest.counters import QUALITY_FIELD, CounterWatch, Decrease
from ingest.metrics import IngestMetrics
from ingest.sequence import SeqCounts, SeqTracker, Verdict
from ingest.settings import IngestSettings
from parkwatch import hotpath, topics
from parkwatch.influx import InfluxReader, InfluxRejectedError, InfluxWriter, ensure_database
from parkwatch.mqttio import FastClient, Message, MqttError
from parkwatch.retry import Backoff, OutageLog
from parkwatch.site import SiteRegistry
from parkwatch.status_http import serve_status, status_app
from parkwatch.wire import (
    AcceptedReading,
    Limits,
    ParsedBatch,
    Reason,
    Rejection,
    deadletter_payload,
    parse_batch,
    plain_message,
)

log = logging.getLogger(__name__)

# verdicts that change no seq count (a rival's batch is counted when the rival is decided)
_NOTHING_COUNTED = (Verdict.NEXT, Verdict.FIRST, Verdict.HELD)


@dataclass
class _Chunk:
    messages: list[Message]
    done: bool = False


class AckTracker:
    """Releases (acknowledges) chunks of messages in arrival order once each is handled (MQTT
    v5 §4.6 asks PUBACKs in the order the PUBLISHes came), even when later ones finish first."""

    def __init__(self, release: Callable[[list[Message]], object]) -> None:
        self._release = release
        self._queue: deque[_Chunk] = deque()

    def received(self, messages: list[Message]) -> _Chunk:
        entry = _Chunk(messages)
        self._queue.append(entry)
        return entry

    def done(self, entry: _Chunk) -> None:
        entry.done = True
        while self._queue and self._queue[0].done:
            self._release(self._queue.popleft().messages)

    def __len__(self) -> int:
        return sum(len(entry.messages) for entry in self._queue)


class _Handled:
    """One message of a chunk, parsed: what to store and what to dead-letter."""

    # a plain class with slots: one is built per message received (a dataclass with
    # default factories cost more than parsing a one-reading message)
    __slots__ = ("parsed", "payload", "topic")

    def __init__(self, topic: str, payload: bytes, parsed: ParsedBatch) -> None:
        self.topic = topic
        self.payload = payload
        self.parsed = parsed


# a scanned message stored as it came (nearly every one): its topic, payload, source, seq and
# its share of the chunk's lines (their count, values and newest time). A tuple, not a
# _Handled with its ParsedBatch: those two cost an eighth of a one-reading message's
# handling, and only a refused batch (_store) or a dead letter needs them
_Ok = tuple[str, bytes, "_Source", int, int, int, int]


class _Lines:
    """A chunk's lines in message order, with their values and newest time (the metrics')."""

    __slots__ = ("lines", "newest", "values")

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.values = 0
        self.newest = 0

    def add(self, lines: list[str], values: int, newest: int) -> None:
        if lines:
            self.lines += lines
            self.values += values
            self.newest = max(self.newest, newest)


class _Source:
    """What handling a message needs of its data topic, worked out once per topic (a gateway
    publishes on the same one every time): per message, parsing the topic, looking up the
    gateway's meters and deciding whether its seq is tracked cost as much as decoding a
    one-reading message."""

    __slots__ = ("gateway", "key", "meters", "park", "plain", "scan", "topic", "tracked")

    def __init__(self, topic: topics.DataTopic, registry: SiteRegistry, tracked: bool) -> None:
        self.topic = topic
        self.park, self.gateway = topic.park, topic.gateway
        self.key = (topic.park, topic.gateway)
        self.plain = topic.park in registry.parks  # else only the careful path can say why
        self.meters = registry.gateway_meters(topic.park, topic.gateway)
        self.tracked = tracked
        # what the compiled run (hotpath.scan_run) takes of it, in one attribute: gateway,
        # meters and the seq key where tracked; None where its messages are not scanned
        self.scan = (
            (self.gateway, self.meters, self.key if tracked else None) if self.plain else None
        )


def _failed(
    topic: str, payload: bytes, park: str, gateway: str, error: Exception, seq: int | None = None
) -> _Handled:
    """A message whose handling raised: a bug, not bad input (parse_batch never raises on
    input). Called in the ``except`` block. The whole message becomes a dead letter, so that it
    can be replayed once fixed, and ingest goes on: leaving it unacknowledged would stall every
    later acknowledgement behind it."""
    log.exception("handling a message on %s failed; dead-lettered", topic)
    parsed = ParsedBatch(park, gateway, seq, message_rejected=True)
    parsed.rejections.append(Rejection(Reason.INTERNAL_ERROR, repr(error)))
    return _Handled(topic, payload, parsed)


def _failed_with(
    error: BaseException, topic: str, payload: bytes, source: _Source, seq: int | None
) -> _Handled:
    """:func:`_failed` for an exception the compiled run (``hotpath.scan_run``) caught and
    handed back: raised again here so that the log has it, with its traceback."""
    try:
        raise error
    except Exception as exc:
        failed = _failed(topic, payload, source.park, source.gateway, exc, seq)
    del error  # the traceback holds this frame, whose ``error`` would hold the traceback
    return failed


def encode_lines(readings: list[AcceptedReading]) -> list[str]:
    """Accepted readings → line protocol, for many readings (a whole chunk) at once: compiled
    (``parkwatch/_hotpath.pyx``: each float in a plain decimal that reads back exactly, or as
    ``repr`` writes it) where every value is a finite float, else :func:`encode_lines_py`."""
    if _encode_compiled is not None:
        lines: list[str] | None = _encode_compiled(readings, _QUALITY_FIELD)
        if lines is not None:
            return lines
    return encode_lines_py(readings)


def encode_lines_py(readings: list[AcceptedReading]) -> list[str]:
    """Accepted readings → line protocol in Python, for any values the wire accepts.

    Every value is a finite float and every quantity name a registry name
    (``[a-z][a-z0-9_]*``), so the JSON text of a reading's values is its field set once the
    quotes go and ``:`` becomes ``=``. orjson writes all the values of all the readings in
    one call, each float in its shortest round-trip form (as ``repr``, but ``1e-7`` for
    ``1e-07``, which InfluxDB reads alike): half the cost of a ``repr`` per value. The series
    key is computed once per meter by the site registry.
    """
    if not readings:
        return []
    text = orjson.dumps(list(map(_VALUES, readings))).decode()
    fields = text[2:-2].replace('"', "").replace(":", "=").split("},{")
    quality = _QUALITY_FIELD
    # unpacking each reading is cheaper than three attribute look-ups on it
    return [
        f"{meter.series} {f}{'' if s == 'ok' else quality[s]} {t}"
        for (meter, t, _, s), f in zip(readings, fields, strict=True)
    ]


# the parts of an AcceptedReading, fetched by C over a whole list (map) rather than by a
# Python loop per reading
_TIME = operator.itemgetter(1)
_VALUES = operator.itemgetter(2)

_QUALITY_FIELD = QUALITY_FIELD
# the encoder compiled, or None where the extension is not built (parkwatch.hotpath)
_encode_compiled = hotpath.encode_lines
# _handle's loop over a run of messages, compiled (None: not built, or a stale build), and
# where it stopped with the message it hands back
_scan_run = hotpath.scan_run
_NEXT = SeqTracker.observe_next  # as defined: scan_run may take its common case over
_SCAN_FRESH = hotpath.SCAN_FRESH
_SCAN_GAVE_UP = hotpath.SCAN_GAVE_UP
_SCAN_SEQ = hotpath.SCAN_SEQ
_SCAN_COMMIT_FAILED = hotpath.SCAN_COMMIT_FAILED


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
        self.track_seq = (
            settings.track_seq if settings.track_seq is not None else not settings.share_group
        )
        self.metrics.seq_tracking.set(1 if self.track_seq else 0)
        if not self.track_seq:
            log.info("seq tracking off: the share group spreads each gateway's batches")
        # the gateways whose seq is tracked: those that read a meter (any name could come
        # in a topic, and the tracker keeps state per gateway)
        self._gateways = {
            (park, meter.gateway) for park in registry.parks for meter in registry.meters(park)
        }
        m = self.metrics
        # a verdict may settle many batches at once (a rival's): the counts say how many,
        # against what the metrics show already
        self._seq_shown = SeqCounts()
        self._seq_counters = {
            "gaps": m.seq_gaps,
            "late": m.seq_late,
            "replays": m.seq_replays,
            "restarts": m.seq_restarts,
            "outliers": m.seq_outliers,
        }
        self.counters = CounterWatch()
        # per data topic: a gateway sends on the same one every time
        self._sources: dict[str, _Source] = {}

    def new_writer(self) -> InfluxWriter:
        """The writer ``run`` uses, built from the settings (opens nothing until entered)."""
        s = self.settings
        return InfluxWriter(
            s.influx,
            batch_lines=s.batch_lines,
            flush_interval_s=s.flush_interval_s,
            max_in_flight=s.writes_in_flight,
            gzip_level=s.gzip_level,
            # the flush policy: see the module docstring
            flush_units=max(1, s.receive_maximum // 2),
            idle_lines=s.idle_flush_lines or None,  # 0: off (the default)
        )

    async def run(self) -> None:
        s = self.settings
        warn_without_compiled_loops()
        writer = self.new_writer()
        async with writer:
            self.writer = writer
            self.metrics.tally.writer_stats = writer.stats
            self.metrics.tally.writes_shown = writer.stats.batches_written
            # read at scrape time: 0 while the writer is retrying through an outage
            self.metrics.database_up.set_function(lambda: 0.0 if writer.outage.is_down else 1.0)
            await ensure_database(s.influx, log)
            backoff = Backoff()
            while True:
                try:
                    await self._session(writer)
                except MqttError as exc:
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
        client = FastClient(
            s.mqtt,
            s.client_id,
            clean_start=False,
            session_expiry_s=s.session_expiry_s,
            receive_maximum=s.receive_maximum,
            max_held_bytes=s.max_held_bytes,
            # dead letters go out while messages are handled concurrently
            max_inflight=s.receive_maximum,
            read_pause_s=s.read_pause_ms / 1000,
        )
        async with client:
            filters = self.topic_filters()
            await client.subscribe(filters, qos=1)
            self.broker_outage.recovered()
            self.metrics.broker_up.set(1)
            self.subscribed.set()
            log.info("ingest %s subscribed to %s", s.client_id, ", ".join(filters))
            acks = AckTracker(client.release)
            handlers: set[asyncio.Task[None]] = set()
            try:
                async for chunk in client.chunks():
                    entry = acks.received(chunk)
                    self.metrics.tally.in_progress += len(chunk)
                    task = asyncio.create_task(self._handle(client, writer, chunk))
                    handlers.add(task)
                    task.add_done_callback(handlers.discard)
                    task.add_done_callback(
                        lambda t, e=entry: self._finished(t, e, acks)  # type: ignore[misc]
                    )
            finally:
                # The connection is gone: acknowledgements can no longer be sent, and the broker
                # will deliver these messages again. Stop working on them.
                for task in handlers:
                    task.cancel()
                await asyncio.gather(*handlers, return_exceptions=True)
                self.metrics.tally.in_progress = 0

    def _finished(self, task: asyncio.Task[None], entry: _Chunk, acks: AckTracker) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            self.metrics.tally.in_progress -= len(entry.messages)
            acks.done(entry)
        elif not isinstance(error, MqttError):
            # not acknowledged, so the broker delivers it again after a reconnect
            log.error("message handling failed; left unacknowledged", exc_info=error)

    async def _handle(self, client: FastClient, writer: InfluxWriter, chunk: list[Message]) -> None:
        received = self.clock()
        received_ms = int(received * 1000)
        # counts per chunk go to plain numbers, folded into the metrics when they are read
        tally = self.metrics.tally
        tally.messages += len(chunk)
        handled: list[_Handled | _Ok] = []
        # whether handled holds a _Handled (which may carry rejections) or only _Ok ones
        careful = False
        out = _Lines()
        # handled[settled:] hold readings not yet through the counter watch and the encoder
        settled = 0
        # _parse's common case inlined (one call per message instead of five, at one
        # reading per message a tenth of ingest's CPU): a plainly valid message on a known
        # topic, scanned straight to its lines where the extension is built, else decoded;
        # anything else, and any failure, goes through _parse, which says why
        at = received_ms / 1000
        newest_ok = received_ms + self.limits.max_future_ms
        max_bytes, max_readings = self.limits.max_bytes, self.limits.max_readings
        sources = self._sources
        # CounterWatch.scan's calls made here (at one reading per message a Python call more
        # per message costs a tenth of what the scan saves), the seq tracked between the
        # scan and the counter watch: a message dead-lettered there leaves the watch as it was
        scan = counters.scan_message if counters.SCANNING else None
        qualities = counters.QUALITY_NAMES
        commit_args = self.counters.commit_args()
        next_in_line = self.sequences.observe_next
        # the tracker's own observe_next, bound to this tracker: the run may do its
        # no-time-passed case itself on the runs it reads from self.sequences
        own = getattr(next_in_line, "__func__", None) is _NEXT
        own = own and getattr(next_in_line, "__self__", None) is self.sequences
        tracker = self.sequences if own else None
        lines = out.lines
        # the loop's common case compiled over a run of messages (parkwatch._hotpath.scan_run):
        # it stops at a message that needs more, saying how far it got with it (stage)
        run = _scan_run if scan is not None else None
        index, count = 0, len(chunk)
        scanned: Any = None
        error: BaseException | None = None
        while index < count:
            stage = _SCAN_FRESH
            if run is not None:
                if settled < len(handled):
                    # the counter watch goes in arrival order: the readings before first
                    self._settle(handled, settled, out)
                index, stage, scanned, error, values, newest = run(
                    chunk,
                    index,
                    sources,
                    max_bytes,
                    newest_ok,
                    max_readings,
                    qualities,
                    commit_args,
                    next_in_line,
                    at,
                    handled,
                    lines,
                    self._show_decreases,
                    tracker,
                )
                settled = len(handled)
                out.values += values
                if newest > out.newest:
                    out.newest = newest
                if index >= count:
                    break
            message = chunk[index]
            index += 1
            # in arrival order and without awaiting: seq and counter tracking rely on it
            topic, payload = message[0], message[1]
            source = sources.get(topic)
            plain = None
            tried = False
            if source is not None and source.plain and len(payload) <= max_bytes:
                if stage == _SCAN_FRESH:
                    scanned = None
                    if scan is not None and settled < len(handled):
                        # the counter watch goes in arrival order: the readings before first
                        self._settle(handled, settled, out)
                        settled = len(handled)
                    try:
                        if scan is not None:
                            scanned = scan(
                                payload,
                                source.gateway,
                                source.meters,
                                newest_ok,
                                max_readings,
                                qualities,
                            )
                        if scanned is None:
                            plain = plain_message(
                                payload, source.gateway, source.meters, newest_ok, max_readings
                            )
                            tried = True
                    except Exception:  # a bug: _parse meets it again and dead-letters it
                        scanned = plain = None
                elif stage == _SCAN_GAVE_UP:  # scan_run's scan gave up: as scan's None above
                    try:
                        plain = plain_message(
                            payload, source.gateway, source.meters, newest_ok, max_readings
                        )
                        tried = True
                    except Exception:
                        plain = None
                if scanned is not None:
                    seq = scanned.seq
                    failed = None
                    if error is not None:  # scan_run's observe_next or commit raised
                        at_seq = seq if stage == _SCAN_COMMIT_FAILED else None
                        failed = _failed_with(error, topic, payload, source, at_seq)
                        error = None
                    # _observe, its common case first (observe_next)
                    elif source.tracked and stage != _SCAN_COMMIT_FAILED:
                        try:
                            if stage == _SCAN_SEQ or not next_in_line(source.key, seq, at):
                                self._seq_observed(source.key, seq, at)
                        except Exception as exc:
                            failed = _failed(topic, payload, source.park, source.gateway, exc)
                    if failed is None:
                        try:
                            its_lines, values, newest, decreases = scanned.commit(*commit_args)
                        except Exception as exc:  # a bug: as _flag_counters, this message only
                            failed = _failed(topic, payload, source.park, source.gateway, exc, seq)
                    scanned = None
                    if failed is not None:
                        handled.append(failed)
                        careful = True
                    else:
                        if decreases:
                            self._show_decreases(decreases)
                        handled.append(
                            (topic, payload, source, seq, len(its_lines), values, newest)
                        )
                        if its_lines:  # _Lines.add inlined
                            lines += its_lines
                            out.values += values
                            if newest > out.newest:
                                out.newest = newest
                    settled = len(handled)
                    continue
            careful = True
            if plain is None or source is None:
                one = self._parse(message, received_ms, try_plain=not tried)
                if one is not None:
                    handled.append(one)
                continue
            parsed = ParsedBatch(source.park, source.gateway, plain[0], plain[1])
            failed = self._observe(source, topic, payload, parsed, at)
            handled.append(_Handled(topic, payload, parsed) if failed is None else failed)
        self._settle(handled, settled, out)
        if out.lines and await self._store(
            writer, handled, out.lines, len(chunk), out.values, out.newest
        ):
            careful = True  # a refused message's _Ok became a _Handled with the reason
        if careful:
            letters = [one for one in handled if type(one) is _Handled and one.parsed.rejections]
            if letters:
                await self._deadletters(client, letters, received_ms)
        tally.latency(self.clock() - received)

    def _observe(
        self, source: _Source, topic: str, payload: bytes, parsed: ParsedBatch, at: float
    ) -> _Handled | None:
        """Track a plain message's seq if its gateway's is tracked; the message dead-lettered
        as a whole if that failed (a bug), else None."""
        if source.tracked:
            try:
                self._seq_observed(source.key, parsed.seq, at)  # type: ignore[arg-type]
            except Exception as exc:
                return _failed(topic, payload, parsed.park, parsed.gateway, exc)
        return None

    def _seq_observed(self, key: tuple[str, str], seq: int, at: float) -> None:
        """A tracked gateway's batch to the seq tracker, the metrics brought up to its counts
        if the verdicts changed any."""
        verdicts = self.sequences.observe(key, seq, at)
        if len(verdicts) != 1 or verdicts[0] not in _NOTHING_COUNTED:
            self._show_seq_counts()

    def _settle(self, handled: list[_Handled | _Ok], start: int, out: _Lines) -> None:
        """The counter watch and the encoder over the readings of ``handled[start:]`` (each a
        _Handled: _handle settles before every _Ok), in one list (per message, each cost a
        call and a list, which at one reading per message was a tenth of ingest's own CPU);
        each message keeps its share of the lines for a lone retry."""
        if start >= len(handled):
            return
        pending = cast(list[_Handled], handled[start:])
        accepted = list(chain.from_iterable([one.parsed.readings for one in pending]))
        if not accepted:
            return
        accepted = self._flag_counters(accepted, pending)
        handled[start:] = pending  # a message the watch failed on is dead-lettered
        lines = encode_lines(accepted)
        if lines:
            # the totals by C over the whole list (no bookkeeping per message: only a
            # refused batch needs each message's share, see _store)
            out.add(lines, sum(map(len, map(_VALUES, accepted))), max(map(_TIME, accepted)))

    def _parse(self, message: Message, received_ms: int, try_plain: bool = True) -> _Handled | None:
        topic = message.topic
        source = self._sources.get(topic)
        if source is None:
            try:
                data_topic = topics.parse_data_topic(topic)
            except topics.TopicError as exc:
                log.warning("ignoring message on %s: %s", topic, exc)
                self.metrics.rejected.labels("bad_topic").inc()
                return None
            if len(self._sources) >= 10_000:  # a bound, whatever topics clients make up
                self._sources.clear()
            key = (data_topic.park, data_topic.gateway)
            tracked = self.track_seq and key in self._gateways
            source = self._sources[topic] = _Source(data_topic, self.registry, tracked)
        data_topic = source.topic
        try:
            parsed = parse_batch(
                message.payload, data_topic, self.registry, received_ms, self.limits, try_plain
            )
            self._track_seq(parsed, received_ms / 1000)
            return _Handled(topic, message.payload, parsed)
        except Exception as exc:
            return _failed(topic, message.payload, data_topic.park, data_topic.gateway, exc)

    def _flag_counters(
        self, accepted: list[AcceptedReading], handled: list[_Handled], start: int = 0
    ) -> list[AcceptedReading]:
        """Counters that went back (:mod:`ingest.counters`), over the readings of
        ``handled[start:]`` in arrival order; what to store. A failure (a bug) falls back to
        message by message, so that it costs only the message it happens in."""
        try:
            decreases = self.counters.flag(accepted)
        except Exception:
            log.exception("the counter watch failed on a chunk; going message by message")
            decreases = []
            for i in range(start, len(handled)):
                one = handled[i]
                if one.parsed.readings:
                    try:
                        decreases += self.counters.flag(one.parsed.readings)
                    except Exception as exc:
                        parsed = one.parsed
                        handled[i] = _failed(
                            one.topic, one.payload, parsed.park, parsed.gateway, exc, parsed.seq
                        )
            accepted = list(chain.from_iterable([one.parsed.readings for one in handled[start:]]))
        self._show_decreases(decreases)
        return accepted

    def _show_decreases(self, decreases: list[Decrease]) -> None:
        for decrease in decreases:
            self.metrics.counter_decreases.labels(decrease.quantity).inc()
            log.info(
                "%s of meter %s went back from %r to %r",
                decrease.quantity,
                decrease.meter,
                decrease.before,
                decrease.after,
            )

    def _track_seq(self, parsed: ParsedBatch, received: float) -> None:
        """Make gaps, late batches, replays and restarts visible (:mod:`ingest.sequence`).
        Every batch is written whatever its verdict: a replay overwrites the same points."""
        key = (parsed.park, parsed.gateway)
        if parsed.seq is None or parsed.message_rejected or key not in self._gateways:
            return
        if not self.track_seq:
            return  # a replica of a share group sees part of each sequence only
        verdicts = self.sequences.observe(key, parsed.seq, received)
        if len(verdicts) == 1 and verdicts[0] in _NOTHING_COUNTED:
            return  # nearly every batch
        self._show_seq_counts()

    def _show_seq_counts(self) -> None:
        """Bring the seq metrics up to the tracker's counts."""
        counts, shown = self.sequences.counts, self._seq_shown
        for name, counter in self._seq_counters.items():
            added = getattr(counts, name) - getattr(shown, name)
            if added:
                counter.inc(added)
                setattr(shown, name, getattr(counts, name))

    async def _store(
        self,
        writer: InfluxWriter,
        handled: list[_Handled | _Ok],
        lines: list[str],
        messages: int,
        values: int,
        newest_ms: int,
    ) -> bool:
        """Write a chunk's lines; ``values`` and ``newest_ms`` are theirs, for the metrics.
        ``lines`` are the readings of ``handled``, message after message, in order. True if
        the database refused some message's lines (its rejection added, an _Ok one made a
        _Handled for its dead letter)."""
        readings = len(lines)
        refused = False
        try:
            await writer.write(lines, units=messages)
        except InfluxRejectedError:
            # The batch this chunk shared was refused; try each message's lines alone so that
            # another message's bad line cannot cost this one's good readings.
            readings = values = newest_ms = 0
            at = 0
            for i, one in enumerate(handled):
                if type(one) is tuple:
                    topic, payload, source, seq, count, its_values, its_newest = one
                else:
                    held = cast(_Handled, one)
                    count = len(held.parsed.readings)
                if not count:
                    continue
                at += count
                try:
                    await writer.write_now(lines[at - count : at])
                except InfluxRejectedError as exc:
                    rejection = Rejection(Reason.DATABASE_REJECTED, str(exc))
                    if type(one) is tuple:
                        parsed = ParsedBatch(source.park, source.gateway, seq)
                        handled[i] = _Handled(topic, payload, parsed)
                    else:
                        parsed = held.parsed
                    parsed.rejections.append(rejection)
                    refused = True
                    continue
                readings += count
                if type(one) is tuple:
                    values += its_values
                    newest_ms = max(newest_ms, its_newest)
                else:
                    values += sum(map(len, map(_VALUES, held.parsed.readings)))
                    newest_ms = max(newest_ms, *map(_TIME, held.parsed.readings))
            if not readings:
                return refused
        tally = self.metrics.tally
        tally.readings += readings
        tally.values += values
        tally.lag = max(0.0, self.clock() - newest_ms / 1000)
        return refused

    async def _deadletters(
        self, client: FastClient, letters: list[_Handled], received_ms: int
    ) -> None:
        sent: list[asyncio.Future[None]] = []
        for one in letters:
            parsed = one.parsed
            for rejection in parsed.rejections:
                self.metrics.rejected.labels(rejection.reason.value).inc()
            body = deadletter_payload(one.topic, parsed, one.payload, received_ms)
            # a park that is not configured gets no topic of its own: the sender chose its name
            target = (
                topics.deadletter_topic(parsed.park)
                if parsed.park in self.registry.parks
                else topics.UNKNOWN_PARK_DEADLETTER
            )
            if log.isEnabledFor(logging.DEBUG):
                log.debug("dead letter for %s seq=%s: %s", one.topic, parsed.seq, parsed.rejections)
            try:
                sent.append(await client.send(target, body, qos=1))
            except MqttError as exc:
                self._deadletter_failed(exc)
        # Best effort: the good points are stored and the rejections counted; waiting long
        # for a dead letter would hold back every later acknowledgement (a broken connection
        # is noticed by the session loop, which reconnects).
        results = await asyncio.gather(
            *(asyncio.wait_for(future, self.settings.mqtt.connect_timeout_s) for future in sent),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                self._deadletter_failed(result)
            else:
                self.deadletter_outage.recovered()
                self.metrics.deadletters.inc()

    def _deadletter_failed(self, error: BaseException) -> None:
        self.metrics.deadletters_failed.inc()
        self.deadletter_outage.failed(error)

    # --- /metrics and /health -------------------------------------------------------------

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while the broker and the database are reachable and writes succeed."""
        async with InfluxReader(self.settings.influx) as reader:
            database = await reader.ping()
        writer_ok = self.writer is not None and not self.writer.outage.is_down
        broker = self.subscribed.is_set()
        ok = database and broker and writer_ok
        return ok, {
            "broker": broker,
            "database": database,
            "writes_failing": not writer_ok,
            # off with a share group: the seq metrics say nothing then
            "seq_tracking": self.track_seq,
        }

    def serve_http(self) -> contextlib.AbstractAsyncContextManager[object]:
        """Serve /metrics and /health on the settings' ``http_host:http_port``."""
        s = self.settings
        app = status_app("ingest", self.metrics.registry, self.health)
        return serve_status(app, s.http_host, s.http_port, "ingest")


def warn_without_compiled_loops() -> None:
    """The compiled loops are optional at install (pyproject.toml): say once, at start, when
    this process runs the Python ones, which cost a third to a half more CPU per reading."""
    if not hotpath.COMPILED:
        log.warning(
            "parkwatch._hotpath is not built (no C compiler or Python headers at install?): "
            "ingest runs its slower Python loops; reinstall with gcc and python3-dev present"
        )


def tune_gc() -> None:
    """Ingest allocates a few short-lived dicts per reading and keeps little: with the default
    thresholds the cyclic GC ran often enough to cost a fifth of the throughput. Freeze the
    long-lived start-up objects and collect the young generation less often."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


def event_loop_factory(settings: IngestSettings) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop ingest runs on (``settings.event_loop``)."""
    if settings.event_loop == "uvloop":
        import uvloop  # only ingest's process runs on it

        return uvloop.new_event_loop
    return asyncio.new_event_loop


async def run_ingest(settings: IngestSettings) -> None:
    """Entry point of ``parkwatch ingest``: the service plus its /metrics and /health."""
    tune_gc()
    registry = SiteRegistry.from_files(settings.sites)
    service = IngestService(settings, registry)
    async with contextlib.AsyncExitStack() as stack:
        if settings.http_port:
            await stack.enter_async_context(service.serve_http())
        await service.run()
