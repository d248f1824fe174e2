"""Edge agent settings: one ``gateway.yaml`` per gateway, overridable by ``PW_EDGE_*`` variables.

Precedence, highest first: keyword arguments, environment (``PW_EDGE_MQTT__PASSWORD``,
``PW_EDGE_POLL_INTERVAL_S``, …), the YAML file, the defaults. So a file can be shared and a
secret given only in the environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from edge_agent.profiles import MeterProfile, Ratios, get_profile, load_profiles
from parkwatch.settings import MqttSettings
from parkwatch.slugs import Slug

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("edge_config_file", default=None)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TcpTransport(_Model):
    """Modbus TCP: a meter with an Ethernet port, or an RS-485 to Ethernet gateway."""

    kind: Literal["tcp"] = "tcp"
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 502

    @property
    def key(self) -> str:
        return f"tcp://{self.host}:{self.port}"


class RtuTransport(_Model):
    """Modbus RTU on a serial line (RS-485); devices on one port share the bus."""

    kind: Literal["rtu"] = "rtu"
    port: str  # /dev/ttyUSB0, /dev/ttyS1, …
    baudrate: Annotated[int, Field(gt=0)] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    @property
    def key(self) -> str:
        return f"rtu://{self.port}"


Transport = Annotated[TcpTransport | RtuTransport, Field(discriminator="kind")]


class DeviceConfig(_Model):
    """One meter the gateway reads."""

    meter: Slug  # the meter id in park.yaml
    profile: str  # a register map name, e.g. eastron-sdm630
    unit: Annotated[int, Field(ge=0, le=255)] = 1  # Modbus unit (slave) id
    transport: Transport
    # instrument-transformer ratios (primary/secondary) for meters that report secondary values
    ct_ratio: Annotated[float, Field(gt=0)] = 1.0
    pt_ratio: Annotated[float, Field(gt=0)] = 1.0

    @property
    def ratios(self) -> Ratios:
        return Ratios(ct=self.ct_ratio, pt=self.pt_ratio)


class EdgeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PW_EDGE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    park: Slug
    gateway: Slug
    mqtt: MqttSettings = MqttSettings()
    devices: list[DeviceConfig] = Field(default_factory=list)
    # extra register-map directories; a map there may replace a built-in one of the same name
    profile_dirs: list[Path] = Field(default_factory=list)
    poll_interval_s: Annotated[float, Field(gt=0)] = 5.0
    request_timeout_s: Annotated[float, Field(gt=0)] = 1.0  # one Modbus request
    max_concurrency: Annotated[int, Field(ge=1)] = 8  # devices read at the same time
    buffer_dir: Path = Path("edge-buffer")
    # bound of the write-ahead buffer; beyond it the oldest batches are dropped (and counted)
    buffer_max_batches: Annotated[int, Field(ge=1)] = 100_000
    publish_timeout_s: Annotated[float, Field(gt=0)] = 10.0  # waiting for one PUBACK
    client_id: str | None = None  # default: edge-{park}-{gateway}
    reconnect_base_s: Annotated[float, Field(gt=0)] = 0.5
    reconnect_cap_s: Annotated[float, Field(gt=0)] = 30.0
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _check_devices(self) -> Self:
        seen: set[str] = set()
        bus: dict[str, RtuTransport] = {}
        profiles = self.profiles()
        units: set[tuple[str, int]] = set()
        for device in self.devices:
            if device.meter in seen:
                raise ValueError(f"meter {device.meter!r} is configured twice")
            seen.add(device.meter)
            get_profile(device.profile, profiles)  # fails early, naming the known profiles
            key = device.transport.key
            if (key, device.unit) in units:
                raise ValueError(f"two devices answer as unit {device.unit} on {key}")
            units.add((key, device.unit))
            if isinstance(device.transport, RtuTransport):
                # one serial port is one bus: every device on it must use the same line settings
                first = bus.setdefault(device.transport.port, device.transport)
                if first != device.transport:
                    raise ValueError(f"devices on {device.transport.port} disagree on its settings")
        return self

    def profiles(self) -> dict[str, MeterProfile]:
        """Register maps from ``profile_dirs`` (the built-in ones are always available)."""
        return load_profiles(self.profile_dirs)

    @property
    def mqtt_client_id(self) -> str:
        return self.client_id or f"edge-{self.park}-{self.gateway}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings, dotenv_settings, file_secret_settings]
        path = _CONFIG_FILE.get()
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    @classmethod
    def from_yaml(cls, path: Path | str, **overrides: object) -> EdgeSettings:
        """Load ``gateway.yaml`` (relative paths in it are relative to the file)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"gateway config {path} not found")
        with _reading(path):
            return cls(**overrides)  # type: ignore[arg-type]

    @field_validator("buffer_dir")
    @classmethod
    def _buffer_dir(cls, value: Path) -> Path:
        return _near_config(value)

    @field_validator("profile_dirs")
    @classmethod
    def _profile_dirs(cls, value: list[Path]) -> list[Path]:
        return [_near_config(p) for p in value]


def _near_config(value: Path) -> Path:
    """A relative path in a config file means next to that file, wherever the agent starts."""
    config = _CONFIG_FILE.get()
    if config is None or value.is_absolute():
        return value
    return config.resolve().parent / value


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    token = _CONFIG_FILE.set(path)
    try:
        yield
    finally:
        _CONFIG_FILE.reset(token)
