"""The edge agent end to end: real Modbus meters → agent → real Mosquitto → a subscriber; and
its write-ahead buffer across broker outages and agent restarts."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest

from edge_agent import service
from edge_agent.buffer import WalBuffer, WalBufferError
from edge_agent.service import EdgeAgent
from edge_agent.settings import EdgeSettings
from parkwatch import __version__, mqtt, topics
from parkwatch.settings import MqttSettings
from parkwatch.site import Park, SiteRegistry
from parkwatch.stack import Mosquitto, free_port
from parkwatch.tasks import cancel_and_wait
from parkwatch.topics import DataTopic
from parkwatch.wire import parse_batch
from simulators.modbus import SimulatedGateway

GATEWAY = "gw-steelco"
_ids = itertools.count()


@pytest.fixture
def park(demo_park_path: Path) -> Park:
    return Park.from_yaml(demo_park_path)


def agent_settings(
    park: Park, sim: SimulatedGateway, url: str, buffer_dir: Path, **extra: Any
) -> EdgeSettings:
    settings: dict[str, Any] = {
        "park": park.park,
        "gateway": GATEWAY,
        "mqtt": MqttSettings(url=url, connect_timeout_s=2.0),
        "devices": sim.device_configs(),
        "poll_interval_s": 0.1,
        "request_timeout_s": 0.5,
        "buffer_dir": buffer_dir,
        "client_id": f"edge-test-{next(_ids)}",
        "reconnect_base_s": 0.05,
        "reconnect_cap_s": 0.3,
    }
    return EdgeSettings(**{**settings, **extra})


@asynccontextmanager
async def running(agent: EdgeAgent) -> AsyncIterator[EdgeAgent]:
    """Run the agent in a task for the block; cancel it (and wait for it) on the way out."""
    task = asyncio.create_task(agent.run())
    try:
        async with asyncio.timeout(10):
            await agent.started.wait()
        yield agent
    finally:
        await cancel_and_wait(task)
        assert task.cancelled()


async def eventually(check: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def subscriber(url: str, client_id: str, *, persistent: bool = False) -> aiomqtt.Client:
    """A v5 subscriber; ``persistent`` keeps its session (and queued messages) across
    disconnects and broker restarts (clean start off, an hour of session expiry)."""
    settings = MqttSettings(url=url)
    return aiomqtt.Client(
        settings.host,
        settings.port,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=not persistent,
        properties=mqtt.connect_properties(session_expiry_s=3600 if persistent else 0),
    )


async def collect(
    client: aiomqtt.Client, until: Callable[[list[dict[str, Any]]], bool], within_s: float = 15.0
) -> list[dict[str, Any]]:
    """Batches from the data topic until ``until(batches)``."""
    batches: list[dict[str, Any]] = []
    async with asyncio.timeout(within_s):
        async for message in client.messages:
            if message.topic.value.endswith("/data"):
                assert isinstance(message.payload, bytes)
                batches.append(orjson.loads(message.payload))
                if until(batches):
                    return batches
    raise AssertionError("the subscription ended")


def assert_consecutive(batches: list[dict[str, Any]], first: int = 1) -> None:
    seqs = [b["seq"] for b in batches]
    assert seqs == list(range(first, first + len(seqs))), seqs


def replayed_all(batches: list[dict[str, Any]], backlog: int) -> bool:
    """The backlog (seq 1..backlog) has arrived, and every live batch sent before it."""
    seqs = {b["seq"] for b in batches}
    return set(range(1, backlog + 1)) <= seqs and seqs == set(range(1, max(seqs) + 1))


def assert_live_first(batches: list[dict[str, Any]], backlog: int) -> None:
    """Every batch once; a live batch (seq > backlog) came before the backlog was done; the
    backlog itself went out oldest first."""
    seqs = [b["seq"] for b in batches]
    assert sorted(seqs) == list(range(1, len(seqs) + 1)), seqs
    old = [s for s in seqs if s <= backlog]
    assert old == list(range(1, backlog + 1)), seqs
    first_live = next(i for i, s in enumerate(seqs) if s > backlog)
    assert first_live < seqs.index(backlog), seqs


# --- the whole path -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_agent_publishes_what_the_meters_hold(
    park: Park, mqtt_settings: MqttSettings, tmp_path: Path
) -> None:
    data_topic = topics.data_topic(park.park, GATEWAY)
    status_topic = topics.status_topic(park.park, GATEWAY)
    async with SimulatedGateway(park, GATEWAY, refresh_s=None, seed=11) as sim:
        # the ten meters share one connection: a slot long enough to read them all on a busy
        # machine, so that every batch carries every meter
        settings = agent_settings(
            park, sim, mqtt_settings.url, tmp_path / "buffer", poll_interval_s=0.5
        )
        agent = EdgeAgent(settings)
        async with subscriber(mqtt_settings.url, f"test-sub-{next(_ids)}") as sub:
            await sub.subscribe(data_topic, qos=1)
            await sub.subscribe(status_topic, qos=1)
            statuses: list[dict[str, Any]] = []
            batches: list[dict[str, Any]] = []
            async with running(agent), asyncio.timeout(15):
                async for message in sub.messages:
                    assert isinstance(message.payload, bytes)
                    doc = orjson.loads(message.payload)
                    (statuses if message.topic.matches(status_topic) else batches).append(doc)
                    if len(batches) >= 4:
                        break
            # stopping says goodbye: a retained "offline" follows
            async with asyncio.timeout(5):
                async for message in sub.messages:
                    assert isinstance(message.payload, bytes)
                    if message.topic.matches(status_topic):
                        statuses.append(orjson.loads(message.payload))
                        if statuses[-1]["state"] == "offline":
                            break

    assert statuses[0]["state"] == "online"
    assert statuses[0]["version"] == __version__
    assert statuses[-1]["state"] == "offline"
    assert_consecutive(batches)
    registry = SiteRegistry([park])
    configured = {a.meter: a for a in sim.assignments}
    times = [b["readings"][0]["t"] for b in batches]
    assert times == sorted(times)
    for batch in batches:
        assert batch["gw"] == GATEWAY
        # ingest takes every value: right meters, right quantities, plausible values
        parsed = parse_batch(
            orjson.dumps(batch), DataTopic(park.park, GATEWAY), registry, int(time.time() * 1000)
        )
        assert parsed.rejections == []
        meters = [r["m"] for r in batch["readings"]]
        if batch is batches[0]:  # the first cut may come before the first pass has finished
            assert meters == list(configured)[: len(meters)]
        else:
            assert meters == list(configured)
        for reading in batch["readings"]:
            assignment = configured[reading["m"]]
            want = sim.feed.values(reading["m"])
            assert set(reading["q"]) == set(assignment.profile.quantities)
            for quantity, value in reading["q"].items():
                spec = assignment.profile.register(quantity)
                tolerance = spec.resolution(assignment.ratios) / 2 + abs(want[quantity]) * 2**-23
                assert math.isclose(value, want[quantity], abs_tol=tolerance + 1e-9), quantity


@pytest.mark.integration
@pytest.mark.anyio
async def test_broker_outage_is_buffered_and_replayed_in_order(
    park: Park, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge_agent")
    broker = Mosquitto(tmp_path / "mosquitto", port=free_port())
    data_topic = topics.data_topic(park.park, GATEWAY)
    broker.start()
    try:
        # the subscriber's session (and subscription) outlives it and the broker's restart
        async with subscriber(broker.url, "replay-sub", persistent=True) as sub:
            await sub.subscribe(data_topic, qos=1)
        broker.stop()

        async with SimulatedGateway(park, GATEWAY, refresh_s=0.05, seed=2) as sim:
            # a slow replay (5 batches a second) lets live batches overtake the backlog
            settings = agent_settings(park, sim, broker.url, tmp_path / "buffer", replay_rate=5)
            agent = EdgeAgent(settings)
            async with running(agent):
                await eventually(lambda: agent.buffer.count_sync() >= 5)
                assert agent.published == 0
                assert not agent.connected.is_set()

                broker.start()  # same port, same persistence directory
                await eventually(agent.connected.is_set)
                await eventually(lambda: agent.replayed > 0 and agent.backlog_left == 0)
                backlog = agent.replayed
                assert backlog >= 5
                async with subscriber(broker.url, "replay-sub", persistent=True) as sub:
                    batches = await collect(sub, lambda b: replayed_all(b, backlog))
    finally:
        broker.stop()

    # every batch exactly once: live batches went out while the backlog was replayed
    assert_live_first(batches, backlog)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("edge_agent")]
    assert sum("MQTT broker" in m and "unreachable" in m for m in ours) == 1
    assert sum("MQTT broker" in m and "is back after" in m for m in ours) == 1


@pytest.mark.integration
@pytest.mark.anyio
async def test_agent_reconnects_after_its_session_breaks(park: Park, tmp_path: Path) -> None:
    """The broker goes away under a running session and comes back: the agent reconnects and
    publishes again. (Python 3.11's TaskGroup leaves its parent task marked as cancelling when
    a child fails while it waits to exit; the publish loop took that for a stop and ended.)"""
    broker = Mosquitto(tmp_path / "mosquitto", port=free_port())
    broker.start()
    try:
        async with SimulatedGateway(park, GATEWAY, refresh_s=0.05, seed=3) as sim:
            settings = agent_settings(park, sim, broker.url, tmp_path / "buffer")
            agent = EdgeAgent(settings)
            async with running(agent):
                await eventually(lambda: agent.published >= 3)
                broker.stop()
                await eventually(lambda: not agent.connected.is_set())
                broker.start()  # same port
                await eventually(agent.connected.is_set)
                before = agent.published
                await eventually(lambda: agent.published > before + 3)
    finally:
        broker.stop()


@pytest.mark.integration
@pytest.mark.anyio
async def test_backlog_survives_an_agent_restart(park: Park, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", port=free_port())
    buffer_dir = tmp_path / "buffer"
    async with SimulatedGateway(park, GATEWAY, refresh_s=0.05, seed=4) as sim:
        first = EdgeAgent(agent_settings(park, sim, broker.url, buffer_dir))
        async with running(first):  # the broker is not there: everything stays on disk
            await eventually(lambda: first.buffer.count_sync() >= 3)
        with WalBuffer(buffer_dir, GATEWAY) as left:
            backlog = left.count_sync()
        assert backlog >= 3

        broker.start()
        try:
            async with subscriber(broker.url, f"test-sub-{next(_ids)}") as sub:
                await sub.subscribe(topics.data_topic(park.park, GATEWAY), qos=1)
                settings = agent_settings(park, sim, broker.url, buffer_dir, replay_rate=5)
                second = EdgeAgent(settings)
                async with running(second):
                    batches = await collect(sub, lambda b: replayed_all(b, backlog))
        finally:
            broker.stop()
    # seq went on where the first agent stopped; live batches did not wait for the backlog
    assert_live_first(batches, backlog)


class SwallowedCancelAgent(EdgeAgent):
    """An agent whose broker connection is a bare ``asyncio.wait_for`` (what aiomqtt does),
    which the test completes with a refusal in the same loop step as the agent is stopped."""

    def __init__(self, settings: EdgeSettings) -> None:
        super().__init__(settings)
        self.attempt: asyncio.Future[None] | None = None
        self.first_attempt = asyncio.Event()
        self.sessions = 0

    async def _session(self, outage: Any, backoff: Any) -> None:
        self.sessions += 1
        self.attempt = asyncio.get_running_loop().create_future()
        self.first_attempt.set()
        try:
            await asyncio.wait_for(self.attempt, timeout=0.2)
        except TimeoutError:
            raise aiomqtt.MqttError("no answer from the broker") from None


@pytest.mark.anyio
async def test_agent_stops_when_a_connect_swallows_its_cancellation(tmp_path: Path) -> None:
    """Python 3.11's ``wait_for`` returns (or raises) the result of an operation that completes
    as its task is cancelled, and the cancellation is lost. The task group stopping the agent
    cancels each task once: a publish loop that then went on reconnecting would keep the
    agent from ever stopping (a test sitting at 0 % CPU)."""
    settings = EdgeSettings(
        park="lj-demo",
        gateway=GATEWAY,
        mqtt=MqttSettings(url=f"mqtt://127.0.0.1:{free_port()}"),
        poll_interval_s=0.1,
        buffer_dir=tmp_path / "buffer",
        reconnect_base_s=0.01,
        reconnect_cap_s=0.02,
    )
    agent = SwallowedCancelAgent(settings)
    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.first_attempt.wait(), 10)
    assert agent.attempt is not None
    agent.attempt.set_exception(aiomqtt.MqttError("connection refused"))
    task.cancel()  # the task group cancels the publish loop as the refusal lands
    done, _ = await asyncio.wait([task], timeout=3.0)
    stuck = not done
    if stuck:  # end it for the next test: cancel the publish loop itself
        await cancel_and_wait(publish_loop_of(task))
    await cancel_and_wait(task)
    assert not stuck, f"the agent did not stop ({agent.sessions} connects after the cancel)"


def publish_loop_of(task: asyncio.Task[Any]) -> asyncio.Task[Any]:
    return next(
        t for t in asyncio.all_tasks() if t is not task and "_publish_loop" in repr(t.get_coro())
    )


class FirstPublishSwallowsCancel(mqtt.Client):
    """The real client, but its first publish loses a cancellation that lands as the PUBACK
    does — what Python 3.11's ``wait_for`` inside aiomqtt does in that race."""

    swallowed_in: asyncio.Task[Any] | None = None

    async def publish(self, *args: Any, **kwargs: Any) -> None:
        await super().publish(*args, **kwargs)
        if FirstPublishSwallowsCancel.swallowed_in is not None:
            return
        task = FirstPublishSwallowsCancel.swallowed_in = asyncio.current_task()
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)  # the cancellation, taken and dropped


