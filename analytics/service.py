"""The analytics service: its parks' readings in; events and derived series out.

One :class:`~analytics.engine.engine.ParkEngine` per park in its site files (analytics shards
by park: each worker subscribes only to its parks' data and status topics). Every message is
validated exactly as ingest validates it, so analytics only sees readings ingest stores, and
fed to its park's engine; then whatever is complete is closed and run through the detectors.
A ticker closes slots of gateways that fell silent.

What the engine produces goes through a bounded queue to one output task, so a slow write
never stalls the stream: points and events to InfluxDB (``anomaly``, ``demand_15m``, virtual
meters), events to ``pw/v1/{park}/alerts/{kind}`` at QoS 1. When the queue is full the stream
waits (events are never dropped). With its outputs the worker writes a progress mark per park
(``analytics_progress``: the park clock's data time its outputs are complete to, and the
slowest gateway's data time the detectors have had, :meth:`ParkEngine.analysed_ms`, and each
heard gateway's own).

At start-up the engine is restored from its last snapshot (``state_dir``) when there is one,
then refilled from InfluxDB's raw data since then (at most ``rebuild_s``); a park with no usable
snapshot is rebuilt from the last ``rebuild_s`` of raw data (from the slice grid, so rebuilds
give the same event ids), so a restart, an upgrade or a new worker loses no context. What the
refill finds is written from the earlier worker's progress mark on (its horizon: where the
slowest gateway's analysed data ended, for a meter's events and points its gateway's — a
gateway the earlier worker never heard has none: all of its data is new; ``warmup_s`` ago with
no mark): an event message only if InfluxDB does not hold that event at that time or later
(``updated_ms``), a derived point from an hour before the horizon on (a point written again
overwrites itself); an event InfluxDB holds
open, last updated between the horizon and the refill's data clock, that the refill did not
find again is closed (``superseded``). A refill given up pins this worker's marks before the
hole, so the next one refills it.
Once a mark says an earlier worker stopped there (events of its outage: nobody published them),
the messages of the last ``publish_late_s`` and the latest of each event still open are also
published, flagged late.
History is read a slice (``history_slice_s``) at a time, in time order, a slice retried a few
times on an unreachable InfluxDB: memory stays bounded by a slice, and the detectors give the
same events in any chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from analytics.accounting.job import RollupConfig, RollupJob, ensure_retention
from analytics.detectors import DETECTORS
from analytics.engine.clocks import NEVER
from analytics.engine.contract import DerivedPoint, SeriesKey
from analytics.engine.engine import Advanced, Batch, ParkEngine, Rows
from analytics.settings import AnalyticsSettings
from analytics.warm import freeze_start_up, keep_freed_memory, warm_up
from parkwatch import mqtt, topics
from parkwatch.events import ANOMALY_MEASUREMENT, Estimate, Event, Family, Severity, State
from parkwatch.formula import parse_formula
from parkwatch.influx import (
    InfluxError,
    InfluxReader,
    InfluxUnavailableError,
    InfluxWriter,
    Series,
    ensure_database,
    quote_ident,
)
from parkwatch.influx import quote_string as qs
from parkwatch.lineprotocol import encode_point
from parkwatch.retry import Backoff, OutageLog
from parkwatch.sessions import SessionLoop
from parkwatch.site import SiteRegistry
from parkwatch.status_http import serve_status, status_app
from parkwatch.tasks import honour_cancel
from parkwatch.wire import parse_batch

log = logging.getLogger(__name__)
T = TypeVar("T")

# Raised whenever a detector's state changes shape, so an older snapshot is set aside
# with a clear log line (2: the baseline's slow scale replaced its variability record; the leak
# detectors learn runs and stuck starts; 3: …and the top a meter clipped at; 4: the baseline
# keeps each row's quantum, its smallest change; 5: …its quantum's candidate and count, and an
# offset per day type instead of one; 6: …the workdays' recent level per bin and what each
# day type's last day began with; 7: meter faults skip a silence's excess in a meter's usual
# spacing, and count silences back to back; 8: the leak detector watches an open leak net of
# its estimate — the estimate, the ring's hours net of it, which were an open leak's, the
# CUSUMs both ways, the hour the estimate last moved; 9: meter faults keep the sum of each
# row's gap squares, and of a run of silences', for the spread of its gaps; 10: the leak
# detector keeps each zone's first hour with data, its age for its young weeks, and the hour an
# excess began to be held; compressed air's production model; a stuck-check row per series;
# 11: …the hour a flat zone's "blind" decision was last dropped, its pooled hours after it;
# 12: …an open meter fault's excess per unit of its meter's flow, its hours learnt net of it;
# 13: the level-shift detector's state, on fast-sampled meters: rings of readings and medians;
# 14: the leak detector keeps whether the added test opened an event, its fitted ``a``, the
# last hour's added fit, and an open leak's level before its last big up-move).
SNAPSHOT_VERSION = 14
# a slice of history is read again this many times when InfluxDB is unreachable for a moment
HISTORY_RETRIES = 8
# per park, written with its outputs: ``through_ms`` (the park clock's data time the engine's
# outputs are complete to) and ``analysed_ms`` (the slowest gateway's data time the detectors
# have had: a silent or lagging gateway's backlog may still come in before it, and a restart
# writes from there); one point per park and hour, at the hour of ``through_ms``
PROGRESS_MEASUREMENT = "analytics_progress"
# …and per gateway heard, ``analysed_ms@{gateway}``: its own data time analysed (a gateway
# without one was never heard, so none of its data was analysed: all of it is new to a refill)
GATEWAY_MARK = "analysed_ms@"
HOUR_MS = 3_600_000
# a gateway's own mark is rewritten once it has moved this far (not with every batch: a park
# of thousands of gateways would make every mark that wide). After a crash, the mark's lag is
# the window in which a refill takes the gateway's data as new: an event found there that the
# live worker found at another detected time is held back for the stored one (:func:`_held_back`);
# a mark a few minutes wider is cheap, so the window is kept to a few minutes (a clean stop
# writes them all, ``_drain``)
GATEWAY_MARK_EVERY_MS = 5 * 60_000


@dataclass
class Horizon:
    """Where a refill's outputs start for one park: what an earlier worker already stored."""

    # its progress mark's ``analysed_ms`` (capped at rebuild_s), or the default without one
    from_ms: int
    marked: bool  # a mark was found: an earlier worker stopped there
    # per meter, where its own outputs start, when the mark says per gateway: a real meter's
    # gateway's own mark alone (capped at rebuild_s; analysed_ms, max-merged, may be past a
    # gateway first heard with a backlog), or, a gateway the earlier worker never heard, NEVER
    # (nothing of it was written); a virtual meter's the earliest of its formula's meters'; else
    # (no mark, or an older worker's) from_ms
    meter_from: dict[str, int] = field(default_factory=dict)
    # the refill's span's start: an event detected before it cannot be found again by its id
    since_ms: int = 0
    # per zone, the earliest of its meters' (as meter_from: empty without gateway marks)
    zone_from: dict[str, int] = field(default_factory=dict)
    # an output of neither a meter nor a zone: the earliest of all (None: from_ms)
    least_ms: int | None = None
    # event id → the data time of its message InfluxDB holds (the latest written)
    stored: dict[str, int] = field(default_factory=dict)
    # the events whose message InfluxDB holds (or the refill wrote) is an open one
    stored_open: set[str] = field(default_factory=set)
    # the time of the oldest of their points, or the refill's span's start (the events are
    # read back whole from there by :func:`_stored_open`)
    open_since: int = 0
    # (measurement, virtual meter) → its first point stored in the refill's span (none: the
    # span's end): a virtual meter added since is backfilled over the whole span
    virtual_from: dict[tuple[str, str], int] = field(default_factory=dict)
    # the events InfluxDB holds open, updated at or after the refill's data clock (an earlier
    # worker's live clock ran ahead of the data), that the engine does not hold: left to the
    # live engine (:meth:`AnalyticsService._against_stored`), with their points' enterprise
    # tags (an id may have a point per enterprise: its meter moved while it was open)
    pending: dict[str, tuple[Event, list[str | None]]] = field(default_factory=dict)
    # the events InfluxDB holds open that a cold rebuild's engine did not find (detected
    # before it warmed: its silence says nothing), left open until the live engine opens its
    # own of their kind and subject — then closed, superseded, at its detected_at
    held: dict[str, tuple[Event, list[str | None]]] = field(default_factory=dict)
    # (kind, subject) → the id and family of the event InfluxDB holds open of it, one point
    # on its meter's enterprise now (what :meth:`AnalyticsService._settle_stored` carries on)
    open_of: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    # the refill's events held back for a stored one of their kind and subject (``open_of``:
    # carried on in their place) → its id; and those stored ones their event closed in the
    # refill → the close's time (:func:`_keep_new`)
    deferred: dict[str, str] = field(default_factory=dict)
    ended: dict[str, int] = field(default_factory=dict)
    # their messages, in order: released (:func:`_release_held_back`) if the stored events
    # cannot be read after the refill, so that nothing carries on or closes the stored one
    withheld: list[Event] = field(default_factory=list)

    def start_of(self, event: Event) -> int:
        """Where this refill's messages of ``event`` start: its meter's (a real meter's events
        come from its gateway's data alone), its zone's, or the earliest of all."""
        if event.meter is not None:
            return self.meter_from.get(event.meter, self.from_ms)
        return self.start_of_tags({} if event.zone is None else {"zone": event.zone})

    def start_of_tags(self, tags: Mapping[str, str]) -> int:
        """Where this refill's output tagged ``tags`` starts (a point's, an event's subject)."""
        if "meter" in tags:
            return self.meter_from.get(tags["meter"], self.from_ms)
        least = self.from_ms if self.least_ms is None else self.least_ms
        if "zone" in tags:
            return self.zone_from.get(tags["zone"], least)
        return least


class AnalyticsMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.messages = Counter("pw_analytics_messages", "data messages received", registry=r)
        self.readings = Counter("pw_analytics_values", "values fed to the engines", registry=r)
        self.late = Counter(
            "pw_analytics_late_readings", "readings for slots already closed", registry=r
        )
        self.events = Counter(
            "pw_analytics_events", "event messages", ["kind", "state"], registry=r
        )
        self.points = Counter("pw_analytics_points", "derived points written", registry=r)
        self.alerts_published = Counter(
            "pw_analytics_alerts_published", "events published on the alerts topics", registry=r
        )
        self.alerts_dropped = Counter(
            "pw_analytics_alerts_dropped",
            "alerts not published because the broker was away too long (still in InfluxDB)",
            registry=r,
        )
        self.queue = Gauge("pw_analytics_output_queue", "outputs waiting to be written", registry=r)
        self.open_slots = Gauge("pw_analytics_open_slots", "slots held open", registry=r)
        self.detectors_failed = Gauge(
            "pw_analytics_detectors_failed", "detectors stopped by an error", registry=r
        )
        self.step_seconds = Histogram(
            "pw_analytics_handle_seconds",
            "time to feed a message and run what it completed",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=r,
        )
        self.broker_up = Gauge("pw_analytics_broker_up", "1 while subscribed", registry=r)
        self.database_up = Gauge("pw_analytics_database_up", "0 while writes fail", registry=r)
        self.rollup_points = Counter(
            "pw_analytics_rollup_points", "consumption rollup points written", registry=r
        )
        self.rollup_seconds = Histogram(
            "pw_analytics_rollup_seconds",
            "time of one rollup pass over a park",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )


