"""Edge agent settings: one ``gateway.yaml`` per gateway, overridable by ``PW_EDGE_*`` variables.

Precedence, highest first: keyword arguments, environment (``PW_EDGE_MQTT__PASSWORD``,
``PW_EDGE_POLL_INTERVAL_S``, …), the YAML file, the defaults. So a file can be shared and a
secret given only in the environment.

``devices`` are the meters the agent polls: each names a profile, and the profile's protocol
says how it is read — Modbus TCP/RTU (a register map), DL/T 645-2007 over a serial line or a
TCP transparent converter (a DL/T 645 map), or OPC UA (a node map). ``mqtt_meters``
are MQTT-native meters, which publish their own JSON: each names a JSON map (``mqtt_maps``) and
the device's topics, and the agent subscribes to those on the device broker (``device_mqtt``,
by default the broker the batches go to). They are a list of their own because they share
nothing with a polled device (no transport, unit id or transformer ratios) and every piece of
code that walks ``devices`` means the polled ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from edge_agent.catalog import Profile, get_any_profile, load_catalog
from edge_agent.json_maps import JsonMap, check_topic, get_json_map, load_json_maps, zone
from edge_agent.profiles import Ratios
from parkwatch.settings import MqttSettings
from parkwatch.slugs import Slug

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("edge_config_file", default=None)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TcpTransport(_Model):
    """A TCP endpoint: a meter with an Ethernet port, or an RS-485 to Ethernet converter
    (Modbus TCP, or a transparent converter passing DL/T 645 frames through)."""

    kind: Literal["tcp"] = "tcp"
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 502

    @property
    def key(self) -> str:
        return f"tcp://{self.host}:{self.port}"


class RtuTransport(_Model):
    """A serial line (RS-485): Modbus RTU or DL/T 645; devices on one port share the bus.
    ``kind: rtu`` and ``kind: serial`` are the same thing (DL/T 645 meters usually want
    ``baudrate: 2400`` or ``9600`` and ``parity: E``)."""

    kind: Literal["rtu", "serial"] = "rtu"
    port: str  # /dev/ttyUSB0, /dev/ttyS1, …
    baudrate: Annotated[int, Field(gt=0)] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    @property
    def key(self) -> str:
        return f"serial://{self.port}"

    def same_line(self, other: RtuTransport) -> bool:
        return self.model_dump(exclude={"kind"}) == other.model_dump(exclude={"kind"})


class OpcUaTransport(_Model):
    """An OPC UA server (``opc.tcp://host:4840/path``); devices on one server share a session."""

    kind: Literal["opcua"] = "opcua"
    url: Annotated[str, Field(pattern=r"^opc\.tcp://")]
    # poll: one Read request per device per cycle; subscribe: the server sends changes
    mode: Literal["poll", "subscribe"] = "poll"
    username: str | None = None
    password: SecretStr | None = None  # from PW_EDGE_… or a secrets file, never written here

    @property
    def key(self) -> str:
        return self.url


Transport = Annotated[TcpTransport | RtuTransport | OpcUaTransport, Field(discriminator="kind")]


class DeviceConfig(_Model):
    """One meter the gateway reads."""

    meter: Slug  # the meter id in park.yaml
    profile: str  # a profile name, e.g. eastron-sdm630; its protocol says how to read it
    unit: Annotated[int, Field(ge=0, le=255)] = 1  # Modbus unit (slave) id
    # DL/T 645: the 12-digit address on the nameplate, or "auto" (asked by broadcast: only
    # for a line with one meter)
    address: Annotated[str, Field(pattern=r"^([0-9]{12}|auto)$")] | None = None
    # OPC UA: the device's name, put in for {device} in its map's node ids
    device: Annotated[str, Field(min_length=1)] | None = None
    transport: Transport
    # instrument-transformer ratios (primary/secondary) for meters that report secondary values
    ct_ratio: Annotated[float, Field(gt=0)] = 1.0
    pt_ratio: Annotated[float, Field(gt=0)] = 1.0
    # one request's timeout for this device (default: the gateway's request_timeout_s)
    timeout_s: Annotated[float, Field(gt=0)] | None = None

    @property
    def ratios(self) -> Ratios:
        return Ratios(ct=self.ct_ratio, pt=self.pt_ratio)


class MqttMeterConfig(_Model):
    """An MQTT-native meter: it publishes its own JSON to a broker; the agent subscribes.

    Each message of its map is received on, in this order: the message's entry in ``topics``;
    ``topic``, for a map of one message; the map's topic template with ``{device}`` filled in.
    """

    meter: Slug  # the meter id in park.yaml
    map: str  # a JSON map name, e.g. tasmota-energy
    # the device's own MQTT name, put in for {device} in its map's topics: Tasmota's Topic,
    # a Shelly's topic prefix, a bridge's device id
    device: Annotated[str, Field(min_length=1)] | None = None
    topic: str | None = None  # the full topic, for a map with one message
    # full topics by message name, for a device set up with other topics than its map's
    # defaults (Tasmota's FullTopic, say)
    topics: dict[str, str] = Field(default_factory=dict)
    # the zone of the device's clock, for maps whose timestamps come without an offset
    timezone: str | None = None
    # nothing heard for this long: the device is logged as gone (once), and again when back;
    # set it above the device's publishing period (Tasmota's TelePeriod)
    max_silence_s: Annotated[float, Field(gt=0)] = 60.0

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            zone(value)
        return value

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        return None if value is None else check_topic(value)

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: dict[str, str]) -> dict[str, str]:
        for topic in value.values():
            check_topic(topic)
        return value

    @property
    def name(self) -> str:
        """How logs call the device: its MQTT name, or its (first) topic."""
        return self.device or self.topic or next(iter(self.topics.values()), self.meter)

    def topics_for(self, json_map: JsonMap) -> dict[str, str]:
        """Message name → the topic this device publishes it on."""
        names = [m.name for m in json_map.messages]
        unknown = set(self.topics) - set(names)
        if unknown:
            raise ValueError(
                f"meter {self.meter}: topics for {sorted(unknown)}, but map {json_map.name!r} "
                f"has only {names}"
            )
        if self.topic is not None and len(names) > 1:
            raise ValueError(
                f"meter {self.meter}: map {json_map.name!r} has {len(names)} messages "
                f"({names}): give `device` or `topics`, not one `topic`"
            )
        out: dict[str, str] = {}
        for message in json_map.messages:
            topic = self.topics.get(message.name) or self.topic
            if topic is None:
                if self.device is None:
                    raise ValueError(
                        f"meter {self.meter}: no topic for message {message.name!r}: "
                        "give `device` (or `topic` / `topics`)"
                    )
                topic = check_topic(message.topic_for(self.device))
            out[message.name] = topic
        return out


class EdgeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PW_EDGE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    park: Slug
    gateway: Slug
    mqtt: MqttSettings = MqttSettings()
    devices: list[DeviceConfig] = Field(default_factory=list)
    mqtt_meters: list[MqttMeterConfig] = Field(default_factory=list)
    # extra register-map directories; a map there may replace a built-in one of the same name
    profile_dirs: list[Path] = Field(default_factory=list)
    # extra JSON-map directories for MQTT-native meters (same rule)
    mqtt_map_dirs: list[Path] = Field(default_factory=list)
    # the broker MQTT-native meters publish to, when it is not ``mqtt`` (a broker on the
    # factory network, say, while batches go to the park's broker over TLS)
    device_mqtt: MqttSettings | None = None
    # an MQTT-native reading older than this many poll intervals when its batch is cut (a
    # retained last value, a late delivery) goes out with quality "stale"
    stale_after_cycles: Annotated[int, Field(ge=1)] = 3
    # a live message whose own timestamp is further than this from the gateway's clock is
    # stamped with the time it arrived instead (the device's clock or zone is wrong)
    device_clock_tolerance_s: Annotated[float, Field(gt=0)] = 60.0
    poll_interval_s: Annotated[float, Field(gt=0)] = 5.0
    request_timeout_s: Annotated[float, Field(gt=0)] = 1.0  # one request, unless a device says
    max_concurrency: Annotated[int, Field(ge=1)] = 8  # requests in flight at once, all links
    # a device that failed is tried again after 1, 2, 4 … poll intervals, at most this long,
    # so a dead meter does not take its bus's time every cycle
    backoff_cap_s: Annotated[float, Field(gt=0)] = 60.0
    # live first: after a reconnect, new batches go out at once and the backlog is replayed
    # behind them at this many batches a second
    replay_rate: Annotated[float, Field(gt=0)] = 20.0
    # Prometheus /metrics (bus utilisation, per-device latency, …) on this port, if given
    metrics_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    metrics_host: str = "127.0.0.1"
    buffer_dir: Path = Path("edge-buffer")
    # bound of the write-ahead buffer; beyond it the oldest batches are dropped (and counted)
    buffer_max_batches: Annotated[int, Field(ge=1)] = 100_000
    publish_timeout_s: Annotated[float, Field(gt=0)] = 10.0  # waiting for one PUBACK
    client_id: str | None = None  # default: edge-{park}-{gateway}
    reconnect_base_s: Annotated[float, Field(gt=0)] = 0.5
    # a broker that comes back is noticed within this long: live readings flow again soon after
    reconnect_cap_s: Annotated[float, Field(gt=0)] = 5.0
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _check_devices(self) -> Self:
        seen: set[str] = set()
        bus: dict[str, RtuTransport] = {}
        catalog = self.profiles()
        protocols: dict[str, str] = {}  # link key → the protocol spoken on it
        units: set[tuple[str, object]] = set()
        count: dict[str, int] = {}
        for device in self.devices:
            count[device.transport.key] = count.get(device.transport.key, 0) + 1
        for device in self.devices:
            if device.meter in seen:
                raise ValueError(f"meter {device.meter!r} is configured twice")
            seen.add(device.meter)
            profile = get_any_profile(device.profile, catalog)  # fails early, naming the known
            key = device.transport.key
            _check_protocol(device, profile, count[key])
            spoken = protocols.setdefault(key, profile.protocol)
            if spoken != profile.protocol:
                raise ValueError(f"{key} carries both {spoken} and {profile.protocol} devices")
            ident = device.unit if profile.protocol == "modbus" else device.address or device.device
            if profile.protocol != "opcua" and (key, ident) in units:
                what = "unit" if profile.protocol == "modbus" else "address"
                raise ValueError(f"two devices answer as {what} {ident} on {key}")
            units.add((key, ident))
            if isinstance(device.transport, RtuTransport):
                # one serial port is one bus: every device on it must use the same line settings
                first = bus.setdefault(device.transport.port, device.transport)
                if not first.same_line(device.transport):
                    raise ValueError(f"devices on {device.transport.port} disagree on its settings")
        self._check_mqtt_meters(seen)
        return self

    def _check_mqtt_meters(self, seen: set[str]) -> None:
        json_maps = self.mqtt_maps() if self.mqtt_meters else {}
        topics: dict[str, str] = {}
        for device in self.mqtt_meters:
            if device.meter in seen:
                raise ValueError(f"meter {device.meter!r} is configured twice")
            seen.add(device.meter)
            json_map = get_json_map(device.map, json_maps)  # fails early, naming the known maps
            if json_map.needs_zone and device.timezone is None:
                raise ValueError(
                    f"meter {device.meter}: map {device.map!r} reads times without an offset; "
                    "give the zone the device's clock is set to as `timezone` (Asia/Shanghai)"
                )
            for topic in device.topics_for(json_map).values():
                # one topic, one meter: a message cannot be told apart by its content
                other = topics.setdefault(topic, device.meter)
                if other != device.meter:
                    raise ValueError(f"meters {other!r} and {device.meter!r} share {topic}")

    def profiles(self) -> dict[str, Profile]:
        """Profiles from ``profile_dirs``, any protocol (the built-in ones are always there)."""
        return load_catalog(self.profile_dirs)

    def profile(self, device: DeviceConfig) -> Profile:
        return get_any_profile(device.profile, self.profiles())

    def timeout_for(self, device: DeviceConfig) -> float:
        return device.timeout_s or self.request_timeout_s

    def mqtt_maps(self) -> dict[str, JsonMap]:
        """JSON maps from ``mqtt_map_dirs`` (the built-in ones are always available)."""
        return load_json_maps(self.mqtt_map_dirs)

    @property
    def device_broker(self) -> MqttSettings:
        return self.device_mqtt or self.mqtt

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

    @field_validator("profile_dirs", "mqtt_map_dirs")
    @classmethod
    def _profile_dirs(cls, value: list[Path]) -> list[Path]:
        return [_near_config(p) for p in value]


def _check_protocol(device: DeviceConfig, profile: Profile, on_link: int) -> None:
    """The fields a device needs for its profile's protocol, and none of another's."""
    where = f"meter {device.meter} ({profile.protocol} profile {profile.name!r})"
    t = device.transport
    if profile.protocol == "opcua":
        if not isinstance(t, OpcUaTransport):
            raise ValueError(f"{where}: the transport is kind: opcua with the server's url")
        if device.device is None and any("{device}" in n.node for n in profile.nodes):
            raise ValueError(f"{where}: its node ids need `device` (the name in them)")
        return
    if isinstance(t, OpcUaTransport):
        raise ValueError(f"{where}: an OPC UA transport needs an OPC UA profile")
    if profile.protocol == "dlt645":
        if device.address is None:
            raise ValueError(f"{where}: give the meter's 12-digit `address`, or auto")
        if device.address == "auto" and on_link > 1:
            raise ValueError(
                f"{where}: address auto asks by broadcast, which every meter on {t.key} "
                "answers at once: give each meter's address"
            )
    elif device.address is not None:
        raise ValueError(f"{where}: `address` is for DL/T 645 meters; Modbus uses `unit`")


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