@pytest.mark.anyio
async def test_session_stops_when_its_status_publish_swallows_a_cancellation(
    mqtt_settings: MqttSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The "online" status lost the cancellation: the session must not go on to wait for
    live batches that a stopped poller will never make."""
    monkeypatch.setattr(mqtt, "Client", FirstPublishSwallowsCancel)
    settings = EdgeSettings(
        park="lj-demo",
        gateway=GATEWAY,
        mqtt=mqtt_settings,
        poll_interval_s=0.1,
        buffer_dir=tmp_path / "buffer",
        client_id=f"edge-test-{next(_ids)}",
    )
    agent = EdgeAgent(settings)  # no devices: no batches
    async with running(agent):
        await eventually(lambda: FirstPublishSwallowsCancel.swallowed_in is not None)
        publisher = FirstPublishSwallowsCancel.swallowed_in
        assert publisher is not None
        done, _ = await asyncio.wait([publisher], timeout=3.0)
        if not done:
            await cancel_and_wait(publisher)
    assert done, "the session kept waiting for live batches"


class ConnectionCutter:
    """A TCP relay to the broker whose connections can be cut without a goodbye — a gateway's
    network failing, which makes the broker send the agent's last will."""

    def __init__(self, broker: MqttSettings) -> None:
        self.broker = broker
        self.port = free_port()
        self.transports: list[asyncio.BaseTransport] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> ConnectionCutter:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def cut(self) -> None:
        for transport in self.transports:
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()  # a reset, no MQTT DISCONNECT
        self.transports.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.broker.host, self.broker.port)
        self.transports += [writer.transport, up_writer.transport]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


