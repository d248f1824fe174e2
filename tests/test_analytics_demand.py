"""15-minute demand: windows on the park's local clock, late samples, and the analytics service
end to end (MQTT in, ``demand_15m`` in InfluxDB out)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from analytics.demand import WINDOW_MS, DemandWindows, window_start
from analytics.service import AnalyticsService
from analytics.settings import AnalyticsSettings
from parkwatch import mqtt, topics
from parkwatch.influx import InfluxReader
from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.site import Park, SiteRegistry
from parkwatch.wire import encode_batch
from tests.support import background, eventually

KOLKATA = ZoneInfo("Asia/Kolkata")  # UTC+5:30: local quarter hours are not UTC ones


def ms(text: str, tz: ZoneInfo) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=tz).timestamp() * 1000)


def test_windows_follow_the_local_clock() -> None:
    t = ms("2026-03-02 10:07:00", KOLKATA)
    offset = 19_800_000
    assert window_start(t, offset) == ms("2026-03-02 10:00:00", KOLKATA)
    # the same instant cut in UTC would start at 04:30 UTC = 10:00 local only by luck of the
    # half-hour offset; a 45-minute offset shows it
    kathmandu = ZoneInfo("Asia/Kathmandu")  # UTC+5:45
    t2 = ms("2026-03-02 10:07:00", kathmandu)
    windows = DemandWindows(["m"], kathmandu)
    closed = windows.add(np.array([0, 0]), np.array([t2, t2 + WINDOW_MS]), np.array([4.0, 9.0]))
    assert [(c.start_ms, c.p_kw_avg) for c in closed] == [
        (ms("2026-03-02 10:00:00", kathmandu), 4.0)
    ]


def test_mean_max_count_and_late_samples() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    start = ms("2026-03-02 08:00:00", tz)
    windows = DemandWindows(["a", "b"], tz)
    minutes = np.arange(15) * 60_000
    assert windows.add(np.zeros(15, dtype=np.int64), start + minutes, np.arange(15.0)) == []
    closed = windows.add(
        np.array([0, 1]), np.array([start + WINDOW_MS, start]), np.array([1.0, 5.0])
    )
    [a] = closed
    assert (a.meter, a.start_ms, a.p_kw_avg, a.p_kw_max, a.samples) == ("a", start, 7.0, 14.0, 15)
    # a sample for the window just written is late: dropped and counted, never re-written
    assert windows.add(np.array([0]), np.array([start + 60_000]), np.array([99.0])) == []
    assert windows.late_samples == 1
    due = windows.close_due(start + 2 * WINDOW_MS + 60_000, grace_ms=60_000)
    assert sorted((d.meter, d.start_ms, d.p_kw_avg) for d in due) == [
        ("a", start + WINDOW_MS, 1.0),
        ("b", start, 5.0),
    ]


def test_a_batch_spanning_several_windows() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    start = ms("2026-03-02 08:00:00", tz)
    windows = DemandWindows(["a"], tz)
    t = start + np.arange(0, 4 * WINDOW_MS, 5 * 60_000)  # 12 samples over four quarter hours
    closed = windows.add(np.zeros(t.size, dtype=np.int64), t, np.repeat([1.0, 2.0, 3.0, 4.0], 3))
    assert [(c.start_ms - start) // WINDOW_MS for c in closed] == [0, 1, 2]
    assert [c.p_kw_avg for c in closed] == [1.0, 2.0, 3.0]
    [last] = windows.close_due(start + 10 * WINDOW_MS, 0)
    assert last.p_kw_avg == 4.0


@pytest.mark.anyio
async def test_service_writes_demand_from_mqtt(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, demo_park_path: Path
) -> None:
    park = Park.from_yaml(demo_park_path)
    registry = SiteRegistry([park])
    service = AnalyticsService(
        # no wall-clock closing here: these March readings are all "due" already
        AnalyticsSettings(
            mqtt=mqtt_settings, influx=influx_settings, client_id="demand-test", tick_s=3600
        ),
        registry,
    )
    start = ms("2026-03-02 08:00:00", park.zone)
    async with background(service.run()), InfluxReader(influx_settings) as reader:
        await asyncio.wait_for(service.subscribed.wait(), timeout=10)
        async with mqtt.client(mqtt_settings, "demand-gw") as gateway:
            for minute in range(31):  # two whole quarter hours, then one sample of the third
                t = start + minute * 60_000
                power = 100.0 if minute < 15 else 300.0
                readings = [{"m": "foodco-main", "t": t, "q": {"p_kw": power + minute % 3}}]
                payload = encode_batch("gw-foodco", minute + 1, readings)
                await gateway.publish(topics.data_topic(park.park, "gw-foodco"), payload, qos=1)

        async def written() -> bool:
            try:
                return await reader.count("demand_15m", "p_kw_avg") == 2
            except Exception:
                return False

        await eventually(written, 20, "two demand intervals")
        [series] = await reader.query(
            "SELECT p_kw_avg, p_kw_max, samples, meter FROM demand_15m ORDER BY time"
        )
    rows = [r[1:] for r in series.values]
    assert rows == [[101.0, 102.0, 15, "foodco-main"], [301.0, 302.0, 15, "foodco-main"]]
    assert [r[0] for r in series.values] == [start, start + WINDOW_MS]


def test_a_batch_crossing_a_boundary_keeps_the_open_windows_samples() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    start = ms("2026-03-02 14:45:00", tz)
    windows = DemandWindows(["a"], tz)
    windows.add(np.array([0]), np.array([start]), np.array([10.0]))
    # one batch: the last two seconds of the quarter hour, then the first of the next
    t = np.array([start + WINDOW_MS - 2000, start + WINDOW_MS - 1000, start + WINDOW_MS])
    [closed] = windows.add(np.zeros(3, dtype=np.int64), t, np.array([20.0, 30.0, 99.0]))
    assert (closed.start_ms, closed.samples, closed.p_kw_avg) == (start, 3, 20.0)
    assert windows.late_samples == 0


def test_an_older_sample_does_not_corrupt_the_open_window() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    start = ms("2026-03-02 15:00:00", tz)
    windows = DemandWindows(["a"], tz)
    windows.add(np.array([0]), np.array([start]), np.array([50.0]))  # W3 open
    # a buffered sample from the quarter hour before arrives after it: late, dropped
    assert windows.add(np.array([0]), np.array([start - 60_000]), np.array([1.0])) == []
    assert windows.late_samples == 1
    [w3] = windows.close_due(start + 10 * WINDOW_MS, 0)
    assert (w3.start_ms, w3.p_kw_avg, w3.samples) == (start, 50.0, 1)
