"""InfluxWriter and InfluxReader against real influxd processes.

The session's influxd (``stack`` fixture) serves the ordinary cases; the outage tests start and
stop a private influxd of their own. Requests are observed on the writer's real client (its
request head and body as they go on the wire, and each answer's status), never replaced.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from parkwatch import influx
from parkwatch.influx import (
    InfluxQueryError,
    InfluxReader,
    InfluxRejectedError,
    InfluxUnavailableError,
    InfluxWriter,
    Series,
    quote_ident,
    quote_string,
)
from parkwatch.settings import InfluxSettings
from parkwatch.stack import InfluxDB, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@dataclass
class Sent:
    """A request as the writer handed it to its HTTP client (with the client's own head)."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    content: bytes


class Recorder:
    """Records every request the writer's client sends and every answer's status;
    ``before`` (optional) runs as each request is about to go out."""

    def __init__(self, before: Callable[[Sent], Awaitable[None]] | None = None) -> None:
        self.requests: list[Sent] = []
        self.statuses: list[int] = []
        self.before = before

    @classmethod
    def attach(
        cls, writer: InfluxWriter, before: Callable[[Sent], Awaitable[None]] | None = None
    ) -> Recorder:
        recorder = cls(before)
        client = writer._client
        assert client is not None
        post = client.post

        async def recorded(
            path: str, params: Mapping[str, str], body: bytes, headers: Mapping[str, str]
        ) -> tuple[int, str]:
            sent = Sent("POST", path, dict(params), {**client.headers, **headers}, body)
            recorder.requests.append(sent)
            if recorder.before is not None:
                await recorder.before(sent)
            status, text = await post(path, params, body, headers)
            recorder.statuses.append(status)
            return status, text

        client.post = recorded  # type: ignore[method-assign]
        return recorder


async def create_database(settings: InfluxSettings) -> None:
    async with InfluxReader(settings) as reader:
        await reader.create_database()


async def count(settings: InfluxSettings, measurement: str, field_name: str = "value") -> int:
    async with InfluxReader(settings) as reader:
        return await reader.count(measurement, field_name)


def lines(measurement: str, n: int, start: int = 0) -> list[str]:
    """One series per point and no timestamp: the server stamps each request's points with
    its own time, so a batch stored twice would count twice."""
    return [f"{measurement},point={i} value={i}i" for i in range(start, start + n)]


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


# --------------------------------------------------------------------------- batching


async def test_batches_by_size(influx_settings: InfluxSettings) -> None:
    await create_database(influx_settings)
    # a flush interval far longer than the test: only the size can trigger these writes
    async with InfluxWriter(influx_settings, batch_lines=10, flush_interval_s=60) as writer:
        recorder = Recorder.attach(writer)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for line in lines("by_size", 30):
                    tg.start_soon(writer.write, [line])
        assert writer.stats.batches_written == 3
        assert writer.stats.points_written == 30
        assert writer.stats.buffered == 0
        assert recorder.statuses == [204, 204, 204]
    assert await count(influx_settings, "by_size") == 30


async def test_batches_by_waiting_units(influx_settings: InfluxSettings) -> None:
    """The flush policy ingest relies on (issue 12): a batch goes out as soon as the units of
    work waiting on it (ingest: messages of its acknowledgement window) reach flush_units,
    long before it is full or the timer fires."""
    await create_database(influx_settings)
    async with InfluxWriter(
        influx_settings, batch_lines=100_000, flush_interval_s=60, flush_units=4
    ) as writer:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                # eight messages of two lines each: two batches of four messages
                for i in range(8):
                    tg.start_soon(writer.write, lines("by_units", 2, start=2 * i), 1)
        assert writer.stats.batches_written == 2
        assert writer.stats.points_written == 16
    assert await count(influx_settings, "by_units") == 16


async def test_batches_by_idle_writer(influx_settings: InfluxSettings) -> None:
    """The idle flush ingest uses (issue 12, a steady load): with no write in flight a batch
    goes out at idle_lines, long before batch_lines or the timer; while one is in flight the
    lines wait and go out together as soon as it ends."""
    await create_database(influx_settings)
    async with InfluxWriter(
        influx_settings, batch_lines=100_000, flush_interval_s=60, idle_lines=5, gzip_level=0
    ) as writer:
        gate, first = asyncio.Event(), asyncio.Event()
        sent: list[int] = []

        async def hold_first(request: Sent) -> None:
            sent.append(request.content.count(b"\n"))
            if len(sent) == 1:
                first.set()
                await gate.wait()  # the first write stays in flight until the test says

        Recorder.attach(writer, hold_first)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(writer.write, lines("by_idle", 5))
                await first.wait()
                # a write is in flight: these wait, though each reaches idle_lines
                for i in range(1, 4):
                    tg.start_soon(writer.write, lines("by_idle", 5, start=5 * i))
                await asyncio.sleep(0.3)
                assert sent == [5]
                assert writer.stats.buffered == 15
                gate.set()
        assert sent == [5, 15]
        assert writer.stats.batches_written == 2
    assert await count(influx_settings, "by_idle") == 20


async def test_batches_by_time(influx_settings: InfluxSettings) -> None:
    await create_database(influx_settings)
    async with InfluxWriter(influx_settings, batch_lines=1000, flush_interval_s=0.3) as writer:
        started = time.monotonic()
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for line in lines("by_time", 5):
                    tg.start_soon(writer.write, [line])
        elapsed = time.monotonic() - started
        # the batch is far from full: the timer sent it, once, after the flush interval
        assert writer.stats.batches_written == 1
        assert writer.stats.points_written == 5
        assert 0.3 <= elapsed < 3.0
        assert await count(influx_settings, "by_time") == 5

        with anyio.fail_after(20):
            await writer.write(lines("by_time", 3, start=5))
        assert writer.stats.batches_written == 2
    assert await count(influx_settings, "by_time") == 8


async def test_exit_flushes_what_is_buffered(influx_settings: InfluxSettings) -> None:
    await create_database(influx_settings)
    with anyio.fail_after(20):
        async with (
            anyio.create_task_group() as tg,
            InfluxWriter(influx_settings, batch_lines=1000, flush_interval_s=60) as writer,
        ):
            tg.start_soon(writer.write, lines("on_exit", 4))
            await anyio.sleep(0.2)
            assert writer.stats.buffered == 4
            assert writer.stats.batches_written == 0
            # leaving the writer sent the batch, which let the waiting write return
    assert writer.stats.batches_written == 1
    assert await count(influx_settings, "on_exit") == 4


@pytest.mark.parametrize("gzip_level", [0, 1, 9])
async def test_gzip_bodies_are_accepted(influx_settings: InfluxSettings, gzip_level: int) -> None:
    await create_database(influx_settings)
    batch = [*lines("gz", 200), 'gz,point=text text="两江新区-一号厂 \\"quoted\\""']
    async with InfluxWriter(influx_settings, gzip_level=gzip_level) as writer:
        recorder = Recorder.attach(writer)
        await writer.write_now(batch)
    [request] = recorder.requests
    assert recorder.statuses == [204]
    body = request.content
    if gzip_level:
        assert request.headers["Content-Encoding"] == "gzip"
        assert len(body) < len(gzip.decompress(body))
        body = gzip.decompress(body)
    else:
        assert "Content-Encoding" not in request.headers
    assert body.decode().splitlines() == batch
    assert await count(influx_settings, "gz") == 200
    async with InfluxReader(influx_settings) as reader:
        [series] = await reader.query('SELECT "text" FROM "gz" WHERE "point" = \'text\'')
    assert series.values[0][1] == '两江新区-一号厂 "quoted"'


@pytest.mark.parametrize("compiled", [True, False])
async def test_a_body_joined_in_c_or_python_is_the_same(
    influx_settings: InfluxSettings, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # without the extension (or a stale build of it) the writer joins the lines in Python
    if not compiled:
        monkeypatch.setattr(influx, "_join_lines", None)
    await create_database(influx_settings)
    batch = lines(f"joined_{compiled}", 300)
    async with InfluxWriter(influx_settings, gzip_level=0) as writer:
        recorder = Recorder.attach(writer)
        await writer.write_now(batch)
    [request] = recorder.requests
    assert request.content == ("\n".join(batch) + "\n").encode()
    assert await count(influx_settings, f"joined_{compiled}") == 300


# --------------------------------------------------------------------------- rejected writes


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('conflict value="now a string"', "field type conflict"),
        ("conflict value=", "unable to parse"),
    ],
)
async def test_4xx_is_raised_and_not_retried(
    influx_settings: InfluxSettings, bad_line: str, message: str
) -> None:
    await create_database(influx_settings)
    async with InfluxWriter(influx_settings, flush_interval_s=0.05) as writer:
        recorder = Recorder.attach(writer)
        await writer.write(["conflict value=1.5"])
        started = time.monotonic()
        with pytest.raises(InfluxRejectedError) as caught:
            await writer.write([bad_line])
        elapsed = time.monotonic() - started
        assert caught.value.status == 400
        assert message in caught.value.body
        # one attempt, no backoff, nothing logged as an outage
        assert recorder.statuses == [204, 400]
        assert len(recorder.requests) == 2
        assert elapsed < 1.0
        assert writer.stats.rejected_batches == 1
        assert writer.stats.batches_written == 1
        assert writer.outage.failures == 0
        assert not writer.outage.is_down
    async with InfluxReader(influx_settings) as reader:
        [series] = await reader.query('SELECT * FROM "conflict"')
    assert series.values == [[series.values[0][0], 1.5]]


