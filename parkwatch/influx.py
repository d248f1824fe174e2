"""Async InfluxDB access over the v1 HTTP API: a batching line-protocol writer and an
InfluxQL reader.

The writer batches by size and time, gzips bodies, keeps several writes in flight, and retries
connection errors, 5xx and the 4xx that are not about the data (401, 403, 404, 429) with
jittered backoff, logged once per outage. It never retries 400, 413 or 422: the database said
the data is wrong, so the caller gets :class:`InfluxRejectedError`.
``api="v2"`` sends writes to ``/api/v2/write`` with a token; queries always use ``/query``
(InfluxQL), which 2.x and 3.x serve as their v1-compatible API.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace, TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
import httpx
import orjson
import yarl

from parkwatch import hotpath
from parkwatch.retry import Backoff, OutageLog
from parkwatch.settings import InfluxSettings

log = logging.getLogger(__name__)


# a batch's body joined in C where the extension is built (the same bytes): at 10 to 50
# readings per message the str join and its encoding were ~6 % of ingest's CPU
_join_lines = hotpath.join_lines


class InfluxError(Exception):
    """Base of every error raised by this module."""


class InfluxUnavailableError(InfluxError):
    """The database could not be reached or answered 5xx (after the allowed retries)."""


# answers that mean "this body is wrong": bad line protocol, a field type conflict, too large
DATA_REJECTED = frozenset({400, 413, 422})


class InfluxRejectedError(InfluxError):
    """The database refused the data (400, 413, 422); retrying the same body cannot help."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"InfluxDB answered {status}: {body[:500]}")
        self.status = status
        self.body = body


class InfluxQueryError(InfluxError):
    """InfluxQL statement failed (syntax, unknown database, ...)."""


def _auth(settings: InfluxSettings) -> tuple[dict[str, str], httpx.BasicAuth | None]:
    headers: dict[str, str] = {}
    auth = None
    if settings.token is not None:
        headers["Authorization"] = f"Token {settings.token.get_secret_value()}"
    elif settings.username is not None:
        password = settings.password.get_secret_value() if settings.password else ""
        auth = httpx.BasicAuth(settings.username, password)
    return headers, auth


def _client(settings: InfluxSettings, max_connections: int = 8) -> httpx.AsyncClient:
    headers, auth = _auth(settings)
    return httpx.AsyncClient(
        base_url=settings.url,
        headers=headers,
        auth=auth,
        timeout=httpx.Timeout(settings.timeout_s, connect=5.0),
        limits=httpx.Limits(max_connections=max_connections),
    )


class _HttpError(Exception):
    """A write's connection failed, timed out or got no proper answer: retried like a 5xx."""