class AnalyticsService:
    def __init__(self, settings: AnalyticsSettings, registry: SiteRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.engines = {name: ParkEngine(park, DETECTORS) for name, park in registry.parks.items()}
        self.metrics = AnalyticsMetrics()
        self.sessions = SessionLoop(OutageLog(log, f"MQTT broker at {settings.mqtt.url}"))
        self.subscribed = self.sessions.up
        # (park, outputs, the park's progress once they are in: ``PROGRESS_MEASUREMENT``)
        self.outputs: asyncio.Queue[tuple[str, Advanced, dict[str, int]]] = asyncio.Queue(
            settings.output_queue
        )
        # per park, the progress mark as written so far (kept monotone: a refill's engine,
        # behind at first, does not lower it)
        self.progress: dict[str, dict[str, int]] = {}
        self.horizons: dict[str, Horizon] = {}  # per park, where its refill's outputs started
        # per park, each gateway's mark field as last written (``_write``'s throttle)
        self.gateways_written: dict[str, dict[str, int]] = {}
        # per park, the most its marks' analysed_ms may say while a hole is behind (``_pin``)
        self.pinned: dict[str, int] = {}
        # superseding closes' enterprise tags, their stored points' (an id may have two
        # points, its meter moved while it was open): the close lands on each point's series
        self.stored_enterprise: dict[str, list[str | None]] = {}
        # events to publish on the alerts topics, apart from the writes (bounded; when full,
        # the stream waits: an alert is never dropped while the broker is there); and whether
        # each is late (a refill's)
        self.alerts: asyncio.Queue[tuple[str, Event, bool]] = asyncio.Queue(settings.output_queue)
        self.client: aiomqtt.Client | None = None
        self.unpublished: deque[tuple[str, Event, bool]] = deque(maxlen=10_000)
        self.writer: InfluxWriter | None = None
        self.events_written = 0
        self.points_written = 0
        self.warm = asyncio.Event()  # set once warm-up is over and live messages flow
        self.rollups: dict[str, RollupJob] = {}
        self.rollup_config = RollupConfig(
            interval_s=settings.rollup_interval_s,
            recent_s=settings.rollup_recent_s,
            catch_up_s=settings.warmup_s,  # after a start, at least this far back
            retention_policy=settings.rollup_retention_policy,
            raw_retention=settings.raw_retention,
        )

    # --- running -------------------------------------------------------------------------------

    async def run(self, *, freeze_gc: bool = False) -> None:
        """Serve until cancelled. ``freeze_gc``: the service is its process (``run_analytics``):
        once warm, what start-up built is frozen out of the collector's full passes
        (``warm.freeze_start_up``), for the rest of the process. Off, a caller's process
        (tests) keeps its collector as it was."""
        s = self.settings
        async with InfluxWriter(s.influx, flush_interval_s=0.2) as writer:
            self.writer = writer
            await ensure_database(s.influx, log)
            async with contextlib.AsyncExitStack() as stack:
                if s.http_port is not None:
                    app = status_app("analytics", self.metrics.registry, self._health)
                    await stack.enter_async_context(
                        serve_status(app, s.http_host, s.http_port, "analytics")
                    )
                # before subscribing: compiled on the first live window instead, the kernels
                # (seconds with an empty cache) would make its alerts that much late
                await asyncio.to_thread(self._warm_kernels)
                tasks = [
                    asyncio.create_task(self._write_outputs(writer), name="analytics-output"),
                    asyncio.create_task(self._publish_alerts(), name="analytics-alerts"),
                    asyncio.create_task(
                        self.sessions.run(self._session, self._down), name="analytics-mqtt"
                    ),
                ]
                try:
                    restored = self._restore_snapshot()
                    await self._warm_up(restored)
                    if freeze_gc:
                        freeze_start_up()  # the engines and what start-up built live on
                    self.warm.set()
                    tasks.append(asyncio.create_task(self._tick(), name="analytics-ticker"))
                    if s.state_dir is not None:
                        tasks.append(asyncio.create_task(self._snapshots(), name="analytics-snap"))
                    if s.rollups:
                        tasks.append(asyncio.create_task(self._rollups(), name="analytics-rollups"))
                    await asyncio.gather(*tasks)
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    self._save_snapshot()
                    await self._drain(writer)

    def _down(self) -> None:
        self.client = None
        self.metrics.broker_up.set(0)

    async def _session(self) -> None:
        s = self.settings
        async with mqtt.client(s.mqtt, s.client_id) as client:
            for park in self.engines:
                await client.subscribe(topics.data_filter(park), qos=1)
                await client.subscribe(topics.status_filter(park), qos=1)
            self.client = client
            self.metrics.broker_up.set(1)
            self.sessions.connected()
            await self._publish_pending()
            await self.warm.wait()  # messages wait in the client's queue until warm
            async for message in client.messages:
                await self._handle(message)

    async def _handle(self, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            return
        if topic.endswith("/status"):
            self._status(topic, bytes(payload))
            return
        try:
            data_topic = topics.parse_data_topic(topic)
        except topics.TopicError:
            return
        engine = self.engines.get(data_topic.park)
        if engine is None:
            return
        started = time.perf_counter()
        now_ms = int(time.time() * 1000)
        parsed = parse_batch(bytes(payload), data_topic, self.registry, now_ms)
        self.metrics.messages.inc()
        series: list[int] = []
        times: list[int] = []
        values: list[float] = []
        index = engine.index
        for reading in parsed.readings:
            meter = reading.meter.id
            for name, value in reading.q.items():
                i = index.get(SeriesKey(meter, name))
                if i is not None:
                    series.append(i)
                    times.append(reading.t)
                    values.append(value)
        self.metrics.readings.inc(len(series))
        batch = Batch(
            data_topic.gateway,
            parsed.seq,
            np.array(series, dtype=np.int64),
            np.array(times, dtype=np.int64),
            np.array(values, dtype=np.float64),
            now_ms,
        )
        fed = engine.feed(batch)
        advanced = engine.advance(now_ms)
        advanced.late.extend(fed.late)
        advanced.late_readings += fed.late_readings
        self._against_stored(data_topic.park, engine, advanced)
        self.metrics.step_seconds.observe(time.perf_counter() - started)
        await self._emit(data_topic.park, advanced, publish=True)

    def _status(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if len(parts) != 5:
            return
        engine = self.engines.get(parts[2])
        if engine is None:
            return
        text = payload.decode("utf-8", errors="replace").strip().lower()
        dropped = None
        try:
            doc = orjson.loads(payload)
            state = str(doc.get("state", doc.get("status", ""))) if isinstance(doc, dict) else text
            if isinstance(doc, dict) and type(doc.get("dropped")) is int:
                dropped = int(doc["dropped"])
        except orjson.JSONDecodeError:
            state = text
        engine.gateway_status(parts[3], state != "offline", int(time.time() * 1000), dropped)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_s)
            now_ms = int(time.time() * 1000)
            for park, engine in self.engines.items():
                advanced = engine.advance(now_ms)
                self._against_stored(park, engine, advanced)
                await self._emit(park, advanced, publish=True)
            self.metrics.open_slots.set(sum(e.open_slots() for e in self.engines.values()))
            self.metrics.detectors_failed.set(
                sum(len(e.failed_detectors) for e in self.engines.values())
            )

    async def _emit(self, park: str, advanced: Advanced, *, publish: bool) -> None:
        # readings, not (meter, first, last) ranges: a late backlog's range spans many readings
        self.metrics.late.inc(advanced.late_readings)
        if advanced.late:
            job = self.rollups.get(park)
            if job is not None:  # the accounting recomputes the hours they touch
                for meter, first, last in advanced.late:
                    job.mark_late(meter, first, last)
        if publish:
            await self._queue_alerts(park, advanced.events, late=False)
        if advanced.events or advanced.points:
            await self.outputs.put((park, advanced, _progress(self.engines[park])))
            self.metrics.queue.set(self.outputs.qsize())

    def _against_stored(self, park: str, engine: ParkEngine, advanced: Advanced) -> None:
        """Live outputs against the events InfluxDB held open at start-up that the engine does
        not hold. Beyond the refill's data clock (``Horizon.pending``: an earlier worker's live
        clock, closing a silence, ran ahead of the data): a message InfluxDB holds at its time
        or later is neither written nor published again (no second ``opened``), save the close
        of an event it holds open; a stored event the engine does not take over (by its id) is
        closed, superseded, once the engine holds another of its kind and subject or its clock
        has passed the event's time without it. One a cold rebuild left open
        (``Horizon.held``) is closed, superseded, when the engine opens its own of its kind
        and subject (at its detected_at): one open event per kind and subject."""
        horizon = self.horizons.get(park)
        if horizon is None:
            return
        kept = []
        # the ids the engine's events gave way to a pending stored one under: none of their
        # messages is written (an update in the same batch — the adopt took its severity and
        # estimate, so the stored event's next message carries them)
        replaced: set[str] = set()
        for e in advanced.events:
            if e.id in replaced:
                continue
            if horizon.held and e.state is State.OPENED:
                kept.extend(self._close_held(horizon, e))
            if horizon.pending and e.state is State.OPENED and self._carry_pending(park, engine, e):
                replaced.add(e.id)
                continue  # the stored one goes on in its place: no second ``opened``
            at = e.updated_at_ms or e.detected_at_ms
            # a close of an event InfluxDB holds open is never dropped, whatever its time: the
            # engine found the event again (its opening dropped) and nothing else closes it
            closes_stored = e.end_ms is not None and e.id in horizon.stored_open
            if horizon.stored.get(e.id, at - 1) >= at and not closes_stored:
                continue  # stored (and published) by the earlier worker
            kept.append(e)
            horizon.pending.pop(e.id, None)
            if e.id in horizon.stored:  # what InfluxDB now holds of a stored event
                horizon.stored[e.id] = at
                if e.end_ms is None:
                    horizon.stored_open.add(e.id)
                else:
                    horizon.stored_open.discard(e.id)
        advanced.events[:] = kept
        if not horizon.pending or engine.park_emitted is None:
            return
        through = engine.park_emitted * engine.step_ms
        for event_id, (event, enterprises) in list(horizon.pending.items()):
            other = engine.events.open.get((event.kind, event.subject))
            if other is not None and other.id == event_id:  # found again: the engine's now
                del horizon.pending[event_id]
                continue
            if other is None and through <= (event.updated_at_ms or event.detected_at_ms):
                continue  # not reached yet
            end = max(through, event.updated_at_ms or event.detected_at_ms)
            advanced.events.append(self._close_stored(horizon, event, enterprises, end))
            del horizon.pending[event_id]

    def _carry_pending(self, park: str, engine: ParkEngine, opened: Event) -> bool:
        """Whether the engine's event just ``opened`` live, one InfluxDB lacks, gives way to
        a stored one left to the live engine (``Horizon.pending``) of its kind and subject,
        which the engine then holds in its place (carried on, as after a refill:
        :meth:`_settle_stored`): the earlier worker's, found at another detected_at."""
        horizon = self.horizons[park]
        key = (opened.kind, opened.subject)
        current = engine.events.open.get(key)
        if opened.id in horizon.stored or current is None or current.id != opened.id:
            return False  # (closed again in the same batch: nothing to carry on)
        for event_id, (event, enterprises) in horizon.pending.items():
            if (
                (event.kind, event.subject) == key
                and event.family is opened.family
                # its later messages land on the stored point's series (its only one)
                and enterprises == [self._enterprise(park, event)]
            ):
                del horizon.pending[event_id]
                engine.events.adopt(event)
                return True
        return False

    def _close_held(self, horizon: Horizon, opened: Event) -> list[Event]:
        """The closes of the events a cold rebuild left open (``Horizon.held``) of the kind
        and subject the engine has just ``opened`` an event of (none found again by its id:
        the engine holds that one now)."""
        out = []
        for event_id, (event, enterprises) in list(horizon.held.items()):
            if (event.kind, event.subject) != (opened.kind, opened.subject):
                continue
            del horizon.held[event_id]
            if event_id != opened.id:
                end = max(opened.detected_at_ms, event.updated_at_ms or event.detected_at_ms)
                out.append(self._close_stored(horizon, event, enterprises, end))
        return out

    def _close_stored(
        self, horizon: Horizon, event: Event, enterprises: list[str | None], end_ms: int
    ) -> Event:
        """The superseding close at ``end_ms`` of a stored open event, written over each of
        its stored points (their enterprise tags, not the registry's now)."""
        close = _superseding_close(event, end_ms)
        self.stored_enterprise[event.id] = list(enterprises)
        horizon.stored[event.id] = end_ms
        horizon.stored_open.discard(event.id)
        return close

    async def _queue_alerts(self, park: str, events: Sequence[Event], *, late: bool) -> None:
        # alerts go out on their own path: never behind a database write
        for event in events:
            await self.alerts.put((park, event, late))

    # --- outputs -------------------------------------------------------------------------------

    async def _write_outputs(self, writer: InfluxWriter) -> None:
        while True:
            items = [await self.outputs.get()]
            while not self.outputs.empty():
                items.append(self.outputs.get_nowait())
            self.metrics.queue.set(self.outputs.qsize())
            await self._write(writer, items)

    async def _write(
        self,
        writer: InfluxWriter,
        items: Sequence[tuple[str, Advanced, dict[str, int]]],
        *,
        whole: bool = False,
    ) -> None:
        """Write a batch of outputs and, after them, each park's mark; ``whole``: every
        gateway's field in it (on the way out), as for a park an item of which has no outputs
        (a refill's last mark, :meth:`_warm_up`)."""
        lines: list[str] = []
        # the parks whose marks carry every gateway's field
        whole_parks = {park for park, a, _ in items if whole or not (a.events or a.points)}
        # per park, its mark once this batch is in (into self.progress only then)
        marks: dict[str, dict[str, int]] = {}
        for park, advanced, progress in items:
            lines.extend(self._point_line(park, p) for p in advanced.points)
            for event in advanced.events:
                stored = self.stored_enterprise.pop(event.id, None)
                if stored is not None:  # a superseding close: over each stored point
                    lines.extend(event.line(enterprise) for enterprise in stored)
                else:
                    lines.append(event.line(self._enterprise(park, event)))
                self.metrics.events.labels(event.kind, event.state.value).inc()
            mark = marks.setdefault(park, dict(self.progress.get(park, {})))
            for name, at in progress.items():
                mark[name] = max(mark.get(name, at), at)
        n_outputs = len(lines)
        # after the outputs, in the same batch: a mark never runs ahead of what it marks
        # per park, the gateways' fields its mark carries
        gateways_in: dict[str, dict[str, int]] = {}
        for park, mark in sorted(marks.items()):
            if "through_ms" in mark:
                at = mark["through_ms"] // HOUR_MS * HOUR_MS
                # a gateway's own mark when first written, and then once it has moved
                # GATEWAY_MARK_EVERY_MS on: an older one is still a lower bound, and a refill
                # starts the gateway's meters there (:meth:`_horizon`), so it rewrites that
                # much of them at most
                fields = {k: v for k, v in mark.items() if not k.startswith(GATEWAY_MARK)}
                last = self.gateways_written.get(park, {})
                due = gateways_in[park] = {
                    k: v
                    for k, v in mark.items()
                    if k.startswith(GATEWAY_MARK)
                    and (
                        park in whole_parks or k not in last or v >= last[k] + GATEWAY_MARK_EVERY_MS
                    )
                }
                fields.update(due)
                pinned = self.pinned.get(park)
                if pinned is not None:  # a hole behind: the next worker refills from it
                    fields["analysed_ms"] = min(fields.get("analysed_ms", pinned), pinned)
                    for name in fields:
                        if name.startswith(GATEWAY_MARK):
                            fields[name] = min(fields[name], pinned)
                lines.append(encode_point(PROGRESS_MEASUREMENT, {"park": park}, fields, at))
        if not lines:
            return
        try:
            await writer.write(lines)
            self.metrics.database_up.set(1)
        except InfluxError as exc:
            # the writer retries outages itself; this is the database refusing the data
            self.metrics.database_up.set(0)
            log.error("analytics output refused by InfluxDB, dropped: %s", exc)
            # not pinned: a refusal is the data's (a refill would derive and lose it again),
            # and a pin would hold every park of the batch back for the whole process; the
            # dropped outputs are lost live anyway, its progress is not kept
            return
        self.progress.update(marks)
        for park, due in gateways_in.items():
            self.gateways_written.setdefault(park, {}).update(due)
        n_events = sum(len(a.events) for _, a, _ in items)
        self.events_written += n_events
        self.points_written += n_outputs - n_events
        self.metrics.points.inc(n_outputs - n_events)

    def _pin(self, park: str, at_ms: int) -> None:
        """Outputs of ``park`` from ``at_ms`` on may be missing (a refill given up): its marks
        say at most ``at_ms`` for the rest of this process, so the next worker's refill writes
        them (no refill of this one's can: it refills at start-up)."""
        self.pinned[park] = min(self.pinned.get(park, at_ms), at_ms)

    def _point_line(self, park: str, point: DerivedPoint) -> str:
        return encode_point(
            point.measurement, {"park": park, **point.tags}, dict(point.fields), point.t_ms
        )

    def _enterprise(self, park: str, event: Event) -> str | None:
        if event.meter is None:
            return None
        meter = self.registry.meter(park, event.meter)
        return None if meter is None else meter.enterprise

    async def _publish_alerts(self) -> None:
        while True:
            park, event, late = await self.alerts.get()
            await self._publish(park, event, late)
            honour_cancel()  # a PUBACK may have swallowed the shutdown's only cancellation

    async def _publish(self, park: str, event: Event, late: bool = False) -> bool:
        """Publish one alert; one that cannot go now waits for the next session (False)."""
        client = self.client
        if client is None:
            self._keep_unpublished(park, event, late)
            return False
        zone = self.registry.parks[park].zone
        payload = event.to_bytes(zone, late=late)
        try:
            await client.publish(topics.alert_topic(park, event.kind), payload, qos=1)
        except aiomqtt.MqttError:
            self._keep_unpublished(park, event, late)
            return False
        self.metrics.alerts_published.inc()
        return True

    def _keep_unpublished(self, park: str, event: Event, late: bool) -> None:
        if len(self.unpublished) == self.unpublished.maxlen:  # the oldest goes (InfluxDB has it)
            self.metrics.alerts_dropped.inc()
        self.unpublished.append((park, event, late))

    async def _publish_pending(self) -> None:
        # one pass at most: an alert that fails goes back to the end, and retrying it while
        # the session is broken would spin until the session loop noticed
        for _ in range(len(self.unpublished)):
            if not self.unpublished or self.client is None:
                return
            park, event, late = self.unpublished.popleft()
            published = await self._publish(park, event, late)
            honour_cancel()  # as in _publish_alerts: the session must not wait on after one
            if not published:
                return

    async def _drain(self, writer: InfluxWriter) -> None:
        """On the way out: what is queued still goes to InfluxDB (briefly), and each park's
        mark with every gateway's field, queue empty or not: a throttled gateway's field
        (:meth:`_write`) does not lag after a clean stop."""
        items: list[tuple[str, Advanced, dict[str, int]]] = []
        while not self.outputs.empty():
            items.append(self.outputs.get_nowait())
        # the marks as written (self.progress), not the engines': an output cancelled before
        # it was queued is not in, and its mark must not be either; only the parks this worker
        # has written a mark of (not one seeded from the stored mark alone, before any output)
        items.extend((park, Advanced(), {}) for park in self.gateways_written)
        if items:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._write(writer, items, whole=True), timeout=10)

    async def _health(self) -> tuple[bool, dict[str, Any]]:
        async with InfluxReader(self.settings.influx) as reader:
            database = await reader.ping()
        broker = self.subscribed.is_set()
        # a stopped detector leaves the park partly blind: not healthy until it is fixed
        failed = {
            f"{park}/{key}": why
            for park, engine in self.engines.items()
            for key, why in engine.failed_detectors.items()
        }
        ok = database and broker and self.warm.is_set() and not failed
        return ok, {
            "broker": broker,
            "database": database,
            "warm": self.warm.is_set(),
            "output_queue": self.outputs.qsize(),
            "failed_detectors": failed,
        }

    # --- the accounting's rollups -----------------------------------------------------------

    async def _rollups(self) -> None:
        """Every ``rollup_interval_s``: hourly consumption and its days, months and years per
        meter, workshop, enterprise and park (analytics/accounting/job.py)."""
        config = self.rollup_config
        async with (
            InfluxReader(self.settings.influx) as reader,
            InfluxWriter(
                self.settings.influx,
                flush_interval_s=0.2,
                retention_policy=config.retention_policy,
            ) as writer,
        ):
            await ensure_retention(reader, config)
            now_ms = int(time.time() * 1000)
            for park, p in self.registry.parks.items():
                job = self.rollups[park] = RollupJob(p, reader, writer, config)
                horizon = self.horizons.get(park)
                if horizon is not None:
                    # the hours since the earlier worker's mark are caught up, and at least
                    # catch_up_s: the mark is the detectors', and hours in which the earlier
                    # worker's rollups failed (a bug, a refused retention policy) lie behind it
                    job.done_ms = min(horizon.from_ms, now_ms - int(config.catch_up_s * 1000))
            outage = OutageLog(log, "the accounting's rollups")
            while True:
                now_ms = int(time.time() * 1000)
                for park, job in self.rollups.items():
                    started = time.perf_counter()
                    try:
                        written = await job.run(now_ms)
                    except InfluxError as exc:
                        outage.failed(f"{park}: {exc}")
                        continue
                    except Exception:  # a bug here must not stop the detectors
                        log.exception("rollups of %s failed", park)
                        continue
                    outage.recovered()
                    self.metrics.rollup_points.inc(written)
                    self.metrics.rollup_seconds.observe(time.perf_counter() - started)
                await asyncio.sleep(config.interval_s)

    # --- warm-up and snapshots ------------------------------------------------------------

    def _warm_kernels(self) -> None:
        """Compile (or load from numba's cache) every kernel the parks' detectors use, on a
        throwaway engine per park (``analytics.warm``)."""
        started = time.perf_counter()
        for park in self.registry.parks.values():
            try:
                warm_up(park)
            except Exception:  # a speed-up only: the kernels then compile on first use
                log.exception(
                    "park %s: kernel warm-up failed (the lines above are the throwaway warm-up"
                    " engine's, not the live one's); kernels compile on first use",
                    park.park,
                )
        log.info(
            "engine kernels compiled or loaded for %d park(s) in %.1f s",
            len(self.registry.parks),
            time.perf_counter() - started,
        )

    async def _warm_up(self, restored: frozenset[str] = frozenset()) -> None:
        """Read raw data back from InfluxDB through each engine: since its snapshot for the
        parks in ``restored``, the last ``rebuild_s`` for the others (and for snapshots older).
        What it finds is written from the earlier worker's horizon on (:meth:`_horizon`)."""
        now_ms = int(time.time() * 1000)
        async with InfluxReader(self.settings.influx) as reader:
            for park, engine in self.engines.items():
                rebuilding = park not in restored
                # slices a whole number of the engine's slots long: an edge never cuts a slot
                step = engine.step_ms
                slice_ms = max(1, -(-int(self.settings.history_slice_s * 1000) // step)) * step
                # an old snapshot is no worse off than none: the rebuild's span at most
                since = max(engine.now_ms, now_ms - int(self.settings.rebuild_s * 1000))
                if since >= now_ms:
                    continue
                if rebuilding:
                    # on the slice grid (a UTC day by default): every rebuild of the day starts
                    # at the same time, so its events get the same detected_at (and ids)
                    since = since // slice_ms * slice_ms
                # the edges after the first on the grid (a restored park starts mid-slice)
                edges = [since, *range((since // slice_ms + 1) * slice_ms, now_ms, slice_ms)]
                started = time.perf_counter()
                fed = dropped = 0
                lo = since
                try:
                    # without a mark: warm16's rule (a snapshot's time, or the last warmup_s)
                    default = (
                        since if not rebuilding else now_ms - int(self.settings.warmup_s * 1000)
                    )
                    horizon = self.horizons[park] = await self._retried(
                        park, partial(self._horizon, reader, engine, since, now_ms, default)
                    )
                    await self._retried(
                        park, partial(_virtual_from, reader, engine, horizon, since, now_ms)
                    )
                    late = LateAlerts(now_ms - int(self.settings.publish_late_s * 1000))
                    # a slice at a time: a month of a large park does not fit in memory at once
                    for lo, hi in zip(edges, [*edges[1:], now_ms], strict=True):
                        rows = await self._retried(
                            park, partial(history_rows, reader, engine, lo, hi)
                        )
                        for chunk in rows:
                            advanced = engine.feed_rows(chunk)
                            ran = engine.advance(int(chunk.t_ms.max()))
                            advanced.events.extend(ran.events)
                            advanced.points.extend(ran.points)
                            fed += int(chunk.t_ms.size)
                            dropped += _keep_new(advanced, horizon)
                            await self._emit(park, advanced, publish=False)
                            if horizon.marked:
                                await self._queue_alerts(
                                    park, late.recent(advanced.events), late=True
                                )
                    # an event InfluxDB holds open, last updated before the refill's clock,
                    # that the refill did not reproduce (decided without a lagging gateway's
                    # data, or found at another detected_at): carried on or closed, or it would
                    # stay open for good beside the engine's own event of its kind and subject
                    try:
                        found = await self._retried(
                            park, partial(_stored_open, reader, engine, horizon)
                        )
                    except Exception:  # a clean-up: it never costs the refill nor the process
                        log.exception("%s: closing stored events not found again failed", park)
                        found = []
                        # nothing carries on or closes the stored ones the refill's events were
                        # held back for: those are written (and published) as without the hold
                        released = _release_held_back(horizon)
                        await self._emit(park, Advanced(events=released), publish=False)
                        if horizon.marked:
                            await self._queue_alerts(park, late.recent(released), late=True)
                    # a cold rebuild's engine has warmed by since + warmup_s (its findings
                    # before depend on where its span began)
                    warm_from = since + int(self.settings.warmup_s * 1000) if rebuilding else None
                    closes = self._settle_stored(park, engine, horizon, found, warm_from)
                    # an event still open whose last message came before the horizon, which
                    # InfluxDB does not hold (a rebuild's engine may see an event the earlier
                    # worker did not): its state as it stands, so that its close has an
                    # opening; not published (its messages' time was the earlier worker's)
                    still = [
                        e
                        for e in engine.events.open.values()
                        if (
                            (e.updated_at_ms or e.detected_at_ms) < horizon.start_of(e)
                            or e.id in horizon.deferred  # held back, and not carried on
                        )
                        and e.id not in horizon.stored
                    ]
                    await self._emit(park, Advanced(events=still), publish=False)
                    # an older message not published whose event is still open: its latest
                    await self._queue_alerts(park, late.still_open(engine), late=True)
                    await self._emit(park, Advanced(events=closes), publish=False)
                    if horizon.marked:
                        await self._queue_alerts(park, closes, late=True)
                    # the refill's last mark, with every gateway's field (an item without
                    # outputs, :meth:`_write`): a gateway's own mark, which the next refill
                    # starts its meters at, is not left where the refill first heard it
                    progress = _progress(engine)
                    if progress:
                        await self.outputs.put((park, Advanced(), progress))
                except InfluxError as exc:
                    # [lo, now) has no outputs: no mark of this worker's may pass it
                    self._pin(park, lo)
                    log.error(
                        "%s: %s from InfluxDB given up at %s after %d values, going on live: %s",
                        park,
                        "warm-up" if not rebuilding else "rebuild",
                        datetime.fromtimestamp(lo / 1000, UTC).isoformat(),
                        fed,
                        exc,
                    )
                    continue
                log.info(
                    "%s: %s on %d values of the last %.1f h in %.1f s, written from %s (%s)%s",
                    park,
                    "rebuilt (no usable snapshot)" if rebuilding else "warmed up",
                    fed,
                    (now_ms - since) / 3_600_000,
                    time.perf_counter() - started,
                    datetime.fromtimestamp(horizon.from_ms / 1000, UTC).isoformat(),
                    "the earlier worker's mark" if horizon.marked else "no mark found",
                    f", {dropped} older event message(s) and point(s) not written"
                    " (before the horizon, or stored)"
                    if dropped
                    else "",
                )
        for engine in self.engines.values():
            engine.listening_from(int(time.time() * 1000))

    def _settle_stored(
        self,
        park: str,
        engine: ParkEngine,
        horizon: Horizon,
        stored: Sequence[tuple[Event, str | None]],
        warm_from: int | None = None,
    ) -> list[Event]:
        """After a refill, each event InfluxDB holds open that the engine does not
        (:func:`_stored_open`), one outcome per id whatever its points: carried on where the
        engine holds an event of its kind and subject that InfluxDB lacks (found at another
        detected_at, none of its messages written: the engine holds the stored one in its
        place, and nothing is written — the operator's event goes on), the event having one
        point, on its meter's enterprise now; else closed (``superseded``, at the refill's data
        time, over each of its points), so that InfluxDB holds one open event per kind and
        subject. One updated at or after the refill's data clock is left to the live engine
        (``Horizon.pending``). In a rebuild (``warm_from``: where its cold engine has warmed),
        one last updated before the horizon (or detected before the span, whenever updated)
        and detected before ``warm_from``, of a kind and
        subject the engine holds no event of, stays open (the earlier, warm worker's finding
        stands over a cold engine's silence) until the live engine opens its own
        (``Horizon.held``). The closes, to write."""
        if engine.park_emitted is None:  # no data read: _stored_open found nothing either
            return []
        through = engine.park_emitted * engine.step_ms
        # per id, its latest point's event and every point's enterprise tag
        by_id: dict[str, tuple[Event, list[str | None]]] = {}
        for event, enterprise in stored:
            seen = by_id.get(event.id)
            if seen is None:
                by_id[event.id] = (event, [enterprise])
                continue
            latest = max(seen[0], event, key=lambda e: e.updated_at_ms or e.detected_at_ms)
            by_id[event.id] = (latest, [*seen[1], enterprise])
        closes = []
        for event, enterprises in by_id.values():
            updated = event.updated_at_ms or event.detected_at_ms
            ended = horizon.ended.get(event.id)
            if ended is not None:  # found again within the lag, held back, closed in the refill
                closes.append(self._close_stored(horizon, event, enterprises, max(ended, updated)))
                continue
            current = engine.events.open.get((event.kind, event.subject))
            carried = (
                current is not None
                and current.id not in horizon.stored
                and current.family is event.family
                # its later messages land on the stored point's series (its only one)
                and enterprises == [self._enterprise(park, event)]
            )
            if updated >= through and not (
                carried and current is not None and current.id in horizon.deferred
            ):
                # the refill has not reached it: a live clock runs up to a silence interval
                # ahead of the data; the live engine finds it again or passes it (one the
                # refill held its own back for is carried on now: its own is not written)
                horizon.pending[event.id] = (event, enterprises)
                continue
            if carried:
                engine.events.adopt(event)
                continue
            if (
                warm_from is not None
                # (detected before the span: the refill cannot find it, updated lately or not)
                and (
                    (event.updated_at_ms or event.detected_at_ms) < horizon.start_of(event)
                    or event.detected_at_ms < horizon.since_ms
                )
                and event.detected_at_ms < warm_from
                # (an event the engine holds is written, by the refill or as still open)
                and current is None
            ):
                # a cold engine not finding it says nothing (a leak learnt as baseline)
                horizon.held[event.id] = (event, enterprises)
                continue
            closes.append(self._close_stored(horizon, event, enterprises, through))
        return closes

    async def _horizon(
        self, reader: InfluxReader, engine: ParkEngine, since_ms: int, now_ms: int, default_ms: int
    ) -> Horizon:
        """Where an earlier worker's stored outputs end for ``park``: its progress mark's
        ``analysed_ms`` (no older than ``rebuild_s``), else ``default_ms``; and the events
        InfluxDB holds detected since ``since_ms`` (the refill's span), those it holds open
        from before, and those the engine holds open from before (a snapshot's)."""
        park = engine.park.park
        park_is = f"park = {qs(park)}"
        floor = now_ms - int(self.settings.rebuild_s * 1000)
        # one point per park and hour: small enough to read whole (an outage longer than
        # rebuild_s still finds its mark, and is capped below)
        marks = await reader.query(
            f"SELECT max(*) FROM {quote_ident(PROGRESS_MEASUREMENT)} WHERE {park_is}"
        )
        mark = {
            c.removeprefix("max_"): min(max(int(v), floor), now_ms)
            for s in marks
            for c, v in zip(s.columns[1:], s.values[0][1:], strict=True)
            if v is not None
            and (c.removeprefix("max_") in ("through_ms", "analysed_ms") or GATEWAY_MARK in c)
        }
        # the slowest gateway's analysed data: what a lagging or silent gateway sends later
        # is analysed on a refill from there (a mark with through_ms only: that one)
        analysed = mark.get("analysed_ms", mark.get("through_ms"))
        horizon = Horizon(
            from_ms=default_ms if analysed is None else analysed, marked=analysed is not None
        )
        gateways = {k.removeprefix(GATEWAY_MARK): v for k, v in mark.items() if GATEWAY_MARK in k}
        if gateways:  # (an older worker's mark has none: from_ms for every meter)
            meters = engine.ctx.tree.meters
            for meter in meters.values():
                if not meter.is_virtual:
                    # its gateway's own mark alone: a lower bound of what was analysed of it
                    # (kept within an hour of it, :meth:`_write`); analysed_ms is not one
                    # (max-merged and read with max: past a gateway first heard late)
                    horizon.meter_from[meter.id] = gateways.get(meter.gateway, NEVER)
            real = dict(horizon.meter_from)
            for meter in meters.values():
                if meter.is_virtual:  # a formula names real meters only (site validation)
                    reads = parse_formula(meter.spec.formula or "", meters).meters
                    horizon.meter_from[meter.id] = min(
                        (real[m] for m in reads), default=horizon.from_ms
                    )
            for zone in engine.park.zones:
                horizon.zone_from[zone.id] = min(
                    (horizon.meter_from.get(m, horizon.from_ms) for m in zone.meter_ids),
                    default=horizon.from_ms,
                )
            horizon.least_ms = min(horizon.meter_from.values(), default=horizon.from_ms)
        horizon.open_since = horizon.since_ms = since_ms

        # per id: its kind, subject and family, and each open point's enterprise tag (None for
        # an id with a closed point: closed for good) — which one a refill may carry on
        subjects: dict[str, tuple[tuple[str, str], str, str | None, list[str | None]] | None] = {}

        def note(found: list[Series]) -> None:
            for series in found:
                # one point per event (its messages overwrite the point at its detected_at)
                for row in series.values:
                    t, event_id, updated, is_open, kind, family, meter, zone, enterprise = row
                    event_id = str(event_id)
                    # a point written before updated_ms was: its opening's time at least
                    at = int(t if updated is None else updated)
                    horizon.stored[event_id] = max(horizon.stored.get(event_id, at), at)
                    if is_open:
                        horizon.stored_open.add(event_id)
                        horizon.open_since = min(horizon.open_since, int(t))
                    if not is_open or kind is None or family is None:  # (another writer's)
                        subjects[event_id] = None
                        continue
                    meter = None if meter is None else str(meter)
                    subject = (str(kind), meter if meter is not None else str(zone or ""))
                    seen = subjects.setdefault(event_id, (subject, str(family), meter, []))
                    if seen is not None:
                        seen[3].append(None if enterprise is None else str(enterprise))

        select = (
            'SELECT "id", "updated_ms", "open", "kind", "family", "meter", "zone", "enterprise" '
            f"FROM {quote_ident(ANOMALY_MEASUREMENT)}"
        )
        # before the span: the events still open, whenever detected (one the refill cannot
        # find, open since before the span, is settled too), in one answer (a park has few) …
        note(
            await reader.query(
                f'{select} WHERE {park_is} AND "open" = true AND time < {since_ms}ms'
            )
        )
        # … and the events a snapshot holds open from before it, open or not, by their ids
        # (a query per 100, of bounded length: not a read of every day since the oldest)
        before = sorted(e.id for e in engine.events.open.values() if e.detected_at_ms < since_ms)
        if before:
            oldest = min(e.detected_at_ms for e in engine.events.open.values())
            for k in range(0, len(before), 100):
                match = " OR ".join(f'"id" = {qs(i)}' for i in before[k : k + 100])
                note(
                    await reader.query(
                        f"{select} WHERE {park_is} AND time >= {oldest}ms "
                        f"AND time < {since_ms}ms AND ({match})"
                    )
                )
        # the span a slice (history_slice_s) at a time, as the history: a park's 35 days of
        # events in one answer would be read, parsed and held whole at once; the last slice
        # is open above (a point is stamped at its detected_at, which a skewed clock may put
        # ahead)
        slice_ms = max(1, int(self.settings.history_slice_s * 1000))
        edges = range(since_ms, max(now_ms, since_ms + 1), slice_ms)
        for lo in edges:
            upper = f" AND time < {lo + slice_ms}ms" if lo + slice_ms < now_ms else ""
            note(await reader.query(f"{select} WHERE {park_is} AND time >= {lo}ms{upper}"))
        for event_id, seen in subjects.items():
            if seen is None:
                continue
            subject, family, meter_id, enterprises = seen
            site_meter = None if meter_id is None else self.registry.meter(park, meter_id)
            # the carry-on rule's (:meth:`_settle_stored`): one point, on its enterprise now
            if enterprises == [None if site_meter is None else site_meter.enterprise]:
                horizon.open_of[subject] = (event_id, family)
        # a later mark never goes back past this one (nor, with none, past the default)
        self.progress[park] = {
            "through_ms": mark.get("through_ms", horizon.from_ms),
            "analysed_ms": horizon.from_ms,
            # a gateway this worker does not hear keeps its mark for the next one
            **{GATEWAY_MARK + g: at for g, at in gateways.items()},
        }
        return horizon

    async def _retried(self, park: str, read: Callable[[], Awaitable[T]]) -> T:
        """A read of history (a slice, the horizon); a database that goes away for a moment is
        waited for a few times (a rebuild reads for minutes) before the read is given up."""
        backoff = Backoff(base_s=0.5, cap_s=15.0)
        for _ in range(HISTORY_RETRIES):
            try:
                return await read()
            except InfluxUnavailableError as exc:
                log.warning("%s: history read failed, retrying: %s", park, exc)
                await asyncio.sleep(backoff.next_delay())
        return await read()

    def _snapshot_path(self) -> Path | None:
        d = self.settings.state_dir
        return None if d is None else d / "analytics-snapshot.pickle"

    def _restore_snapshot(self) -> frozenset[str]:
        """Restore the engines from the snapshot; the parks restored (the others are rebuilt
        from ``rebuild_s`` of history)."""
        path = self._snapshot_path()
        if path is None or not path.exists():
            return frozenset()
        restored: set[str] = set()
        try:
            with open(path, "rb") as fh:
                doc = pickle.load(fh)  # our own file, written by _save_snapshot
            if doc.get("version") != SNAPSHOT_VERSION:
                raise ValueError("written by another version")
            for park, state in doc["engines"].items():
                if park in self.engines:
                    self.engines[park].restore(state)
                    restored.add(park)
        except (OSError, ValueError, KeyError, pickle.UnpicklingError) as exc:
            log.warning("snapshot %s not used, rebuilding from history: %s", path, exc)
            self.engines = {n: ParkEngine(p, DETECTORS) for n, p in self.registry.parks.items()}
            return frozenset()
        return frozenset(restored)

    def _snapshot_bytes(self) -> bytes:
        """The engines' state, pickled: on the event loop, between two messages, since the
        state refers to the engines' live arrays and dicts (a copy taken in another thread
        would mix two moments, or fail on a dict changing under it)."""
        doc = {
            "version": SNAPSHOT_VERSION,
            "engines": {p: e.state() for p, e in self.engines.items()},
        }
        return pickle.dumps(doc, protocol=pickle.HIGHEST_PROTOCOL)

    def _write_snapshot(self, data: bytes) -> None:
        path = self._snapshot_path()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
        tmp.replace(path)

    def _save_snapshot(self) -> None:
        if self._snapshot_path() is None:
            return
        try:
            self._write_snapshot(self._snapshot_bytes())
        except OSError as exc:
            log.warning("snapshot not written: %s", exc)

    async def _snapshots(self) -> None:
        while True:
            await asyncio.sleep(self.settings.snapshot_s)
            data = self._snapshot_bytes()
            try:  # only the disk in a thread
                await asyncio.to_thread(self._write_snapshot, data)
            except OSError as exc:  # a full or read-only disk costs the snapshot, not the stream
                log.warning("snapshot not written: %s", exc)


def _progress(engine: ParkEngine) -> dict[str, int]:
    """``engine``'s progress mark as it stands (``PROGRESS_MEASUREMENT``; none before it has
    emitted)."""
    each = engine.analysed_by_gateway()
    if engine.park_emitted is None or each is None:
        return {}
    through = engine.park_emitted * engine.step_ms
    return {
        "through_ms": through,
        "analysed_ms": min(each.values(), default=through),  # analysed_ms()
        **{GATEWAY_MARK + g: at for g, at in each.items()},
    }


def _keep_new(advanced: Advanced, horizon: Horizon) -> int:
    """Drop from a refill's output what an earlier worker already stored (or, before its
    horizon, what it covered: a cold engine's first findings and balances depend on where its
    span began); how many were dropped. An event message counts by its own time (the close of
    an event opened earlier is kept) and is kept unless InfluxDB holds the event at that time
    or later; a point from an hour before the horizon on (hourly points are stamped at the
    hour's start, in the park's zone). The horizon of a meter's events and points is its
    gateway's (:meth:`Horizon.start_of`). Points are not told apart by what the earlier worker
    wrote: one gateway's blocks are written before another's (each closes on its own data
    time), so no stamp per measurement says what is stored, and a point written again only
    overwrites itself (InfluxDB keys it by measurement, tags and time)."""
    events = []
    for e in advanced.events:
        at = e.updated_at_ms or e.detected_at_ms
        if at >= horizon.start_of(e) and horizon.stored.get(e.id, at - 1) < at:
            if _held_back(e, horizon):
                horizon.withheld.append(e)
                continue
            events.append(e)
            horizon.stored[e.id] = at
            if e.end_ms is None:
                horizon.stored_open.add(e.id)
            else:
                horizon.stored_open.discard(e.id)

    def new(p: DerivedPoint) -> bool:
        meter = p.tags.get("meter", "")
        if p.t_ms < horizon.virtual_from.get((p.measurement, meter), p.t_ms):
            return True  # a virtual meter's slot before its stored points begin
        # no point is stamped more than an hour before it is emitted (an hourly point at its
        # hour's start, in the park's zone: a +05:30 park's hours start at half past a UTC
        # hour), so one the earlier worker did not emit (after its horizon) is stamped after
        return p.t_ms >= horizon.start_of_tags(p.tags) - HOUR_MS

    points = [p for p in advanced.points if new(p)]
    dropped = len(advanced.events) - len(events) + len(advanced.points) - len(points)
    advanced.events[:] = events
    advanced.points[:] = points
    return dropped


def _held_back(e: Event, horizon: Horizon) -> bool:
    """Whether a refill's message of ``e`` is held back (:func:`_keep_new`): its event is one
    InfluxDB lacks, detected within ``GATEWAY_MARK_EVERY_MS`` of its horizon (the lag a crash
    may leave a gateway's mark behind the data the earlier worker had), of a kind and subject
    InfluxDB holds an event open of that the engine may carry on in its place
    (``Horizon.open_of``, not closed since): the earlier worker's, found at another
    detected_at. Its messages are not written; the stored event is carried on after the refill
    (:meth:`AnalyticsService._settle_stored`), or, once its own closes here, closed then
    (``Horizon.ended``): no second ``opened``."""
    stored_id = horizon.deferred.get(e.id)
    if stored_id is None:
        if e.id in horizon.stored:  # InfluxDB holds it (or the refill wrote it)
            return False
        found = horizon.open_of.get((e.kind, e.subject))
        if (
            found is None
            # found after its gateway's mark's lag: the earlier worker never had its data
            or e.detected_at_ms >= horizon.start_of(e) + GATEWAY_MARK_EVERY_MS
            or found[1] != e.family.value
            or found[0] not in horizon.stored_open
            or found[0] in horizon.ended
        ):
            return False
        stored_id = horizon.deferred[e.id] = found[0]
    if e.end_ms is not None:
        horizon.ended[stored_id] = e.end_ms
    return True


def _release_held_back(horizon: Horizon) -> list[Event]:
    """The refill's messages held back (``Horizon.withheld``), now to be written: none is held
    back any more, and InfluxDB is taken to hold them (as :func:`_keep_new` notes)."""
    released = horizon.withheld
    horizon.withheld = []
    horizon.deferred.clear()
    horizon.ended.clear()
    for e in released:
        horizon.stored[e.id] = e.updated_at_ms or e.detected_at_ms
        if e.end_ms is None:
            horizon.stored_open.add(e.id)
        else:
            horizon.stored_open.discard(e.id)
    return released


class LateAlerts:
    """Which of a refill's messages are published after an earlier worker's mark (an
    outage's: nobody published them): those from ``from_ms`` on (``publish_late_s`` ago), and,
    once the refill is done, the latest older message of each event still open — an alert
    that ended days ago is history (InfluxDB has it), one still open is news."""

    def __init__(self, from_ms: int) -> None:
        self.from_ms = from_ms
        self.held: dict[str, Event] = {}  # event id → its latest message not published

    def recent(self, events: Sequence[Event]) -> list[Event]:
        out = []
        for e in events:
            if (e.updated_at_ms or e.detected_at_ms) >= self.from_ms:
                out.append(e)
                self.held.pop(e.id, None)
            else:
                self.held[e.id] = e
        return out

    def still_open(self, engine: ParkEngine) -> list[Event]:
        is_open = {e.id for e in engine.events.open.values()}
        out = [e for event_id, e in self.held.items() if event_id in is_open]
        self.held.clear()
        return out


async def _stored_open(
    reader: InfluxReader, engine: ParkEngine, horizon: Horizon
) -> list[tuple[Event, str | None]]:
    """Each event InfluxDB holds open (:meth:`AnalyticsService._horizon`) that ``engine`` does not
    hold open by its id: as its stored point holds it, with the point's enterprise tag. A
    stored row that does not parse is skipped, and so is an id any of whose points is closed
    (its meter changed enterprise while it was open: its close went to the new one's point
    only, the old one's still says open)."""
    if engine.park_emitted is None:
        return []
    held = {e.id for e in engine.events.open.values()}
    ids = sorted(i for i in horizon.stored_open if i not in held)
    out = []
    for k in range(0, len(ids), 100):  # a statement of bounded length
        match = " OR ".join(f'"id" = {qs(i)}' for i in ids[k : k + 100])
        found = await reader.query(
            f"SELECT * FROM {quote_ident(ANOMALY_MEASUREMENT)} "
            f"WHERE park = {qs(engine.park.park)} AND time >= {horizon.open_since}ms AND ({match})"
        )
        rows = [dict(zip(t.columns, row, strict=True)) for t in found for row in t.values]
        closed = {str(r.get("id")) for r in rows if r.get("open") is False}
        horizon.stored_open -= closed
        for r in rows:
            if str(r.get("id")) in closed:
                continue
            try:
                event = _stored_event(r, engine.park.park)
            except (KeyError, ValueError, TypeError) as exc:
                # another writer's, or a newer version's (a family this one lacks)
                log.warning(
                    "%s: stored event %s not closed, unreadable: %r",
                    engine.park.park,
                    r.get("id"),
                    exc,
                )
                continue
            enterprise = r.get("enterprise")
            out.append((event, None if enterprise is None else str(enterprise)))
    return out


def _stored_event(r: dict[str, Any], park: str) -> Event:
    """The open event a stored ``anomaly`` row holds (its tags, evidence, estimate)."""
    if r.get("id") is None or r.get("kind") is None:  # SELECT * gives an absent tag as None
        raise KeyError("id" if r.get("id") is None else "kind")
    evidence = orjson.loads(r.get("evidence") or "{}")
    if not isinstance(evidence, dict):
        raise TypeError(f"evidence {evidence!r}")
    estimate = None
    if r.get("estimate") is not None and r.get("estimate_unit") is not None:
        estimate = Estimate(
            value=float(r["estimate"]),
            unit=str(r["estimate_unit"]),
            per_day=None if r.get("per_day") is None else float(r["per_day"]),
            per_day_unit=None if r.get("per_day_unit") is None else str(r["per_day_unit"]),
            cny_per_day=None if r.get("cny_per_day") is None else float(r["cny_per_day"]),
        )
    state = State(r.get("state") or State.OPENED.value)
    if state is State.CLOSED:
        raise ValueError("a closed message marked open")
    return Event(
        id=str(r["id"]),
        kind=str(r["kind"]),
        family=Family(r["family"]),
        state=state,
        park=park,
        meter=r.get("meter"),
        zone=r.get("zone"),
        start_ms=int(r.get("start_ms") or r["time"]),
        detected_at_ms=int(r["time"]),
        end_ms=None,
        severity=Severity(r["severity"]),
        evidence=evidence,
        estimate=estimate,
        updated_at_ms=int(r.get("updated_ms") or r["time"]),
    )


def _superseding_close(event: Event, end_ms: int) -> Event:
    """The close at ``end_ms`` of a stored open event no engine will close: its evidence plus
    ``superseded``."""
    return event.with_state(
        State.CLOSED,
        end_ms=end_ms,
        updated_at_ms=end_ms,
        evidence={**event.evidence, "superseded": True},
    )


async def _virtual_from(
    reader: InfluxReader, engine: ParkEngine, horizon: Horizon, since_ms: int, now_ms: int
) -> None:
    """Where each virtual meter's stored points begin in ``[since_ms, now_ms)`` (one query per
    virtual series: a park has a few): before that, a refill writes its points too."""
    tree = engine.ctx.tree
    for key in engine.series:
        meter = tree.meters[key.meter]
        if not meter.is_virtual:
            continue
        measurement = meter.utility.value
        found = await reader.query(
            f"SELECT first({quote_ident(key.quantity)}) FROM {quote_ident(measurement)} "
            f"WHERE park = {qs(engine.park.park)} AND meter = {qs(meter.id)} "
            f"AND time >= {since_ms}ms AND time < {now_ms}ms"
        )
        at = int(found[0].values[0][0]) if found and found[0].values else now_ms
        # a meter's quantities begin where its earliest stored one does (they come together)
        horizon.virtual_from[measurement, meter.id] = min(
            horizon.virtual_from.get((measurement, meter.id), at), at
        )


async def history_rows(
    reader: InfluxReader, engine: ParkEngine, since_ms: int, until_ms: int, chunk: int = 200_000
) -> list[Rows]:
    """The raw values the engine needs from InfluxDB, in time order, as replay rows."""
    by_measurement: dict[str, set[str]] = {}
    for key in engine.series:
        meter = engine.ctx.tree.meters[key.meter]
        if not meter.is_virtual:
            by_measurement.setdefault(meter.utility.value, set()).add(key.quantity)
    park = engine.park.park
    t_all: list[np.ndarray[Any, np.dtype[np.int64]]] = []
    s_all: list[np.ndarray[Any, np.dtype[np.int64]]] = []
    v_all: list[np.ndarray[Any, np.dtype[np.float64]]] = []
    for measurement, quantities in sorted(by_measurement.items()):
        fields = ", ".join(quote_ident(q) for q in sorted(quantities))
        statement = (
            f"SELECT {fields} FROM {quote_ident(measurement)} WHERE park = {qs(park)} "
            f"AND time >= {since_ms}ms AND time < {until_ms}ms GROUP BY meter"
        )
        for series in await reader.query(statement):
            meter_id = series.tags.get("meter", "")
            columns = series.columns
            if not series.values:
                continue
            table = np.array(series.values, dtype=object)
            times = table[:, 0].astype(np.int64)
            for c, name in enumerate(columns[1:], start=1):
                index = engine.series_of(meter_id, name)
                if index is None:
                    continue
                column = table[:, c]
                present = np.array([x is not None for x in column])
                if not present.any():
                    continue
                t_all.append(times[present])
                s_all.append(np.full(int(present.sum()), index, dtype=np.int64))
                v_all.append(column[present].astype(np.float64))
    if not t_all:
        return []
    t = np.concatenate(t_all)
    s = np.concatenate(s_all)
    v = np.concatenate(v_all)
    order = np.argsort(t, kind="stable")
    t, s, v = t[order], s[order], v[order]
    gateway_of_series = np.array(
        [engine.gateway_no.get(engine.ctx.tree.meters[k.meter].gateway, -1) for k in engine.series],
        dtype=np.int64,
    )
    g = gateway_of_series[s]
    out = []
    start = 0
    while start < t.size:
        end = min(start + chunk, t.size)
        if end < t.size:
            # never between two rows of one time: each chunk is followed by an advance to its
            # last time, and a time's rows split over two chunks changed what the detectors
            # found (one event of the demo's 6 days came or went with where a chunk ended)
            # nor inside one of the engine's arrival slots (arrival = data time here), which
            # is what an advance completes
            slot_end = (int(t[end - 1]) // engine.step_ms + 1) * engine.step_ms
            end = int(np.searchsorted(t, slot_end, side="left"))
        part = slice(start, end)
        out.append(Rows(s[part], t[part], v[part], g[part], t[part], np.zeros(t[part].size, bool)))
        start = end
    return out


async def run_analytics(settings: AnalyticsSettings) -> None:
    """Entry point of ``parkwatch analytics``: the service owns the process (and its gc, and
    its allocator: ``keep_freed_memory`` lasts for the process, so only here)."""
    keep_freed_memory()
    service = AnalyticsService(settings, SiteRegistry.from_files(settings.sites))
    await service.run(freeze_gc=True)