async def test_rejected_batch_fails_every_waiter(influx_settings: InfluxSettings) -> None:
    await create_database(influx_settings)
    async with InfluxWriter(influx_settings, batch_lines=3, flush_interval_s=60) as writer:
        results: list[BaseException | None] = []

        async def write(line: str) -> None:
            try:
                await writer.write([line])
            except InfluxRejectedError as exc:
                results.append(exc)
            else:
                results.append(None)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for line in ["shared value=1i", "shared value=", "shared value=3i"]:
                    tg.start_soon(write, line)
        assert len(results) == 3
        assert all(isinstance(r, InfluxRejectedError) for r in results)
        assert writer.stats.rejected_batches == 1


# --------------------------------------------------------------------------- outages


async def test_connection_errors_are_retried_until_influxd_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = InfluxDB(tmp_path / "influxdb", port=free_port())
    settings = InfluxSettings(url=server.url, database="outage")
    try:
        # the database has to exist before the outage: a write to a missing one is a 404
        server.start()
        await create_database(settings)
        server.stop()

        caplog.set_level(logging.WARNING, logger="parkwatch.influx")
        batch = lines("outage", 50)
        async with InfluxWriter(settings, batch_lines=50, flush_interval_s=0.1) as writer:
            recorder = Recorder.attach(writer)

            async def start_later() -> None:
                await anyio.sleep(1.0)
                assert recorder.requests, "the writer has not tried yet"
                assert writer.outage.is_down
                # in this (the main) thread: influxd dies with the thread that started it
                server.start()

            started = time.monotonic()
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(start_later)
                    await writer.write(batch)
            assert time.monotonic() - started >= 1.0
            assert not writer.outage.is_down
            assert writer.stats.batches_written == 1
            assert writer.stats.points_written == 50
            # several attempts, exactly one of which got an answer
            assert len(recorder.requests) >= 2
            assert recorder.statuses == [204]

        assert await count(settings, "outage") == 50
        async with InfluxReader(settings) as reader:
            # one point per series: no retry stored its batch twice
            per_series = await reader.query('SELECT count("value") FROM "outage" GROUP BY "point"')
        assert len(per_series) == 50
        assert all(s.values[0][1] == 1 for s in per_series)

        warnings = [r.getMessage() for r in caplog.records if r.name == "parkwatch.influx"]
        assert [w for w in warnings if "unreachable" in w] == [warnings[0]]
        assert [w for w in warnings if "is back after" in w] == [warnings[1]]
        assert len(warnings) == 2
        assert server.url in warnings[0]
    finally:
        server.stop()