class _WriteClient:
    """The writer's POSTs to one InfluxDB through one aiohttp session, kept-alive connections.

    Why aiohttp and not httpx (the reader keeps httpx): client CPU per 2,048-line write
    (ingest's size at one reading per message), the same pre-joined body against a stub that
    answers 204 from another process, measured 2026-12-05 ~03:20 UTC: httpx 771–786 µs,
    aiohttp 3.14.5 175–178 µs, a hand-written HTTP/1.1 client 58–59 µs. aiohttp's extra
    ~0.12 ms per write over the hand-written one is ~1 % of ingest's CPU at ~20 writes/s,
    and it brings what a hand-written client lacks: idle connections expire (15 s), the pool
    is bounded (``limit``), proxies from the environment, credentials from the URL.
    aiohttp resends on a kept connection found closed only for idempotent methods, not
    POST; an InfluxDB write is idempotent (the same points overwrite themselves), so a
    request that meets the close of a *reused* connection before any answer goes again at
    once on another one, not into the outage backoff (aiohttp's trace says which connection
    was reused: ~40 µs of CPU per write, measured 03:37 UTC). A new connection closing so is
    an outage like any other. Figures: docs/architecture.md, *InfluxDB writer*.
    """

    def __init__(self, settings: InfluxSettings, limit: int) -> None:
        parts = urlsplit(settings.url)
        netloc = parts.netloc.rpartition("@")[2]  # credentials go in the head, not the URL
        self._base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        headers: dict[str, str] = {}
        if settings.token is not None:  # as _auth: a token, else a user name and password
            headers["Authorization"] = f"Token {settings.token.get_secret_value()}"
        login, password = settings.username, settings.password
        if login is None and parts.username is not None:  # http://user:password@host
            login, password = unquote(parts.username), None
        if not headers and login is not None:
            secret = password.get_secret_value() if password else unquote(parts.password or "")
            # Basic in UTF-8, as the reader's httpx sends it
            headers["Authorization"] = aiohttp.encode_basic_auth(login, secret)
        self.headers = headers
        self._limit = limit
        self._timeout = aiohttp.ClientTimeout(
            total=settings.timeout_s, sock_connect=min(5.0, settings.timeout_s)
        )
        # HTTP(S)_PROXY / NO_PROXY as the reader's httpx takes them, looked up once: aiohttp's
        # trust_env looks them up on every request (measured ~0.8 ms of CPU per write)
        host = parts.hostname or ""
        self._proxy = None if proxy_bypass(host) else getproxies().get(parts.scheme)
        self._trace = aiohttp.TraceConfig()
        self._trace.on_connection_reuseconn.append(_reused)
        self._session: aiohttp.ClientSession | None = None
        # each (path, query) parsed and encoded once, not per request (as aiohttp encodes
        # params: extend_query). Parsed once here too: a URL yarl refuses (the settings refuse
        # a bad port already) fails as the writer is made, at start-up, not out of each write
        yarl.URL(self._base)
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], yarl.URL] = {}

    def _open(self) -> aiohttp.ClientSession:
        # made in the running loop, on the first write. A fixed User-Agent (the database's
        # access log names the writer; some proxies refuse requests without one), no Accept or
        # Accept-Encoding (the answers come plain, so an error body stays readable) and no
        # decompression: InfluxDB's answers to writes are empty or a short error. With the
        # prebuilt URL ~−10 µs of client CPU per write (116 → 106 µs at 270 lines, 187 → 179
        # at 2,700; 2026-12-05 14:56–14:57 UTC, stub server, docs/architecture.md). No cookie
        # jar: InfluxDB's writes set none, and a jar filters cookies for every request (seen in
        # an end-to-end profile; in the stub probe no difference showed, 15:47 UTC)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._limit),
            headers={"User-Agent": "parkwatch", **self.headers},
            timeout=self._timeout,
            proxy=self._proxy,
            trace_configs=[self._trace],
            skip_auto_headers=("Accept", "Accept-Encoding"),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    def _url(self, path: str, params: Mapping[str, str]) -> yarl.URL:
        key = (path, tuple(params.items()))
        url = self._urls.get(key)
        if url is None:
            url = self._urls[key] = yarl.URL(self._base + path).extend_query(params)
        return url

    async def post(
        self, path: str, params: Mapping[str, str], body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, str]:
        """POST ``body``: the answer's status and text; raises :class:`_HttpError`."""
        session = self._session or self._open()
        url = self._url(path, params)
        while True:
            reused: list[bool] = []
            try:
                async with session.post(
                    url, data=body, headers=headers, trace_request_ctx=reused
                ) as response:
                    return response.status, (await response.read()).decode("utf-8", "replace")
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if reused and not isinstance(exc, aiohttp.ClientConnectorError):
                    continue  # a kept connection closed while idle: again, at once
                raise _HttpError(_describe(exc)) from exc
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                raise _HttpError(_describe(exc)) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _reused(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceConnectionReuseconnParams,
) -> None:
    context.trace_request_ctx.append(True)


def _describe(exc: BaseException) -> str:
    """The error and, when aiohttp wraps one, the OS error under it (ConnectionRefusedError)."""
    cause = getattr(exc, "os_error", None) or exc.__cause__
    under = f" ({type(cause).__name__})" if isinstance(cause, OSError) else ""
    return f"{type(exc).__name__}{under}: {exc}"


