"""Ingest's settings reach its writer: the idle flush is off unless asked for (issue 12), and a
value that could never apply is refused (a URL's impossible port too, at start-up); its MQTT
client: the read pauses; the event loop it runs on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

import ingest.service
from ingest.service import IngestService, event_loop_factory
from ingest.settings import IngestSettings
from parkwatch.mqttio import FastClient, Message
from parkwatch.site import Park, SiteRegistry
from parkwatch_cli import app as cli_app
from parkwatch_cli.runner import run_service
from tests.test_mqttio import _Transport


def _writer_of(settings: IngestSettings, demo_park_path: Path) -> tuple[int | None, int | None]:
    service = IngestService(settings, SiteRegistry([Park.from_yaml(demo_park_path)]))
    writer = service.new_writer()
    return writer.idle_lines, writer.flush_units


def test_idle_flush_is_off_by_default(
    demo_park_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PW_INGEST_IDLE_FLUSH_LINES", raising=False)
    settings = IngestSettings(receive_maximum=4096)
    assert settings.idle_flush_lines == 0
    # 0 reaches the writer as "no idle rule"; the window rule is there either way
    assert _writer_of(settings, demo_park_path) == (None, 2048)


def test_idle_flush_is_opt_in_through_the_environment(
    demo_park_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PW_INGEST_IDLE_FLUSH_LINES", "10000")
    settings = IngestSettings(receive_maximum=300)
    assert _writer_of(settings, demo_park_path) == (10_000, 150)


def test_idle_flush_at_or_above_batch_lines_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PW_INGEST_IDLE_FLUSH_LINES", raising=False)
    for idle in (20_000, 30_000):
        with pytest.raises(ValidationError, match=r"idle_flush_lines \(\d+\) must be below"):
            IngestSettings(idle_flush_lines=idle, batch_lines=20_000)
    # below it, and 0 (off) whatever batch_lines is, are fine
    assert IngestSettings(idle_flush_lines=19_999, batch_lines=20_000).idle_flush_lines == 19_999
    assert IngestSettings(idle_flush_lines=0, batch_lines=1).idle_flush_lines == 0


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("PW_INGEST_INFLUX__URL", "http://127.0.0.1:99999"),
        ("PW_INGEST_INFLUX__URL", "http://127.0.0.1:80a"),
        ("PW_INGEST_MQTT__URL", "mqtt://127.0.0.1:99999"),
    ],
)
def test_a_port_that_cannot_be_is_refused_at_start_up(
    name: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # not at the first connect or out of every write (the writer's aiohttp raised ValueError)
    monkeypatch.setenv(name, url)
    with pytest.raises(ValidationError, match=r"host:port .*\(port 0-65535\)"):
        IngestSettings()
    monkeypatch.setenv(name, url.replace(url.rpartition(":")[2], "8086"))
    assert IngestSettings()


class _BuiltError(Exception):
    """Stops the session once its client is built: only what reaches the client matters."""


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("env", "pauses", "small_read_pause"),
    [
        ({}, (0.01, 0.025, 400), 0.025),
        (
            {
                "PW_INGEST_READ_PAUSE_MS": "5",
                "PW_INGEST_SMALL_MESSAGE_PAUSE_MS": "40",
                "PW_INGEST_SMALL_MESSAGE_BYTES": "300",
            },
            (0.005, 0.04, 300),
            0.04,
        ),
        # 0 turns every pause off, the small messages' one too (README's settings table)
        ({"PW_INGEST_READ_PAUSE_MS": "0"}, (0.0, 0.025, 400), None),
    ],
)
async def test_the_read_pauses_reach_the_mqtt_client(
    env: dict[str, str],
    pauses: tuple[float, float, int],
    small_read_pause: float | None,
    demo_park_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[FastClient] = []

    class Recording(FastClient):
        async def __aenter__(self) -> FastClient:
            built.append(self)
            raise _BuiltError

    for name in ("READ_PAUSE_MS", "SMALL_MESSAGE_PAUSE_MS", "SMALL_MESSAGE_BYTES"):
        monkeypatch.delenv(f"PW_INGEST_{name}", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(ingest.service, "FastClient", Recording)
    service = IngestService(IngestSettings(), SiteRegistry([Park.from_yaml(demo_park_path)]))
    with pytest.raises(_BuiltError):
        await service._session(service.new_writer())
    [client] = built
    assert (client.read_pause_s, client.small_pause_s, client.small_message_bytes) == pauses
    # and the client acts on them: a read of ten one-reading-sized messages
    client._transport = _Transport()  # type: ignore[assignment]
    loop = asyncio.get_running_loop()
    before = loop.time()
    client._received([([Message("t", b"x" * 130, 1, i + 1) for i in range(10)], 1300)], 1400)
    after = loop.time()
    timer = client._pause_timer
    if small_read_pause is None:
        assert timer is None
    else:
        assert timer is not None
        assert before + small_read_pause <= timer.when() <= after + small_read_pause
        timer.cancel()


def test_ingest_runs_on_uvloop_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    # the command runs the service through run_service with this factory (parkwatch_cli/app.py)
    seen: list[str] = []

    async def probe() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__.split(".")[0])

    monkeypatch.delenv("PW_INGEST_EVENT_LOOP", raising=False)
    run_service(probe(), loop_factory=event_loop_factory(IngestSettings()))
    monkeypatch.setenv("PW_INGEST_EVENT_LOOP", "uvloop")
    run_service(probe(), loop_factory=event_loop_factory(IngestSettings()))
    assert seen == ["asyncio", "uvloop"]


def test_ingest_command_hands_its_runner_the_uvloop_factory(
    demo_park_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # through `parkwatch ingest` itself: the runner app.py calls must get the factory
    got: list[Callable[[], asyncio.AbstractEventLoop] | None] = []

    def fake_run(
        coro: Coroutine[Any, Any, None],
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    ) -> None:
        coro.close()  # the service itself is not the point here
        got.append(loop_factory)

    monkeypatch.setattr(cli_app, "_run", fake_run)
    result = CliRunner().invoke(
        cli_app.app,
        ["ingest", "--site", str(demo_park_path)],
        env={"PW_INGEST_EVENT_LOOP": "uvloop"},
    )
    assert result.exit_code == 0, result.output
    [factory] = got
    assert factory is not None
    loop = factory()
    try:
        assert type(loop).__module__.split(".")[0] == "uvloop"
    finally:
        loop.close()
