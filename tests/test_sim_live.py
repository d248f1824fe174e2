"""A live simulation with faults: it leaves out the gateways served another way, refuses a fault
they would have to show, and keeps a ground-truth file that says what was injected so far — in
the history's format, so the scorer reads both. Through the library and the ``parkwatch
simulate`` command, against the real broker."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from parkwatch import mqtt, topics
from parkwatch.settings import MqttSettings
from parkwatch.site import Park
from simulators.faults import Fault, FaultKind, load_schedule, random_schedule
from simulators.groundtruth import LiveGroundTruth, read_ground_truth, records, so_far
from simulators.publisher import ParkSimulator, Schedule
from tests.support import background, eventually

K = FaultKind
START = 1_795_000_000_000 - 1_795_000_000_000 % 60_000
STEP = 60_000
MODBUS = "gw-steelco"


def test_so_far_lists_started_faults_and_leaves_open_ends_null() -> None:
    faults = [
        Fault(K.STUCK_VALUE, START + 2 * STEP, START + 4 * STEP, meter="chemco-main"),
        Fault(K.COUNTER_RESET, START + 3 * STEP, meter="elecco-smt"),
        Fault(K.COMM_LOSS, START + 9 * STEP, START + 12 * STEP, gateway="gw-foodco"),
    ]
    assert so_far(faults, {}, START + STEP) == []
    on = so_far(faults, {}, START + 3 * STEP)
    assert [(r["id"], r["end"]) for r in on] == [(0, None), (1, START + 3 * STEP)]
    done = so_far(faults, {1: {"reading_before": 12.5}}, START + 20 * STEP)
    # once over, a record is the history's record of the same fault
    assert done == records(faults, {1: {"reading_before": 12.5}})


def test_the_live_file_is_rewritten_when_a_fault_starts_or_ends(tmp_path: Path) -> None:
    path = tmp_path / "truth.jsonl"
    fault = Fault(K.STUCK_VALUE, START + 2 * STEP, START + 4 * STEP, meter="chemco-main")
    truth = LiveGroundTruth(path, [fault], dict)
    truth.flush()
    assert read_ground_truth(path) == []
    ends = []
    for k in range(6):
        truth.advance(START + k * STEP)
        ends.append([r["end"] for r in read_ground_truth(path)])
    assert ends == [[], [], [None], [None], [START + 4 * STEP], [START + 4 * STEP]]
    assert not list(tmp_path.glob(".*.tmp"))  # written to a temporary file, then renamed


def test_random_live_faults_avoid_an_excluded_gateway(demo_park_path: Path) -> None:
    park = Park.from_yaml(demo_park_path)
    steelco = {m.id for m in park.iter_meters() if m.gateway == MODBUS}
    day = START + 86_400_000
    for seed in range(5):
        schedule = random_schedule(park, START, day, seed, exclude_gateways={MODBUS})
        # the demo park's only cooling-water and heat-recovery meters are Modbus meters
        missing = set(FaultKind) - {f.kind for f in schedule}
        assert missing == {K.COOLING_TEMP_RISE, K.HEAT_RECOVERY_BYPASS}
        assert all(f.meter not in steelco and f.gateway != MODBUS for f in schedule)
        # the simulator that leaves the gateway out takes the whole schedule
        ParkSimulator(park, MqttSettings(), exclude_gateways=frozenset({MODBUS}), faults=schedule)
    # a demand peak of the Modbus factory would change the readings of its Modbus meters
    peaks = random_schedule(park, START, day, 1, kinds=[K.DEMAND_PEAK], per_kind=30)
    assert "steelco-main" in {f.meter for f in peaks}
    peaks = random_schedule(
        park, START, day, 1, kinds=[K.DEMAND_PEAK], per_kind=30, exclude_gateways={MODBUS}
    )
    assert "steelco-main" not in {f.meter for f in peaks}


def test_faults_and_exclusions_are_checked(demo_park_path: Path) -> None:
    park = Park.from_yaml(demo_park_path)
    with pytest.raises(ValueError, match="no such gateway"):
        ParkSimulator(park, MqttSettings(), exclude_gateways=frozenset({"gw-stelco"}))
    stuck = Fault(K.STUCK_VALUE, START, START + STEP, meter="steelco-furnace")
    with pytest.raises(ValueError, match="gw-steelco, which this simulator does not publish"):
        ParkSimulator(park, MqttSettings(), exclude_gateways=frozenset({MODBUS}), faults=[stuck])
    # an air leak shows in the compressors' power, read over Modbus
    leak = Fault(K.AIR_LEAK, START, START + STEP, zone="steelco", magnitude=100)
    with pytest.raises(ValueError, match="air_leak on 'steelco'"):
        ParkSimulator(park, MqttSettings(), exclude_gateways=frozenset({MODBUS}), faults=[leak])


@pytest.mark.anyio
async def test_a_live_run_publishes_faults_and_their_ground_truth(
    mqtt_settings: MqttSettings, demo_park_path: Path, tmp_path: Path
) -> None:
    park = Park.from_yaml(demo_park_path)
    faults = [
        Fault(K.STUCK_VALUE, START + 2 * STEP, START + 5 * STEP, meter="chemco-main"),
        Fault(K.WATER_BURST, START + 4 * STEP, START + 60 * STEP, zone="water-d3", magnitude=5),
        Fault(K.COUNTER_ROLLOVER, START + 3 * STEP, meter="elecco-smt"),
        Fault(K.COMM_LOSS, START + 50 * STEP, START + 55 * STEP, gateway="gw-foodco"),
    ]
    truth = tmp_path / "ground_truth.jsonl"
    received: list[tuple[str, dict[str, Any]]] = []
    async with mqtt.client(mqtt_settings, "live-watch") as watcher:
        await watcher.subscribe(topics.data_filter(park.park), qos=1)

        async def collect() -> None:
            async for message in watcher.messages:
                assert isinstance(message.payload, bytes)
                received.append((str(message.topic), orjson.loads(message.payload)))

        async with background(collect()):
            sim = ParkSimulator(
                park,
                mqtt_settings,
                schedule=Schedule(interval_s=60, cycles=8, start_ms=START, realtime=False),
                exclude_gateways=frozenset({MODBUS}),
                faults=faults,
                ground_truth=truth,
            )
            sent = await sim.run()

            async def all_in() -> bool:
                return len(received) >= sent.messages

            await eventually(all_in, 15, "every batch")
    gateways = {topic.split("/")[3] for topic, _ in received}
    assert MODBUS not in gateways
    assert {"gw-park", "gw-chemco", f"{MODBUS}-mqtt"} <= gateways
    stuck = {
        r["q"]["p_kw"]
        for _, b in received
        for r in b["readings"]
        if r["m"] == "chemco-main" and START + 2 * STEP <= r["t"] < START + 5 * STEP
    }
    assert len(stuck) == 1
    # the run ended at START + 7 steps: the burst is still on, comm loss never started
    rows = read_ground_truth(truth)
    assert [(r["kind"], r["end"]) for r in rows] == [
        ("stuck_value", START + 5 * STEP),
        ("counter_rollover", START + 3 * STEP),
        ("water_burst", None),
    ]
    assert rows[1]["reading_before"] > 0  # what the model saw, as in a history
    assert load_schedule(truth)[2] == Fault(
        K.WATER_BURST, START + 4 * STEP, None, zone="water-d3", magnitude=5
    )


@pytest.mark.anyio
async def test_the_simulate_command_honours_faults_and_exclusions(
    mqtt_settings: MqttSettings, tmp_path: Path
) -> None:
    now = int(time.time() * 1000)

    def iso(t_ms: int) -> str:
        return datetime.fromtimestamp(t_ms / 1000, tz=UTC).isoformat()

    schedule = tmp_path / "faults.yaml"
    schedule.write_text(
        f"- {{kind: stuck_value, meter: chemco-main, start: '{iso(now)}',"
        f" end: '{iso(now + 3_600_000)}'}}\n"
        f"- {{kind: water_burst, zone: water-d1, start: '{iso(now + 7_200_000)}',"
        f" end: '{iso(now + 9_000_000)}', magnitude: 4}}\n"
    )
    truth = tmp_path / "truth.jsonl"
    base = [sys.executable, "-m", "parkwatch_cli", "simulate", "--mqtt-url", mqtt_settings.url]
    base += ["--exclude-gateway", MODBUS, "--interval", "0.5", "--duration", "2"]
    seen: set[str] = set()
    async with mqtt.client(mqtt_settings, "cli-watch") as watcher:
        await watcher.subscribe(topics.data_filter("lj-demo"), qos=1)

        async def collect() -> None:
            async for message in watcher.messages:
                seen.add(str(message.topic).split("/")[3])

        async with background(collect()):
            proc = await asyncio.create_subprocess_exec(
                *base,
                "--faults",
                str(schedule),
                "--ground-truth",
                str(truth),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            await asyncio.sleep(0.5)
    assert "gw-park" in seen
    assert MODBUS not in seen  # its meters are served another way
    assert f"ground truth: {truth}" in err.decode()
    (row,) = read_ground_truth(truth)  # the burst never started
    assert (row["kind"], row["meter"], row["end"]) == ("stuck_value", "chemco-main", None)

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"- {{kind: stuck_value, meter: steelco-main, start: '{iso(now)}'}}\n")
    proc = await asyncio.create_subprocess_exec(
        *base, "--faults", str(bad), stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert "gw-steelco, which this simulator does not publish" in " ".join(err.decode().split())
