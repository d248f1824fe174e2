"""The InfluxDB writer's HTTP client (``parkwatch.influx._WriteClient``, aiohttp) against a
scripted server: kept-alive connections, connections the server closes, the answers' forms
(``Content-Length``, chunked, up to the close, HTTP/1.0), how each status is taken, the
request's head on the wire, the connection limit, and answers that never come or are given up.
Real influxd writes are ``tests/test_influx_writer.py``'s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import pytest

from parkwatch.influx import InfluxRejectedError, InfluxUnavailableError, InfluxWriter
from parkwatch.settings import InfluxSettings

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

NO_CONTENT = b"HTTP/1.1 204 No Content\r\nX-Influxdb-Version: 1.6.7\r\n\r\n"


@pytest.fixture
def no_outage(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The test's writes met no outage: a failed attempt counted and then recovered still
    logs "unreachable" (``outage.failures`` goes back to 0 on recovery)."""
    yield
    # at teardown caplog.text holds the teardown's records: the test's are the "call" phase's
    assert not [r for r in caplog.get_records("call") if "unreachable" in r.getMessage()]


@dataclass
class Script:
    """What the server answers to the n-th request (from 0), and what it saw."""

    answer: Callable[[int], bytes | None]  # None: never answer; b"": close instead
    close_after: Callable[[int], bool] = lambda n: False
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


@asynccontextmanager
async def server(script: Script) -> AsyncIterator[str]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        script.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                n = len(script.heads)
                script.heads.append(head)
                script.bodies.append(body)
                answer = script.answer(n)
                if answer is None:
                    await asyncio.sleep(3600)
                    return
                if not answer:  # closed with the request read and no answer
                    writer.close()
                    return
                writer.write(answer)
                await writer.drain()
                if script.close_after(n):
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield f"http://127.0.0.1:{port}"


@asynccontextmanager
async def writing(
    script: Script, path: str = "", **settings: object
) -> AsyncIterator[InfluxWriter]:
    """A writer (plain bodies unless ``gzip_level`` is given) to a server playing ``script``."""
    gzip_level = int(str(settings.pop("gzip_level", 0)))
    max_in_flight = int(str(settings.pop("max_in_flight", 4)))
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(server(script))
        yield await stack.enter_async_context(
            InfluxWriter(
                InfluxSettings.model_validate({"url": url + path, "database": "d", **settings}),
                gzip_level=gzip_level,
                max_in_flight=max_in_flight,
            )
        )


@pytest.mark.usefixtures("no_outage")
async def test_writes_share_one_kept_alive_connection() -> None:
    script = Script(lambda n: NO_CONTENT)
    async with writing(script) as w:
        for i in range(3):
            await w.write_now([f"m value={i}i"])
    assert script.connections == 1
    assert script.bodies == [b"m value=0i\n", b"m value=1i\n", b"m value=2i\n"]


@pytest.mark.parametrize("pause_s", [0.05, 0.0])
@pytest.mark.usefixtures("no_outage")
async def test_a_connection_the_server_closed_while_idle_costs_no_outage(pause_s: float) -> None:
    # the server closes after each answer without saying so: the next write finds its kept
    # connection closed (seen before it is used after a pause; at once, the request may go out
    # on it and meet the close) and goes again at once on a new one
    script = Script(lambda n: NO_CONTENT, close_after=lambda n: True)
    async with writing(script) as w:
        for i in range(3):
            await asyncio.sleep(pause_s)
            await w.write_now([f"m value={i}i"])
        assert w.stats.batches_written == 3
    assert script.connections == 3
    assert script.bodies == [b"m value=0i\n", b"m value=1i\n", b"m value=2i\n"]


@pytest.mark.usefixtures("no_outage")
async def test_a_kept_connection_closed_as_a_request_goes_out_costs_no_outage() -> None:
    # the close meets the request on the wire (the server read it and answered nothing): on
    # a kept connection that is the idle close racing the request, so it goes again at once
    answers = [NO_CONTENT, b"", NO_CONTENT]
    script = Script(lambda n: answers[n])
    async with writing(script) as w:
        await w.write_now(["m value=0i"])
        await w.write_now(["m value=1i"])
        assert not w.outage.is_down
    assert script.connections == 2
    assert script.bodies == [b"m value=0i\n", b"m value=1i\n", b"m value=1i\n"]