async def next_status(sub: aiomqtt.Client, state: str) -> dict[str, Any]:
    async with asyncio.timeout(15):
        async for message in sub.messages:
            assert isinstance(message.payload, bytes)
            doc: dict[str, Any] = orjson.loads(message.payload)
            if doc["state"] == state:
                return doc
    raise AssertionError("the subscription ended")


@pytest.mark.anyio
async def test_status_counts_are_unknown_in_the_will_and_real_on_a_clean_stop(
    mqtt_settings: MqttSettings, tmp_path: Path
) -> None:
    """The will is fixed at connect time, so its counts are null, not a wrong 0, and it says
    what they were at that connection under their own names; a clean stop says how many
    batches are really left in the buffer."""
    gateway = f"gw-will-{next(_ids)}"
    reading = {"m": "steelco-main", "t": 1_732_411_200_000, "q": {"p_kw": 1.0}, "s": "ok"}
    with WalBuffer(tmp_path / "buffer", gateway) as buffer:
        for _ in range(40):  # a backlog that drains slowly
            buffer.append_sync([reading])
    status_topic = topics.status_topic("lj-demo", gateway)
    async with (
        ConnectionCutter(mqtt_settings) as cutter,
        subscriber(mqtt_settings.url, f"test-sub-{next(_ids)}") as sub,
    ):
        await sub.subscribe(status_topic, qos=1)
        settings = EdgeSettings(
            park="lj-demo",
            gateway=gateway,
            mqtt=MqttSettings(url=cutter.url, connect_timeout_s=2.0),
            poll_interval_s=0.1,
            buffer_dir=tmp_path / "buffer",
            client_id=f"edge-test-{next(_ids)}",
            reconnect_base_s=0.05,
            reconnect_cap_s=0.3,
            replay_rate=2.0,
        )
        agent = EdgeAgent(settings)  # no devices: the backlog is all there is
        async with running(agent):
            before = int(time.time() * 1000)
            online = await next_status(sub, "online")
            assert online["buffered"] == 40
            assert "buffered_at_connect" not in online  # a live status has the live counts
            await eventually(lambda: agent.replayed >= 1)  # not on a TCP timing accident
            cutter.cut()
            will = await next_status(sub, "offline")
            await next_status(sub, "online")  # back through the relay
            sent = agent.replayed
            await eventually(lambda: agent.replayed > sent)
            cutter.cut()  # a second session's will is its own, rebuilt as it connected
            second_will = await next_status(sub, "offline")
            await next_status(sub, "online")
        stopped = await next_status(sub, "offline")
    with WalBuffer(tmp_path / "buffer", gateway) as buffer:
        left = buffer.count_sync()
    assert will["buffered"] is None
    assert will["dropped"] is None
    # the will of the first session, set as it connected with the 40 batches stored
    assert will["buffered_at_connect"] == 40
    assert will["dropped_at_connect"] == 0
    assert before - 5_000 <= will["connected_at"] <= before + 5_000
    assert second_will["buffered"] is None
    assert second_will["buffered_at_connect"] < 40
    assert second_will["connected_at"] > will["connected_at"]
    assert 0 < left < 40
    assert stopped["buffered"] == left
    assert stopped["dropped"] == 0


