"""Transport faults reach the broker as a real gateway would produce them: a duplicated batch
repeats its original's seq (a replay to ingest), a late batch arrives after batches sampled
later, and a stuck meter repeats its value."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.sequence import SeqCounts, SeqTracker
from parkwatch import mqtt, topics
from parkwatch.settings import MqttSettings
from parkwatch.site import Park
from simulators.faults import Fault
from simulators.publisher import ParkSimulator, Schedule
from tests.support import background, eventually

pytestmark = pytest.mark.anyio

START = 1_795_000_000_000 - 1_795_000_000_000 % 60_000
STEP = 60_000


async def test_duplicates_late_batches_and_stuck_values(
    mqtt_settings: MqttSettings, demo_park_path: Path
) -> None:
    park = Park.from_yaml(demo_park_path)
    faults = [
        Fault("duplicate_batches", START + 2 * STEP, START + 4 * STEP, gateway="gw-foodco",
              magnitude=1, delay_s=60),
        Fault("late_batches", START + 3 * STEP, START + 4 * STEP, gateway="gw-elecco",
              magnitude=180),
        Fault("stuck_value", START + 2 * STEP, START + 8 * STEP, meter="chemco-main"),
    ]  # fmt: skip
    received: list[tuple[str, dict[str, Any]]] = []
    async with mqtt.client(mqtt_settings, "transport-watch") as watcher:
        await watcher.subscribe(topics.data_filter(park.park), qos=1)

        async def collect() -> None:
            async for message in watcher.messages:
                assert isinstance(message.payload, bytes)
                received.append((str(message.topic), orjson.loads(message.payload)))

        async with background(collect()):
            sim = ParkSimulator(
                park,
                mqtt_settings,
                schedule=Schedule(interval_s=60, cycles=10, start_ms=START, realtime=False),
                faults=faults,
            )
            sent = await sim.run()

            async def all_in() -> bool:
                return len(received) >= sent.messages

            await eventually(all_in, 15, "every batch")
            await asyncio.sleep(0.2)

    def batches(gw: str) -> list[dict[str, Any]]:
        return [b for topic, b in received if topic.endswith(f"/{gw}/data")]

    food = batches("gw-foodco")
    seqs = [b["seq"] for b in food]
    assert len(seqs) == len(set(seqs)) + 2  # two batches came twice…
    for seq in {s for s in seqs if seqs.count(s) == 2}:  # …with the same seq and content
        first, second = [b for b in food if b["seq"] == seq]
        assert first["readings"] == second["readings"]

    elec = batches("gw-elecco")
    sample_times = [b["readings"][0]["t"] for b in elec]
    assert sorted(sample_times) != sample_times  # a late batch arrived after newer ones
    assert set(sample_times) == {START + k * STEP for k in range(10)}  # none lost

    chem = [
        r["q"]["p_kw"]
        for b in batches("gw-chemco")
        for r in b["readings"]
        if r["m"] == "chemco-main" and START + 2 * STEP <= r["t"] < START + 8 * STEP
    ]
    assert len(chem) == 6
    assert len(set(chem)) == 1  # stuck

    # ingest's seq tracker, in arrival order, counts the duplicates as replays and nothing
    # else (a late batch gets its seq when sent): what a demo with --random-faults counts
    # (issue 11, item 3: one duplicate_batches fault of 60 s at 5 s polls, 12 replays)
    tracker = SeqTracker()
    for k, (topic, batch) in enumerate(received):
        tracker.observe((park.park, topic.split("/")[3]), batch["seq"], k * 0.01)
    assert tracker.counts == SeqCounts(replays=2)


async def test_a_run_that_goes_on_from_an_earlier_one(
    mqtt_settings: MqttSettings, demo_park_path: Path
) -> None:
    """The demo publishes its history in one run and goes live in another: the second steps
    through what the first sent without publishing it, then publishes exactly what one
    uninterrupted run would have — the same counters and the same seq (no counter reset, no
    restarted gateway) — and ends where it is told to."""
    park = Park.from_yaml(demo_park_path)
    quiet_until = START + 30 * STEP

    async def publish(schedule: Schedule) -> dict[str, list[dict[str, Any]]]:
        received: dict[str, list[dict[str, Any]]] = {}
        async with mqtt.client(mqtt_settings, "continuation-watch") as watcher:
            await watcher.subscribe(topics.data_filter(park.park), qos=1)

            async def collect() -> None:
                async for message in watcher.messages:
                    assert isinstance(message.payload, bytes)
                    batch = orjson.loads(message.payload)
                    received.setdefault(batch["gw"], []).append(batch)

            async with background(collect()):
                sent = await ParkSimulator(park, mqtt_settings, schedule=schedule).run()

                async def all_in() -> bool:
                    return sum(len(b) for b in received.values()) >= sent.messages

                await eventually(all_in, 15, "every batch")
        return received

    whole = await publish(
        Schedule(interval_s=60, start_ms=START, realtime=False, until_ms=START + 34 * STEP)
    )
    rest = await publish(
        Schedule(
            interval_s=60,
            start_ms=START,
            realtime=False,
            quiet_until_ms=quiet_until,
            until_ms=START + 34 * STEP,
        )
    )
    assert set(rest) == set(whole)
    for gateway, batches in rest.items():
        assert [b["readings"][0]["t"] for b in batches] == [
            quiet_until + k * STEP for k in range(4)
        ]
        assert batches == [b for b in whole[gateway] if b["readings"][0]["t"] >= quiet_until]
