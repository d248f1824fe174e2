"""The analytics service keeps its context across a restart: it refills from InfluxDB's raw
data at start-up, and restores its engine from the snapshot it leaves behind."""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
import pickle
import re
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import numpy as np
import orjson
import pytest

from analytics.accounting.job import RollupJob
from analytics.detectors import DETECTORS
from analytics.engine.clocks import ClockRules
from analytics.engine.contract import DerivedPoint, SeriesKey
from analytics.engine.engine import Advanced, Batch, ParkEngine, Rows
from analytics.service import (
    GATEWAY_MARK,
    GATEWAY_MARK_EVERY_MS,
    SNAPSHOT_VERSION,
    AnalyticsService,
    Horizon,
    LateAlerts,
    _keep_new,
    _progress,
    _superseding_close,
    history_rows,
)
from analytics.settings import AnalyticsSettings
from parkwatch import mqtt
from parkwatch.events import Event, Family, Severity, State
from parkwatch.influx import (
    InfluxError,
    InfluxReader,
    InfluxUnavailableError,
    InfluxWriter,
    Series,
)
from parkwatch.lineprotocol import encode_point
from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.site import Park, SiteRegistry
from simulators import DEMO_PARK
from tests.support import background, eventually

pytestmark = pytest.mark.integration

QUARTER_MS = 15 * 60_000


def small_park() -> Park:
    return Park.model_validate(
        {"park": "svc", "meters": [{"id": "main", "utility": "electricity",
                                     "contracted_demand_kw": 1000}]}
    )  # fmt: skip


async def _store(influx_settings: InfluxSettings, lines: list[str]) -> None:
    """Raw readings stored, as ingest would have before the worker starts."""
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
    async with InfluxWriter(influx_settings) as writer:
        await writer.write(lines)


@pytest.mark.anyio
async def test_a_new_worker_warms_up_from_influxdb(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings
) -> None:
    park = small_park()
    now_ms = time.time_ns() // 1_000_000
    start = (now_ms - 2 * 3_600_000) // QUARTER_MS * QUARTER_MS  # two hours ago, on a block
    # an hour of raw readings stored by ingest before this worker existed
    lines = [
        encode_point("electricity", {"park": "svc", "enterprise": "park", "meter": "main"},
                     {"p_kw": 500.0 + k % 7}, start + k * 60_000)
        for k in range(60)
    ]  # fmt: skip
    await _store(influx_settings, lines)
    service = AnalyticsService(
        AnalyticsSettings(mqtt=mqtt_settings, influx=influx_settings, warmup_s=6 * 3600),
        SiteRegistry([park]),
    )
    async with background(service.run()), InfluxReader(influx_settings) as reader:
        await asyncio.wait_for(service.warm.wait(), timeout=20)

        async def blocks_written() -> bool:
            try:
                return await reader.count("demand_15m", "p_kw_avg") >= 3
            except Exception:
                return False

        # the history's quarter hours are analysed as if they had come live
        await eventually(blocks_written, 20, "demand of the refilled hour")
        [series] = await reader.query("SELECT p_kw_avg FROM demand_15m ORDER BY time LIMIT 1")
    assert series.values[0][0] == start


@pytest.mark.anyio
async def test_the_engine_is_restored_from_its_snapshot(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, tmp_path: Path
) -> None:
    park = small_park()
    settings = AnalyticsSettings(
        mqtt=mqtt_settings, influx=influx_settings, warmup_s=0, rebuild_s=0, state_dir=tmp_path
    )
    first = AnalyticsService(settings, SiteRegistry([park]))
    engine = first.engines["svc"]
    index = engine.series_of("main", "p_kw")
    assert index is not None
    async with background(first.run()):
        await asyncio.wait_for(first.warm.wait(), timeout=20)
        t0 = 1_795_968_000_000
        for k in range(20):
            engine.feed(Batch("gw-park", k + 1, np.array([index]), np.array([t0 + k * 60_000]),
                              np.array([400.0]), t0 + k * 60_000))  # fmt: skip
        engine.advance(t0 + 20 * 60_000)
        emitted = engine.park_emitted
    snapshot = tmp_path / "analytics-snapshot.pickle"
    assert snapshot.exists()
    second = AnalyticsService(settings, SiteRegistry([park]))
    async with background(second.run()):
        await asyncio.wait_for(second.warm.wait(), timeout=20)
        restored = second.engines["svc"]
        assert restored.park_emitted == emitted
        assert restored.clocks.run_seq == {0: 20}


@pytest.mark.anyio
async def test_snapshots_are_taken_on_the_loop_and_a_failing_disk_does_not_stop_the_service(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, tmp_path: Path
) -> None:
    """The engine's state refers to its live arrays and dicts, which the loop changes with
    every message: it is copied on the loop, and only the file is written in a thread. A
    snapshot that cannot be written is logged; the stream goes on."""
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    settings = AnalyticsSettings(
        mqtt=mqtt_settings,
        influx=influx_settings,
        warmup_s=0,
        rebuild_s=0,
        state_dir=blocked / "state",  # mkdir fails: a file is in the way
        snapshot_s=0.05,
    )
    service = AnalyticsService(settings, SiteRegistry([small_park()]))
    engine = service.engines["svc"]
    threads: list[str] = []
    taken = engine.state

    def state() -> dict[str, object]:
        threads.append(threading.current_thread().name)
        return taken()

    engine.state = state  # type: ignore[method-assign]
    async with background(service.run()) as task:
        await asyncio.wait_for(service.warm.wait(), timeout=20)
        await asyncio.sleep(0.5)  # about ten snapshots
        assert not task.done(), "the service stopped"
    assert len(threads) >= 3
    assert set(threads) == {threading.main_thread().name}


class _BrokenSession:
    """An MQTT client whose session broke under it: every publish fails (a stand-in for this
    unit test of the pending-alerts path alone)."""

    def __init__(self) -> None:
        self.attempts = 0

    async def publish(self, *args: object, **kwargs: object) -> None:
        self.attempts += 1
        await asyncio.sleep(0)
        raise aiomqtt.MqttError("the connection broke")


@pytest.mark.anyio
async def test_pending_alerts_are_tried_once_on_a_broken_session_and_drops_are_counted(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings
) -> None:
    service = AnalyticsService(
        AnalyticsSettings(mqtt=mqtt_settings, influx=influx_settings), SiteRegistry([small_park()])
    )
    event = Event(
        id="e", kind="demand_peak", family=Family.DEMAND, state=State.OPENED, park="svc",
        meter="main", zone=None, start_ms=0, detected_at_ms=0, end_ms=None,
        severity=Severity.MAJOR,
    )  # fmt: skip
    broken = _BrokenSession()
    service.client = broken  # type: ignore[assignment]
    for _ in range(3):
        service.unpublished.append(("svc", event, False))
    await asyncio.wait_for(service._publish_pending(), timeout=2)
    assert broken.attempts == 1
    assert len(service.unpublished) == 3  # kept for the next session
    service.client = None
    for _ in range(service.unpublished.maxlen or 0):
        await service._publish("svc", event)
    dropped = service.metrics.registry.get_sample_value("pw_analytics_alerts_dropped_total")
    assert dropped == 3


@pytest.mark.anyio
async def test_a_detector_that_raises_is_reported_and_the_service_goes_on(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings
) -> None:
    from analytics.engine.contract import Block, Output
    from parkwatch import mqtt, topics
    from parkwatch.wire import encode_batch

    park = small_park()
    service = AnalyticsService(
        AnalyticsSettings(
            mqtt=mqtt_settings, influx=influx_settings, warmup_s=0, rebuild_s=0, tick_s=0.1
        ),
        SiteRegistry([park]),
    )
    engine = service.engines["svc"]
    [peaks] = [i for i in engine.instances if i.detector.name == "peaks"]

    def bug(block: Block) -> Output:
        raise KeyError("a bug")

    peaks.detector.update = bug  # type: ignore[method-assign]
    gateway = park.tree.meters["main"].gateway
    start = (int(time.time() * 1000) - 3_600_000) // 60_000 * 60_000
    async with background(service.run()) as task:
        await asyncio.wait_for(service.warm.wait(), timeout=20)
        await asyncio.wait_for(service.subscribed.wait(), timeout=20)
        async with mqtt.client(mqtt_settings, "broken-detector-gw") as client:
            for k in range(5):
                readings = [{"m": "main", "t": start + k * 60_000, "q": {"p_kw": 500.0}}]
                await client.publish(topics.data_topic("svc", gateway),
                                     encode_batch(gateway, k + 1, readings), qos=1)  # fmt: skip

        async def reported() -> bool:
            ok, detail = await service._health()
            return not ok and "svc/peaks@park" in detail["failed_detectors"]

        await eventually(reported, 20, "the stopped detector in /health")
        assert not task.done(), "one detector's bug stopped the service"
        _, detail = await service._health()
        assert detail["failed_detectors"] == {"svc/peaks@park": "KeyError: 'a bug'"}

        async def counted() -> bool:
            gauge = service.metrics.registry.get_sample_value("pw_analytics_detectors_failed")
            return gauge == 1

        await eventually(counted, 10, "pw_analytics_detectors_failed = 1")


@pytest.mark.anyio
async def test_the_engines_late_spans_reach_the_parks_rollup_job() -> None:
    """A backlog replayed behind live data: the engine reports the readings that came after
    their slot closed, and the service hands each meter's late span to its park's rollup job
    (which recomputes the hours it touches). tests/test_accounting_live.py reports the late
    spans to the job itself; this is the step it simulates. No server is contacted."""
    park = Park.from_yaml(DEMO_PARK)
    settings = AnalyticsSettings(mqtt=MqttSettings(), influx=InfluxSettings())
    service = AnalyticsService(settings, SiteRegistry([park]))
    job = RollupJob(
        park, InfluxReader(settings.influx), InfluxWriter(settings.influx), service.rollup_config
    )
    service.rollups[park.park] = job
    engine = service.engines[park.park]
    index = engine.series_of("foodco-main", "e_kwh")
    assert index is not None
    start = 1_795_968_000_000  # local midnight in Shanghai
    now = start + 30 * 60_000

    def batch(seq: int, t: list[int], v: list[float]) -> Batch:
        n = len(t)
        return Batch("gw-foodco", seq, np.full(n, index), np.array(t), np.array(v), now)

    for advanced in (
        engine.feed(batch(10, [now], [130.0])),  # live first
        engine.feed(batch(11, [now + 60_000], [131.0])),
        # the backlog: 00:00 and 00:01 local, their slots long closed
        engine.feed(batch(7, [start, start + 60_000], [100.0, 101.0])),
    ):
        await service._emit(park.park, advanced, publish=False)
    assert job.late == [("foodco-main", start, start + 60_000)]
    # the metric counts the backlog's two readings (one span: it counted spans before)
    late = service.metrics.registry.get_sample_value("pw_analytics_late_readings_total")
    assert late == 2


