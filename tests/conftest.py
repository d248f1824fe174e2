"""Fixtures: a real Mosquitto and InfluxDB per test session, on free ports in a temp dir.

Every test that starts a server carries the ``integration`` marker, so ``-m "not integration"``
runs only what needs none: a test that uses the ``stack`` fixture gets it here; any other test
that opens a listening socket or starts a server process without it fails and says so.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import parkwatch.stack
from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.stack import LocalStack

pytest_plugins = ["pytester"]

_db_counter = itertools.count()
SERVER_FIXTURES = frozenset({"stack"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _servers_are_integration(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unmarked test that listens on a socket or spawns Mosquitto/InfluxDB fails at once."""
    if request.node.get_closest_marker("integration") is not None:
        return

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError(
            f"{request.node.nodeid} starts a server: mark it @pytest.mark.integration"
        )

    monkeypatch.setattr(socket.socket, "listen", refuse)
    monkeypatch.setattr(parkwatch.stack, "spawn", refuse)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture
def mqtt_settings(stack: LocalStack) -> MqttSettings:
    return MqttSettings(url=stack.mqtt_url)


@pytest.fixture
def influx_settings(stack: LocalStack) -> InfluxSettings:
    """A fresh database per test, so tests never see each other's points."""
    return InfluxSettings(url=stack.influx_url, database=f"test_{next(_db_counter)}")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def demo_park_path() -> Path:
    return Path(__file__).resolve().parent.parent / "simulators" / "parks" / "demo.yaml"