async def test_idle_flush_stays_off_while_a_write_retries(tmp_path: Path) -> None:
    """The idle rule (issue 12) applies only with no write in flight: while the database is
    down and a batch is being retried, lines that reach idle_lines wait in one batch instead
    of going out as a flood of small ones, which goes once the retried write is stored."""
    server = InfluxDB(tmp_path / "influxdb", port=free_port())
    settings = InfluxSettings(url=server.url, database="idle_outage")
    try:
        server.start()
        await create_database(settings)
        server.stop()

        async with InfluxWriter(
            settings, batch_lines=100_000, flush_interval_s=60, idle_lines=5, gzip_level=0
        ) as writer:
            recorder = Recorder.attach(writer)
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(writer.write, lines("idle_outage", 5))
                    await anyio.sleep(0.5)
                    assert writer.outage.is_down
                    # each of these reaches idle_lines alone, but a write is retrying
                    for i in range(1, 4):
                        tg.start_soon(writer.write, lines("idle_outage", 5, start=5 * i))
                    await anyio.sleep(1.0)
                    during = [r.content.count(b"\n") for r in recorder.requests]
                    assert len(during) >= 2, "the first batch is retried"
                    assert set(during) == {5}, during
                    # every attempt so far is the first batch: nothing else was dispatched
                    assert all(b"point=0 " in r.content for r in recorder.requests)
                    assert writer.stats.buffered == 15
                    server.start()
            sizes = [r.content.count(b"\n") for r in recorder.requests]
            # the retried batch, then the lines that waited, together
            assert sizes[-1] == 15, sizes
            assert set(sizes[:-1]) == {5}, sizes
            assert recorder.statuses == [204, 204]
            assert writer.stats.batches_written == 2
        assert await count(settings, "idle_outage") == 20
    finally:
        server.stop()


