"""Ingest against the real broker and database: bad input goes to the dead-letter topic with
its reason and is counted, good readings next to it are stored, ingest keeps running, and an
unreachable broker or database is reported once, not once per attempt."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import orjson
import pytest

from ingest import service as service_module
from ingest.counters import Decrease
from ingest.sequence import Verdict
from ingest.service import IngestService
from ingest.settings import IngestSettings
from parkwatch import hotpath, mqtt, topics
from parkwatch.influx import InfluxReader, InfluxWriter
from parkwatch.mqttio import Message
from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.site import Park, SiteRegistry
from parkwatch.stack import InfluxDB, Mosquitto, free_port
from parkwatch.wire import AcceptedReading, ParsedBatch, encode_batch
from tests.support import background, eventually

pytestmark = pytest.mark.anyio

PARK = "lj-demo"
GW = "gw-steelco"


def _settings(mqtt_settings: MqttSettings, influx: InfluxSettings, name: str) -> IngestSettings:
    return IngestSettings(
        mqtt=mqtt_settings, influx=influx, client_id=name, share_group=name, session_expiry_s=0
    )


def _rejected(service: IngestService, reason: str) -> float:
    value = service.metrics.registry.get_sample_value(
        "pw_ingest_rejected_total", {"reason": reason}
    )
    return value or 0.0


async def test_bad_input_is_dead_lettered_and_good_readings_survive(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, demo_park_path: Path
) -> None:
    registry = SiteRegistry([Park.from_yaml(demo_park_path)])
    service = IngestService(_settings(mqtt_settings, influx_settings, "bad-input"), registry)
    now = int(time.time() * 1000)
    data = topics.data_topic(PARK, GW)
    good = [{"m": "steelco-main", "t": now - i * 1000, "q": {"p_kw": 100.0 + i}} for i in range(3)]
    mixed = [
        good[0],
        {"m": "steelco-main", "t": now + 3 * 86_400_000, "q": {"p_kw": 1.0}},  # future
        {"m": "Not A Slug", "t": now, "q": {"p_kw": 1.0}},
        {"m": "nobody", "t": now, "q": {"p_kw": 1.0}},
        {"m": "steelco-furnace", "t": now, "q": {"p_kw": "high", "pf": 0.9, "flux": 2.0}},
    ]
    nan_batch = (
        b'{"v":1,"gw":"gw-steelco","seq":3,"readings":[{"m":"steelco-air","t":%d,'
        b'"q":{"p_kw":NaN,"e_kwh":10.5}}]}' % now
    )
    letters: list[dict[str, object]] = []
    async with (
        background(service.run()),
        mqtt.client(mqtt_settings, "bad-input-watcher") as watcher,
        InfluxReader(influx_settings) as reader,
    ):
        await watcher.subscribe(topics.deadletter_topic(PARK), qos=1)
        await asyncio.wait_for(service.subscribed.wait(), timeout=10)

        async def collect() -> None:
            async for message in watcher.messages:
                assert isinstance(message.payload, bytes)
                letters.append(orjson.loads(message.payload))

        async with background(collect()):
            async with mqtt.client(mqtt_settings, "bad-input-gw") as gateway:
                await gateway.publish(data, b"\x00\x01 definitely not json", qos=1)
                await gateway.publish(data, encode_batch(GW, 1, mixed), qos=1)
                await gateway.publish(data, encode_batch("gw-elecco", 2, good), qos=1)
                await gateway.publish(data, nan_batch, qos=1)
                await gateway.publish(data, encode_batch(GW, 4, good[1:]), qos=1)

            async def all_letters() -> bool:
                return len(letters) == 4

            await eventually(all_letters, 15, "four dead letters")

        async def stored() -> bool:
            return await reader.count("electricity", "p_kw") == 3

        await eventually(stored, 15, "the good readings stored")
        furnace = await reader.query("SELECT pf FROM electricity WHERE meter = 'steelco-furnace'")
        assert furnace[0].values[0][1] == 0.9  # good value of a reading with a bad one
        air = await reader.query("SELECT * FROM electricity WHERE meter = 'steelco-air'")
        air_record = air[0].records()[0]
        assert air_record["e_kwh"] == 10.5
        assert air_record["p_kw"] is None

    reasons = sorted(r["reason"] for letter in letters for r in letter["rejections"])  # type: ignore[attr-defined]
    assert reasons == sorted(
        [
            "not_json",
            "timestamp_in_future",
            "bad_meter_id",
            "unknown_meter",
            "bad_value",
            "unknown_quantity",
            "gateway_mismatch",
            "bad_value",
        ]
    )
    not_json = next(x for x in letters if x["rejections"][0]["reason"] == "not_json")  # type: ignore[index]
    assert "definitely not json" in str(not_json["payload"])
    assert _rejected(service, "bad_value") == 2
    assert _rejected(service, "gateway_mismatch") == 1
    assert service.metrics.registry.get_sample_value("pw_ingest_deadletters_total") == 4


@pytest.mark.integration
async def test_unreachable_broker_and_database_are_reported_once(
    tmp_path: Path, demo_park_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = SiteRegistry([Park.from_yaml(demo_park_path)])
    broker = Mosquitto(tmp_path / "mq", port=free_port())
    database = InfluxDB(tmp_path / "influx", port=free_port())
    settings = IngestSettings(
        mqtt=MqttSettings(url=broker.url),
        influx=InfluxSettings(url=database.url, database="outage"),
        client_id="outage",
        session_expiry_s=0,
    )
    service = IngestService(settings, registry)
    caplog.set_level(logging.WARNING)
    try:
        async with background(service.run()):
            await asyncio.sleep(2.0)  # several failed attempts at the database
            database.start()

            async def database_back() -> bool:
                return any("is back" in r.getMessage() for r in caplog.records)

            await eventually(database_back, 20, "ingest reaching the database")

            # now failed attempts at the broker: wait for the first (a loaded machine may be
            # slow to make it after the database's outage), then let a few more fail
            async def broker_down() -> bool:
                return any(
                    r.getMessage().startswith(f"MQTT broker at {broker.url} unreachable")
                    for r in caplog.records
                )

            await eventually(broker_down, 20, "ingest trying the absent broker")
            await asyncio.sleep(2.0)
            broker.start()
            await asyncio.wait_for(service.subscribed.wait(), timeout=20)
    finally:
        broker.stop()
        database.stop()
    messages = [r.getMessage() for r in caplog.records]
    for what in (f"InfluxDB at {database.url}", f"MQTT broker at {broker.url}"):
        assert sum(m.startswith(f"{what} unreachable") for m in messages) == 1, messages
        assert sum(m.startswith(f"{what} is back") for m in messages) == 1, messages


class _Letters:
    """The part of the MQTT client ``_handle`` uses for dead letters: it keeps them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, object]]] = []

    async def send(self, topic: str, payload: bytes, qos: int = 1) -> asyncio.Future[None]:
        self.sent.append((topic, orjson.loads(payload)))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@pytest.mark.integration