async def test_a_new_connection_closed_with_no_answer_is_an_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers = [b"", NO_CONTENT]
    script = Script(lambda n: answers[n])
    async with writing(script) as w:
        await w.write_now(["m value=0i"])  # retried after the backoff, then stored
        assert w.stats.batches_written == 1
    assert "unreachable" in caplog.text
    assert script.bodies == [b"m value=0i\n"] * 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        b"HTTP/1.0 204 No Content\r\n\r\n",
    ],
)
@pytest.mark.usefixtures("no_outage")
async def test_an_answer_that_ends_the_connection_is_not_kept(answer: bytes) -> None:
    script = Script(lambda n: answer, close_after=lambda n: True)
    async with writing(script) as w:
        await w.write_now(["m value=1i"])
        await w.write_now(["m value=2i"])  # at once: on a new connection, not the dead one
    assert script.connections == 2


@pytest.mark.usefixtures("no_outage")
async def test_answers_with_chunked_or_unbounded_bodies() -> None:
    error = b'{"error":"unable to parse \'m value=\': missing field value"}'
    chunked = (
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(error[:10]):x}\r\n".encode()
        + error[:10]
        + b"\r\n"
        + f"{len(error[10:]):x}\r\n".encode()
        + error[10:]
        + b"\r\n0\r\n\r\n"
    )
    unbounded = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\r\n" + error
    answers = [chunked, NO_CONTENT, unbounded]
    script = Script(lambda n: answers[n], close_after=lambda n: n == 2)
    async with writing(script) as w:
        with pytest.raises(InfluxRejectedError) as first:
            await w.write_now(["m value="])
        assert first.value.status == 400
        assert "missing field value" in first.value.body
        await w.write_now(["m value=1i"])  # the chunked answer was read to its end
        with pytest.raises(InfluxRejectedError) as second:
            await w.write_now(["m value="])
        assert second.value.body == error.decode()
    assert script.connections == 1


async def test_a_5xx_then_a_204_is_retried_and_stored() -> None:
    busy = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
    script = Script(lambda n: busy if n == 0 else NO_CONTENT)
    async with writing(script) as w:
        await w.write_now(["m value=1i"])
        assert not w.outage.is_down
        assert w.stats.batches_written == 1
    assert script.bodies == [b"m value=1i\n"] * 2  # the same body again after the 503


@pytest.mark.usefixtures("no_outage")
async def test_the_request_head_on_the_wire() -> None:
    script = Script(lambda n: NO_CONTENT)
    async with server(script) as url:
        settings = InfluxSettings(
            url=f"{url}/influx/", database="两江 db", username="ü", password="p:w"
        )
        async with InfluxWriter(settings, gzip_level=1) as w:
            await w.write_now(["m value=1i"])
    [head] = script.heads
    request_line, *fields = head.decode("latin-1").split("\r\n")
    assert request_line == "POST /influx/write?db=%E4%B8%A4%E6%B1%9F+db&precision=ms HTTP/1.1"
    headers = dict(f.split(": ", 1) for f in fields if f)
    assert headers["Host"] == url.removeprefix("http://")
    # base64 of "ü:p:w" in UTF-8, as httpx's BasicAuth sends it
    assert headers["Authorization"] == "Basic w7w6cDp3"
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert int(headers["Content-Length"]) == len(script.bodies[0])
    # a fixed User-Agent names the writer; no Accept-Encoding, so answers come plain
    assert headers["User-Agent"] == "parkwatch"
    assert "Accept-Encoding" not in headers