async def test_gives_up_after_max_retry_s() -> None:
    settings = InfluxSettings(url=closed_port_url(), database="nowhere")
    async with InfluxWriter(settings, flush_interval_s=0.05, max_retry_s=0.5) as writer:
        recorder = Recorder.attach(writer)
        started = time.monotonic()
        with (
            anyio.fail_after(20),
            pytest.raises(InfluxUnavailableError, match="ConnectionRefusedError"),
        ):
            await writer.write(lines("lost", 3))
        elapsed = time.monotonic() - started
        assert 0.5 <= elapsed < 5.0
        assert len(recorder.requests) >= 2
        assert recorder.statuses == []
        assert writer.stats.batches_written == 0
        assert writer.stats.points_written == 0
        assert writer.outage.is_down


# --------------------------------------------------------------------------- the v2 API


async def test_v2_write_goes_to_api_v2_with_a_token(influx_settings: InfluxSettings) -> None:
    settings = InfluxSettings(
        url=influx_settings.url,
        database=influx_settings.database,
        api="v2",
        token="s3cret-token",
        org="两江",
        bucket="energy/autogen",
    )
    async with InfluxWriter(settings, flush_interval_s=0.05, max_retry_s=0.3) as writer:
        recorder = Recorder.attach(writer)
        # influxd 1.6 has no /api/v2/write: a 404 says nothing about the data (no such
        # endpoint, bucket or database), so it is retried like an outage, then given up
        with pytest.raises(InfluxUnavailableError, match="HTTP 404"):
            await writer.write(["v2 value=1i"])
        assert writer.outage.failures >= 1
    request = recorder.requests[0]
    assert request.method == "POST"
    assert request.path == "/api/v2/write"
    assert request.params == {
        "bucket": "energy/autogen",
        "org": "两江",
        "precision": "ms",
    }
    assert request.headers["Authorization"] == "Token s3cret-token"
    assert gzip.decompress(request.content) == b"v2 value=1i\n"


def test_v2_bucket_defaults_to_database_and_needs_a_token() -> None:
    settings = InfluxSettings(database="parkwatch", api="v2", token="t")
    writer = InfluxWriter(settings)
    assert writer._url == "/api/v2/write"
    assert writer._params == {"bucket": "parkwatch", "org": "", "precision": "ms"}
    with pytest.raises(ValueError, match="token"):
        InfluxWriter(InfluxSettings(api="v2"))


# --------------------------------------------------------------------------- the reader


