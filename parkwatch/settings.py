"""Connection settings shared by the services' own settings classes.

Each service has one ``pydantic-settings`` class with its own env prefix (``PW_INGEST_``,
``PW_API_``, …) that nests these models: ``PW_INGEST_MQTT__URL``, ``PW_API_INFLUX__URL``.
Secrets have no working defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _port_ok(parts: SplitResult) -> bool:
    """urlsplit checks the port only when it is read: 99999 or "80a" would fail at connect, or
    (the writer's aiohttp) out of every write, not at start-up."""
    try:
        _ = parts.port  # parsed, and checked, here
    except ValueError:
        return False
    return True


class MqttSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str = "mqtt://127.0.0.1:1883"  # mqtts:// for TLS
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None  # CA that signed the broker's certificate
    keepalive_s: int = Field(default=30, ge=5)
    connect_timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname or not _port_ok(parts):
            raise ValueError("expected mqtt://host:port or mqtts://host:port (port 0-65535)")
        return value

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)


class InfluxSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str = "http://127.0.0.1:8086"
    database: str = "parkwatch"
    api: Literal["v1", "v2"] = "v1"  # v2: /api/v2/write with a token; queries stay InfluxQL
    token: SecretStr | None = None
    org: str | None = None
    bucket: str | None = None  # v2 only; defaults to ``database``
    username: str | None = None
    password: SecretStr | None = None
    timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        # refused here, not by each request: a service would run and answer 503 "database
        # unavailable" to everything, blaming an outage for a typo
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname or not _port_ok(parts):
            raise ValueError("expected http://host:port or https://host:port (port 0-65535)")
        return value


class ServiceSettings(BaseSettings):
    """Common fields; each service subclasses this with its own ``env_prefix``."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")

    mqtt: MqttSettings = MqttSettings()
    influx: InfluxSettings = InfluxSettings()
    sites: list[Path] = Field(default_factory=list)  # park.yaml files
    log_level: str = "INFO"