@pytest.mark.anyio
async def test_status_follows_the_counts_while_the_session_lasts(
    mqtt_settings: MqttSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches dropped from a full buffer while connected (no backlog replaying) reach the
    retained status within the refresh period, not only at the next connection."""
    monkeypatch.setattr(service, "STATUS_EVERY_S", 0.2)
    gateway = f"gw-status-{next(_ids)}"
    reading = {"m": "steelco-main", "t": 1_732_411_200_000, "q": {"p_kw": 1.0}, "s": "ok"}
    status_topic = topics.status_topic("lj-demo", gateway)
    async with subscriber(mqtt_settings.url, f"test-sub-{next(_ids)}") as sub:
        await sub.subscribe(status_topic, qos=1)
        settings = EdgeSettings(
            park="lj-demo",
            gateway=gateway,
            mqtt=mqtt_settings,
            poll_interval_s=0.1,
            buffer_dir=tmp_path / "buffer",
            buffer_max_batches=3,
            client_id=f"edge-test-{next(_ids)}",
        )
        agent = EdgeAgent(settings)  # no devices: nothing is appended but what we append
        async with running(agent):
            online = await next_status(sub, "online")
            assert (online["buffered"], online["dropped"]) == (0, 0)
            # ten batches at once into a buffer that keeps three: seven are dropped
            for _ in range(10):
                agent.buffer.append_sync([reading])
            async with asyncio.timeout(10):
                while (await next_status(sub, "online"))["dropped"] != 7:
                    pass


# --- the buffer and the settings on their own -------------------------------------------


def test_buffer_drops_the_oldest_when_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge_agent.buffer")
    reading = {"m": "steelco-main", "t": 1_732_411_200_000, "q": {"p_kw": 1.0}, "s": "ok"}
    with WalBuffer(tmp_path, GATEWAY, max_batches=3) as buffer:
        stored = [buffer.append_sync([reading]) for _ in range(5)]
        assert [b.seq for b in stored] == [1, 2, 3, 4, 5]
        assert [b.seq for b in buffer.pending_sync()] == [3, 4, 5]
        assert buffer.dropped_total == 2
        assert orjson.loads(stored[-1].payload)["seq"] == 5
        buffer.ack_sync(3)
        assert buffer.count_sync() == 2
    warnings = [r for r in caplog.records if "dropped the oldest" in r.getMessage()]
    assert len(warnings) == 1  # counted, not repeated per batch

    with WalBuffer(tmp_path, GATEWAY, max_batches=3) as reopened:  # seq survives a restart
        assert [b.seq for b in reopened.pending_sync()] == [4, 5]
        assert reopened.append_sync([reading]).seq == 6
    # a buffer file moved to another gateway is refused, not replayed under the wrong name
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / "gw-other.sqlite3").write_bytes(
        (tmp_path / f"{GATEWAY}.sqlite3").read_bytes()
    )
    with pytest.raises(WalBufferError, match=GATEWAY), WalBuffer(tmp_path / "moved", "gw-other"):
        pass


def test_gateway_yaml_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parent.parent / "edge_agent" / "examples" / "gateway.yaml"
    settings = EdgeSettings.from_yaml(example)
    assert settings.park == "lj-demo"
    assert settings.gateway == GATEWAY
    assert settings.mqtt_client_id == "edge-lj-demo-gw-steelco"
    for device in settings.devices:
        settings.profile(device)  # every protocol: Modbus, DL/T 645, OPC UA
    air = next(d for d in settings.devices if d.meter == "steelco-air")
    assert air.ratios.ct == 120
    # the environment wins over the file; a secret need never be written in it
    monkeypatch.setenv("PW_EDGE_MQTT__PASSWORD", "s3cret")
    monkeypatch.setenv("PW_EDGE_POLL_INTERVAL_S", "2")
    settings = EdgeSettings.from_yaml(example)
    assert settings.poll_interval_s == 2.0
    assert settings.mqtt.url == "mqtt://127.0.0.1:1883"  # kept from the file
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "s3cret"


def test_bad_gateway_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "park: lj-demo\ngateway: gw-x\ndevices:\n"
        "  - {meter: m1, profile: no-such-meter, transport: {kind: tcp, host: h}}\n"
    )
    with pytest.raises(ValueError, match="no meter profile 'no-such-meter'"):
        EdgeSettings.from_yaml(path)
    path.write_text(
        "park: lj-demo\ngateway: gw-x\ndevices:\n"
        "  - {meter: m1, profile: heat-meter, unit: 1, transport: {kind: rtu, port: /dev/ttyS1}}\n"
        "  - {meter: m2, profile: heat-meter, unit: 2,\n"
        "     transport: {kind: rtu, port: /dev/ttyS1, baudrate: 19200}}\n"
    )
    with pytest.raises(ValueError, match="disagree"):
        EdgeSettings.from_yaml(path)
