"""Hostile input against the real broker, database and ingest (issue 11): malformed and
oversized payloads, wrong types, NaN and infinities, deep nesting, invalid UTF-8 mixed with
good readings, absurd timestamps and sequence numbers, foreign gateways and parks. For every
one, ingest stays up, the good readings of a mixed batch are stored exactly, and each
rejection is counted with its reason and dead-lettered on the right topic."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ingest.service import IngestService
from ingest.settings import IngestSettings
from parkwatch import mqtt, topics
from parkwatch.influx import InfluxReader
from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.site import Park, SiteRegistry
from parkwatch.status_http import status_app
from tests.support import background, eventually, serve

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

PARK = "lj-demo"
GW = "gw-steelco"
DATA = topics.data_topic(PARK, GW)
NOW = int(time.time() * 1000)
GOOD_METERS = ("steelco-main", "steelco-furnace", "steelco-air", "steelco-c1")


@dataclass
class Letters:
    """Dead letters seen on every dead-letter topic, as (topic, sorted reasons)."""

    seen: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    docs: list[dict[str, Any]] = field(default_factory=list)


@asynccontextmanager
async def running(
    mqtt_settings: MqttSettings, influx: InfluxSettings, park_path: Path, name: str
) -> AsyncIterator[tuple[IngestService, Letters]]:
    registry = SiteRegistry([Park.from_yaml(park_path)])
    settings = IngestSettings(
        mqtt=mqtt_settings,
        influx=influx,
        client_id=name,
        share_group=name,
        track_seq=True,  # the group's one replica
        session_expiry_s=0,
        max_message_bytes=64 * 1024,
    )
    service = IngestService(settings, registry)
    letters = Letters()
    async with (
        background(service.run()) as task,
        mqtt.client(mqtt_settings, f"{name}-watcher") as watcher,
    ):
        await watcher.subscribe(topics.ALL_DEADLETTERS, qos=1)
        await asyncio.wait_for(service.subscribed.wait(), timeout=10)

        async def collect() -> None:
            async for message in watcher.messages:
                assert isinstance(message.payload, bytes)
                doc = orjson.loads(message.payload)  # strict JSON, valid UTF-8
                reasons = tuple(sorted(r["reason"] for r in doc["rejections"]))
                letters.seen.append((str(message.topic), reasons))
                letters.docs.append(doc)

        async with background(collect()):
            yield service, letters
        assert not task.done(), "ingest stopped"


class Stream:
    """Builds the hostile messages; good readings get distinct times and known values."""

    def __init__(self) -> None:
        self.good: list[float] = []
        self.seq = 0

    def good_reading(self) -> dict[str, Any]:
        value = 1000.0 + len(self.good) + 0.25
        meter = GOOD_METERS[len(self.good) % len(GOOD_METERS)]
        reading = {"m": meter, "t": NOW - 60_000 - len(self.good) * 1000, "q": {"p_kw": value}}
        self.good.append(value)
        return reading

    def batch(self, *readings: Any, gw: str = GW, seq: int | None = None) -> bytes:
        self.seq += 1
        envelope = {"v": 1, "gw": gw, "seq": self.seq if seq is None else seq}
        # the standard library: it writes integers beyond 64 bits, which orjson refuses
        return json.dumps({**envelope, "readings": list(readings)}).encode()

    def raw(self, readings: bytes) -> bytes:
        """A batch whose readings are given as raw JSON text (NaN literals, bad bytes)."""
        self.seq += 1
        return b'{"v":1,"gw":"%s","seq":%d,"readings":[%s]}' % (GW.encode(), self.seq, readings)


def _hostile(s: Stream) -> list[tuple[str, bytes, tuple[str, ...]]]:
    """(topic, payload, the reasons its dead letter must carry; () for none)."""
    g = s.good_reading
    deep = {"m": "steelco-main", "t": NOW, "q": {"p_kw": 1.0}}
    nested: Any = 1.0
    for _ in range(200):
        nested = [nested]
    big = b'{"v":1,"gw":"gw-steelco","seq":1,"readings":[' + b'{"m":"x"},' * 8000 + b"{}]}"

    good_raw = orjson.dumps(g())
    s.good.append(2.0)  # the good value of the reading with a bad quantity name (below)
    return [
        # not JSON at all, cut short, empty, too large, nested beyond any parser
        (DATA, b"\x00\x01 definitely not json", ("not_json",)),
        (DATA, b'{"v":1,"gw":', ("not_json",)),
        (DATA, b"", ("not_json",)),
        (DATA, big, ("too_large",)),
        (DATA, b"[" * 30_000 + b"]" * 30_000, ("not_json",)),
        # JSON, but not a batch
        (DATA, b"[1, 2, 3]", ("bad_envelope",)),
        (DATA, b"null", ("bad_envelope",)),
        (DATA, b'{"v":2,"gw":"gw-steelco","seq":1,"readings":[]}', ("unsupported_version",)),
        (DATA, orjson.dumps({"v": 1, "gw": GW, "seq": "7", "readings": []}), ("bad_envelope",)),
        (DATA, orjson.dumps({"v": 1, "gw": GW, "seq": 1, "readings": {}}), ("bad_envelope",)),
        (DATA, orjson.dumps({"v": 1, "gw": GW, "seq": -1, "readings": []}), ("bad_envelope",)),
        (DATA, b'{"v":1,"gw":"gw-steelco","seq":1e30,"readings":[]}', ("bad_envelope",)),
        (
            DATA,
            orjson.dumps({"v": 1, "gw": GW, "seq": 1, "readings": [], "x": 1}),
            ("bad_envelope",),
        ),
        # wrong types and shapes, each next to good readings that must be stored
        (
            DATA,
            s.batch(
                g(),
                [1, 2],
                {"m": "steelco-main", "t": "now", "q": {"p_kw": 1.0}},
                {"m": "steelco-main", "t": NOW, "q": [1.0]},
                {"m": "steelco-main", "t": NOW, "q": {"p_kw": True}},
                {"m": "steelco-main", "t": NOW, "q": {"p_kw": "12"}},
                {"m": "steelco-main", "t": NOW, "q": {"p_kw": 1.0}, "extra": 1},
                {"m": "steelco-main", "t": NOW, "q": {"p_kw": nested}},
                {**deep, "s": "excellent"},
                g(),
            ),
            (
                "bad_reading",
                "bad_timestamp",
                "bad_reading",
                "bad_value",
                "bad_value",
                "bad_reading",
                "bad_value",
                "bad_reading",
            ),
        ),
        # NaN and infinities (Python's json writes these literals)
        (
            DATA,
            s.raw(
                b'{"m":"steelco-air","t":%d,"q":{"p_kw":NaN}},'
                b'{"m":"steelco-air","t":%d,"q":{"p_kw":Infinity}},'
                b'{"m":"steelco-air","t":%d,"q":{"p_kw":-Infinity}},'
                b'{"m":"steelco-air","t":%d,"q":{"p_kw":1e999}},%s' % (NOW, NOW, NOW, NOW, good_raw)
            ),
            ("bad_value",) * 4,
        ),
        # invalid UTF-8 in one reading, a quantity name and a value: only those go
        (
            DATA,
            s.raw(
                b'{"m":"steelco-\xffmain","t":%d,"q":{"p_kw":1.0}},'
                b'{"m":"steelco-air","t":%d,"q":{"p_kw":2.0,"e_\xfekwh":3.0}},'
                b'{"m":"steelco-air","t":%d,"q":{"p_kw":"\xc3\x28"}},'
                b"%s,%s" % (NOW, NOW - 5, NOW - 6, orjson.dumps(g()), orjson.dumps(g()))
            ),
            ("bad_utf8",) * 3,
        ),
        # absurd timestamps: negative, seconds for milliseconds, beyond 64 bits, far future
        (
            DATA,
            s.batch(
                {**deep, "t": -1},
                {**deep, "t": NOW // 1000},
                {**deep, "t": 2**63},
                {**deep, "t": 10**30},
                {**deep, "t": NOW + 400 * 86_400_000},
                g(),
            ),
            (
                "bad_timestamp",
                "bad_timestamp",
                "timestamp_in_future",
                "bad_timestamp",
                "timestamp_in_future",
            ),
        ),
        # line protocol injection through names
        (
            DATA,
            s.batch(
                {**deep, "m": "steelco-main\nelectricity,meter=x p_kw=1"},
                {**deep, "q": {"p_kw=1 2\nx": 1.0}},
                g(),
            ),
            ("bad_meter_id", "unknown_quantity"),
        ),
        # foreign gateways: the envelope's, a meter of another gateway, an unknown meter
        (DATA, s.batch(deep, gw="gw-foodco"), ("gateway_mismatch",)),
        (
            DATA,
            s.batch({**deep, "m": "foodco-main"}, {**deep, "m": "nobody"}, g()),
            ("unknown_meter", "wrong_gateway"),
        ),
        # foreign parks: a dead letter on the one fixed topic, never on one the sender chose
        (
            topics.data_topic("no-park", "gw-x"),
            orjson.dumps({"v": 1, "gw": "gw-x", "seq": 1, "readings": [deep]}),
            ("unknown_park",),
        ),
        # a topic that is not a data topic of ours (no slug): counted, nothing published
        ("pw/v1/NoPark/gw/data", s.batch(deep), ()),
    ]


def _expected_topic(topic: str) -> str:
    if topic.startswith(f"pw/v1/{PARK}/"):
        return topics.deadletter_topic(PARK)
    return topics.UNKNOWN_PARK_DEADLETTER


async def test_hostile_input_costs_only_itself(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, demo_park_path: Path
) -> None:
    stream = Stream()
    cases = _hostile(stream)
    expected = Counter(
        (_expected_topic(topic), tuple(sorted(reasons))) for topic, _, reasons in cases if reasons
    )
    async with (
        running(mqtt_settings, influx_settings, demo_park_path, "hostile") as (service, letters),
        InfluxReader(influx_settings) as reader,
    ):
        async with mqtt.client(mqtt_settings, "hostile-gw") as gateway:
            for topic, payload, _ in cases:
                await gateway.publish(topic, payload, qos=1)
            # after all of it, ingest still takes a plain batch
            await gateway.publish(DATA, stream.batch(stream.good_reading()), qos=1)

        async def all_letters() -> bool:
            return len(letters.seen) >= sum(expected.values())

        await eventually(all_letters, 20, "every dead letter")

        async def all_stored() -> bool:
            return await reader.count("electricity", "p_kw") >= len(stream.good)

        try:
            await eventually(all_stored, 20, "the good readings stored")
        except AssertionError:
            print(
                "STORED",
                await reader.query("SELECT p_kw FROM electricity"),
                "EXPECTED",
                stream.good,
            )
            raise
        await asyncio.sleep(0.5)  # anything extra would show now
        [series] = await reader.query('SELECT count("p_kw"), sum("p_kw") FROM "electricity"')
        assert series.values[0][1:] == [len(stream.good), pytest.approx(sum(stream.good))]
        assert await reader.count("electricity", "e_kwh") == 0  # the bad-UTF-8 name's value

    assert Counter(letters.seen) == expected
    rejected = Counter(reason for _, _, reasons in cases for reason in reasons)
    rejected["bad_topic"] = 1
    for reason, count in rejected.items():
        assert (
            service.metrics.registry.get_sample_value(
                "pw_ingest_rejected_total", {"reason": reason}
            )
            == count
        ), reason
    # bad bytes are named as such in the dead letter, and echoed as valid UTF-8
    details = [
        r["detail"] for doc in letters.docs for r in doc["rejections"] if r["reason"] == "bad_utf8"
    ]
    assert all("not valid UTF-8" in d for d in details), details
    assert not any("surrogates" in d for d in details), details


POLL = 0.1  # the seq test's gateway: seconds between its batches


async def test_absurd_seqs_do_not_poison_the_gateway(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, demo_park_path: Path
) -> None:
    """Issue 11, item 3: one absurd seq, a consecutive pair, a burst of them, then the real
    sequence with real gaps: /metrics counts the real gaps, no replay, no late batch, and
    the absurd ones as outliers once the real sequence went on without them. The gateway
    polls at its pace (a step ahead must fit the time since its last batch), the absurd
    numbers come at once between its batches."""
    foodco = topics.data_topic(PARK, "gw-foodco")

    def batch(seq: int, n: int) -> bytes:
        reading = {"m": "foodco-main", "t": NOW - 600_000 + n * 1000, "q": {"p_kw": float(n)}}
        return orjson.dumps({"v": 1, "gw": "gw-foodco", "seq": seq, "readings": [reading]})

    absurd = [10_000_001, 900_001, 900_002, *range(5_000_001, 5_000_021)]
    real = [*range(1, 4), *range(4, 6), *range(8, 10), *range(13, 40)]  # 6, 7, 10-12 lost
    seqs = [*real[:3], absurd[0], *real[3:5], *absurd[1:3], *real[5:7], *absurd[3:], *real[7:]]
    async with (
        running(mqtt_settings, influx_settings, demo_park_path, "seq") as (service, _),
        InfluxReader(influx_settings) as reader,
        mqtt.client(mqtt_settings, "seq-gw") as gateway,
        serve(status_app("ingest", service.metrics.registry, service.health)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        last = 0
        for n, seq in enumerate(seqs):
            if seq in real:  # a poll for each number, the lost ones too
                await asyncio.sleep(POLL * (seq - last))
                last = seq
            await gateway.publish(foodco, batch(seq, n), qos=1)
        # a gateway no meter names: not tracked (its name is the sender's choice, and the
        # tracker keeps state per gateway)
        nobody = topics.data_topic(PARK, "gw-nobody")
        for seq in (1, 100, 5):
            await gateway.publish(nobody, Stream().batch(gw="gw-nobody", seq=seq), qos=1)

        async def stored() -> bool:
            return await reader.count("electricity", "p_kw") == len(seqs)

        await eventually(stored, 15, "every batch stored")

        async def all_handled() -> bool:
            handled = service.metrics.registry.get_sample_value("pw_ingest_messages_total")
            return handled == len(seqs) + 3

        await eventually(all_handled, 15, "every message handled")
        metrics = (await http.get("/metrics")).text

    def value(name: str) -> float:
        [line] = [line for line in metrics.splitlines() if line.startswith(name + " ")]
        return float(line.split()[1])

    assert value("pw_ingest_seq_gaps_total") == 5
    assert value("pw_ingest_seq_replays_total") == 0
    assert value("pw_ingest_seq_late_total") == 0
    assert value("pw_ingest_seq_restarts_total") == 0
    assert value("pw_ingest_seq_outliers_total") == len(absurd)
    assert (PARK, "gw-nobody") not in service.sequences._gateways


async def test_a_counter_going_back_is_stored_and_flagged(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, demo_park_path: Path
) -> None:
    """Issue 11, item 4: e_kwh 1,000,000 then 500,000 a second later."""

    def batch(seq: int, t: int, e_kwh: float, quality: str = "ok") -> bytes:
        reading = {"m": "steelco-main", "t": t, "q": {"e_kwh": e_kwh}, "s": quality}
        return orjson.dumps({"v": 1, "gw": GW, "seq": seq, "readings": [reading]})

    t0 = NOW - 10_000
    async with (
        running(mqtt_settings, influx_settings, demo_park_path, "counter") as (service, _),
        InfluxReader(influx_settings) as reader,
        mqtt.client(mqtt_settings, "counter-gw") as gateway,
    ):
        await gateway.publish(DATA, batch(1, t0, 1_000_000.0), qos=1)
        await gateway.publish(DATA, batch(2, t0 + 1000, 500_000.0), qos=1)
        await gateway.publish(DATA, batch(3, t0 + 2000, 500_001.0), qos=1)
        # a reset the gateway saw and flagged keeps its own quality
        await gateway.publish(DATA, batch(4, t0 + 3000, 2.0, "reset"), qos=1)

        async def stored() -> bool:
            return await reader.count("electricity", "e_kwh") == 4

        await eventually(stored, 15, "every reading stored")
        [series] = await reader.query('SELECT e_kwh, quality FROM "electricity"')
    assert [row[1:] for row in series.values] == [
        [1_000_000.0, None],
        [500_000.0, "decreased"],
        [500_001.0, None],
        [2.0, "reset"],
    ]
    assert (
        service.metrics.registry.get_sample_value(
            "pw_ingest_counter_decreases_total", {"quantity": "e_kwh"}
        )
        == 2
    )