@pytest.mark.anyio
async def test_the_kernels_are_warmed_before_the_service_subscribes(
    mqtt_settings: MqttSettings,
    influx_settings: InfluxSettings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Compiled on the first live window instead (seconds with an empty numba cache), the
    kernels would make its alerts late (review finding 8): each park's are warmed, and the
    time it took logged, before the service subscribes."""
    import analytics.service as service_module

    park = small_park()
    service = AnalyticsService(
        AnalyticsSettings(mqtt=mqtt_settings, influx=influx_settings, warmup_s=0, rebuild_s=0),
        SiteRegistry([park]),
    )
    warmed: list[tuple[str, bool]] = []
    real = service_module.warm_up

    def recording(p: Park, minutes: int = 60) -> float:
        warmed.append((p.park, service.subscribed.is_set()))
        return real(p, minutes)

    monkeypatch.setattr(service_module, "warm_up", recording)
    caplog.set_level("INFO", logger="analytics.service")
    async with background(service.run()):
        await asyncio.wait_for(service.subscribed.wait(), timeout=30)
    assert warmed == [("svc", False)]
    assert any("kernels compiled or loaded for 1 park(s) in" in r.message for r in caplog.records)


@pytest.mark.anyio
async def test_a_failing_kernel_warm_up_does_not_stop_the_service(
    mqtt_settings: MqttSettings,
    influx_settings: InfluxSettings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The warm-up is a speed-up only: if it raises (a detector failing on its made-up
    readings, say), the service says so and goes on, its kernels compiling on first use."""
    import analytics.service as service_module

    def failing(p: Park, minutes: int = 60) -> float:
        raise RuntimeError("a bug")

    monkeypatch.setattr(service_module, "warm_up", failing)
    service = AnalyticsService(
        AnalyticsSettings(mqtt=mqtt_settings, influx=influx_settings, warmup_s=0, rebuild_s=0),
        SiteRegistry([small_park()]),
    )
    caplog.set_level("INFO", logger="analytics.service")
    async with background(service.run()):
        await asyncio.wait_for(service.subscribed.wait(), timeout=30)
    assert any("kernel warm-up failed" in r.message for r in caplog.records)


@pytest.mark.anyio
async def test_only_the_process_entry_freezes_the_collector(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings
) -> None:
    """``gc.freeze()`` is the whole process's: a service run inside a caller's process (a
    test's) leaves its collector as it was; run as its process (``run_analytics``) it freezes
    what start-up built once warm."""
    settings = AnalyticsSettings(
        mqtt=mqtt_settings, influx=influx_settings, warmup_s=0, rebuild_s=0
    )
    before = gc.get_freeze_count()
    service = AnalyticsService(settings, SiteRegistry([small_park()]))
    async with background(service.run()):
        await asyncio.wait_for(service.warm.wait(), timeout=30)
        assert gc.get_freeze_count() == before
    assert gc.get_freeze_count() == before

    service = AnalyticsService(settings, SiteRegistry([small_park()]))
    try:
        async with background(service.run(freeze_gc=True)):
            await asyncio.wait_for(service.warm.wait(), timeout=30)
            assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()  # this process's, frozen by the run above


@pytest.mark.anyio
async def test_a_late_backlog_message_is_counted_in_readings() -> None:
    """A data message replayed behind live data, through the service's message handler: the
    late-readings metric counts its quantity values (two readings of two quantities: four),
    not its spans. No server is contacted."""
    park = Park.from_yaml(DEMO_PARK)
    settings = AnalyticsSettings(mqtt=MqttSettings(), influx=InfluxSettings())
    service = AnalyticsService(settings, SiteRegistry([park]))
    topic = f"pw/v1/{park.park}/gw-foodco/data"
    now = int(time.time() * 1000) // 60_000 * 60_000

    def message(seq: int, times: list[int]) -> aiomqtt.Message:
        readings = [
            {"m": "foodco-main", "t": t, "q": {"p_kw": 400.0, "e_kwh": 1000.0 + i}, "s": "ok"}
            for i, t in enumerate(times)
        ]
        doc = {"v": 1, "gw": "gw-foodco", "seq": seq, "readings": readings}
        return aiomqtt.Message(topic, orjson.dumps(doc), 1, False, seq, None)

    await service._handle(message(10, [now - 60_000, now]))  # live first
    await service._handle(message(7, [now - 6 * 3600_000, now - 6 * 3600_000 + 60_000]))
    late = service.metrics.registry.get_sample_value("pw_analytics_late_readings_total")
    assert late == 4


DAY_MS = 86_400_000


def two_series_park() -> Park:
    return Park.model_validate(
        {"park": "svc", "meters": [{"id": "main", "utility": "electricity",
                                     "contracted_demand_kw": 1000},
                                    {"id": "aux", "utility": "electricity"}]}
    )  # fmt: skip


def _history_clock() -> int:
    """The workers' "now" for the tests of :func:`_days_of_history`: the latest 15:07 UTC, not
    the wall clock. Which messages an event of the history's step (13:00 UTC the day before)
    has sent by then depends on how old the step is — run at 23:05 UTC, its last message
    was past the horizon these tests put before it — so the hour is pinned (in the past: the
    workers' clock is patched, InfluxDB takes any time), off a slice's first five minutes."""
    real_ms = time.time_ns() // 1_000_000
    pinned = real_ms // DAY_MS * DAY_MS + 15 * 3_600_000 + 7 * 60_000
    return pinned if pinned <= real_ms else pinned - DAY_MS


def _days_of_history(now_ms: int, days: int) -> tuple[int, list[str]]:
    """``days`` days of a factory's 5-minute load (a working day's profile with a little
    wobble), ending an hour ago, with a step in its last afternoon."""
    start = (now_ms - days * DAY_MS) // DAY_MS * DAY_MS
    lines = []
    for k in range((now_ms - 3_600_000 - start) // 300_000):
        t = start + k * 300_000
        hour = t % DAY_MS // 3_600_000
        kw = (300.0 if 7 <= hour < 18 else 100.0) + 5.0 * math.sin(k * 0.7)
        if t >= start + (days - 1) * DAY_MS + 13 * 3_600_000:
            kw += 400.0  # a lasting step the day's profile does not expect
        tags = {"park": "svc", "enterprise": "park", "meter": "main"}
        lines.append(encode_point("electricity", tags, {"p_kw": kw}, t))
        # a meter small_park does not have (the chunks' test below reads it)
        lines.append(encode_point("electricity", {**tags, "meter": "aux"}, {"p_kw": 10.0}, t))
    return start, lines


SLICE_MS = 6 * 3_600_000  # small slices: a rebuild of 8 days reads 32 or 33 of them


def _rebuild_writes(expected: list[Event], reference: ParkEngine, horizon_ms: int) -> list[Event]:
    """What a rebuild writes of what one pass found: the messages from ``horizon_ms`` on (a
    close of an event opened before counts by its own time), then the events still open whose
    last message came before it, as they stand."""

    def at(e: Event) -> int:
        return e.updated_at_ms or e.detected_at_ms

    kept = [e for e in expected if at(e) >= horizon_ms]
    return kept + [e for e in reference.events.open.values() if at(e) < horizon_ms]


async def _rebuild(
    settings: AnalyticsSettings,
    now_ms: int,
    monkeypatch: pytest.MonkeyPatch,
    published: list[Event] | None = None,
    then: Callable[[AnalyticsService], Awaitable[None]] | None = None,
    points: list[DerivedPoint] | None = None,
    park: Park | None = None,
) -> tuple[AnalyticsService, list[Event], list[int], list[str]]:
    """A service started at ``now_ms`` (with no snapshot unless ``settings.state_dir`` holds
    one), run until warm: the events it wrote, the times it fed, the history statements it
    sent; ``published``, if given, gets the refill's messages queued for publishing (all
    late; else: none may be, as with no earlier worker's mark); ``then`` is awaited once it
    is warm; ``points``, if given, gets the derived points it wrote; ``park``:
    ``small_park()``'s."""
    service = AnalyticsService(settings, SiteRegistry([park or small_park()]))
    written: list[Event] = []
    emit = service._emit
    queue_alerts = service._queue_alerts

    async def record(park: str, advanced: Advanced, *, publish: bool) -> None:
        written.extend(advanced.events)
        if points is not None:
            points.extend(advanced.points)
        await emit(park, advanced, publish=publish)

    async def alerts(park: str, events: Sequence[Event], *, late: bool) -> None:
        if late and published is None:
            assert not events  # no earlier worker's mark: history is written, not published
        elif late and published is not None:
            published.extend(events)
        await queue_alerts(park, events, late=late)

    service._emit = record  # type: ignore[method-assign]
    service._queue_alerts = alerts  # type: ignore[method-assign]
    engine = service.engines["svc"]
    fed: list[int] = []
    feed_rows = engine.feed_rows

    def spy_feed(rows: Rows) -> Advanced:
        fed.extend(int(t) for t in rows.t_ms)
        return feed_rows(rows)

    monkeypatch.setattr(engine, "feed_rows", spy_feed)
    statements: list[str] = []
    query = InfluxReader.query

    async def spy_query(reader: InfluxReader, statement: str) -> list[Series]:
        if "GROUP BY meter" in statement:  # history, not the horizon's queries
            statements.append(statement)
        return await query(reader, statement)

    with monkeypatch.context() as m:
        m.setattr(InfluxReader, "query", spy_query)
        m.setattr(time, "time", lambda: now_ms / 1000)
        async with background(service.run()):
            await asyncio.wait_for(service.warm.wait(), timeout=60)
            if then is not None:
                await then(service)
    return service, written, fed, statements


async def _fresh_database(settings: AnalyticsSettings, lines: list[str]) -> AnalyticsSettings:
    """``settings`` on a new database holding only the raw ``lines``."""
    influx = settings.influx.model_copy(update={"database": f"{settings.influx.database}_x"})
    while True:  # the next free name
        async with InfluxReader(influx) as reader:
            names = {row[0] for s in await reader.query("SHOW DATABASES") for row in s.values}
        if influx.database not in names:
            break
        influx = influx.model_copy(update={"database": f"{influx.database}x"})
    await _store(influx, lines)
    return settings.model_copy(update={"influx": influx})


@pytest.mark.anyio
async def test_a_worker_with_no_snapshot_is_rebuilt_from_days_of_history_in_slices(
    mqtt_settings: MqttSettings,
    influx_settings: InfluxSettings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No snapshot: the service reads ``rebuild_s`` (not ``warmup_s``) back from a start on
    the slice grid, a slice at a time, feeds every value once, ends with what one pass over
    the same history finds, writes only the events of the last ``warmup_s``, and a second
    rebuild of the same slice writes the same events under the same ids."""
    real_now = _history_clock()
    start, lines = _days_of_history(real_now, 9)  # each day type seen before the last
    now_ms = real_now - 300_000 if real_now % SLICE_MS < 300_000 else real_now
    await _store(influx_settings, lines)
    settings = AnalyticsSettings(
        mqtt=mqtt_settings,
        influx=influx_settings,
        warmup_s=2 * 86_400,
        rebuild_s=8 * 86_400,  # shorter than the history: where it starts matters
        history_slice_s=SLICE_MS / 1000,
    )
    since = (now_ms - 8 * DAY_MS) // SLICE_MS * SLICE_MS
    assert since > start
    # the reference: the same span in one read, one chunk
    reference = AnalyticsService(settings, SiteRegistry([small_park()])).engines["svc"]
    async with InfluxReader(influx_settings) as reader:
        [rows] = await history_rows(reader, reference, since, now_ms, chunk=10**9)
    # readings every 5 minutes from midnight: the slices' inner edges are reading times
    assert since + SLICE_MS in set(rows.t_ms.tolist())
    expected = reference.feed_rows(rows).events + reference.advance(int(rows.t_ms.max())).events
    horizon = now_ms - 2 * DAY_MS
    to_write = [(e.id, e.state) for e in _rebuild_writes(expected, reference, horizon)]
    assert to_write, "the step is found in the history"

    service, written, fed, statements = await _rebuild(settings, now_ms, monkeypatch)
    assert len(statements) == -(-(now_ms - since) // SLICE_MS)  # one per slice (one utility)
    assert f"time >= {since}ms AND time < {since + SLICE_MS}ms" in statements[0]
    assert fed == rows.t_ms.tolist()  # every value once, edges included, in time order
    assert [(e.id, e.state) for e in written] == to_write
    engine = service.engines["svc"]
    assert engine.now_ms == reference.now_ms
    assert engine.park_emitted == reference.park_emitted

    # four minutes earlier, in the same slice: the same start, the same events and ids (in a
    # database of its own: the first rebuild's mark and events would make it write nothing)
    settings = await _fresh_database(settings, lines)
    _, again, _, _ = await _rebuild(settings, now_ms - 240_000, monkeypatch)
    earlier = _rebuild_writes(expected, reference, horizon - 240_000)
    assert [(e.id, e.state) for e in again] == [(e.id, e.state) for e in earlier]

    # with a 6 h horizon the step's messages (yesterday afternoon) are the earlier worker's:
    # found by the engine (same state), not written, counted in the log line — but the event,
    # still open, is written once as it stands
    caplog.set_level("INFO", logger="analytics.service")
    short = (await _fresh_database(settings, lines)).model_copy(update={"warmup_s": 6 * 3600})
    latest = _rebuild_writes(expected, reference, now_ms - 6 * 3_600_000)
    # the step's event, still open, is written as it stands although it began before
    assert any((e.updated_at_ms or e.detected_at_ms) < now_ms - 6 * 3_600_000 for e in latest)
    service, written, _, _ = await _rebuild(short, now_ms, monkeypatch)
    assert written == latest
    assert service.engines["svc"].park_emitted == reference.park_emitted
    dropped = re.search(r", (\d+) older event message\(s\) and point\(s\) not written", caplog.text)
    assert dropped is not None
    assert int(dropped.group(1)) > 0


def test_a_rebuild_keeps_messages_and_points_by_their_own_time() -> None:
    """``_keep_new``: an event's message counts by its own time (the close of an event
    opened before the horizon is kept, its opening is not); a point from an hour before the
    horizon on (an hourly point is stamped at its hour's start), so the hour the horizon
    falls in is kept."""
    hour = 3_600_000
    horizon = 100 * hour + 1_800_000  # half past an hour
    opened = Event(
        id="e1",
        kind="baseline_deviation",
        family=Family.CONSUMPTION,
        state=State.OPENED,
        park="svc",
        meter="main",
        zone=None,
        start_ms=90 * hour,
        detected_at_ms=95 * hour,
        end_ms=None,
        severity=Severity.MINOR,
        estimate=None,
        evidence={},
        updated_at_ms=95 * hour,
    )
    closed = opened.with_state(State.CLOSED, end_ms=101 * hour, updated_at_ms=101 * hour)
    points = [
        DerivedPoint("zone_balance", {"zone": "z"}, {"score": 1.0}, t)
        for t in (99 * hour, 100 * hour, 101 * hour)
    ]
    advanced = Advanced(events=[opened, closed], points=list(points))  # a copy: it is cut
    assert _keep_new(advanced, Horizon(horizon, marked=True)) == 2
    assert advanced.events == [closed]
    assert [p.t_ms for p in advanced.points] == [100 * hour, 101 * hour]

    # what InfluxDB already holds is not written again: the event at its close's time (or
    # later); points from the horizon's hour on are, whatever is stored (one gateway's points
    # come before another's: a rewrite only overwrites itself); a virtual meter's slots before
    # its first stored point too (a meter added since: backfilled)
    virtual = [
        DerivedPoint("electricity", {"meter": "net"}, {"p_kw": 1.0}, t)
        for t in (90 * hour, 95 * hour, 100 * hour)
    ]
    stored = Horizon(
        horizon,
        marked=True,
        stored={"e1": 101 * hour},
        virtual_from={("electricity", "net"): 95 * hour},
    )
    advanced = Advanced(events=[opened, closed], points=[*points, *virtual])
    assert _keep_new(advanced, stored) == 2 + 1 + 1
    assert advanced.events == []
    assert [(p.measurement, p.t_ms) for p in advanced.points] == [
        ("zone_balance", 100 * hour),
        ("zone_balance", 101 * hour),
        ("electricity", 90 * hour),
        ("electricity", 100 * hour),
    ]
    # a message kept is remembered: the same message in a later chunk is not written twice
    again = opened.with_state(State.UPDATED, updated_at_ms=102 * hour)
    first, second = Advanced(events=[again]), Advanced(events=[again])
    assert (_keep_new(first, stored), _keep_new(second, stored)) == (0, 1)


def test_a_refill_keeps_the_last_local_hours_point_of_a_half_hour_zone() -> None:
    """A +05:30 park's hourly points are stamped at its local hour's start (half past a UTC
    hour) and emitted at its end: the earlier worker stopped at 10:50 local (05:20 UTC) before
    emitting 10:00-11:00's point (04:30 UTC), so the refill writes it, though its stamp lies
    before the horizon's UTC hour (the review's probe_keep_new_tz.py)."""
    ist = ZoneInfo("Asia/Kolkata")
    stamp = int(datetime(2026, 12, 5, 10, 0, tzinfo=ist).timestamp() * 1000)
    through = int(datetime(2026, 12, 5, 10, 50, tzinfo=ist).timestamp() * 1000)
    point = DerivedPoint("zone_balance", {"zone": "z"}, {"consumption": 1.0}, stamp)
    older = point._replace(t_ms=stamp - HOUR_MS)  # emitted at 10:00 local: stored
    advanced = Advanced(points=[older, point])
    assert _keep_new(advanced, Horizon(through - 60_000, marked=True)) == 1
    assert advanced.points == [point]


def test_a_refill_publishes_the_last_publish_late_s_and_the_events_still_open() -> None:
    """``LateAlerts``: of a refill's messages, those from the bound on are published; of an
    older one only the latest message of an event still open when the refill is done (and
    none of an event with a message since), flagged late by the caller."""
    hour = 3_600_000
    engine = AnalyticsService(AnalyticsSettings(), SiteRegistry([small_park()])).engines["svc"]

    def event(event_id: str, meter: str) -> Event:
        return Event(
            id=event_id, kind="baseline_deviation", family=Family.CONSUMPTION,
            state=State.OPENED, park="svc", meter=meter, zone=None, start_ms=hour,
            detected_at_ms=hour, end_ms=None, severity=Severity.MINOR, updated_at_ms=hour,
        )  # fmt: skip

    ended, still, resumed = event("a", "m1"), event("b", "m2"), event("c", "m3")
    late = LateAlerts(10 * hour)
    chunk = [
        ended,
        ended.with_state(State.CLOSED, end_ms=2 * hour, updated_at_ms=2 * hour),
        still,
        still.with_state(State.UPDATED, updated_at_ms=3 * hour),
        resumed,
    ]
    assert late.recent(chunk) == []
    newer = resumed.with_state(State.UPDATED, updated_at_ms=11 * hour)
    assert late.recent([newer]) == [newer]
    # at the end of the refill: "b" and "c" are open, "a" ended days ago
    engine.events.open = {
        ("baseline_deviation", "m2"): chunk[3],
        ("baseline_deviation", "m3"): newer,
    }
    assert late.still_open(engine) == [chunk[3]]
    assert late.still_open(engine) == []  # once
    doc = orjson.loads(newer.to_bytes(UTC, late=True))
    assert doc["late"] is True
    assert "late" not in orjson.loads(newer.to_bytes(UTC))


@pytest.mark.anyio
async def test_history_chunks_end_on_an_arrival_slot_boundary(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings
) -> None:
    """Each chunk is followed by an advance to its last time: a chunk never ends inside one
    of the engine's arrival slots (two meters a second apart share one)."""
    engine = AnalyticsService(
        AnalyticsSettings(mqtt=mqtt_settings, influx=influx_settings),
        SiteRegistry([two_series_park()]),
    ).engines["svc"]
    step = engine.step_ms
    start = (time.time_ns() // 1_000_000 - DAY_MS) // step * step
    tags = {"park": "svc", "enterprise": "park", "meter": "main"}
    lines = []
    for k in range(40):
        t = start + k * step
        lines.append(encode_point("electricity", tags, {"p_kw": 100.0}, t))
        lines.append(encode_point("electricity", {**tags, "meter": "aux"}, {"p_kw": 1.0}, t + 1000))
    await _store(influx_settings, lines)
    async with InfluxReader(influx_settings) as reader:
        chunks = await history_rows(reader, engine, start, start + 40 * step, chunk=7)
    assert [c.t_ms.size for c in chunks[:3]] == [8, 8, 8]  # 7 would cut the 4th slot in two
    assert sum(c.t_ms.size for c in chunks) == 80
    assert all(a.t_ms[-1] // step < b.t_ms[0] // step for a, b in itertools.pairwise(chunks))


@pytest.mark.anyio
async def test_an_influxdb_error_midway_is_retried_then_given_up_with_an_error(
    mqtt_settings: MqttSettings,
    influx_settings: InfluxSettings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    now_ms = time.time_ns() // 1_000_000
    settings = AnalyticsSettings(mqtt=mqtt_settings, influx=influx_settings, rebuild_s=3 * 86_400)
    import analytics.service as service_module

    monkeypatch.setattr(service_module, "HISTORY_RETRIES", 2)
    calls: list[int] = []
    query = InfluxReader.query

    def failing(fail: set[int]) -> Any:
        async def q(reader: InfluxReader, statement: str) -> list[Series]:
            if "GROUP BY meter" in statement:  # history, not the horizon's queries
                calls.append(len(calls))
                if calls[-1] in fail:
                    raise InfluxUnavailableError("gone for a moment")
            return await query(reader, statement)

        return q

    caplog.set_level("INFO", logger="analytics.service")
    # the second slice's first read fails: read again, all four slices done
    monkeypatch.setattr(InfluxReader, "query", failing({1}))
    monkeypatch.setattr(time, "time", lambda: now_ms / 1000)
    service = AnalyticsService(settings, SiteRegistry([small_park()]))
    async with background(service.run()):
        await asyncio.wait_for(service.warm.wait(), timeout=30)
    assert len(calls) == -(-(now_ms - (now_ms - 3 * DAY_MS) // DAY_MS * DAY_MS) // DAY_MS) + 1
    assert not [r for r in caplog.records if r.levelname == "ERROR"]

    # every read of the second slice fails: given up there, with an ERROR naming park and time
    calls.clear()
    monkeypatch.setattr(InfluxReader, "query", failing({1, 2, 3}))
    service = AnalyticsService(settings, SiteRegistry([small_park()]))
    async with background(service.run()):
        await asyncio.wait_for(service.warm.wait(), timeout=30)
    assert len(calls) == 4  # the first slice, then the second three times (2 retries)
    second = datetime.fromtimestamp(((now_ms - 3 * DAY_MS) // DAY_MS + 1) * 86_400, UTC)
    [error] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert error.startswith(f"svc: rebuild from InfluxDB given up at {second.isoformat()}")
    # nothing derived from there: no mark of this worker's may pass it
    assert service.pinned == {"svc": int(second.timestamp() * 1000)}


class _Writer:
    """An InfluxWriter that refuses its first batch and keeps the lines of each."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def write(self, lines: list[str]) -> None:
        self.batches.append(list(lines))
        if len(self.batches) == 1:
            raise InfluxError("400: refused")


@pytest.mark.anyio
async def test_a_gateways_mark_is_written_when_first_heard_and_once_it_moved_on() -> None:
    """Each gateway's own mark is written when first heard (a refused write does not count)
    and then once it has moved GATEWAY_MARK_EVERY_MS on, not with every batch: a park of
    thousands of gateways would make every mark that wide; a mark without outputs (a
    refill's last) carries them all, and so does the one written on the way out, queue empty
    or not. A pin holds them too."""
    service = AnalyticsService(AnalyticsSettings(), SiteRegistry([_two_gateway_park()]))
    writer = _Writer()

    def batch(t: int, *gateways: str, outputs: bool = True) -> tuple[str, Advanced, dict[str, int]]:
        point = DerivedPoint("demand_15m", {"meter": "ma"}, {"p_kw_avg": 1.0}, t)
        progress = {"through_ms": t, "analysed_ms": t, **{f"analysed_ms@{g}": t for g in gateways}}
        return "svc", Advanced(points=[point] if outputs else []), progress

    def own(k: int) -> dict[str, int]:
        [mark] = [line for line in writer.batches[k] if line.startswith("analytics_progress")]
        return {g: int(t) for g, t in re.findall(r"analysed_ms@([\w-]+)=(\d+)i", mark)}

    h, every = 10 * HOUR_MS, GATEWAY_MARK_EVERY_MS
    for t, gateways, outputs in [
        (h, ("gw-a",), True),  # refused
        (h + 1000, ("gw-a",), True),  # first written
        (h + 2000, ("gw-a",), True),
        (h + 3000, ("gw-a", "gw-b"), True),  # gw-b first heard
        (h + every + 1000, ("gw-a", "gw-b"), True),  # gw-a moved far enough, gw-b not yet
        (h + every + 2000, ("gw-a", "gw-b"), False),  # a refill's last mark: all
        (h + every + 3000, ("gw-a", "gw-b"), True),
    ]:
        await service._write(writer, [batch(t, *gateways, outputs=outputs)])  # type: ignore[arg-type]
    assert [own(k) for k in range(1, 7)] == [
        {"gw-a": h + 1000}, {}, {"gw-b": h + 3000}, {"gw-a": h + every + 1000},
        {"gw-a": h + every + 2000, "gw-b": h + every + 2000}, {},
    ]  # fmt: skip
    await service._drain(writer)  # type: ignore[arg-type]
    assert own(7) == {"gw-a": h + every + 3000, "gw-b": h + every + 3000}  # queue empty
    service._pin("svc", h)
    await service._write(writer, [batch(h + 3 * HOUR_MS, "gw-a", "gw-b")])  # type: ignore[arg-type]
    assert own(8) == {"gw-a": h, "gw-b": h}


@pytest.mark.anyio
async def test_a_refused_batch_is_not_kept_and_a_given_up_refill_pins_the_marks() -> None:
    """A batch InfluxDB refused: its progress is not kept (only what was written is), but
    the marks after it are not pinned (a refill would derive the refused data again, and one
    bad point would hold every park of the batch back); a given-up refill's ``lo`` pins
    them."""
    service = AnalyticsService(AnalyticsSettings(), SiteRegistry([small_park()]))
    writer = _Writer()

    def batch(t: int) -> tuple[str, Advanced, dict[str, int]]:
        point = DerivedPoint("demand_15m", {"meter": "main"}, {"p_kw_avg": 1.0}, t)
        return "svc", Advanced(points=[point]), {"through_ms": t + HOUR_MS, "analysed_ms": t}

    def analysed(lines: list[str]) -> int:
        [mark] = [line for line in lines if line.startswith("analytics_progress")]
        found = re.search(r"analysed_ms=(\d+)i", mark)
        assert found is not None
        return int(found[1])

    await service._write(writer, [batch(10 * HOUR_MS)])  # type: ignore[arg-type]
    assert service.progress == {}  # not written: not kept
    await service._write(writer, [batch(12 * HOUR_MS)])  # type: ignore[arg-type]
    # not pinned: a refused batch's outputs are the data's fault, lost live anyway
    assert analysed(writer.batches[1]) == 12 * HOUR_MS
    assert service.pinned == {}
    assert service.progress["svc"] == {"through_ms": 13 * HOUR_MS, "analysed_ms": 12 * HOUR_MS}
    service._pin("svc", 9 * HOUR_MS)  # a refill given up there
    await service._write(writer, [batch(14 * HOUR_MS)])  # type: ignore[arg-type]
    assert analysed(writer.batches[2]) == 9 * HOUR_MS


def _sliced(lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi) read in day slices whose inner edges are on the UTC day grid."""
    edges = [lo, *range((lo // DAY_MS + 1) * DAY_MS, hi, DAY_MS), hi]
    return list(itertools.pairwise(edges))


@pytest.mark.anyio
async def test_a_snapshot_of_one_park_warms_it_up_since_then_and_rebuilds_the_other(
    mqtt_settings: MqttSettings,
    influx_settings: InfluxSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now_ms = time.time_ns() // 1_000_000
    settings = AnalyticsSettings(
        mqtt=mqtt_settings, influx=influx_settings, rebuild_s=3 * 86_400, state_dir=tmp_path
    )
    first = AnalyticsService(settings, SiteRegistry([small_park()]))
    engine = first.engines["svc"]
    index = engine.series_of("main", "p_kw")
    assert index is not None
    t0 = (now_ms - 2 * 3_600_000) // 60_000 * 60_000
    engine.feed(Batch("gw-park", 1, np.array([index]), np.array([t0]), np.array([400.0]), t0))
    engine.advance(t0 + 60_000)
    snapshot_now = engine.now_ms
    assert 0 < snapshot_now < now_ms
    first._save_snapshot()

    other = Park.model_validate({**small_park().model_dump(), "park": "other"})
    spans: dict[str, list[tuple[int, int]]] = {}

    async def spy(
        reader: InfluxReader, engine: Any, lo: int, hi: int, chunk: int = 1
    ) -> list[Rows]:
        spans.setdefault(engine.park.park, []).append((lo, hi))
        return []

    import analytics.service as service_module

    monkeypatch.setattr(service_module, "history_rows", spy)
    monkeypatch.setattr(time, "time", lambda: now_ms / 1000)
    second = AnalyticsService(settings, SiteRegistry([small_park(), other]))
    async with background(second.run()):
        await asyncio.wait_for(second.warm.wait(), timeout=30)
    # since the snapshot, not floored; a slice edge inside the span falls on the day grid
    assert spans["svc"] == _sliced(snapshot_now, now_ms)
    rebuilt = (now_ms - 3 * DAY_MS) // DAY_MS * DAY_MS
    assert spans["other"][0] == (rebuilt, rebuilt + DAY_MS)
    assert spans["other"][-1][1] == now_ms

    # a snapshot older than rebuild_s is no worse off than none: the last rebuild_s only
    spans.clear()
    third = AnalyticsService(
        settings.model_copy(update={"rebuild_s": 3600}), SiteRegistry([small_park()])
    )
    async with background(third.run()):
        await asyncio.wait_for(third.warm.wait(), timeout=30)
    assert spans["svc"] == _sliced(now_ms - 3_600_000, now_ms)


@pytest.mark.anyio
async def test_a_snapshot_of_another_version_leads_to_the_rebuild_span(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, tmp_path: Path
) -> None:
    park = small_park()
    now_ms = time.time_ns() // 1_000_000
    old = (now_ms - 3 * DAY_MS) // QUARTER_MS * QUARTER_MS  # an hour three days ago
    lines = [
        encode_point("electricity", {"park": "svc", "enterprise": "park", "meter": "main"},
                     {"p_kw": 500.0}, old + k * 60_000)
        for k in range(60)
    ]  # fmt: skip
    await _store(influx_settings, lines)
    snapshot = tmp_path / "analytics-snapshot.pickle"
    snapshot.write_bytes(pickle.dumps({"version": SNAPSHOT_VERSION - 1, "engines": {}}))
    settings = AnalyticsSettings(
        mqtt=mqtt_settings, influx=influx_settings, warmup_s=6 * 3600, state_dir=tmp_path
    )
    service = AnalyticsService(settings, SiteRegistry([park]))
    async with background(service.run()):
        await asyncio.wait_for(service.warm.wait(), timeout=30)
        # three days back: the rebuild's span (35 days), not the 6 h after a usable snapshot
        assert service.engines["svc"].now_ms >= old + 59 * 60_000
    # and the snapshot left behind is usable: the next start only warms up since its time
    second = AnalyticsService(settings, SiteRegistry([park]))
    assert second._restore_snapshot() == frozenset({"svc"})


HOUR_MS = 3_600_000


def _steps_history(now_ms: int, days: int) -> list[str]:
    """``days`` days of a factory's 5-minute load (as ``_days_of_history``) up to five minutes
    ago, with a lasting step from 14 h to 8 h ago and a larger one from 3 h to 2 h ago: a
    worker stopped 10 h ago saw the first event open; the ten hours after hold its close
    (more than ``warmup_s`` ago, which bounded warm16's rebuild) and the second's opening."""
    start = (now_ms - days * DAY_MS) // DAY_MS * DAY_MS
    tags = {"park": "svc", "enterprise": "park", "meter": "main"}
    lines = []
    for k in range((now_ms - 300_000 - start) // 300_000):
        t = start + k * 300_000
        hour = t % DAY_MS // HOUR_MS
        kw = (300.0 if 7 <= hour < 18 else 100.0) + 5.0 * math.sin(k * 0.7)
        kw += 400.0 if now_ms - 14 * HOUR_MS <= t < now_ms - 8 * HOUR_MS else 0.0
        kw += 600.0 if now_ms - 3 * HOUR_MS <= t < now_ms - 2 * HOUR_MS else 0.0
        lines.append(encode_point("electricity", tags, {"p_kw": kw}, t))
    return lines


def _message(e: Event) -> tuple[str, str, int]:
    return e.id, e.state.value, e.updated_at_ms or e.detected_at_ms


def _counted(service: AnalyticsService, name: str) -> float:
    """A counter's total over its labels."""
    return sum(
        sample.value
        for metric in service.metrics.registry.collect()
        for sample in metric.samples
        if sample.name == name
    )


@pytest.mark.anyio
@pytest.mark.parametrize("snapshot", [True, False], ids=["restored", "rebuilt"])
async def test_a_worker_back_after_ten_hours_writes_them_once_and_publishes_no_opened_twice(
    mqtt_settings: MqttSettings,
    influx_settings: InfluxSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    snapshot: bool,
) -> None:
    """A worker stopped 10 h ago left its mark; started again (from its snapshot, or rebuilt
    with none) it writes the messages of those 10 h, each once, and publishes (nobody did)
    those of the last ``publish_late_s`` (6 h) and the latest of each event still open, each
    flagged late, never one the earlier worker wrote; its rollups catch up from the mark.
    Started again 10 minutes later it writes, publishes and counts nothing."""
    now_ms = time.time_ns() // 1_000_000
    stopped = now_ms - 10 * HOUR_MS
    lines = _steps_history(now_ms, 9)
    await _store(influx_settings, lines)
    settings = AnalyticsSettings(
        mqtt=mqtt_settings,
        influx=influx_settings,
        rebuild_s=8 * 86_400,
        history_slice_s=SLICE_MS / 1000,
        state_dir=tmp_path if snapshot else None,
    )
    # the reference: one pass from the first worker's start to now
    since = (stopped - 8 * DAY_MS) // SLICE_MS * SLICE_MS
    reference = AnalyticsService(settings, SiteRegistry([small_park()])).engines["svc"]
    async with InfluxReader(influx_settings) as reader:
        [rows] = await history_rows(reader, reference, since, now_ms, chunk=10**9)
    found = reference.feed_rows(rows).events + reference.advance(int(rows.t_ms.max())).events
    # with no mark, the first worker writes its last warmup_s (6 h)
    expected = [_message(e) for e in found if _message(e)[2] >= stopped - 6 * HOUR_MS]

    caught_up: list[int | None] = []
    run = RollupJob.run

    async def spy_run(job: RollupJob, now: int) -> int:
        caught_up.append(job.done_ms)  # the first run's: where it catches up from
        return await run(job, now)

    monkeypatch.setattr(RollupJob, "run", spy_run)

    async def rolled(service: AnalyticsService) -> None:
        await eventually(lambda: _true(caught_up), 20, "a rollup run")

    points: list[DerivedPoint] = []
    _, w1, _, _ = await _rebuild(settings, stopped, monkeypatch, then=rolled, points=points)
    async with InfluxReader(influx_settings) as reader:
        [mark] = await reader.query("SELECT max(analysed_ms) FROM analytics_progress")
    marked = int(mark.values[0][1])
    # its data's end: its last reading analysed (5-minute readings)
    assert stopped - 30 * 60_000 <= marked <= stopped + 5 * 60_000
    assert caught_up == [stopped - 6 * HOUR_MS]  # no mark before it: warmup_s

    alerts: list[tuple[str, str]] = []
    flagged: list[object] = []

    async def watch(client: aiomqtt.Client) -> None:
        async for m in client.messages:
            doc = orjson.loads(bytes(m.payload))
            alerts.append((doc["id"], doc["state"]))
            flagged.append(doc.get("late"))

    published: list[Event] = []

    async def published_all(service: AnalyticsService) -> None:
        await rolled(service)

        async def check() -> bool:
            return len(alerts) >= len(published) > 0

        await eventually(check, 20, "the outage's alerts")

    async with mqtt.client(mqtt_settings, "outage-watcher") as watcher:
        await watcher.subscribe("pw/v1/svc/alerts/#", qos=1)
        async with background(watch(watcher)):
            caught_up.clear()
            second, w2, _, _ = await _rebuild(
                settings, now_ms, monkeypatch, published, then=published_all, points=points
            )
            # the rollups catch up from the mark too (and at least warmup_s)
            assert caught_up == [min(marked, now_ms - 6 * HOUR_MS)]
            once = list(alerts)
            caught_up.clear()
            again: list[Event] = []
            rewritten: list[DerivedPoint] = []
            third, w3, _, _ = await _rebuild(
                settings, now_ms + 10 * 60_000, monkeypatch, again, then=rolled, points=rewritten
            )
            await asyncio.sleep(1.0)  # time for an alert it should not have published
            later = alerts[len(once) :]

    opened_before = {e.id for e in w1 if e.state is State.OPENED}
    assert [m for m in map(_message, w2) if m[2] < marked] == []
    # the first step's close and the second's opening: in the outage, written once in all
    assert any(
        e.state is State.CLOSED and e.id in opened_before and _message(e)[2] < now_ms - 6 * HOUR_MS
        for e in w2
    )
    assert any(e.state is State.OPENED for e in w2)
    assert sorted(map(_message, w1 + w2)) == sorted(expected)
    # published: the outage's messages of the last 6 h, and of an event still open whose
    # messages are all older its latest, each once, flagged late; no opened the first wrote
    bound = now_ms - 6 * HOUR_MS
    recent = [e for e in w2 if _message(e)[2] >= bound]
    still_open = {e.id for e in second.engines["svc"].events.open.values()}
    latest = {e.id: e for e in w2 if _message(e)[2] < bound and e.id in still_open}
    held = [e for i, e in latest.items() if i not in {r.id for r in recent}]
    assert recent, "the second step is in the last 6 h"
    assert any(_message(e)[2] < bound for e in w2), "the first step's close is older"
    assert published == recent + held
    assert sorted(once) == sorted((e.id, e.state.value) for e in published)
    assert flagged == [True] * len(once)
    assert not [a for a in once if a[1] == "opened" and a[0] in opened_before]
    assert _counted(second, "pw_analytics_events_total") == len(w2)
    # ten minutes on: nothing older written again, nothing published, nothing counted
    assert (w3, again, later) == ([], [], [])
    assert third.horizons["svc"].marked
    from_ms = third.horizons["svc"].from_ms
    # the second's data analysed: its last reading (5-minute readings, the last 10-15 minutes
    # ago) at most a reading behind, whatever the minute
    assert from_ms >= now_ms - 20 * 60_000
    # its rollups redo warmup_s (hours the earlier worker's rollups failed in lie behind the
    # detectors' mark)
    assert caught_up == [min(from_ms, now_ms + 10 * 60_000 - 6 * HOUR_MS)]
    assert _counted(third, "pw_analytics_events_total") == 0
    # derived points from an hour before the horizon on are written again, each as it was
    # stored (rebuilt; a restored engine has read nothing new since its snapshot): at any
    # minute of the hour, that is the last hour's blocks and more
    if snapshot:
        assert rewritten == []
    else:
        again_keys = {_point_key(p) for p in rewritten}
        assert again_keys == {_point_key(p) for p in points if p.t_ms >= from_ms - HOUR_MS}
        assert len([p for p in rewritten if p.measurement == "demand_15m"]) >= 3
    assert not [p for p in rewritten if p not in points]
    # the derived points stored are the workers' points; one written by both (the second
    # writes from the first's horizon's hour on) the same both times
    by_key: dict[tuple[str, int], list[DerivedPoint]] = {}
    for p in points:
        by_key.setdefault((p.measurement, p.t_ms), []).append(p)
    assert all(q == same[0] for same in by_key.values() for q in same)
    keys = sorted(by_key)
    async with InfluxReader(influx_settings) as reader:
        [blocks] = await reader.query("SELECT p_kw_avg FROM demand_15m")
    assert [("demand_15m", int(row[0])) for row in blocks.values] == keys


def _point_key(p: DerivedPoint) -> tuple[str, tuple[tuple[str, str], ...], int]:
    return p.measurement, tuple(sorted(p.tags.items())), p.t_ms


async def _true(items: list[Any]) -> bool:
    return bool(items)


def _virtual_park(*virtual: str) -> Park:
    meters: list[dict[str, Any]] = [
        {"id": "main", "utility": "electricity", "contracted_demand_kw": 1000},
        {"id": "aux", "utility": "electricity"},
    ]
    meters += [{"id": v, "utility": "electricity", "formula": "main - aux"} for v in virtual]
    return Park.model_validate({"park": "svc", "meters": meters})


@pytest.mark.anyio
async def test_a_rebuild_backfills_a_virtual_meter_added_since_and_no_other(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A virtual meter's slots before its first stored point are written by a rebuild over
    its whole span (one never computed, one added to the site since), while the other
    derived series start at the mark: nothing older is written again."""
    now_ms = time.time_ns() // 1_000_000
    _, lines = _days_of_history(now_ms, 2)
    await _store(influx_settings, lines)
    settings = AnalyticsSettings(
        mqtt=mqtt_settings,
        influx=influx_settings,
        rebuild_s=86_400,
        history_slice_s=SLICE_MS / 1000,
        rollups=False,
    )

    def times(points: list[DerivedPoint], meter: str) -> list[int]:
        return sorted(p.t_ms for p in points if p.tags.get("meter") == meter and "p_kw" in p.fields)

    first: list[DerivedPoint] = []
    await _rebuild(settings, now_ms, monkeypatch, points=first, park=_virtual_park("net"))
    since = (now_ms - DAY_MS) // SLICE_MS * SLICE_MS
    net = times(first, "net")
    assert net[0] < since + HOUR_MS  # from the span's first readings, not from warmup_s
    assert min(p.t_ms for p in first if p.measurement == "demand_15m") >= now_ms - 7 * HOUR_MS

    later: list[DerivedPoint] = []
    added = _virtual_park("net", "net2")
    published: list[Event] = []  # after a mark: what it writes is published
    service, _, _, _ = await _rebuild(
        settings, now_ms + 600_000, monkeypatch, published, points=later, park=added
    )
    # stored up to the mark: only from an hour before it on written again (overwriting itself)
    hour = service.horizons["svc"].from_ms - HOUR_MS
    assert hour > since + HOUR_MS
    assert times(later, "net") == [t for t in net if t >= hour]
    later_since = (now_ms + 600_000 - DAY_MS) // SLICE_MS * SLICE_MS
    assert times(later, "net2") == [t for t in net if t >= later_since]  # backfilled

    def blocks(points: list[DerivedPoint]) -> set[tuple[str, tuple[tuple[str, str], ...], int]]:
        return {
            _point_key(p)
            for p in points
            if p.measurement == "demand_15m" and p.tags.get("meter") != "net2"
        }

    # the blocks as the first worker wrote them (net2's are new), from that hour on (at any
    # minute of the hour)
    assert blocks(later) == {k for k in blocks(first) if k[2] >= hour}
    assert blocks(later)


@pytest.mark.anyio
async def test_the_horizon_is_the_mark_capped_at_rebuild_s_and_events_stored_by_message_time(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings
) -> None:
    """No mark: the default; a mark: its slowest gateway's analysed data time
    (``analysed_ms``, not the park clock's ``through_ms``), but no older than ``rebuild_s`` (an
    outage longer than that writes the rebuild's span); an event InfluxDB holds counts at its
    message's time (``updated_ms``), or, written before that field, its opening's."""
    now_ms = time.time_ns() // 1_000_000
    service = AnalyticsService(
        AnalyticsSettings(mqtt=mqtt_settings, influx=influx_settings, rebuild_s=86_400),
        SiteRegistry([small_park()]),
    )
    engine = service.engines["svc"]
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
        none = await service._horizon(reader, engine, now_ms - DAY_MS, now_ms, now_ms - 7)
        assert (none.from_ms, none.marked, none.stored) == (now_ms - 7, False, {})
        old = now_ms - 40 * DAY_MS
        svc = {"park": "svc"}
        lines = [
            encode_point("analytics_progress", svc, {"through_ms": old}, old),
            encode_point("anomaly", svc, {"id": "a", "updated_ms": now_ms - 5}, now_ms - 9),
            encode_point("anomaly", svc, {"id": "b"}, now_ms - 8),
        ]
        async with InfluxWriter(influx_settings) as writer:
            await writer.write(lines)
        capped = await service._horizon(reader, engine, now_ms - DAY_MS, now_ms, now_ms - 7)
        assert (capped.from_ms, capped.marked) == (now_ms - DAY_MS, True)
        assert capped.stored == {"a": now_ms - 5, "b": now_ms - 8}
        recent = now_ms - HOUR_MS
        async with InfluxWriter(influx_settings) as writer:
            mark = {"through_ms": recent, "analysed_ms": recent - 2 * HOUR_MS}
            await writer.write([encode_point("analytics_progress", {"park": "svc"}, mark, recent)])
        marked = await service._horizon(reader, engine, now_ms - DAY_MS, now_ms, now_ms - 7)
        assert (marked.from_ms, marked.marked) == (recent - 2 * HOUR_MS, True)
        # the next mark starts from these (never lower)
        assert service.progress["svc"] == {"through_ms": recent, "analysed_ms": marked.from_ms}


def _two_gateway_park(*, virtual: bool = False) -> Park:
    """ma on gw-a, mb on gw-b; ``virtual``: and mv = ma + mb."""
    mv = {"id": "mv", "utility": "electricity", "formula": "ma + mb", "contracted_demand_kw": 1000}
    return Park.model_validate(
        {"park": "svc", "meters": [
            {"id": "ma", "utility": "electricity", "gateway": "gw-a", "contracted_demand_kw": 1000},
            {"id": "mb", "utility": "electricity", "gateway": "gw-b", "contracted_demand_kw": 1000},
            *([mv] if virtual else []),
        ]}
    )  # fmt: skip


def _minute_lines(meter: str, a_ms: int, b_ms: int, kw: float = 300.0) -> list[str]:
    """A meter's load every minute in ``[a_ms, b_ms)`` (``kw`` with a little wobble)."""
    tags = {"park": "svc", "enterprise": "park", "meter": meter}
    return [
        encode_point("electricity", tags, {"p_kw": kw + 5.0 * math.sin(t / 60_000 * 0.7)}, t)
        for t in range(a_ms, b_ms, 60_000)
    ]


async def _gateway_b_behind(
    influx_settings: InfluxSettings,
    mqtt_settings: MqttSettings,
    monkeypatch: pytest.MonkeyPatch,
    backlog_kw: float,
) -> tuple[AnalyticsSettings, int]:
    """A day of two gateways' readings; a first worker stops 7 minutes into a quarter hour
    while gw-b's data ends 40 minutes before (its edge buffers, or it is just slow) and gw-a's
    a minute before; then gw-b's last 40 minutes come in (``backlog_kw`` in their first 20),
    and gw-a goes on. The settings and the first worker's time."""
    now_ms = time.time_ns() // 1_000_000 // QUARTER_MS * QUARTER_MS + 7 * 60_000
    start = now_ms - DAY_MS
    await _store(
        influx_settings,
        _minute_lines("ma", start, now_ms - 60_000)
        + _minute_lines("mb", start, now_ms - 40 * 60_000),
    )
    settings = AnalyticsSettings(
        mqtt=mqtt_settings,
        influx=influx_settings,
        rebuild_s=DAY_MS / 1000,
        history_slice_s=SLICE_MS / 1000,
        rollups=False,
    )
    await _rebuild(settings, now_ms, monkeypatch, park=_two_gateway_park())
    async with InfluxWriter(influx_settings) as writer:
        await writer.write(
            _minute_lines("mb", now_ms - 40 * 60_000, now_ms - 20 * 60_000, backlog_kw)
            + _minute_lines("mb", now_ms - 20 * 60_000, now_ms - 60_000)
            + _minute_lines("ma", now_ms - 60_000, now_ms + 9 * 60_000)
        )
    return settings, now_ms


@pytest.mark.anyio
async def test_a_lagging_gateways_demand_blocks_are_written_by_the_next_worker(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gw-b's last quarter hours were not in when the first worker stopped (gw-a's were, and
    its blocks were written); the next worker writes gw-b's once they are in InfluxDB: the
    mark is the slowest gateway's analysed data, and no stamp of gw-a's blocks hides them."""
    settings, now_ms = await _gateway_b_behind(influx_settings, mqtt_settings, monkeypatch, 300.0)
    later = now_ms + 10 * 60_000
    service, _, _, _ = await _rebuild(settings, later, monkeypatch, [], park=_two_gateway_park())

    async def blocks(meter: str) -> list[int]:
        async with InfluxReader(influx_settings) as reader:
            [found] = await reader.query(f"SELECT p_kw_avg FROM demand_15m WHERE meter = '{meter}'")
        return [int(row[0]) for row in found.values]

    complete = now_ms - 7 * 60_000  # both meters' blocks before it are complete
    ma = [t for t in await blocks("ma") if t < complete]
    mb = [t for t in await blocks("mb") if t < complete]
    assert complete - 2 * QUARTER_MS in mb  # gw-b's last two: in InfluxDB now
    assert mb == ma
    assert len(mb) >= 4 * 6  # (the first worker wrote its last warmup_s, 6 h)
    # the mark held gw-b's data end (40 minutes back), not gw-a's
    assert service.horizons["svc"].from_ms <= now_ms - 40 * 60_000


@pytest.mark.anyio
async def test_a_silent_gateways_backlog_peak_is_written_and_published_once_after_a_restart(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gw-b fell silent 40 minutes before the first worker stopped (its slots were closed by
    silence, the park clock moved on); its backlog, with demand over the contract, reaches
    InfluxDB while no worker runs. The next worker writes the peak and publishes it (late);
    the one after that neither writes nor publishes it again."""
    settings, now_ms = await _gateway_b_behind(influx_settings, mqtt_settings, monkeypatch, 1500.0)
    alerts: list[dict[str, Any]] = []

    async def watch(client: aiomqtt.Client) -> None:
        async for m in client.messages:
            alerts.append(orjson.loads(bytes(m.payload)))

    def peaks(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [
            (d["id"], d["state"])
            for d in docs
            if d["kind"] == "demand_peak" and d.get("meter") == "mb"
        ]

    async with mqtt.client(mqtt_settings, "backlog-watcher") as watcher:
        await watcher.subscribe("pw/v1/svc/alerts/#", qos=1)
        async with background(watch(watcher)):
            published: list[Event] = []

            async def sent(service: AnalyticsService) -> None:
                async def check() -> bool:
                    return len(alerts) >= len(published)

                await eventually(check, 20, "the late alerts")

            _, written, _, _ = await _rebuild(
                settings, now_ms + 10 * 60_000, monkeypatch, published, then=sent,
                park=_two_gateway_park(),
            )  # fmt: skip
            first = list(alerts)
            again: list[Event] = []
            _, rewritten, _, _ = await _rebuild(
                settings, now_ms + 20 * 60_000, monkeypatch, again, park=_two_gateway_park()
            )
            await asyncio.sleep(1.0)  # time for an alert it should not have published
            later = alerts[len(first) :]

    opened = [
        e
        for e in written
        if e.kind == "demand_peak" and e.meter == "mb" and e.state is State.OPENED
    ]
    assert len(opened) == 1
    peak = opened[0]
    assert now_ms - 40 * 60_000 <= peak.detected_at_ms < now_ms - 20 * 60_000
    async with InfluxReader(influx_settings) as reader:
        [stored] = await reader.query(f'SELECT "id" FROM anomaly WHERE "id" = \'{peak.id}\'')
    assert stored.values
    # published once (late), the opening among its messages; not by the next worker
    assert (peak.id, "opened") in peaks(first)
    assert len(peaks(first)) == len(set(peaks(first)))
    assert all(d.get("late") is True for d in first)
    assert not [e for e in rewritten + again if e.id == peak.id]
    assert peaks(later) == []


@pytest.mark.anyio
async def test_a_gateway_never_heard_has_its_backlog_written_and_published_once(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gw-b was never heard by the first worker (its edge buffered the whole day); its
    backlog, a peak 40 to 20 minutes before that worker's mark among it, reaches InfluxDB
    while no worker runs. The mark is per gateway: gw-b has none, so all of its data is new
    to the next worker, which writes the peak and its demand blocks and publishes the peak
    (late), and so the peak of the virtual meter mv = ma + mb (it starts where the earliest
    of its formula's meters does); gw-a's events, which the first worker wrote, are not
    written again; nor is anything written again by the worker after."""
    now_ms = time.time_ns() // 1_000_000 // QUARTER_MS * QUARTER_MS + 7 * 60_000
    start = now_ms - DAY_MS
    await _store(influx_settings, _minute_lines("ma", start, now_ms - 60_000))
    settings = AnalyticsSettings(
        mqtt=mqtt_settings,
        influx=influx_settings,
        rebuild_s=DAY_MS / 1000,
        history_slice_s=SLICE_MS / 1000,
        rollups=False,
    )
    park = _two_gateway_park(virtual=True)
    first, first_written, _, _ = await _rebuild(settings, now_ms, monkeypatch, park=park)
    assert set(first.progress["svc"]) == {"through_ms", "analysed_ms", "analysed_ms@gw-a"}
    async with InfluxWriter(influx_settings) as writer:
        await writer.write(
            _minute_lines("mb", start, now_ms - 40 * 60_000)
            + _minute_lines("mb", now_ms - 40 * 60_000, now_ms - 20 * 60_000, 1500.0)
            + _minute_lines("mb", now_ms - 20 * 60_000, now_ms - 60_000)
            + _minute_lines("ma", now_ms - 60_000, now_ms + 9 * 60_000)
        )
    published: list[Event] = []
    points: list[DerivedPoint] = []
    service, written, _, _ = await _rebuild(
        settings, now_ms + 10 * 60_000, monkeypatch, published, points=points, park=park
    )
    assert service.horizons["svc"].from_ms >= now_ms - 2 * 60_000  # gw-a's: after the peak
    for meter in ("mb", "mv"):
        [peak] = [
            e
            for e in written
            if e.kind == "demand_peak" and e.meter == meter and e.state is State.OPENED
        ]
        assert now_ms - 40 * 60_000 <= peak.detected_at_ms < now_ms - 20 * 60_000
        assert (peak.id, State.OPENED) in [(e.id, e.state) for e in published]
    blocks = {p.t_ms for p in points if p.measurement == "demand_15m" and p.tags["meter"] == "mb"}
    assert [t for t in blocks if now_ms - 40 * 60_000 <= t < now_ms - 20 * 60_000]  # the peak's
    # no message of gw-a's the first worker wrote is written again
    assert not {_message(e) for e in first_written} & {_message(e) for e in written}
    _, again, _, _ = await _rebuild(settings, now_ms + 20 * 60_000, monkeypatch, [], park=park)
    assert not {_message(e) for e in written} & {_message(e) for e in again}
    keys = [r[1:] for r in await _open_rows(influx_settings)]
    assert len(keys) == len(set(keys))  # one open event per kind and meter


@pytest.mark.anyio
async def test_a_gateway_first_heard_with_part_of_its_backlog_has_the_rest_written_after(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first worker heard gw-a only; part of gw-b's backlog (to 3 h before that worker's
    mark) came in and a second worker refilled it: its gw-b mark is there, its analysed_ms is
    the first worker's (marks only go forward). The rest of the backlog, a peak in it, comes
    in: the third worker starts gw-b's meter at gw-b's own mark, not at analysed_ms, so the
    peak is written and published (the review's test_probe_gw_join.py)."""
    now_ms = time.time_ns() // 1_000_000 // QUARTER_MS * QUARTER_MS + 7 * 60_000
    start = now_ms - DAY_MS
    await _store(influx_settings, _minute_lines("ma", start, now_ms - 60_000))
    settings = AnalyticsSettings(
        mqtt=mqtt_settings,
        influx=influx_settings,
        rebuild_s=DAY_MS / 1000,
        history_slice_s=SLICE_MS / 1000,
        rollups=False,
    )
    park = _two_gateway_park()
    await _rebuild(settings, now_ms, monkeypatch, park=park)
    async with InfluxWriter(influx_settings) as writer:
        await writer.write(
            _minute_lines("mb", start, now_ms - 3 * HOUR_MS)
            + _minute_lines("ma", now_ms - 60_000, now_ms + 9 * 60_000)
        )
    second, _, _, _ = await _rebuild(settings, now_ms + 10 * 60_000, monkeypatch, [], park=park)
    assert second.progress["svc"]["analysed_ms@gw-b"] < now_ms - 2 * HOUR_MS
    assert second.progress["svc"]["analysed_ms"] > now_ms - HOUR_MS
    async with InfluxWriter(influx_settings) as writer:
        await writer.write(
            _minute_lines("mb", now_ms - 3 * HOUR_MS, now_ms - 160 * 60_000)
            + _minute_lines("mb", now_ms - 160 * 60_000, now_ms - 140 * 60_000, 1500.0)
            + _minute_lines("mb", now_ms - 140 * 60_000, now_ms + 19 * 60_000)
            + _minute_lines("ma", now_ms + 9 * 60_000, now_ms + 19 * 60_000)
        )
    published: list[Event] = []
    _, written, _, _ = await _rebuild(
        settings, now_ms + 20 * 60_000, monkeypatch, published, park=park
    )
    [peak] = [
        e
        for e in written
        if e.kind == "demand_peak" and e.meter == "mb" and e.state is State.OPENED
    ]
    assert now_ms - 160 * 60_000 <= peak.detected_at_ms < now_ms - 140 * 60_000
    assert (peak.id, State.OPENED) in [(e.id, e.state) for e in published]


@pytest.mark.anyio
async def test_a_refill_closes_an_event_held_open_that_it_did_not_find_again(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first worker opened a comm_loss for gw-b's silent meter; gw-b's backlog came in,
    so the refill finds no gap and never knows that event: it closes it (superseded, at its
    data time, its stored evidence kept, published late), so InfluxDB holds one open event
    per kind and meter (the review's test_probe_dead_gateway.py::test_orphan_open_events).
    So too an event stored under an enterprise its meter no longer has, or of a meter removed
    since: its close lands on the stored point. One stored as updated after the refill's data
    clock is left to the live engine; stored points that do not parse (no severity, a family
    or severity this version lacks, no kind) are skipped, and the worker goes on."""
    settings, now_ms = await _gateway_b_behind(influx_settings, mqtt_settings, monkeypatch, 1500.0)
    at = now_ms - 30 * 60_000  # after the mark (gw-b's data end), before the refill's clock

    seconds = itertools.count()

    def stored(event_id: str, tags: dict[str, str], **fields: Any) -> str:
        t = at + next(seconds) * 1000  # a point each (same tags and time: one point)
        fields = {"id": event_id, "state": "opened", "open": True, "start_ms": t,
                  "updated_ms": t, "evidence": '{"kw": 1234.5}', **fields}  # fmt: skip
        return encode_point("anomaly", {"park": "svc", **tags}, fields, t)

    demand = {"kind": "demand_peak", "family": "demand"}
    await _store(
        influx_settings,
        [
            stored("x-moved", {**demand, "meter": "ma", "enterprise": "old-ent"}, severity="major"),
            stored("x-gone", {**demand, "meter": "gone", "enterprise": "e9"}, severity="major"),
            stored("x-later", {**demand, "meter": "ma"}, severity="major", updated_ms=at + DAY_MS),
            stored("x-nosev", {**demand, "meter": "ma"}),
            stored("x-sev", {**demand, "meter": "ma"}, severity="dire"),
            stored("x-family", {**demand, "family": "future", "meter": "ma"}, severity="major"),
            stored("x-nokind", {"family": "demand", "meter": "ma"}, severity="major"),
        ],
    )  # fmt: skip
    query = 'SELECT "id", "kind", "meter", "open", "evidence", "enterprise" FROM anomaly'
    async with InfluxReader(influx_settings) as reader:
        [before] = await reader.query(query)
    orphans = {
        r[1]: orjson.loads(r[5])
        for r in before.values
        if r[2] == "comm_loss" and r[3] == "mb" and r[4]
    }
    assert orphans, "the first worker saw gw-b's silence"
    published: list[Event] = []
    service, written, _, _ = await _rebuild(
        settings, now_ms + 10 * 60_000, monkeypatch, published, park=_two_gateway_park()
    )  # fmt: skip
    closes = [e for e in written if e.id in orphans]
    assert [(e.state, e.evidence) for e in closes] == [
        (State.CLOSED, {**orphans[e.id], "superseded": True}) for e in closes
    ]
    assert {e.id for e in closes} == set(orphans)
    engine = service.engines["svc"]
    assert engine.park_emitted is not None
    assert all(e.end_ms == engine.park_emitted * engine.step_ms for e in closes)
    assert [e for e in published if e.id in orphans] == closes
    moved = [e for e in written if e.id in ("x-moved", "x-gone")]
    assert sorted((e.id, e.state, e.evidence["kw"]) for e in moved) == [
        ("x-gone", State.CLOSED, 1234.5), ("x-moved", State.CLOSED, 1234.5)
    ]  # fmt: skip
    async with InfluxReader(influx_settings) as reader:
        [after] = await reader.query(query + ' WHERE "open" = true')
        [both] = await reader.query(query + " WHERE \"id\" = 'x-moved' OR \"id\" = 'x-gone'")
    # each close overwrote its stored point: no second point in another enterprise's series
    assert sorted((r[1], r[6], r[4]) for r in both.values) == [
        ("x-gone", "e9", False), ("x-moved", "old-ent", False)
    ]  # fmt: skip
    unreadable = {"x-nosev", "x-sev", "x-family", "x-nokind"}
    assert not [e for e in written if e.id in unreadable | {"x-later"}]
    assert {r[1] for r in after.values} == {e.id for e in engine.events.open.values()} | {
        "x-later"
    } | unreadable
    still = [(r[2], r[3]) for r in after.values if r[1] not in unreadable | {"x-later"}]
    assert len(still) == len(set(still))  # one open event per kind and meter


@pytest.mark.parametrize(
    ("hold_min", "online"), [(24 * 60, True), (30, False), (30, True)], ids=["day", "off", "dead"]
)
def test_the_analysed_mark_is_the_slowest_gateways_data_at_most_max_hold_behind(
    hold_min: int, online: bool
) -> None:
    """``analysed_ms``: gw-b fell silent after an hour while gw-a went on for two; its slots
    are closed by silence (the park clock moves on), but the data analysed is its last
    reading's — no further back than ``max_hold_ms`` behind the park clock's emitted slots
    while its status is ``offline`` (its edge buffers); silent longer than that and
    ``online``, it is left out (dead: it would hold the mark back for good)."""
    rules = ClockRules(max_hold_ms=hold_min * 60_000)
    engine = ParkEngine(_two_gateway_park(), DETECTORS, clock_rules=rules)
    a, b = engine.index[SeriesKey("ma", "p_kw")], engine.index[SeriesKey("mb", "p_kw")]
    assert engine.analysed_ms() is None
    t0 = 1_796_400_000_000 // HOUR_MS * HOUR_MS
    for k in range(120):
        t = t0 + k * 60_000
        for gateway, series in (("gw-a", a), ("gw-b", b)) if k < 60 else (("gw-a", a),):
            one = np.array([series])
            engine.feed(Batch(gateway, k + 1, one, np.array([t]), np.array([300.0]), t + 1000))
        if k == 59 and not online:
            engine.gateway_status("gw-b", False, t + 1000)  # its last will
        engine.advance(t + 1000)
    assert engine.park_emitted is not None
    through = engine.park_emitted * engine.step_ms
    # gw-b's silence closed its slots (offline: once held max_hold_ms)
    assert through >= t0 + (110 if online else 60 + hold_min - 5) * 60_000
    each = engine.analysed_by_gateway()
    assert each is not None
    assert engine.analysed_ms() == min(each.values())
    if hold_min == 30 and online:
        assert engine.analysed_ms() == min(t0 + 119 * 60_000, through)  # gw-a's
        assert each["gw-b"] == through  # dead: no hold on its own mark either
    else:
        assert engine.analysed_ms() == max(t0 + 59 * 60_000, through - hold_min * 60_000)


async def _open_rows(influx_settings: InfluxSettings) -> list[tuple[str, str, str]]:
    """The events InfluxDB holds open: (id, kind, meter or zone)."""
    async with InfluxReader(influx_settings) as reader:
        found = await reader.query(
            'SELECT "id", "kind", "meter", "zone" FROM anomaly WHERE "open" = true'
        )
    return sorted((r[1], r[2], r[3] or r[4]) for s in found for r in s.values)


async def _eight_of_nine_days(
    influx_settings: InfluxSettings, mqtt_settings: MqttSettings
) -> tuple[AnalyticsSettings, int, int]:
    """Nine days of :func:`_days_of_history` stored, and settings that rebuild their last
    eight in 6 h slices (no rollups; a quick ticker); the workers' time (off the first five
    minutes of a slice: the history's last reading is in its slice) and the rebuild's start."""
    real_now = _history_clock()
    _, lines = _days_of_history(real_now, 9)
    now_ms = real_now - 300_000 if real_now % SLICE_MS < 300_000 else real_now
    await _store(influx_settings, lines)
    settings = AnalyticsSettings(
        mqtt=mqtt_settings,
        influx=influx_settings,
        rebuild_s=8 * 86_400,
        history_slice_s=SLICE_MS / 1000,
        rollups=False,
        tick_s=0.2,
    )
    return settings, now_ms, (now_ms - 8 * DAY_MS) // SLICE_MS * SLICE_MS


def _mark_line(mark_ms: int) -> str:
    """An earlier worker's progress mark at ``mark_ms`` (both times; no gateway's own)."""
    fields = {"through_ms": mark_ms, "analysed_ms": mark_ms}
    return encode_point("analytics_progress", {"park": "svc"}, fields, mark_ms // HOUR_MS * HOUR_MS)


@pytest.mark.anyio
@pytest.mark.parametrize("updated_after_mark", [False, True])
async def test_an_event_open_since_before_the_span_is_held_by_a_rebuild(
    mqtt_settings: MqttSettings,
    influx_settings: InfluxSettings,
    monkeypatch: pytest.MonkeyPatch,
    updated_after_mark: bool,
) -> None:
    """A comm_loss open since 40 days, before the rebuild's span: the rebuild can never find
    it by its id, and its cold engine's silence says nothing, so it is held (left open for
    the live engine's own of its kind and subject), even when its last update came after the
    mark (the review's test_probe_before_span.py)."""
    settings, now_ms, _ = await _eight_of_nine_days(influx_settings, mqtt_settings)
    found = now_ms - 40 * DAY_MS
    updated = now_ms - 2 * HOUR_MS if updated_after_mark else found
    tags = {"park": "svc", "kind": "comm_loss", "family": "meter_fault", "meter": "main"}
    fields = {
        "id": "x-old",
        "state": "updated" if updated_after_mark else "opened",
        "open": True,
        "start_ms": found,
        "updated_ms": updated,
        "severity": "major",
        "evidence": '{"kw": 1.0}',
    }
    await _store(
        influx_settings,
        [
            encode_point("anomaly", {**tags, "enterprise": "park"}, fields, found),
            _mark_line(now_ms - 3 * HOUR_MS),
        ],
    )
    published: list[Event] = []
    service, written, _, _ = await _rebuild(settings, now_ms, monkeypatch, published)
    assert list(service.horizons["svc"].held) == ["x-old"]
    assert [e for e in written if e.id == "x-old"] == []
    assert [e for e in published if e.id == "x-old"] == []


@pytest.mark.anyio
@pytest.mark.parametrize("before_span", [False, True])
async def test_an_event_closed_after_its_meter_moved_is_not_closed_again(
    mqtt_settings: MqttSettings,
    influx_settings: InfluxSettings,
    monkeypatch: pytest.MonkeyPatch,
    before_span: bool,
) -> None:
    """An event whose meter changed enterprise while it was open, then closed live: its close
    went to the new enterprise's point only, the old one's still says open. A refill takes
    the id as closed (one of its points is): no second close, none published, none held
    (the review's test_probe_stale_row.py)."""
    settings, now_ms, _ = await _eight_of_nine_days(influx_settings, mqtt_settings)
    found = now_ms - (40 * DAY_MS if before_span else 3 * HOUR_MS)
    tags = {"park": "svc", "kind": "comm_loss", "family": "meter_fault", "meter": "main"}
    opened: dict[str, float | int | bool | str] = {
        "id": "x-moved",
        "start_ms": found,
        "severity": "major",
        "evidence": '{"kw": 1.0}',
        "state": "opened",
        "open": True,
        "updated_ms": found,
    }
    closed = {**opened, "state": "closed", "open": False, "updated_ms": found + HOUR_MS}
    await _store(
        influx_settings,
        [
            encode_point("anomaly", {**tags, "enterprise": "old-ent"}, opened, found),
            encode_point("anomaly", {**tags, "enterprise": "park"}, closed, found),
            _mark_line(now_ms - 30 * 60_000),
        ],
    )
    published: list[Event] = []
    service, written, _, _ = await _rebuild(settings, now_ms, monkeypatch, published)
    assert [e for e in written if e.id == "x-moved"] == []
    assert [e for e in published if e.id == "x-moved"] == []
    assert "x-moved" not in service.horizons["svc"].held


@pytest.mark.anyio
@pytest.mark.parametrize("case", ["carried-on", "closed", "moved"])
async def test_a_stored_event_found_again_at_another_time_is_carried_on_or_closed(
    mqtt_settings: MqttSettings,
    influx_settings: InfluxSettings,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    """An earlier worker stored an event open, last updated before its mark, that the
    rebuild finds again at another ``detected_at`` (another id). Every message of the
    rebuild's own event before the mark (none written): the stored event is carried on —
    the engine holds it in its own's place, nothing is written or published. Its opening after
    the mark (written, published late): the stored one is closed, superseded, at the refill's
    data time. Stored twice (``moved``: its meter changed enterprise while it was open, a
    point per enterprise), it has one outcome, not both: closed, over both points. Either way
    InfluxDB holds one open event of that kind and meter."""
    settings, now_ms, since = await _eight_of_nine_days(influx_settings, mqtt_settings)
    probe = AnalyticsService(settings, SiteRegistry([small_park()]))
    reference = probe.engines["svc"]
    async with InfluxReader(influx_settings) as reader:
        [rows] = await history_rows(reader, reference, since, now_ms, chunk=10**9)
    reference.feed_rows(rows)
    reference.advance(int(rows.t_ms.max()))
    [own] = [e for e in reference.events.open.values() if e.meter == "main"]
    assert (own.updated_at_ms or own.detected_at_ms) < now_ms - HOUR_MS  # the step, ongoing
    # the earlier worker's: found an hour before, not updated since
    found_at = own.detected_at_ms - HOUR_MS
    earlier = replace(
        own,
        id=Event.make_id("svc", own.kind, "main", found_at),
        state=State.OPENED,
        start_ms=min(own.start_ms, found_at),
        detected_at_ms=found_at,
        updated_at_ms=found_at,
    )
    mark = own.detected_at_ms - 30 * 60_000 if case == "closed" else now_ms - 30 * 60_000
    moved = [earlier.line("old-ent")] if case == "moved" else []
    await _store(
        influx_settings, [earlier.line(probe._enterprise("svc", earlier)), *moved, _mark_line(mark)]
    )
    published: list[Event] = []
    service, written, _, _ = await _rebuild(settings, now_ms, monkeypatch, published)
    assert service.horizons["svc"].from_ms == mark
    engine = service.engines["svc"]
    key = (own.kind, "main")
    mine = [e for e in written if e.id in (own.id, earlier.id)]
    if case == "carried-on":
        assert engine.events.open[key] == earlier  # carried on: its updates and close are its
        assert mine == []
        assert not [e for e in published if e.id in (own.id, earlier.id)]
    elif case == "moved":
        assert engine.events.open[key].id == own.id
        assert [e.state for e in mine if e.id == earlier.id] == [State.CLOSED]  # one close
        async with InfluxReader(influx_settings) as reader:
            [both] = await reader.query(
                f'SELECT "enterprise", "open" FROM anomaly WHERE "id" = \'{earlier.id}\''
            )
        assert sorted(tuple(r[1:]) for r in both.values) == [("old-ent", False), ("park", False)]
    else:
        assert engine.events.open[key].id == own.id
        [close] = [e for e in mine if e.id == earlier.id]
        assert engine.park_emitted is not None
        assert close == earlier.with_state(
            State.CLOSED,
            end_ms=engine.park_emitted * engine.step_ms,
            updated_at_ms=engine.park_emitted * engine.step_ms,
            evidence={**earlier.evidence, "superseded": True},
        )
        assert (own.id, State.OPENED) in [(e.id, e.state) for e in mine]
        assert close in published
    stored_open = await _open_rows(influx_settings)
    assert [r[0] for r in stored_open if r[1:] == key] == [engine.events.open[key].id]
    keys = [r[1:] for r in stored_open]
    assert len(keys) == len(set(keys))  # one open event per kind and meter


async def _lag_gateway_marks(influx_settings: InfluxSettings, at_most_ms: int) -> None:
    """Every stored gateway field of the marks set back to ``at_most_ms`` at most, as a live
    worker's throttle (``GATEWAY_MARK_EVERY_MS``) may leave them."""
    async with InfluxReader(influx_settings) as reader:
        found = await reader.query("SELECT * FROM analytics_progress")
    lines = []
    for series in found:
        for row in series.values:
            mark = dict(zip(series.columns, row, strict=True))
            fields = {
                k: min(int(v), at_most_ms)
                for k, v in mark.items()
                if k.startswith(GATEWAY_MARK) and v is not None
            }
            svc = {"park": "svc"}
            lines.append(encode_point("analytics_progress", svc, fields, int(mark["time"])))
    async with InfluxWriter(influx_settings) as writer:
        await writer.write(lines)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "stop", ["clean", "crash", "crash-in-lag", "crash-in-lag-ended", "crash-in-lag-unread"]
)
async def test_a_restart_adopts_an_event_stored_under_another_id_and_opens_none_again(
    mqtt_settings: MqttSettings,
    influx_settings: InfluxSettings,
    monkeypatch: pytest.MonkeyPatch,
    stop: str,
) -> None:
    """The first worker stored a peak under another id (found live a minute later). Its
    gateway's own field lags, as the throttle leaves it: ``clean``, 55 minutes while it runs,
    then it stops (the last mark, on the way out, carries every gateway's field, its queue
    empty); ``crash``, a little under GATEWAY_MARK_EVERY_MS after it stopped; ``crash-in-lag``,
    as ``crash`` with the peak begun 3 minutes before the stop: the next worker finds it after
    its gateway's mark, within the lag (``-ended``: its own closed in the refill). The next
    worker takes the stored peak over: it writes and publishes no second ``opened``, no close
    of it (the re-review's test_other_id.py) — unless the stored open events cannot be read
    after the refill (``-unread``): its own peak, held back, is then written and published as
    it stands rather than lost (the stored one, unread, stays open beside it)."""
    minute = 60_000
    stop_ms = time.time_ns() // 1_000_000 // SLICE_MS * SLICE_MS - 3 * HOUR_MS + 7 * minute
    in_lag = stop.startswith("crash-in-lag")
    onset = stop_ms - (3 if in_lag else 40) * minute
    start = (stop_ms - 2 * DAY_MS) // DAY_MS * DAY_MS
    await _store(
        influx_settings,
        _minute_lines("main", start, onset)
        + _minute_lines("main", onset, stop_ms - minute, 1500.0),
    )
    settings = AnalyticsSettings(
        mqtt=mqtt_settings,
        influx=influx_settings,
        rebuild_s=DAY_MS / 1000,
        history_slice_s=SLICE_MS / 1000,
        rollups=False,
    )

    async def lagging(service: AnalyticsService) -> None:
        engine = service.engines["svc"]
        own = {k: v for k, v in _progress(engine).items() if k.startswith(GATEWAY_MARK)}

        async def written() -> bool:  # the refill's last mark is in
            return service.outputs.empty() and service.gateways_written.get("svc") == own

        await eventually(written, what="the refill's last mark written")
        await _lag_gateway_marks(influx_settings, stop_ms - 55 * minute)

    first, first_written, _, _ = await _rebuild(
        settings, stop_ms, monkeypatch, then=lagging if stop == "clean" else None
    )
    if stop != "clean":
        await _lag_gateway_marks(influx_settings, stop_ms - GATEWAY_MARK_EVERY_MS + minute)
    [peak] = [e for e in first_written if e.kind == "demand_peak" and e.state is State.OPENED]
    if in_lag:  # found again after the gateway's mark: within the lag
        assert peak.detected_at_ms >= stop_ms - GATEWAY_MARK_EVERY_MS + minute
    found_at = peak.detected_at_ms + minute
    live = replace(peak, id=Event.make_id("svc", peak.kind, "main", found_at),
                   detected_at_ms=found_at, updated_at_ms=found_at)  # fmt: skip
    async with InfluxReader(influx_settings) as reader:
        await reader.query("DELETE FROM anomaly WHERE kind = 'demand_peak'")
    async with InfluxWriter(influx_settings) as writer:
        await writer.write(
            [
                live.line(first._enterprise("svc", live)),
                *_minute_lines(
                    "main",
                    stop_ms - minute,
                    stop_ms + 9 * minute,
                    300.0 if stop == "crash-in-lag-ended" else 1500.0,
                ),
            ]
        )
    if stop.endswith("-unread"):
        import analytics.service as service_module

        async def unread(*_: object) -> list[tuple[Event, str | None]]:
            raise InfluxError("400: refused")

        monkeypatch.setattr(service_module, "_stored_open", unread)
    published: list[Event] = []
    service, written, _, _ = await _rebuild(settings, stop_ms + 10 * minute, monkeypatch, published)
    peaks = [e for e in written if e.kind == "demand_peak"]
    if stop.endswith("-unread"):  # the refill's own peak, still open, as without the hold
        own_id = Event.make_id("svc", peak.kind, "main", peak.detected_at_ms)
        assert [(e.id, e.state) for e in peaks] == [(own_id, State.OPENED)]
        assert [e for e in published if e.kind == "demand_peak"] == peaks
        assert service.engines["svc"].events.open[("demand_peak", "main")].id == own_id
        return  # the stored one was not read: nothing closes it (an error path's limit)
    elif stop == "crash-in-lag-ended":  # its own closed in the refill (the block over): so is it
        block_end = int(peak.evidence["block_start_ms"]) + QUARTER_MS
        assert peaks == [_superseding_close(live, block_end)]
        assert [e for e in published if e.kind == "demand_peak"] == peaks
        assert ("demand_peak", "main") not in service.engines["svc"].events.open
    else:
        assert peaks == []
        assert [e for e in published if e.kind == "demand_peak"] == []
        assert service.engines["svc"].events.open[("demand_peak", "main")].id == live.id
    keys = [r[1:] for r in await _open_rows(influx_settings)]
    assert len(keys) == len(set(keys))  # one open event per kind and meter


@pytest.mark.anyio
async def test_a_live_silence_close_ahead_of_the_data_is_not_opened_again_by_the_next_worker(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first worker, live, closed both gateways' silence on its clock, ahead of their
    data: comm_loss events stored at data times after the last reading. The next worker's
    refill stops at that reading, so it leaves them to its live engine, whose clock closes the
    same silence: what InfluxDB holds is neither written nor published again (no second
    ``opened``), and InfluxDB holds one open event per kind and meter."""
    now_ms = time.time_ns() // 1_000_000 // QUARTER_MS * QUARTER_MS + 7 * 60_000
    end = now_ms - 60_000  # the last reading's time: nothing after it comes
    await _store(
        influx_settings,
        _minute_lines("ma", now_ms - DAY_MS, end) + _minute_lines("mb", now_ms - DAY_MS, end),
    )
    settings = AnalyticsSettings(
        mqtt=mqtt_settings,
        influx=influx_settings,
        rebuild_s=DAY_MS / 1000,
        history_slice_s=SLICE_MS / 1000,
        rollups=False,
        tick_s=0.2,
    )
    park = _two_gateway_park()

    async def silences() -> list[tuple[str, str, str]]:
        return [r for r in await _open_rows(influx_settings) if r[1] == "comm_loss"]

    async def both_silent() -> bool:
        return len(await silences()) == 2

    async def first_live(service: AnalyticsService) -> None:
        time.time = lambda: (now_ms + 20 * 60_000) / 1000  # undone with _rebuild's patch
        await eventually(both_silent, 20, "the live silence close")

    await _rebuild(settings, now_ms, monkeypatch, park=park, then=first_live)
    stored = await silences()
    async with InfluxReader(influx_settings) as reader:
        [points] = await reader.query(
            'SELECT "id" FROM anomaly WHERE "kind" = \'comm_loss\' AND "open" = true'
        )
    assert all(int(r[0]) > end for r in points.values)  # ahead of the data

    alerts: list[tuple[str, str]] = []

    async def watch(client: aiomqtt.Client) -> None:
        async for m in client.messages:
            doc = orjson.loads(bytes(m.payload))
            alerts.append((doc["id"], doc["state"]))

    behind: list[bool] = []

    async def second_live(service: AnalyticsService) -> None:
        engine = service.engines["svc"]
        assert engine.park_emitted is not None
        behind.append(engine.park_emitted * engine.step_ms <= end)
        time.time = lambda: (now_ms + 40 * 60_000) / 1000

        async def silent_again() -> bool:
            return len([e for e in engine.events.open.values() if e.kind == "comm_loss"]) == 2

        await eventually(silent_again, 20, "the second worker's silence close")
        await asyncio.sleep(1.0)  # time for an alert it should not publish

    async with mqtt.client(mqtt_settings, "silence-watcher") as watcher:
        await watcher.subscribe("pw/v1/svc/alerts/#", qos=1)
        async with background(watch(watcher)):
            service, _, _, _ = await _rebuild(
                settings, now_ms + 20 * 60_000, monkeypatch, [], park=park, then=second_live
            )
    assert behind == [True]  # the refill's clock stopped at the data, behind the events
    ids = {r[0] for r in stored}
    assert [a for a in alerts if a[1] == "opened" and a[0] in ids] == []
    after = await _open_rows(influx_settings)
    keys = [r[1:] for r in after]
    assert len(keys) == len(set(keys))  # one open event per kind and meter
    engine = service.engines["svc"]
    held = {e.id for e in engine.events.open.values() if e.kind == "comm_loss"}
    assert {r[0] for r in after if r[1] == "comm_loss"} == held


@pytest.mark.anyio
async def test_the_horizon_reads_the_stored_events_a_slice_at_a_time(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events InfluxDB holds are read a slice (``history_slice_s``) at a time, not a
    park's whole span in one answer; the last slice is open above (a point stamped ahead of
    the clock is found too), and every event is found once, open or not. Before the span:
    the events still open, however old, in one query (one closed is not read), and those the
    engine holds open (a snapshot's, 30 days old here) by their ids — not a query per day
    since the oldest."""
    now_ms = time.time_ns() // 1_000_000
    service = AnalyticsService(
        AnalyticsSettings(
            mqtt=mqtt_settings, influx=influx_settings, rebuild_s=86_400, history_slice_s=21_600
        ),
        SiteRegistry([small_park()]),
    )
    engine = service.engines["svc"]
    times = range(now_ms - DAY_MS + 1000, now_ms + HOUR_MS, HOUR_MS)  # the last one ahead
    old = now_ms - 30 * DAY_MS
    held = Event(
        id="snap", kind="baseline_deviation", family=Family.CONSUMPTION, state=State.OPENED,
        park="svc", meter="main", zone=None, start_ms=old, detected_at_ms=old, end_ms=None,
        severity=Severity.MINOR, updated_at_ms=old,
    )  # fmt: skip
    engine.events.adopt(held)  # as a snapshot holds it: stored closed since (another worker)
    await _store(
        influx_settings,
        [
            encode_point("anomaly", {"park": "svc"}, {"id": f"e{k}", "open": k % 2 == 0}, t)
            for k, t in enumerate(times)
        ]
        + [
            encode_point("anomaly", {"park": "svc"}, {"id": "snap", "open": False}, old),
            encode_point("anomaly", {"park": "svc"}, {"id": "ancient", "open": True}, old - DAY_MS),
            encode_point("anomaly", {"park": "svc"}, {"id": "done", "open": False}, old + DAY_MS),
        ],
    )
    statements: list[str] = []
    query = InfluxReader.query

    async def spy_query(reader: InfluxReader, statement: str) -> list[Series]:
        if '"updated_ms", "open"' in statement:
            statements.append(statement)
        return await query(reader, statement)

    monkeypatch.setattr(InfluxReader, "query", spy_query)
    async with InfluxReader(influx_settings) as reader:
        horizon = await service._horizon(reader, engine, now_ms - DAY_MS, now_ms, now_ms)
    assert len(statements) == 2 + 4  # before the span: open ones, the engine's; a day in 6 h
    assert "time <" not in statements[-1]
    assert horizon.stored == {f"e{k}": t for k, t in enumerate(times)} | {
        "snap": old,
        "ancient": old - DAY_MS,
    }
    assert horizon.stored_open == {f"e{k}" for k in range(0, len(times), 2)} | {"ancient"}
    assert horizon.open_since == old - DAY_MS


@pytest.mark.anyio
async def test_a_worker_on_a_database_with_no_readings_goes_live(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new park (no readings stored yet): the refill reads nothing and has no stored event
    to settle; the worker goes live, having written nothing."""
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
    settings = AnalyticsSettings(mqtt=mqtt_settings, influx=influx_settings, rollups=False)
    service, written, fed, _ = await _rebuild(settings, time.time_ns() // 1_000_000, monkeypatch)
    assert service.warm.is_set()
    assert (written, fed, service.engines["svc"].park_emitted) == ([], [], None)


def _pending(
    service: AnalyticsService, detected_ms: int, updated_ms: int, enterprise: str
) -> Event:
    """An event an earlier worker stored open, last updated at ``updated_ms`` (ahead of the
    refill's clock), as the refill leaves it to the live engine."""
    eid = Event.make_id("svc", "baseline_deviation", "main", detected_ms)
    event = Event(
        id=eid, kind="baseline_deviation", family=Family.CONSUMPTION, state=State.UPDATED,
        park="svc", meter="main", zone=None, start_ms=detected_ms, detected_at_ms=detected_ms,
        end_ms=None, severity=next(iter(Severity)), evidence={"x": 1}, updated_at_ms=updated_ms,
    )  # fmt: skip
    horizon = service.horizons["svc"] = Horizon(from_ms=detected_ms - HOUR_MS, marked=True)
    horizon.stored[eid] = updated_ms
    horizon.stored_open.add(eid)
    horizon.pending[eid] = (event, [enterprise])
    return event


def test_the_live_close_of_a_stored_event_found_again_is_kept(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings
) -> None:
    """The live engine finds a pending stored event again under its id (its opening, stored,
    is dropped) and closes it at a data time before the stored update: the close is kept —
    nothing else would close the event InfluxDB holds open."""
    service = AnalyticsService(
        AnalyticsSettings(mqtt=mqtt_settings, influx=influx_settings), SiteRegistry([small_park()])
    )
    engine = service.engines["svc"]
    d = 1_700_000_000_000 // engine.step_ms * engine.step_ms
    x = _pending(service, d, d + 30 * 60_000, "park")
    horizon = service.horizons["svc"]
    engine.park_emitted = d // engine.step_ms
    opened = x.with_state(State.OPENED, updated_at_ms=d)
    engine.events.open[(x.kind, x.subject)] = opened
    advanced = Advanced(events=[opened])
    service._against_stored("svc", engine, advanced)
    assert advanced.events == []  # stored: not written again
    assert horizon.pending == {}  # the engine's now
    del engine.events.open[(x.kind, x.subject)]
    end = d + 10 * 60_000
    engine.park_emitted = end // engine.step_ms
    close = opened.with_state(State.CLOSED, end_ms=end, updated_at_ms=end)
    advanced = Advanced(events=[close])
    service._against_stored("svc", engine, advanced)
    assert advanced.events == [close]
    assert x.id not in horizon.stored_open
    assert horizon.stored[x.id] == end
    engine.park_emitted = (d + HOUR_MS) // engine.step_ms
    advanced = Advanced()
    service._against_stored("svc", engine, advanced)
    assert advanced.events == []


@pytest.mark.parametrize(
    ("enterprise", "batch"), [("park", "opened"), ("park", "updated"), ("then", "opened")]
)
def test_a_pending_stored_event_is_carried_on_by_the_live_engine_finding_it_at_another_time(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, enterprise: str, batch: str
) -> None:
    """The live engine opens an event InfluxDB lacks of the kind and subject of a pending
    stored one (found at another detected_at): the stored one is carried on in its place, no
    second ``opened`` — nor any later message of the engine's id, such as an update in the
    same batch (``updated``: a buffered upload's later slot), whose severity the stored one
    takes — unless it was stored on another enterprise than its meter's now (``then``): the
    engine's own is written, and the stored one closed, superseded."""
    service = AnalyticsService(
        AnalyticsSettings(mqtt=mqtt_settings, influx=influx_settings), SiteRegistry([small_park()])
    )
    engine = service.engines["svc"]
    d = 1_700_000_000_000 // engine.step_ms * engine.step_ms
    x = _pending(service, d, d + 30 * 60_000, enterprise)
    horizon = service.horizons["svc"]
    found = d + 5 * 60_000
    engine.park_emitted = found // engine.step_ms
    own = replace(
        x, id=Event.make_id("svc", x.kind, "main", found), state=State.OPENED,
        start_ms=found, detected_at_ms=found, updated_at_ms=found,
    )  # fmt: skip
    advanced = Advanced(events=[own])
    latest = own
    if batch == "updated":
        severity = next(s for s in Severity if s is not own.severity)
        latest = own.with_state(State.UPDATED, severity=severity, updated_at_ms=found + 60_000)
        advanced.events.append(latest)
        engine.park_emitted = (found + 60_000) // engine.step_ms
    engine.events.open[(x.kind, x.subject)] = latest
    service._against_stored("svc", engine, advanced)
    if enterprise == "park":
        assert advanced.events == []
        carried = engine.events.open[(x.kind, x.subject)]
        assert (carried.id, carried.severity) == (x.id, latest.severity)
        assert horizon.pending == {}
    else:
        superseded = {**x.evidence, "superseded": True}
        close = x.with_state(State.CLOSED, end_ms=x.updated_at_ms, evidence=superseded)
        assert advanced.events == [own, close]
        assert engine.events.open[(x.kind, x.subject)] == own


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["superseded", "passed"])
async def test_a_pending_stored_event_is_closed_once_on_its_stored_series(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, how: str
) -> None:
    """A pending stored event the live engine does not find again is closed, superseded —
    once the engine holds another of its kind and subject (at its stored time at the
    earliest), or once its clock passes the event's time — on its stored point's series
    (the enterprise tag it was written with), published once."""
    service = AnalyticsService(
        AnalyticsSettings(mqtt=mqtt_settings, influx=influx_settings), SiteRegistry([small_park()])
    )
    engine = service.engines["svc"]
    step = engine.step_ms
    d = (time.time_ns() // 1_000_000 - 2 * HOUR_MS) // step * step
    u = d + 30 * 60_000
    x = _pending(service, d, u, "then")  # the meter's enterprise when it was written
    await _store(influx_settings, [x.line("then")])
    engine.park_emitted = (d + 10 * 60_000) // step  # behind the stored update
    if how == "superseded":
        found = d + 5 * 60_000
        other = replace(
            x, id=Event.make_id("svc", x.kind, "main", found), state=State.OPENED,
            start_ms=found, detected_at_ms=found, updated_at_ms=found,
        )  # fmt: skip
        engine.events.open[(x.kind, x.subject)] = other
        end = u
    else:
        advanced = Advanced()
        service._against_stored("svc", engine, advanced)
        assert advanced.events == []  # not reached yet
        end = u + 5 * 60_000
        engine.park_emitted = end // step
    advanced = Advanced()
    service._against_stored("svc", engine, advanced)
    assert advanced.events == [
        x.with_state(
            State.CLOSED, end_ms=end, updated_at_ms=end, evidence={"x": 1, "superseded": True}
        )
    ]
    await service._emit("svc", advanced, publish=True)
    engine.park_emitted = (end + HOUR_MS) // step
    again = Advanced()
    service._against_stored("svc", engine, again)
    assert again.events == []
    published = [service.alerts.get_nowait() for _ in range(service.alerts.qsize())]
    assert [(e.id, e.state) for _, e, _ in published] == [(x.id, State.CLOSED)]
    items = [service.outputs.get_nowait() for _ in range(service.outputs.qsize())]
    async with InfluxWriter(influx_settings) as writer:
        await service._write(writer, items)
    async with InfluxReader(influx_settings) as reader:
        [rows] = await reader.query(
            f'SELECT "enterprise", "open", "end_ms" FROM anomaly WHERE "id" = \'{x.id}\''
        )
    assert [tuple(r[1:]) for r in rows.values] == [("then", False, end)]


@pytest.mark.anyio
@pytest.mark.parametrize("warmed", [False, True], ids=["cold", "warmed"])
async def test_a_rebuild_closes_a_stored_event_it_does_not_find_only_once_warmed(
    mqtt_settings: MqttSettings,
    influx_settings: InfluxSettings,
    monkeypatch: pytest.MonkeyPatch,
    warmed: bool,
) -> None:
    """An earlier (warm) worker stored an event open, last updated before its mark, that a
    rebuild does not find. Detected before the rebuild's engine has warmed (since +
    warmup_s), its silence says nothing (a leak learnt as baseline): the event stays open,
    nothing written or published. Detected after: closed, superseded, published late."""
    settings, now_ms, since = await _eight_of_nine_days(influx_settings, mqtt_settings)
    found = since + int(settings.warmup_s * 1000) + (HOUR_MS if warmed else -HOUR_MS)
    mark = now_ms - 30 * 60_000
    tags = {"park": "svc", "kind": "comm_loss", "family": "meter_fault", "meter": "main"}
    fields: dict[str, float | int | bool | str] = {
        "id": "x-old", "state": "opened", "open": True, "start_ms": found,
        "updated_ms": found, "severity": "major", "evidence": '{"kw": 1.0}',
    }  # fmt: skip
    await _store(
        influx_settings,
        [
            encode_point("anomaly", {**tags, "enterprise": "park"}, fields, found),
            _mark_line(mark),
        ],
    )  # fmt: skip
    published: list[Event] = []
    service, written, _, _ = await _rebuild(settings, now_ms, monkeypatch, published)
    assert service.horizons["svc"].from_ms == mark
    assert not [e for e in service.engines["svc"].events.open.values() if e.kind == "comm_loss"]
    mine = [e for e in written if e.id == "x-old"]
    still = [r[0] for r in await _open_rows(influx_settings)]
    if warmed:
        assert [(e.state, e.evidence) for e in mine] == [
            (State.CLOSED, {"kw": 1.0, "superseded": True})
        ]
        assert "x-old" not in still
        assert [e for e in published if e.id == "x-old"] == mine
    else:
        assert mine == []
        assert "x-old" in still
        assert not [e for e in published if e.id == "x-old"]


@pytest.mark.anyio
@pytest.mark.parametrize("before_span", [False, True], ids=["cold", "before-the-span"])
async def test_an_event_a_cold_rebuild_left_open_is_closed_when_the_live_engine_opens_its_own(
    mqtt_settings: MqttSettings,
    influx_settings: InfluxSettings,
    monkeypatch: pytest.MonkeyPatch,
    before_span: bool,
) -> None:
    """A stored comm_loss on ``main``, detected before the rebuild's engine warmed (or
    before the rebuild's span, 40 days ago: read all the same), stays open over the cold
    engine's silence; once live, the meter falls silent and the engine
    opens its own comm_loss: the stored one is closed then (superseded, at the new one's
    detected_at), written and published once, before the new one's opening — InfluxDB holds
    one open comm_loss on ``main``, the engine's."""
    settings, now_ms, since = await _eight_of_nine_days(influx_settings, mqtt_settings)
    found = now_ms - 40 * DAY_MS if before_span else since + int(settings.warmup_s * 1000) - HOUR_MS
    tags = {"park": "svc", "kind": "comm_loss", "family": "meter_fault", "meter": "main"}
    fields: dict[str, float | int | bool | str] = {
        "id": "x-old", "state": "opened", "open": True, "start_ms": found,
        "updated_ms": found, "severity": "major", "evidence": '{"kw": 1.0}',
    }  # fmt: skip
    await _store(
        influx_settings,
        [
            encode_point("anomaly", {**tags, "enterprise": "park"}, fields, found),
            _mark_line(now_ms - 30 * 60_000),
        ],
    )
    alerts: list[tuple[str, str]] = []

    async def watch(client: aiomqtt.Client) -> None:
        async for m in client.messages:
            doc = orjson.loads(bytes(m.payload))
            alerts.append((doc["id"], doc["state"]))

    own: list[Event] = []

    async def silent(service: AnalyticsService) -> None:
        engine = service.engines["svc"]
        assert "x-old" in service.horizons["svc"].held  # left open by the refill
        time.time = lambda: (now_ms + 3 * HOUR_MS) / 1000  # undone with _rebuild's patch

        async def opened() -> bool:
            own[:] = [e for e in engine.events.open.values() if e.kind == "comm_loss"]
            return bool(own)

        await eventually(opened, 20, "the live engine's comm_loss")

        async def closed() -> bool:
            return ("x-old", "closed") in alerts

        await eventually(closed, 20, "the stored comm_loss's close")
        await asyncio.sleep(0.5)  # time for a second one it should not publish

    async with mqtt.client(mqtt_settings, "held-watcher") as watcher:
        await watcher.subscribe("pw/v1/svc/alerts/#", qos=1)
        async with background(watch(watcher)):
            service, written, _, _ = await _rebuild(settings, now_ms, monkeypatch, [], then=silent)
    [mine] = own
    assert mine.id != "x-old"
    closes = [e for e in written if e.id == "x-old"]
    assert [(e.state, e.end_ms, e.evidence) for e in closes] == [
        (State.CLOSED, mine.detected_at_ms, {"kw": 1.0, "superseded": True})
    ]
    assert [a for a in alerts if a[0] == "x-old"] == [("x-old", "closed")]
    assert alerts.index(("x-old", "closed")) < alerts.index((mine.id, "opened"))
    assert service.horizons["svc"].held == {}

    async def settled() -> bool:  # the close and the opening are written
        return [r for r in await _open_rows(influx_settings) if r[1] == "comm_loss"] == [
            (mine.id, "comm_loss", "main")
        ]

    await eventually(settled, 10, "InfluxDB's one open comm_loss")