async def _post_with_retry(
    client: _WriteClient,
    url: str,
    *,
    params: Mapping[str, str],
    content: bytes,
    headers: Mapping[str, str],
    outage: OutageLog,
    max_retry_s: float | None,
) -> int:
    backoff = Backoff()
    started = time.monotonic()
    while True:
        try:
            status, text = await client.post(url, params, content, headers)
            if status < 400 or status in DATA_REJECTED:
                outage.recovered()
                if status >= 400:
                    raise InfluxRejectedError(status, text)
                return status
            # 5xx, and the 4xx that say nothing about the data (401/403 credentials, 404 no
            # such database, 429 slow down): the same body may succeed later — retry
            error: str = f"HTTP {status}: {text[:200]}"
        except _HttpError as exc:
            error = str(exc)
        outage.failed(error)
        if max_retry_s is not None and time.monotonic() - started > max_retry_s:
            raise InfluxUnavailableError(f"{url}: {error}")
        await asyncio.sleep(backoff.next_delay())


@dataclass
class WriterStats:
    points_written: int = 0
    batches_written: int = 0
    write_seconds_total: float = 0.0
    last_write_s: float = 0.0
    in_flight: int = 0
    buffered: int = 0
    rejected_batches: int = 0


@dataclass
class _Pending:
    lines: list[str] = field(default_factory=list)
    done: asyncio.Future[None] | None = None
    units: int = 0  # the callers' units of work waiting on this batch (ingest: messages)