async def test_a_batch_the_database_refuses_is_retried_per_message(
    influx_settings: InfluxSettings, demo_park_path: Path
) -> None:
    """Two messages share a batch; InfluxDB refuses one message's line (a field type conflict):
    the other message's readings are stored and counted (readings, values), the refused one is
    dead-lettered with ``database_rejected``, and neither counts what was not stored."""
    registry = SiteRegistry([Park.from_yaml(demo_park_path)])
    service = IngestService(_settings(MqttSettings(), influx_settings, "refused"), registry)
    now = int(time.time() * 1000)
    data = topics.data_topic(PARK, GW)
    refused = encode_batch(GW, 1, [{"m": "steelco-main", "t": now, "q": {"e_kwh": 10.0}}])
    good = encode_batch(
        GW,
        2,
        [{"m": "steelco-air", "t": now - i, "q": {"p_kw": 1.0 + i, "pf": 0.9}} for i in range(3)],
    )
    chunk = [Message(data, refused, 1, 1), Message(data, good, 1, 2)]
    letters = _Letters()
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
        async with InfluxWriter(influx_settings) as writer:
            # e_kwh is a string field in this shard from now on: a float e_kwh is refused
            await writer.write_now([f'electricity,meter=other e_kwh="text" {now}'])
            await service._handle(letters, writer, chunk)  # type: ignore[arg-type]
        stored = await reader.count("electricity", "p_kw")
    assert stored == 3
    sample = service.metrics.registry.get_sample_value
    assert sample("pw_ingest_readings_total") == 3
    assert sample("pw_ingest_values_written_total") == 6
    assert _rejected(service, "database_rejected") == 1
    [(topic, letter)] = letters.sent
    assert topic == topics.deadletter_topic(PARK)
    assert letter["seq"] == 1


