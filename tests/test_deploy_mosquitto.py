"""deploy/mosquitto in a real broker: make-certs.sh makes a CA and server certificate, Mosquitto
runs deploy/mosquitto/mosquitto.conf (paths and port rewritten to a temporary directory) with the
real ACL file and a password file, and clients over TLS see the ACL do what it promises."""

from __future__ import annotations

import getpass
import queue
import re
import shutil
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from parkwatch import mqtt as pw_mqtt
from parkwatch import topics
from parkwatch.settings import MqttSettings
from parkwatch.stack import find_executable, free_port, spawn, stop_process, tcp_open, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
MOSQUITTO_DIR = DEPLOY / "mosquitto"
TIMEOUT = 5.0
PASSWORDS = {
    "gw-a1": "gw-a1-secret",
    "gw-b2": "gw-b2-secret",
    "ingest": "ingest-secret",
    "analytics": "analytics-secret",
    "api": "api-secret",
}
NOT_AUTHORIZED = 135  # MQTT v5 PUBACK reason code


def accepted(reason: int) -> bool:
    """Below 0x80 is success: 0, or 16 "no matching subscribers"."""
    return reason < 0x80


@dataclass
class Broker:
    port: int
    ca_file: Path
    log_path: Path
    certs: Path


def _run_make_certs(out_dir: Path, *sans: str) -> None:
    subprocess.run(
        ["bash", str(MOSQUITTO_DIR / "make-certs.sh"), str(out_dir), *sans],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _rewrite_config(text: str, tmp: Path, certs: Path, data: Path, port: int) -> str:
    """deploy's mosquitto.conf with the container paths and port swapped for test ones."""
    replacements = [
        (r"/mosquitto/config/", f"{tmp}/"),
        (r"/mosquitto/certs/", f"{certs}/"),
        (r"/mosquitto/data/", f"{data}/"),
        (r"(?m)^listener 8883$", f"listener {port} 127.0.0.1"),
        (r"(?m)^log_dest stdout$", "log_dest stderr"),
    ]
    for pattern, replacement in replacements:
        text, count = re.subn(pattern, replacement, text)
        assert count, f"deploy/mosquitto/mosquitto.conf no longer matches {pattern!r}"
    # as root Mosquitto drops to user 'mosquitto', which cannot read the temporary directory
    return f"user {getpass.getuser()}\n{text}"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    tmp = tmp_path_factory.mktemp("deploy-mosquitto")
    certs, data = tmp / "certs", tmp / "data"
    data.mkdir()
    _run_make_certs(certs)
    shutil.copy(MOSQUITTO_DIR / "acl", tmp / "acl")
    mosquitto_passwd = find_executable("mosquitto_passwd")
    for n, (user, password) in enumerate(PASSWORDS.items()):
        create = ["-c"] if n == 0 else []
        subprocess.run(
            [mosquitto_passwd, *create, "-b", str(tmp / "passwd"), user, password],
            check=True,
            capture_output=True,
            timeout=10,
        )
    port = free_port()
    conf = tmp / "mosquitto.conf"
    source = (MOSQUITTO_DIR / "mosquitto.conf").read_text()
    conf.write_text(_rewrite_config(source, tmp, certs, data, port))
    log_path = tmp / "mosquitto.log"
    proc = spawn([find_executable("mosquitto"), "-c", str(conf)], log_path)
    try:
        wait_until(lambda: tcp_open("127.0.0.1", port), proc, "mosquitto", log_path, TIMEOUT)
        yield Broker(port, certs / "ca.crt", log_path, certs)
    finally:
        stop_process(proc)


@pytest.fixture
def park() -> str:
    """A park of its own per test, so retained status messages do not leak between tests."""
    return f"park-{uuid.uuid4().hex[:8]}"


def _tls_context(ca_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    # what Python 3.13 turns on by default: the CA and certificate must be well-formed
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


class Client:
    """A paho MQTT v5 client over TLS whose connect, subscribe and publish wait for the broker."""

    def __init__(self, broker: Broker, user: str | None, password: str | None = None) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connack: ReasonCode | None = None
        self._connected = threading.Event()
        self._pubacks: dict[int, ReasonCode] = {}
        self._broker = broker
        self.paho = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{user or 'anonymous'}-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        if user is not None:
            self.paho.username_pw_set(user, PASSWORDS[user] if password is None else password)
        self.paho.tls_set_context(_tls_context(broker.ca_file))
        self.paho.on_connect = self._on_connect
        self.paho.on_message = self._on_message
        self.paho.on_publish = self._on_publish

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.connack = reason
        self._connected.set()

    def _on_message(self, _c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        self.messages.put((message.topic, bytes(message.payload)))

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        self._pubacks[mid] = reason

    def __enter__(self) -> Client:
        self.paho.connect("127.0.0.1", self._broker.port, keepalive=30)
        self.paho.loop_start()
        assert self._connected.wait(TIMEOUT), "no CONNACK"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()

    def subscribe(self, topic_filter: str) -> None:
        done = threading.Event()
        self.paho.on_subscribe = lambda *_: done.set()
        result, _ = self.paho.subscribe(topic_filter, qos=1)
        assert result == paho.MQTT_ERR_SUCCESS
        assert done.wait(TIMEOUT), "no SUBACK"

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """Publish with QoS 1; returns the PUBACK reason code (0 = success)."""
        info = self.paho.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(TIMEOUT)
        return self._pubacks[info.mid].value

    def receive(self) -> tuple[str, bytes]:
        return self.messages.get(timeout=TIMEOUT)

    def nothing_pending(self) -> bool:
        return self.messages.empty()


# --- the certificates -----------------------------------------------------------------------


def test_make_certs_writes_a_ca_and_a_server_certificate_with_sans(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    _run_make_certs(certs, "DNS:mqtt.park.example.cn", "IP:10.20.0.5")
    assert {p.name for p in certs.iterdir()} == {"ca.crt", "ca.key", "server.crt", "server.key"}
    assert (certs / "server.key").stat().st_mode & 0o077 == 0  # private keys: owner only
    assert (certs / "ca.key").stat().st_mode & 0o077 == 0
    openssl = find_executable("openssl")
    verified = subprocess.run(
        [openssl, "verify", "-CAfile", str(certs / "ca.crt"), str(certs / "server.crt")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    text = subprocess.run(
        [openssl, "x509", "-in", str(certs / "server.crt"), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:mqtt.park.example.cn, IP Address:10.20.0.5" in text
    assert "TLS Web Server Authentication" in text

    # run again: the CA stays (gateways keep trusting it), the server certificate is new
    ca_before = (certs / "ca.crt").read_bytes()
    server_before = (certs / "server.crt").read_bytes()
    _run_make_certs(certs, "DNS:mqtt2.park.example.cn")
    assert (certs / "ca.crt").read_bytes() == ca_before
    assert (certs / "server.crt").read_bytes() != server_before


def test_make_certs_rejects_a_malformed_san(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(MOSQUITTO_DIR / "make-certs.sh"), str(tmp_path / "c"), "mqtt.example.cn"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "not a DNS:/IP: entry" in result.stderr


def test_make_certs_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(MOSQUITTO_DIR / "make-certs.sh")], check=True)


# --- the broker -----------------------------------------------------------------------------


def test_config_acl_and_passwords_load(broker: Broker) -> None:
    log = broker.log_path.read_text()
    assert f"Opening ipv4 listen socket on port {broker.port}" in log
    assert "Error" not in log


def test_max_queued_messages_is_not_zero() -> None:
    conf = (MOSQUITTO_DIR / "mosquitto.conf").read_text()
    (value,) = re.findall(r"(?m)^max_queued_messages\s+(\d+)", conf)
    assert int(value) > 1000  # above the default, which drops readings for a busy subscriber
    assert not re.search(r"(?m)^max_inflight_messages\s+0\b", conf)


def test_anonymous_and_wrong_password_are_refused(broker: Broker) -> None:
    with Client(broker, "gw-a1", password="wrong") as client:
        assert client.connack is not None
        assert client.connack.is_failure
    with Client(broker, None) as client:
        assert client.connack is not None
        assert client.connack.is_failure


def test_plain_tcp_is_not_served(broker: Broker) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.username_pw_set("gw-a1", PASSWORDS["gw-a1"])
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert not connected.wait(1.0)
    finally:
        client.disconnect()
        client.loop_stop()


def test_gateway_reading_reaches_ingest_through_the_shared_subscription(
    broker: Broker, park: str
) -> None:
    with Client(broker, "ingest") as ingest, Client(broker, "gw-a1") as gateway:
        ingest.subscribe(topics.shared(topics.ALL_DATA))
        own = topics.data_topic(park, "gw-a1")
        assert accepted(gateway.publish(own, b'{"v":1}'))
        assert ingest.receive() == (own, b'{"v":1}')


def test_gateway_cannot_publish_as_another_gateway(broker: Broker, park: str) -> None:
    with (
        Client(broker, "ingest") as ingest,
        Client(broker, "analytics") as analytics,
        Client(broker, "gw-a1") as gateway,
    ):
        ingest.subscribe(topics.shared(topics.ALL_DATA))
        analytics.subscribe(topics.ALL_DATA)
        assert gateway.publish(topics.data_topic(park, "gw-b2"), b"forged") == NOT_AUTHORIZED
        assert gateway.publish(topics.status_topic(park, "gw-b2"), b"offline") == NOT_AUTHORIZED
        assert gateway.publish(topics.alert_topic(park, "peak"), b"forged") == NOT_AUTHORIZED
        # a message published after the refused ones arrives alone: nothing forged got through
        own = topics.data_topic(park, "gw-a1")
        assert accepted(gateway.publish(own, b"genuine"))
        assert ingest.receive() == (own, b"genuine")
        assert analytics.receive() == (own, b"genuine")
        assert ingest.nothing_pending()
        assert analytics.nothing_pending()


def test_status_and_alerts_reach_the_api(broker: Broker, park: str) -> None:
    with Client(broker, "gw-b2") as gateway, Client(broker, "analytics") as analytics:
        status = topics.status_topic(park, "gw-b2")
        assert accepted(gateway.publish(status, b"online", retain=True))
        alert = topics.alert_topic(park, "peak")
        with Client(broker, "api") as api:
            api.subscribe(f"pw/v1/{park}/+/status")  # the retained status comes at once
            assert api.receive() == (status, b"online")
            api.subscribe(f"pw/v1/{park}/alerts/+")
            assert accepted(analytics.publish(alert, b"opened"))
            assert api.receive() == (alert, b"opened")


def test_services_only_read_what_they_are_granted(broker: Broker, park: str) -> None:
    with Client(broker, "api") as api, Client(broker, "gw-a1") as gateway:
        api.subscribe(topics.ALL_DATA)  # accepted by Mosquitto 2.0, but nothing is delivered
        api.subscribe(f"pw/v1/{park}/+/status")
        assert accepted(gateway.publish(topics.data_topic(park, "gw-a1"), b"reading"))
        status = topics.status_topic(park, "gw-a1")
        assert accepted(gateway.publish(status, b"online"))
        assert api.receive() == (status, b"online")
        assert api.nothing_pending()
    with Client(broker, "api") as api:
        # the api publishes nothing: not an alert, not a dead letter
        assert api.publish(topics.alert_topic(park, "peak"), b"x") == NOT_AUTHORIZED
        assert api.publish(topics.deadletter_topic(park), b"x") == NOT_AUTHORIZED
    with Client(broker, "ingest") as ingest:
        assert accepted(ingest.publish(topics.deadletter_topic(park), b"rejected"))
        assert ingest.publish(topics.alert_topic(park, "peak"), b"x") == NOT_AUTHORIZED


@pytest.mark.anyio
async def test_project_client_connects_with_the_deploy_settings(broker: Broker, park: str) -> None:
    """The services' own client (parkwatch.mqtt), configured as compose.yaml configures it."""

    def settings(user: str) -> MqttSettings:
        return MqttSettings.model_validate(
            {
                "url": f"mqtts://127.0.0.1:{broker.port}",
                "username": user,
                "password": PASSWORDS[user],
                "ca_file": broker.ca_file,
            }
        )

    own = topics.data_topic(park, "gw-a1")
    async with pw_mqtt.client(settings("ingest"), f"ingest-{uuid.uuid4().hex[:8]}") as ingest:
        await ingest.subscribe(topics.shared(topics.ALL_DATA), qos=1)
        async with pw_mqtt.client(settings("gw-a1"), "edge-test-gw-a1") as gateway:
            await gateway.publish(own, b"via aiomqtt", qos=1)
        with anyio.fail_after(TIMEOUT):
            async for message in ingest.messages:
                assert message.topic.value == own
                assert message.payload == b"via aiomqtt"
                break


# --- compose wiring -------------------------------------------------------------------------


def test_compose_mounts_what_mosquitto_conf_expects() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    mosquitto = compose["services"]["mosquitto"]
    assert mosquitto["image"] == "eclipse-mosquitto:2"
    assert "./mosquitto:/mosquitto/config:ro" in mosquitto["volumes"]
    assert "./mosquitto/certs:/mosquitto/certs:ro" in mosquitto["volumes"]
    assert "8883:8883" in mosquitto["ports"]
    conf = (MOSQUITTO_DIR / "mosquitto.conf").read_text()
    for path in re.findall(r"(?m)^\w+ (/mosquitto/\S+)", conf):
        assert path.startswith(("/mosquitto/config/", "/mosquitto/certs/", "/mosquitto/data/"))
    # every service reaches the broker by the name make-certs.sh puts in the certificate
    script = (MOSQUITTO_DIR / "make-certs.sh").read_text()
    assert "DNS:mosquitto" in script
    for name in ("ingest", "analytics", "api"):
        env = compose["services"][name]["environment"]
        prefix = f"PW_{name.upper()}_"
        assert env[f"{prefix}MQTT__URL"] == "mqtts://mosquitto:8883"
        assert env[f"{prefix}MQTT__USERNAME"] == name
        assert env[f"{prefix}MQTT__CA_FILE"] == "/etc/ssl/parkwatch/ca.crt"


def test_the_analytics_kernels_cache_is_writable_and_kept_across_restarts() -> None:
    """numba caches the compiled kernels beside the installed package, which the image's user
    cannot write: without a cache dir of its own every start would compile them again."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    final = dockerfile.split("FROM python:3.11-slim\n", 1)[1]
    cache = re.search(r"NUMBA_CACHE_DIR=(\S+)", final)
    assert cache is not None
    # made by the service's user, after USER: a volume mounted there starts writable by it
    user_at = final.index("USER parkwatch")
    assert final.index(f"mkdir -p {cache[1]}") > user_at
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    volumes = compose["services"]["analytics"]["volumes"]
    kept = [v for v in volumes if v.split(":")[1] == cache[1]]
    assert kept
    assert kept[0].split(":")[0] in compose["volumes"]
    # the anchors' mounts are still there (a service's own list replaces the anchor's)
    assert set(compose["x-parkwatch"]["volumes"]) <= set(volumes)


def test_analytics_keeps_its_snapshots_across_restarts() -> None:
    """The detectors' state (baselines learnt over weeks) is snapshotted only where
    ``PW_ANALYTICS_STATE_DIR`` points (review: the deployed service had none, so a restart
    kept only InfluxDB's last hours): a volume of its own, made writable by the image."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    final = dockerfile.split("FROM python:3.11-slim\n", 1)[1]
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    analytics = compose["services"]["analytics"]
    state = analytics["environment"]["PW_ANALYTICS_STATE_DIR"]
    assert final.index(f"mkdir -p {state}") > final.index("USER parkwatch")
    kept = [v for v in analytics["volumes"] if v.split(":")[1] == state]
    assert kept
    assert kept[0].split(":")[0] in compose["volumes"]