class InfluxWriter:
    """Batches line-protocol lines and writes them; ``write`` returns once they are stored.

    Use as ``async with InfluxWriter(settings) as writer``: the context owns the HTTP client
    and the flush timer, and on exit flushes what is buffered and awaits writes in flight.

    A batch is sent when it holds ``batch_lines`` lines, when ``flush_interval_s`` has passed
    since its first line, or when the callers' units of work waiting on it (``write(...,
    units=n)``) reach ``flush_units``: a caller whose inputs are flow-controlled (ingest: the
    broker sends at most Receive Maximum unacknowledged messages) sets that to a share of its
    window, so a batch goes out when waiting longer would only stall the sender. With
    ``idle_lines`` set, a batch also goes out once it holds that many lines while no write is
    in flight (or when the last write ends): a writer that keeps up writes smaller batches
    sooner, one that falls behind lets them grow to ``batch_lines``.

    Overflow policy: at most ``max_in_flight`` writes run at once and at most
    ``max_buffered_batches`` full batches wait behind them; a ``write`` beyond that waits
    (backpressure on the caller) instead of growing memory.
    """

    def __init__(
        self,
        settings: InfluxSettings,
        *,
        batch_lines: int = 5000,
        flush_interval_s: float = 0.5,
        max_in_flight: int = 4,
        max_buffered_batches: int = 4,
        gzip_level: int = 1,
        max_retry_s: float | None = None,
        flush_units: int | None = None,
        idle_lines: int | None = None,
        retention_policy: str | None = None,
    ) -> None:
        self.settings = settings
        self.batch_lines = batch_lines
        self.flush_units = flush_units
        self.idle_lines = idle_lines
        self.flush_interval_s = flush_interval_s
        self.gzip_level = gzip_level
        self.max_retry_s = max_retry_s  # None: retry until the database is back
        self.exit_flush_s = 10.0  # on exit, how long to try writing what is still buffered
        self.stats = WriterStats()
        self.outage = OutageLog(log, f"InfluxDB at {settings.url}")
        self._max_in_flight = max_in_flight
        self._slots = asyncio.Semaphore(max_in_flight + max_buffered_batches)
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._pending = _Pending()
        self._pending_since = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._sending = 0  # batches dispatched and not yet stored (or failed)
        self._closing = False
        self._client: _WriteClient | None = None
        self._timer: asyncio.Task[None] | None = None
        if settings.api == "v2":
            if settings.token is None:
                raise ValueError("the v2 write API needs a token")
            self._url = "/api/v2/write"
            self._params = {
                "bucket": settings.bucket or settings.database,
                "org": settings.org or "",
                "precision": "ms",
            }
        else:
            self._url = "/write"
            self._params = {"db": settings.database, "precision": "ms"}
            if retention_policy is not None:  # v1: e.g. the long-kept rollups' policy
                self._params["rp"] = retention_policy

    async def __aenter__(self) -> InfluxWriter:
        self._client = _WriteClient(self.settings, limit=self._max_in_flight + 1)
        self._timer = asyncio.create_task(self._flush_timer(), name="influx-flush-timer")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            # also when the owner is being cancelled: what was handed over is written if the
            # database answers within the grace period
            async with asyncio.timeout(self.exit_flush_s):
                await self.flush()
        except TimeoutError:
            log.warning("InfluxDB writer closed with %d lines unwritten", self.stats.buffered)
        finally:
            self._closing = True  # no idle flush from here: its task would outlive the writer
            if self._timer is not None:
                self._timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._timer
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._client is not None:
                await self._client.aclose()

    async def write(self, lines: Sequence[str], units: int = 0) -> None:
        """Add lines to the current batch and wait until that batch is stored; ``units``:
        how much of the caller's window waits on them (see ``flush_units``)."""
        if not lines:
            return
        if self._pending.done is None:
            self._pending.done = asyncio.get_running_loop().create_future()
            self._pending_since = time.monotonic()
        pending = self._pending
        pending.lines.extend(lines)
        pending.units += units
        self.stats.buffered = len(pending.lines)
        assert pending.done is not None
        done = pending.done
        if (
            len(pending.lines) >= self.batch_lines
            or (self.flush_units is not None and pending.units >= self.flush_units)
            or self._idle_full()
        ):
            await self._dispatch()
        await asyncio.shield(done)

    def _idle_full(self) -> bool:
        """The batch holds ``idle_lines`` and no write is in flight: waiting for a full batch
        would only add latency, since the database has nothing to do meanwhile."""
        return (
            self.idle_lines is not None
            and self._sending == 0
            and len(self._pending.lines) >= self.idle_lines
        )

    async def _dispatch_if_idle(self) -> None:
        if self._idle_full():  # another write may have sent the batch since
            await self._dispatch()

    async def flush(self) -> None:
        """Send what is buffered and wait for every write in flight."""
        while self._pending.lines or self._tasks:
            if self._pending.lines:
                await self._dispatch()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def write_now(self, lines: Sequence[str]) -> None:
        """Write these lines as one request, bypassing the batch (used by plain bulk loads)."""
        await self._post(list(lines))

    async def _flush_timer(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s / 2)
            if self._pending.lines and (
                time.monotonic() - self._pending_since >= self.flush_interval_s
            ):
                await self._dispatch()

    async def _dispatch(self) -> None:
        # backpressure: a bounded number of batches in memory. The slot is taken before the
        # batch, so a caller cancelled while waiting leaves the batch where it was.
        await self._slots.acquire()
        pending, self._pending = self._pending, _Pending()
        self.stats.buffered = 0
        if not pending.lines:  # another dispatcher took it while we waited
            self._slots.release()
            return
        task = asyncio.create_task(self._send(pending), name="influx-write")
        self._sending += 1
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, pending: _Pending) -> None:
        assert pending.done is not None
        try:
            async with self._in_flight:
                self.stats.in_flight += 1
                try:
                    await self._post(pending.lines)
                finally:
                    self.stats.in_flight -= 1
        except BaseException as exc:
            if not pending.done.done():
                pending.done.set_exception(exc)
                # retrieved by every waiter via shield; mark retrieved for the no-waiter case
                pending.done.exception()
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            if not pending.done.done():
                pending.done.set_result(None)
        finally:
            self._slots.release()
            self._sending -= 1
            if self._idle_full() and not self._closing:
                # the lines that came in during this write go out now, not when they fill a
                # batch or the timer fires
                task = asyncio.create_task(self._dispatch_if_idle(), name="influx-idle-flush")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _post(self, lines: list[str]) -> None:
        assert self._client is not None, "use InfluxWriter as an async context manager"
        body: bytes | None = _join_lines(lines) if _join_lines is not None else None
        if body is None:
            body = ("\n".join(lines) + "\n").encode()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip_level > 0:
            # zlib releases the GIL: compress in a thread while the loop keeps parsing
            body = await asyncio.to_thread(gzip.compress, body, self.gzip_level)
            headers["Content-Encoding"] = "gzip"
        started = time.monotonic()
        try:
            await _post_with_retry(
                self._client,
                self._url,
                params=self._params,
                content=body,
                headers=headers,
                outage=self.outage,
                max_retry_s=self.max_retry_s,
            )
        except InfluxRejectedError:
            self.stats.rejected_batches += 1
            raise
        elapsed = time.monotonic() - started
        self.stats.points_written += len(lines)
        self.stats.batches_written += 1
        self.stats.write_seconds_total += elapsed
        self.stats.last_write_s = elapsed


