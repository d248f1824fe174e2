"""Fixtures: a real Mosquitto and InfluxDB per test session, on free ports in a temp dir."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.stack import LocalStack

_db_counter = itertools.count()


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