async def test_reader_create_execute_query_count(influx_settings: InfluxSettings) -> None:
    async with InfluxReader(influx_settings) as reader:
        assert await reader.ping()
        await reader.create_database()
        async with InfluxWriter(influx_settings) as writer:
            await writer.write_now(
                [
                    "energy,meter=m1,park=两江新区-一号厂 kwh=1.5 1000",
                    "energy,meter=m1,park=两江新区-一号厂 kwh=2.5 2000",
                    "energy,meter=m2,park=两江新区-一号厂 kwh=4.0 1000",
                    'energy,meter=m\\ 3,park=other kwh=8.0,note="it\'s" 1000',
                ]
            )
        assert await reader.count("energy", "kwh") == 4
        assert await reader.count("energy", "kwh", where=f'"meter" = {quote_string("m1")}') == 2
        assert await reader.count("energy", "kwh", where="\"meter\" = 'm 3'") == 1
        assert await reader.count("missing", "kwh") == 0

        [series] = await reader.query(
            'SELECT "kwh" FROM "energy" WHERE "park" = '
            + quote_string("两江新区-一号厂")
            + " AND \"meter\" = 'm1'"
        )
        assert series.name == "energy"
        assert series.columns == ["time", "kwh"]
        assert series.values == [[1000, 1.5], [2000, 2.5]]  # epoch ms
        assert series.records() == [{"time": 1000, "kwh": 1.5}, {"time": 2000, "kwh": 2.5}]

        results = await reader.execute(
            f'SELECT sum("kwh") FROM {quote_ident("energy")} GROUP BY "meter"; '
            'SHOW TAG VALUES FROM "energy" WITH KEY = "park"; SELECT * FROM "missing"'
        )
        assert len(results) == 3
        sums = {s.tags["meter"]: s.values[0][1] for s in results[0]}
        assert sums == {"m1": 4.0, "m2": 4.0, "m 3": 8.0}
        assert results[1] == [
            Series(
                name="energy",
                tags={},
                columns=["key", "value"],
                values=[["park", "other"], ["park", "两江新区-一号厂"]],
            )
        ]
        assert results[2] == []


async def test_reader_query_errors(influx_settings: InfluxSettings) -> None:
    async with InfluxReader(influx_settings) as reader:
        with pytest.raises(InfluxQueryError, match="error parsing query"):
            await reader.query("SELEC * FROM energy")
        with pytest.raises(InfluxQueryError, match="database not found"):
            await reader.query('SELECT * FROM "energy"')
        # an error in the second statement is not hidden by the first one's result
        await reader.create_database()
        with pytest.raises(InfluxQueryError, match="database not found: elsewhere"):
            await reader.execute('SHOW MEASUREMENTS; SELECT * FROM "elsewhere".."energy"')


async def test_reader_unavailable() -> None:
    settings = InfluxSettings(url=closed_port_url())
    async with InfluxReader(settings) as reader:
        assert not await reader.ping()
        with pytest.raises(InfluxUnavailableError):
            await reader.query("SHOW DATABASES")


async def test_create_database_with_an_awkward_name(influx_settings: InfluxSettings) -> None:
    name = f'{influx_settings.database} 两江 "q"'
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database(name)
        [series] = await reader.query("SHOW DATABASES")
        assert [name] in series.values
        await reader.execute(f"DROP DATABASE {quote_ident(name)}")


# --------------------------------------------------------------------------- cancellation


async def test_a_cancelled_writer_does_not_orphan_the_batch(
    influx_settings: InfluxSettings,
) -> None:
    """A caller cancelled while it waits for room (backpressure) leaves its batch in place:
    the other lines of that batch are still written and their writers still answered."""
    await create_database(influx_settings)
    writer = InfluxWriter(
        influx_settings,
        batch_lines=2,
        flush_interval_s=0.05,
        max_in_flight=1,
        max_buffered_batches=0,
    )
    async with writer:
        await writer._slots.acquire()  # the only slot is busy: the next dispatch must wait
        other = asyncio.create_task(writer.write(lines("cancel", 1)))
        await asyncio.sleep(0)
        filler = asyncio.create_task(writer.write(lines("cancel", 1, start=1)))
        await asyncio.sleep(0.1)  # the filler fills the batch and waits for a slot
        filler.cancel()
        writer._slots.release()
        await asyncio.wait_for(other, timeout=5)  # would hang if the batch had been orphaned
    assert await count(influx_settings, "cancel") == 2


async def test_leaving_flushes_also_when_cancelled(influx_settings: InfluxSettings) -> None:
    await create_database(influx_settings)

    async def owner() -> None:
        async with InfluxWriter(influx_settings, flush_interval_s=3600) as writer:
            task = asyncio.create_task(writer.write(lines("leaving", 5)))
            await asyncio.sleep(0.05)
            del task
            await asyncio.Event().wait()  # cancelled here, with 5 lines buffered

    running = asyncio.create_task(owner())
    await asyncio.sleep(0.1)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert await count(influx_settings, "leaving") == 5