@dataclass(frozen=True)
class Series:
    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.values]


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxReader:
    """InfluxQL over ``/query``; times come back as epoch milliseconds."""

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> InfluxReader:
        self._client = _client(self.settings)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def ping(self) -> bool:
        assert self._client is not None
        try:
            response = await self._client.get("/ping", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 204

    async def execute(self, statement: str, *, database: str | None = None) -> list[list[Series]]:
        """Run one or more ``;``-separated statements; one list of series per statement."""
        assert self._client is not None, "use InfluxReader as an async context manager"
        params = {"db": database or self.settings.database, "epoch": "ms"}
        try:
            response = await self._client.post("/query", params=params, data={"q": statement})
        except httpx.TransportError as exc:
            raise InfluxUnavailableError(f"{self.settings.url}: {exc}") from exc
        if response.status_code >= 500:
            raise InfluxUnavailableError(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            payload = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise InfluxQueryError(f"HTTP {response.status_code}: {response.text[:200]}") from exc
        if "error" in payload:
            raise InfluxQueryError(payload["error"])
        out: list[list[Series]] = []
        for result in payload.get("results", []):
            if "error" in result:
                raise InfluxQueryError(result["error"])
            out.append(
                [
                    Series(
                        name=s.get("name", ""),
                        tags=s.get("tags") or {},
                        columns=s["columns"],
                        values=s["values"],
                    )
                    for s in result.get("series", [])
                ]
            )
        return out

    async def query(self, statement: str) -> list[Series]:
        results = await self.execute(statement)
        return results[0] if results else []

    async def create_database(self, name: str | None = None) -> None:
        await self.execute(f"CREATE DATABASE {quote_ident(name or self.settings.database)}")

    async def count(self, measurement: str, field_name: str, where: str = "") -> int:
        clause = f" WHERE {where}" if where else ""
        series = await self.query(
            f"SELECT count({quote_ident(field_name)}) FROM {quote_ident(measurement)}{clause}"
        )
        return sum(int(row[1]) for s in series for row in s.values if row[1] is not None)


async def ensure_database(settings: InfluxSettings, logger: logging.Logger) -> None:
    """``CREATE DATABASE`` (v1), retrying with backoff until the server takes it; an outage is
    logged once. With the v2 API there is nothing to do: a bucket is its administrator's."""
    if settings.api != "v1":
        return
    outage = OutageLog(logger, f"InfluxDB at {settings.url}")
    backoff = Backoff()
    async with InfluxReader(settings) as reader:
        while True:
            try:
                await reader.create_database()
            except InfluxError as exc:
                outage.failed(exc)
                await asyncio.sleep(backoff.next_delay())
            else:
                outage.recovered()
                return


def ms_literal(epoch_ms: int | float) -> str:
    """A time literal for an InfluxQL WHERE clause."""
    if not math.isfinite(epoch_ms):
        raise ValueError("time must be finite")
    return f"{int(epoch_ms)}ms"


def where_tags(tags: Mapping[str, str]) -> str:
    return " AND ".join(f"{quote_ident(k)} = {quote_string(v)}" for k, v in tags.items())


def chunks(lines: Iterable[str], size: int) -> Iterable[list[str]]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