async def test_an_answer_that_never_comes_is_an_outage() -> None:
    script = Script(lambda n: None)
    async with server(script) as url:
        settings = InfluxSettings(url=url, database="d", timeout_s=0.2)
        async with InfluxWriter(settings, gzip_level=0, max_retry_s=0.5) as w:
            w.exit_flush_s = 0.1
            with pytest.raises(InfluxUnavailableError, match="TimeoutError"):
                await w.write_now(["m value=1i"])
            assert w.outage.failures >= 2
    assert script.connections >= 2  # a timed-out connection is dropped, never reused


@pytest.mark.parametrize("status", [400, 413, 422])
@pytest.mark.usefixtures("no_outage")
async def test_an_answer_about_the_data_is_a_rejection(status: int) -> None:
    answer = f"HTTP/1.1 {status} Nope\r\nContent-Length: 7\r\n\r\nbad row".encode()
    script = Script(lambda n: answer)
    async with writing(script) as w:
        with pytest.raises(InfluxRejectedError) as rejected:
            await w.write_now(["m value=1i"])
        assert (rejected.value.status, rejected.value.body) == (status, "bad row")
    assert len(script.bodies) == 1  # never sent again


@pytest.mark.parametrize("status", [401, 403, 404, 429, 500])
async def test_an_answer_not_about_the_data_is_retried(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    refused = f"HTTP/1.1 {status} Nope\r\nContent-Length: 5\r\n\r\nlater".encode()
    script = Script(lambda n: refused if n == 0 else NO_CONTENT)
    async with writing(script) as w:
        await w.write_now(["m value=1i"])
        assert w.stats.batches_written == 1
    assert f"HTTP {status}: later" in caplog.text
    assert script.bodies == [b"m value=1i\n"] * 2


@pytest.mark.usefixtures("no_outage")
async def test_credentials_in_the_url_are_sent_as_basic() -> None:
    script = Script(lambda n: NO_CONTENT)
    async with server(script) as url:
        settings = InfluxSettings(url=url.replace("://", "://u:p%40@"), database="d")
        async with InfluxWriter(settings, gzip_level=0) as w:
            await w.write_now(["m value=1i"])
    [head] = script.heads
    assert b"\r\nAuthorization: Basic dTpwQA==\r\n" in head  # base64 of "u:p@"
    assert b"u:p" not in head.split(b"\r\n")[0]  # not in the request line


@pytest.mark.usefixtures("no_outage")
async def test_concurrent_writes_share_a_bounded_pool() -> None:
    # write_now does not wait for the writer's in-flight slots: the pool's limit bounds them
    script = Script(lambda n: NO_CONTENT)
    async with writing(script, max_in_flight=2) as w:
        await asyncio.gather(*(w.write_now([f"m value={i}i"]) for i in range(40)))
        assert w.stats.batches_written == 40
    assert 1 <= script.connections <= 3


@pytest.mark.usefixtures("no_outage")
async def test_a_cancelled_write_leaves_no_connection_behind() -> None:
    # the first request is never answered; cancelled, its connection must not be reused
    script = Script(lambda n: None if n == 0 else NO_CONTENT)
    async with writing(script) as w:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(w.write_now(["m value=0i"]), 0.3)
        await w.write_now(["m value=1i"])
    assert script.connections == 2
    assert script.bodies == [b"m value=0i\n", b"m value=1i\n"]


@pytest.mark.usefixtures("no_outage")
async def test_writes_go_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the scripted server plays the proxy: the request comes with the database's absolute URL
    script = Script(lambda n: NO_CONTENT)
    async with server(script) as proxy:
        for name in ("NO_PROXY", "no_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.replace("://", "://pu:pp@"))
        settings = InfluxSettings(url="http://influx.invalid:8086", database="d")
        async with InfluxWriter(settings, gzip_level=0) as w:
            await w.write_now(["m value=1i"])
            await w.write_now(["m value=2i"])
    request_line, *fields = script.heads[0].decode("latin-1").split("\r\n")
    assert request_line == "POST http://influx.invalid:8086/write?db=d&precision=ms HTTP/1.1"
    assert "Proxy-Authorization: Basic cHU6cHA=" in fields  # base64 of "pu:pp"
    assert script.bodies == [b"m value=1i\n", b"m value=2i\n"]