@pytest.mark.integration
async def test_a_scanned_message_the_database_refuses_is_dead_lettered_alone(
    influx_settings: InfluxSettings, demo_park_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, with the refused message one of a known topic (kept by ``_handle`` as a
    plain tuple, not a ``_Handled``): retried alone, dead-lettered with its seq, the
    messages around it stored and counted."""
    assert hotpath.scan_message is not None, "the extension is not built"
    registry = SiteRegistry([Park.from_yaml(demo_park_path)])
    service = IngestService(_settings(MqttSettings(), influx_settings, "refused2"), registry)
    now = int(time.time() * 1000)
    data = topics.data_topic(PARK, GW)

    def air(seq: int) -> bytes:
        return encode_batch(GW, seq, [{"m": "steelco-air", "t": now - seq, "q": {"p_kw": 1.0}}])

    refused = encode_batch(GW, 2, [{"m": "steelco-main", "t": now, "q": {"e_kwh": 10.0}}])
    built: list[str] = []  # the messages handled as _Handled (the others as plain tuples)

    class Handled(service_module._Handled):
        def __init__(self, topic: str, payload: bytes, parsed: ParsedBatch) -> None:
            built.append(payload.decode())
            super().__init__(topic, payload, parsed)

    monkeypatch.setattr(service_module, "_Handled", Handled)
    # the first message makes the topic known: the next two take the scan
    chunk = [Message(data, air(1), 1, 1), Message(data, refused, 1, 2), Message(data, air(3), 1, 3)]
    letters = _Letters()
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
        async with InfluxWriter(influx_settings) as writer:
            await writer.write_now([f'electricity,meter=other e_kwh="text" {now}'])
            await service._handle(letters, writer, chunk)  # type: ignore[arg-type]
        stored = await reader.count("electricity", "p_kw")
    assert stored == 2
    sample = service.metrics.registry.get_sample_value
    assert sample("pw_ingest_readings_total") == 2
    assert sample("pw_ingest_values_written_total") == 2
    assert _rejected(service, "database_rejected") == 1
    # the careful path's first message, then the refused one made a _Handled for its letter
    assert built == [air(1).decode(), refused.decode()]
    [(topic, letter)] = letters.sent
    assert topic == topics.deadletter_topic(PARK)
    # as the careful path's letter for a refused batch: the message, not its payload (which
    # is echoed only for a message rejected whole)
    assert (letter["topic"], letter["gw"], letter["seq"]) == (data, GW, 2)
    assert "payload" not in letter
    assert [r["reason"] for r in letter["rejections"]] == ["database_rejected"]


class _Kept:
    """The part of the writer ``_handle`` uses: it keeps the lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def write(self, lines: list[str], units: int = 0) -> None:
        self.lines.extend(lines)


async def test_a_failing_counter_watch_costs_only_the_message_it_fails_on(
    demo_park_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counter watch runs once over a whole chunk; if it raises (a bug), ingest goes
    message by message: the message it fails on is dead-lettered whole (``internal_error``,
    for a replay once fixed), the others are stored, nothing is left unacknowledged."""
    from ingest import counters

    # the messages go through the counter watch's Python entry (no scan straight to lines,
    # whose compiled watch is part of the scan: tests/test_hotpath_scan.py)
    monkeypatch.setattr(counters, "SCANNING", False)
    registry = SiteRegistry([Park.from_yaml(demo_park_path)])
    service = IngestService(_settings(MqttSettings(), InfluxSettings(), "bug"), registry)
    real_flag = service.counters.flag

    def flag(readings: list[AcceptedReading]) -> list[Decrease]:
        if any(r.meter.id == "steelco-main" for r in readings):
            raise RuntimeError("a bug")
        return real_flag(readings)

    monkeypatch.setattr(service.counters, "flag", flag)
    now = int(time.time() * 1000)
    data = topics.data_topic(PARK, GW)
    failing = encode_batch(GW, 1, [{"m": "steelco-main", "t": now, "q": {"e_kwh": 10.0}}])
    good = encode_batch(GW, 2, [{"m": "steelco-air", "t": now, "q": {"p_kw": 1.0}}])
    chunk = [Message(data, good, 1, 1), Message(data, failing, 1, 2), Message(data, good, 1, 3)]
    letters, writer = _Letters(), _Kept()
    await service._handle(letters, writer, chunk)  # type: ignore[arg-type]
    assert len(writer.lines) == 2
    assert all("meter=steelco-air" in line for line in writer.lines)
    [(_, letter)] = letters.sent
    assert letter["seq"] == 1
    assert [r["reason"] for r in letter["rejections"]] == ["internal_error"]
    assert _rejected(service, "internal_error") == 1


async def test_a_failing_seq_tracker_costs_only_the_message_it_fails_on(
    demo_park_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seq tracking raising (a bug) on a message of a topic seen before — the inlined common
    path of ``_handle`` — dead-letters that message whole, as the careful path does for a
    topic's first message; the others are tracked and stored."""
    registry = SiteRegistry([Park.from_yaml(demo_park_path)])
    settings = _settings(MqttSettings(), InfluxSettings(), "seqbug")
    service = IngestService(settings.model_copy(update={"track_seq": True}), registry)
    real_observe = service.sequences.observe
    real_next = service.sequences.observe_next
    seen: list[int] = []

    def observe(key: tuple[str, str], seq: int, at: float) -> list[Verdict]:
        if seq == 2:
            raise RuntimeError("a bug")
        seen.append(seq)
        return real_observe(key, seq, at)

    # the inline path asks observe_next first (observe only when that says no)
    def observe_next(key: tuple[str, str], seq: int, at: float) -> bool:
        if seq == 2:
            raise RuntimeError("a bug")
        taken = real_next(key, seq, at)
        if taken:
            seen.append(seq)
        return taken

    monkeypatch.setattr(service.sequences, "observe", observe)
    monkeypatch.setattr(service.sequences, "observe_next", observe_next)
    now = int(time.time() * 1000)
    data = topics.data_topic(PARK, GW)
    chunk = [
        Message(
            data, encode_batch(GW, n, [{"m": "steelco-air", "t": now + n, "q": {"p_kw": n}}]), 1, n
        )
        for n in (1, 2, 3)
    ]
    letters, writer = _Letters(), _Kept()
    await service._handle(letters, writer, chunk)  # type: ignore[arg-type]
    assert seen == [1, 3]
    assert [line.rsplit(" ", 1)[1] for line in writer.lines] == [str(now + 1), str(now + 3)]
    [(_, letter)] = letters.sent
    assert [r["reason"] for r in letter["rejections"]] == ["internal_error"]
    assert letter["payload"] == chunk[1].payload.decode()
    assert _rejected(service, "internal_error") == 1


async def test_the_inline_path_stores_and_rejects_as_the_careful_one_and_decodes_once(
    demo_park_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A topic's later messages take ``_handle``'s inline path: plain ones are stored by it
    (the fast decoder runs once per message), a message with one bad reading falls back to
    the careful parse without a second fast attempt, and lines and dead letters are the same
    as when every message goes the careful way (the fast decoder made to find nothing). With
    the scan straight to lines: the same lines and letters, the fast decoder run only for the
    first message (careful path) and the one the scan gives up on."""
    import ingest.service as ingest_service
    import parkwatch.wire as wire
    from ingest import counters

    scanning = counters.SCANNING
    monkeypatch.setattr(counters, "SCANNING", False)

    registry = SiteRegistry([Park.from_yaml(demo_park_path)])
    now = int(time.time() * 1000)
    data = topics.data_topic(PARK, GW)
    payloads = [
        encode_batch(GW, 1, [{"m": "steelco-air", "t": now, "q": {"p_kw": 1.0}}]),
        encode_batch(GW, 2, [{"m": "steelco-air", "t": now + 1, "q": {"p_kw": 2.0}}]),
        encode_batch(
            GW,
            3,
            [
                {"m": "steelco-air", "t": now + 2, "q": {"p_kw": 3.0}},
                {"m": "no-such-meter", "t": now + 2, "q": {"p_kw": 3.0}},
            ],
        ),
        encode_batch(GW, 4, [{"m": "steelco-air", "t": now + 3, "q": {"p_kw": 4.0}}]),
    ]
    chunk = [Message(data, p, 1, n) for n, p in enumerate(payloads, 1)]
    real_plain = wire.plain_message
    calls: list[bytes] = []

    def counted(payload: bytes, *args: object) -> object:
        calls.append(payload)
        return real_plain(payload, *args)  # type: ignore[arg-type]

    async def run(
        fast: object,
    ) -> tuple[list[str], list[tuple[str, dict[str, object]]], float]:
        monkeypatch.setattr(ingest_service, "plain_message", fast)
        monkeypatch.setattr(wire, "plain_message", fast)
        service = IngestService(_settings(MqttSettings(), InfluxSettings(), "inline"), registry)
        letters, writer = _Letters(), _Kept()
        await service._handle(letters, writer, chunk)  # type: ignore[arg-type]
        # a letter's received_ms is the wall clock of the run; the rest must match
        sent = [
            (t, {k: v for k, v in doc.items() if k != "received_ms"}) for t, doc in letters.sent
        ]
        return writer.lines, sent, _rejected(service, "unknown_meter")

    fast = await run(counted)
    # the first message meets the topic (careful path, one fast attempt inside parse_batch),
    # then one attempt per message, the bad one included, never two
    assert sorted(calls) == sorted(payloads)
    careful = await run(lambda *args: None)
    assert fast == careful
    assert len(fast[0]) == 4
    assert fast[2] == 1
    if scanning:
        monkeypatch.setattr(counters, "SCANNING", True)
        calls.clear()
        assert await run(counted) == careful
        assert calls == [payloads[0], payloads[2]]
