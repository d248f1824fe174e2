"""The rollup job against a real InfluxDB: raw counters in, local hours/days and groups out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from analytics.accounting.job import RollupConfig, RollupJob, ensure_retention, rollup_source
from analytics.accounting.rollup import Period, accounting_series
from parkwatch.influx import InfluxReader, InfluxWriter, Series
from parkwatch.lineprotocol import encode_point
from parkwatch.settings import InfluxSettings
from parkwatch.site import Park
from parkwatch.stack import LocalStack
from parkwatch_cli import bench_rollup_pass

pytestmark = pytest.mark.integration

SHANGHAI = ZoneInfo("Asia/Shanghai")
MIN = 60_000
H = 3_600_000

PARK = {
    "park": "acct",
    "meters": [{"id": "main", "utility": "electricity"}],
    "enterprises": [
        {
            "id": "ent-a",
            "workshops": [
                {
                    "id": "ws1",
                    "meters": [
                        {"id": "a-main", "utility": "electricity", "parent": "main"},
                        {"id": "a-sub", "utility": "electricity", "parent": "a-main"},
                    ],
                }
            ],
        },
        {
            "id": "ent-b",
            "workshops": [
                {
                    "id": "ws1",
                    "meters": [{"id": "b-main", "utility": "electricity", "parent": "main"}],
                }
            ],
        },
    ],
}
# kWh per hour; main carries 2 % losses on top of a-main + b-main
RATES = {"a-main": 60.0, "a-sub": 30.0, "b-main": 120.0, "main": 183.6}
START = int(datetime(2025, 3, 1, 22, tzinfo=SHANGHAI).timestamp() * 1000)  # 14:00 UTC
END = START + 4 * H  # 02:00 local on 2025-03-02


def raw_lines(t: np.ndarray, meter: str) -> list[str]:
    v = 1000.0 + RATES[meter] * (t - START) / H
    if meter == "b-main":  # a 16-bit register that wraps an hour in
        v = (65_536.0 - 120.0 + RATES[meter] * (t - START) / H) % 65_536.0
    tags = {"park": "acct", "enterprise": "x", "meter": meter}
    # power beside the register: right for a-main, a sixth short for b-main (as a wrong CT
    # ratio on one of the two would show)
    power = {"a-main": {"p_kw": 60.0}, "b-main": {"p_kw": 100.0}}.get(meter, {})
    return [
        encode_point("electricity", tags, {"e_kwh": float(x), **power}, int(ti))
        for ti, x in zip(t, v, strict=True)
    ]


async def rows(
    reader: InfluxReader, period: Period, where: str
) -> dict[tuple[str, int], dict[str, float]]:
    series = await reader.query(
        f"SELECT * FROM {rollup_source('rollups', period)} WHERE {where} GROUP BY id, quantity"
    )
    out = {}
    for s in series:
        for rec in s.records():
            out[(s.tags["id"], int(rec["time"]))] = rec
    return out


@pytest.mark.anyio
async def test_rollups_in_local_days_groups_and_a_late_reading(
    influx_settings: InfluxSettings,
) -> None:
    park = Park.model_validate(PARK)
    t = np.arange(START, END + 1, MIN)
    gap = (t > START + 2 * H + 5 * MIN) & (t < START + 2 * H + 55 * MIN)  # 00:05-00:55 missing
    config = RollupConfig(recent_s=5 * 3600, retention_policy="rollups")
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
        await ensure_retention(reader, config)
        async with InfluxWriter(influx_settings, flush_interval_s=0.05) as raw:
            for meter in RATES:
                keep = ~gap if meter == "a-main" else np.ones(t.size, bool)
                await raw.write(raw_lines(t[keep], meter))
        async with InfluxWriter(
            influx_settings, flush_interval_s=0.05, retention_policy="rollups"
        ) as out:
            job = RollupJob(park, reader, out, config)
            assert await job.run(END) > 0

            hourly = await rows(reader, Period.HOUR, "level = 'meter' AND quantity = 'e_kwh'")
            # every hour of a-main is 60 kWh; the 00:00 hour has 50 minutes without readings:
            # completeness 10/60, the 50 minutes' 50 kWh an estimate
            midnight = START + 2 * H
            for k in range(4):
                assert hourly[("a-main", START + k * H)]["value"] == pytest.approx(60.0)
            assert hourly[("a-main", midnight)]["completeness"] == pytest.approx(10 / 60)
            assert hourly[("a-main", midnight)]["estimated"] == pytest.approx(50.0)
            # the wrapping register: 120 every hour, one counter event in the hour it wrapped
            assert [hourly[("b-main", START + k * H)]["value"] for k in range(4)] == pytest.approx(
                [120] * 4
            )
            assert hourly[("b-main", START + H)]["events"] == 1  # 65 536 reached at 23:00
            # power and energy cross-checked per hour: a-main agrees, b-main's register counts
            # 120 kWh where its power integrates to 100
            assert hourly[("a-main", START)]["power_kwh"] == pytest.approx(60.0)
            assert hourly[("a-main", START)]["power_mismatch"] is False
            assert hourly[("b-main", START)]["power_kwh"] == pytest.approx(100.0)
            assert hourly[("b-main", START)]["power_mismatch"] is True
            # CO₂ at Chongqing's latest published factor (2022 data: 0.5227 kg/kWh)
            assert hourly[("a-main", START)]["co2_kg"] == pytest.approx(60 * 0.5227)

            # days cut at local midnight (16:00 UTC): two hours on each side
            daily = await rows(reader, Period.DAY, "quantity = 'e_kwh'")
            day1 = int(datetime(2025, 3, 1, tzinfo=SHANGHAI).timestamp() * 1000)
            assert daily[("a-main", day1)]["value"] == pytest.approx(120.0)
            assert daily[("a-main", midnight)]["value"] == pytest.approx(120.0)
            # the enterprise is its intake (not intake + sub-meter); the park its root
            assert daily[("ent-a", midnight)]["value"] == pytest.approx(120.0)
            assert daily[("ent-b", midnight)]["value"] == pytest.approx(240.0)
            assert daily[("acct", midnight)]["value"] == pytest.approx(2 * 183.6)
            # parent = Σ children + losses (2 %)
            assert daily[("acct", midnight)]["value"] == pytest.approx(
                1.02 * (daily[("ent-a", midnight)]["value"] + daily[("ent-b", midnight)]["value"])
            )
            monthly = await rows(reader, Period.MONTH, "level = 'park' AND quantity = 'e_kwh'")
            march = int(datetime(2025, 3, 1, tzinfo=SHANGHAI).timestamp() * 1000)
            assert monthly[("acct", march)]["value"] == pytest.approx(4 * 183.6)  # both days

            # the missing readings arrive late: only that hour is recomputed, now measured
            async with InfluxWriter(influx_settings, flush_interval_s=0.05) as raw:
                await raw.write(raw_lines(t[gap], "a-main"))
            job.mark_late("a-main", int(t[gap][0]), int(t[gap][-1]))
            job.config = RollupConfig(recent_s=60, retention_policy="rollups")
            await job.run(END)
            hourly = await rows(reader, Period.HOUR, "level = 'meter' AND quantity = 'e_kwh'")
            assert hourly[("a-main", midnight)]["completeness"] == pytest.approx(1.0)
            assert hourly[("a-main", midnight)]["estimated"] == pytest.approx(0.0)
            assert hourly[("a-main", midnight)]["value"] == pytest.approx(60.0)


@pytest.mark.anyio
async def test_replacements_from_events_and_the_api_and_raw_retention(
    influx_settings: InfluxSettings,
) -> None:
    """Two meters exchanged at 23:30 without a gap (60 kWh an hour, a reading a minute): the
    new meters start at 500. a-main's exchange is only known from the meter-fault detector's
    event (old and new reading): the exchange minute is estimated from the rate (1 kWh);
    b-main's was entered through the API with the old meter's final reading 1090 and the new
    one's initial 499, so it is exact: (1090 − 1089) + (500 − 499) = 2 kWh. Without either,
    the fall would be a reset counted from zero: 500 kWh."""
    park = Park.model_validate(PARK)
    t = np.arange(START, START + 2 * H + 1, MIN)
    swap = START + 90 * MIN
    config = RollupConfig(recent_s=3 * 3600, retention_policy="rollups", raw_retention="1000d")
    lines = []
    for meter in ("a-main", "b-main", "a-sub"):
        v = np.where(t < swap, 1000.0 + 60.0 * (t - START) / H, 500.0 + 60.0 * (t - swap) / H)
        tags = {"park": "acct", "enterprise": "x", "meter": meter}
        lines += [
            encode_point("electricity", tags, {"e_kwh": float(x)}, int(ti))
            for ti, x in zip(t, v, strict=True)
        ]
    lines.append(
        encode_point(
            "anomaly",
            {
                "park": "acct",
                "kind": "meter_replacement",
                "family": "meter_fault",
                "meter": "a-main",
            },
            {"evidence": '{"quantity": "e_kwh", "old_reading": 1089.0, "new_reading": 500.0}'},
            swap + MIN,
        )
    )
    lines.append(
        encode_point(
            "meter_replacement",
            {"park": "acct", "meter": "b-main", "quantity": "e_kwh"},
            {"old_final": 1090.0, "new_initial": 499.0},
            swap - 30_000,
        )
    )
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
        await ensure_retention(reader, config)
        policies = await reader.query(f'SHOW RETENTION POLICIES ON "{influx_settings.database}"')
        durations = {row[0]: row[1] for s in policies for row in s.values}
        assert durations["autogen"] == "24000h0m0s"  # raw data: 1000 days
        assert durations["rollups"] == "0s"  # rollups: forever
        async with InfluxWriter(influx_settings, flush_interval_s=0.05) as raw:
            await raw.write(lines)
        async with InfluxWriter(
            influx_settings, flush_interval_s=0.05, retention_policy="rollups"
        ) as out:
            await RollupJob(park, reader, out, config).run(START + 2 * H)
        hourly = await rows(reader, Period.HOUR, "level = 'meter' AND quantity = 'e_kwh'")
    second = START + H  # 23:00-24:00 holds the exchange at 23:30
    # 59 measured minutes of 1 kWh, plus the exchange minute
    assert hourly[("a-main", second)]["value"] == pytest.approx(59 + 1)
    assert hourly[("a-main", second)]["estimated"] == pytest.approx(1)
    assert hourly[("b-main", second)]["value"] == pytest.approx(59 + 2)
    assert hourly[("b-main", second)]["estimated"] == pytest.approx(0)
    assert hourly[("a-sub", second)]["value"] == pytest.approx(59 + 500)  # a reset


@pytest.mark.anyio
async def test_a_new_meter_standing_still_after_an_event_counts_nothing(
    influx_settings: InfluxSettings,
) -> None:
    """a-main is exchanged at 23:30 (a reading a minute, 1 kWh a minute before); the new
    meter reads 500 and stands still for 20 minutes (the line is off), then counts 1 kWh a
    minute again. Only the meter-fault detector's event tells of the exchange. 23:00-24:00:
    29 measured kWh before it, the exchange minute estimated at the meter's rate (99 kWh over
    the 119 minutes of plain pairs: 99/119 kWh), nothing while it stands, 10 kWh after:
    39 + 99/119. Each reading of 500 taken as the exchange made 20 kWh out of nothing."""
    park = Park.model_validate(PARK)
    t = np.arange(START, START + 2 * H + 1, MIN)
    swap = START + 90 * MIN
    restart = swap + 20 * MIN
    v = np.where(
        t < swap, 1000.0 + 60.0 * (t - START) / H, 500.0 + 60.0 * np.maximum(t - restart, 0) / H
    )
    tags = {"park": "acct", "enterprise": "x", "meter": "a-main"}
    lines = [
        encode_point("electricity", tags, {"e_kwh": float(x)}, int(ti))
        for ti, x in zip(t, v, strict=True)
    ]
    lines.append(
        encode_point(
            "anomaly",
            {
                "park": "acct",
                "kind": "meter_replacement",
                "family": "meter_fault",
                "meter": "a-main",
            },
            {"evidence": '{"quantity": "e_kwh", "old_reading": 1089.0, "new_reading": 500.0}'},
            swap + MIN,
        )
    )
    config = RollupConfig(recent_s=3 * 3600, retention_policy="rollups")
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
        await ensure_retention(reader, config)
        async with InfluxWriter(influx_settings, flush_interval_s=0.05) as raw:
            await raw.write(lines)
        async with InfluxWriter(
            influx_settings, flush_interval_s=0.05, retention_policy="rollups"
        ) as out:
            await RollupJob(park, reader, out, config).run(START + 2 * H)
        hourly = await rows(reader, Period.HOUR, "level = 'meter' AND id = 'a-main'")
    second = START + H
    assert hourly[("a-main", second)]["value"] == pytest.approx(39 + 99 / 119)
    assert hourly[("a-main", second)]["estimated"] == pytest.approx(99 / 119)


@pytest.mark.anyio
async def test_a_replacement_entered_days_later_is_applied(
    influx_settings: InfluxSettings,
) -> None:
    """b-main is exchanged at 23:30 (new meter from 500, 60 kWh an hour). The job first sees
    only the fall and counts a reset: 59 + 500 kWh in 23:00-24:00. The exchange's readings are
    entered a day later (old final 1090, new initial 499): the next run recomputes that hour
    although it is long out of the recent window: 59 + (1090 − 1089) + (500 − 499) = 61."""
    park = Park.model_validate(PARK)
    t = np.arange(START, START + 2 * H + 1, MIN)
    swap = START + 90 * MIN
    v = np.where(t < swap, 1000.0 + 60.0 * (t - START) / H, 500.0 + 60.0 * (t - swap) / H)
    tags = {"park": "acct", "enterprise": "x", "meter": "b-main"}
    lines = [
        encode_point("electricity", tags, {"e_kwh": float(x)}, int(ti))
        for ti, x in zip(t, v, strict=True)
    ]
    config = RollupConfig(retention_policy="rollups")
    second = START + H
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
        await ensure_retention(reader, config)
        async with InfluxWriter(influx_settings, flush_interval_s=0.05) as raw:
            await raw.write(lines)
        async with InfluxWriter(
            influx_settings, flush_interval_s=0.05, retention_policy="rollups"
        ) as out:
            job = RollupJob(park, reader, out, config)
            await job.run(START + 2 * H)
            before = await rows(reader, Period.HOUR, "level = 'meter' AND id = 'b-main'")
            assert before[("b-main", second)]["value"] == pytest.approx(59 + 500)
            async with InfluxWriter(influx_settings, flush_interval_s=0.05) as api:
                await api.write(
                    [
                        encode_point(
                            "meter_replacement",
                            {"park": "acct", "meter": "b-main", "quantity": "e_kwh"},
                            {"old_final": 1090.0, "new_initial": 499.0},
                            swap - 30_000,
                        )
                    ]
                )
            await job.run(START + 26 * H)
            after = await rows(reader, Period.HOUR, "level = 'meter' AND id = 'b-main'")
            daily = await rows(reader, Period.DAY, "level = 'meter' AND id = 'b-main'")
    assert after[("b-main", second)]["value"] == pytest.approx(59 + 2)
    assert after[("b-main", second)]["estimated"] == pytest.approx(0)
    # the local day 2025-03-01 (its last two hours are here) follows: 60 + 61
    day = int(datetime(2025, 3, 1, tzinfo=SHANGHAI).timestamp() * 1000)
    assert daily[("b-main", day)]["value"] == pytest.approx(60 + 61)


@pytest.mark.anyio
async def test_an_outage_longer_than_the_recent_window_keeps_its_consumption(
    influx_settings: InfluxSettings,
) -> None:
    """a-main (60 kWh an hour, a reading a minute) goes silent from 23:00 to 01:00, its
    register counting on; the job runs every few minutes as it does live. When the readings
    come back, the 120 kWh the register gained over the outage are the two silent hours'
    consumption, estimated (spread over them) — not lost because the last reading before the
    outage had left the job's recent window: days 60 + 60 and 60 + 60, not 60 and 60."""
    park = Park.model_validate(PARK)
    t = np.arange(START, START + 4 * H + 1, MIN)
    silent = (t > START + H) & (t < START + 3 * H)
    config = RollupConfig(retention_policy="rollups")

    async def write(times: np.ndarray) -> None:
        async with InfluxWriter(influx_settings, flush_interval_s=0.05) as raw:
            await raw.write([line for line in raw_lines(times, "a-main")])

    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
        await ensure_retention(reader, config)
        await write(t[t <= START + H])
        async with InfluxWriter(
            influx_settings, flush_interval_s=0.05, retention_policy="rollups"
        ) as out:
            job = RollupJob(park, reader, out, config)
            for now in range(START + H, START + 3 * H, 5 * MIN):  # every 5 minutes, silent
                await job.run(now)
            await write(t[(t >= START + 3 * H)])
            for now in range(START + 3 * H, START + 4 * H + 1, 5 * MIN):
                await job.run(now)
        hourly = await rows(reader, Period.HOUR, "level = 'meter' AND id = 'a-main'")
        daily = await rows(reader, Period.DAY, "level = 'meter' AND id = 'a-main'")
    assert not silent[0]
    for k in range(4):
        assert hourly[("a-main", START + k * H)]["value"] == pytest.approx(60.0)
    for k in (1, 2):  # the silent hours: estimated, not measured
        assert hourly[("a-main", START + k * H)]["estimated"] == pytest.approx(60.0)
        assert hourly[("a-main", START + k * H)]["completeness"] == pytest.approx(0.0)
    day1 = int(datetime(2025, 3, 1, tzinfo=SHANGHAI).timestamp() * 1000)
    assert daily[("a-main", day1)]["value"] == pytest.approx(120.0)
    assert daily[("a-main", START + 2 * H)]["value"] == pytest.approx(120.0)


@pytest.mark.anyio
async def test_live_passes_keep_each_hour_whole(influx_settings: InfluxSettings) -> None:
    """As live: a reading a minute, the job every 5 minutes with its default 15-minute recent
    window. Every pass rewrites the hour its window starts in; that hour must be computed
    from its own start, not from the window's (the hour ending 23:00 was rewritten at 23:10
    from 22:39 on: 21 kWh of 60)."""
    park = Park.model_validate(PARK)
    t = np.arange(START, START + 3 * H + 1, MIN)
    config = RollupConfig(retention_policy="rollups")
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
        await ensure_retention(reader, config)
        async with (
            InfluxWriter(influx_settings, flush_interval_s=0.05) as raw,
            InfluxWriter(influx_settings, flush_interval_s=0.05, retention_policy="rollups") as out,
        ):
            job = RollupJob(park, reader, out, config)
            await raw.write_now(raw_lines(t[:1], "a-main"))
            for now in range(START + 5 * MIN, START + 3 * H + 1, 5 * MIN):
                await raw.write_now(raw_lines(t[(t > now - 5 * MIN) & (t <= now)], "a-main"))
                await job.run(now)
        hourly = await rows(reader, Period.HOUR, "level = 'meter' AND id = 'a-main'")
    for k in range(3):
        assert hourly[("a-main", START + k * H)]["value"] == pytest.approx(60.0)
        assert hourly[("a-main", START + k * H)]["completeness"] == pytest.approx(1.0)


@pytest.mark.anyio
async def test_an_outage_longer_than_the_margin_keeps_its_consumption_estimated(
    influx_settings: InfluxSettings,
) -> None:
    """a-main (60 kWh an hour, a reading a minute) is silent from 23:00 to 07:30 — 8.5 h,
    longer than the 6 h ``margin_s`` the job reads around a recomputed span — its register
    counting on; the job runs every 10 minutes as live. When the readings come back, the
    register has risen 8.5 × 60 = 510 kWh: that is the outage's consumption, spread over it
    as an estimate: 60 kWh in each silent hour (completeness 0, all estimated), and in
    07:00-08:00 30 estimated + 30 measured kWh (completeness 0.5). The days: 2025-03-01
    (22:00-24:00) 120, 2025-03-02 (00:00-09:00) 9 × 60 = 540. Before, the rise was lost: the
    reading before the outage lay outside every window read, so the silent hours were
    unknown and 07:00-08:00 held its 30 measured kWh only."""
    park = Park.model_validate(PARK)
    t = np.arange(START, START + 11 * H + 1, MIN)
    back = START + 9 * H + 30 * MIN  # 07:30 local
    config = RollupConfig(retention_policy="rollups")
    assert config.margin_s * 1000 < back - (START + H)

    async def write(times: np.ndarray) -> None:
        async with InfluxWriter(influx_settings, flush_interval_s=0.05) as raw:
            await raw.write(raw_lines(times, "a-main"))

    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
        await ensure_retention(reader, config)
        await write(t[t <= START + H])
        async with InfluxWriter(
            influx_settings, flush_interval_s=0.05, retention_policy="rollups"
        ) as out:
            job = RollupJob(park, reader, out, config)
            for now in range(START + 10 * MIN, back, 10 * MIN):  # silent from 23:00
                await job.run(now)
            for now in range(back, START + 11 * H + 1, 10 * MIN):
                await write(t[(t >= back) & (t > now - 10 * MIN) & (t <= now)])
                await job.run(now)
        hourly = await rows(reader, Period.HOUR, "level = 'meter' AND id = 'a-main'")
        daily = await rows(reader, Period.DAY, "level = 'meter' AND id = 'a-main'")
    for k in range(11):
        assert hourly[("a-main", START + k * H)]["value"] == pytest.approx(60.0), k
    for k in range(1, 9):  # 23:00-07:00: silent
        assert hourly[("a-main", START + k * H)]["estimated"] == pytest.approx(60.0)
        assert hourly[("a-main", START + k * H)]["completeness"] == pytest.approx(0.0)
    resumed = hourly[("a-main", START + 9 * H)]
    assert resumed["estimated"] == pytest.approx(30.0)
    assert resumed["completeness"] == pytest.approx(0.5)
    for k in (0, 10):
        assert hourly[("a-main", START + k * H)]["estimated"] == pytest.approx(0.0)
    day1 = int(datetime(2025, 3, 1, tzinfo=SHANGHAI).timestamp() * 1000)
    assert daily[("a-main", day1)]["value"] == pytest.approx(120.0)
    assert daily[("a-main", START + 2 * H)]["value"] == pytest.approx(540.0)
    # the estimated part of each day: 23:00-24:00, and 00:00-07:30
    assert daily[("a-main", day1)]["estimated"] == pytest.approx(60.0)
    assert daily[("a-main", START + 2 * H)]["estimated"] == pytest.approx(7 * 60 + 30.0)


# the three cases below start at 22:00 local on 28 Feb 2025: midnight and a month end fall
# inside the outage
FEB28 = int(datetime(2025, 2, 28, 22, tzinfo=SHANGHAI).timestamp() * 1000)
MAR1 = FEB28 + 2 * H  # 00:00 local


async def _outage(
    influx_settings: InfluxSettings,
    register: Callable[[np.ndarray], np.ndarray],
    back: int,
    hours: int,
    after: Callable[
        [RollupJob, Callable[[np.ndarray], Awaitable[None]], np.ndarray], Awaitable[None]
    ],
) -> tuple[dict[tuple[str, int], dict[str, float]], dict[tuple[str, int], dict[str, float]]]:
    """a-main read every minute from FEB28 on, silent from 23:00 until ``back``; the job runs
    every 10 minutes as live, then ``after`` (the late data), then the hours and days."""
    park = Park.model_validate(PARK)
    t = np.arange(FEB28, FEB28 + hours * H + 1, MIN)
    v = register(t)
    tags = {"park": "acct", "enterprise": "x", "meter": "a-main"}
    config = RollupConfig(retention_policy="rollups")

    async def write(sel: np.ndarray) -> None:
        async with InfluxWriter(influx_settings, flush_interval_s=0.05) as raw:
            await raw.write(
                [
                    encode_point("electricity", tags, {"e_kwh": float(x)}, int(ti))
                    for ti, x in zip(t[sel], v[sel], strict=True)
                ]
            )

    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
        await ensure_retention(reader, config)
        await write(t <= FEB28 + H)
        async with InfluxWriter(
            influx_settings, flush_interval_s=0.05, retention_policy="rollups"
        ) as out:
            job = RollupJob(park, reader, out, config)
            for now in range(FEB28 + 10 * MIN, back, 10 * MIN):
                await job.run(now)
            for now in range(back, FEB28 + hours * H + 1, 10 * MIN):
                await write((t >= back) & (t > now - 10 * MIN) & (t <= now))
                await job.run(now)
            await after(job, write, t)
            end = FEB28 + hours * H
            await job.run(end + 10 * MIN)
            await job.run(end + 20 * MIN)
        hourly = await rows(reader, Period.HOUR, "level = 'meter' AND id = 'a-main'")
        daily = await rows(reader, Period.DAY, "level = 'meter' AND id = 'a-main'")
    return hourly, daily


@pytest.mark.anyio
async def test_a_backlog_ending_long_before_the_meter_resumed_replaces_its_estimate(
    influx_settings: InfluxSettings,
) -> None:
    """a-main counts 60 kWh/h until 23:00, 300 kWh/h 23:00-02:00, 10 kWh/h after; its
    gateway is silent 23:00-14:00, so the job spreads the rise 23:00 → 14:00 over the outage.
    Then only the 23:01-01:59 backlog arrives. The hours 02:00-14:00 must be re-estimated from
    the new pair (01:59 → 14:00), not keep their share of the old one (before: hours and days
    summed to 1 791 kWh where the register rose 1 100, the backlog counted on top).
    Register: 01:59 = 1000 + 60 + 300 × 2 59/60 = 1955; 14:00 = 1000 + 60 + 900 + 10 × 12
    = 2080; the pair's 125 kWh over 721 minutes: 125/721 in 01:59-02:00, 125 × 60/721 ≈
    10.402 in each of 02:00 … 13:00. Hours: 60, 300, 300, 295 + 125/721, 12 × 125 × 60/721,
    then 10, 10 measured; days: 28 Feb 60 + 300 = 360, 1 Mar 300 + 295 + 125 + 20 = 740."""

    def register(t: np.ndarray) -> np.ndarray:
        h = (t - FEB28) / H
        return (
            1000.0
            + 60 * np.minimum(h, 1)
            + 300 * np.clip(h - 1, 0, 3)
            + 10 * np.clip(h - 4, 0, None)
        )

    async def backlog(
        job: RollupJob, write: Callable[[np.ndarray], Awaitable[None]], t: np.ndarray
    ) -> None:
        late = (t > FEB28 + H) & (t < FEB28 + 4 * H)
        await write(late)
        job.mark_late("a-main", int(t[late][0]), int(t[late][-1]))

    hourly, daily = await _outage(influx_settings, register, FEB28 + 16 * H, 18, backlog)
    share = 125 * 60 / 721
    expected = [60, 300, 300, 295 + 125 / 721] + [share] * 12 + [10, 10]
    assert [hourly[("a-main", FEB28 + k * H)]["value"] for k in range(18)] == pytest.approx(
        expected
    )
    assert hourly[("a-main", FEB28 + 3 * H)]["estimated"] == pytest.approx(125 / 721)
    for k in range(4, 16):  # 02:00-14:00: still silent, estimated
        assert hourly[("a-main", FEB28 + k * H)]["estimated"] == pytest.approx(share)
        assert hourly[("a-main", FEB28 + k * H)]["completeness"] == pytest.approx(0.0)
    assert daily[("a-main", FEB28 - 22 * H)]["value"] == pytest.approx(360.0)
    assert daily[("a-main", MAR1)]["value"] == pytest.approx(740.0)
    assert daily[("a-main", MAR1)]["estimated"] == pytest.approx(125.0)


@pytest.mark.anyio
async def test_a_backlog_starting_on_the_hour_re_splits_the_outage_before_it(
    influx_settings: InfluxSettings,
) -> None:
    """The register as above (60 kWh/h to 23:00, 300 kWh/h 23:00-02:00, 10 kWh/h after); the
    gateway is silent 23:00-20:00, and the backlog 08:00-10:00 (starting exactly on a local
    hour) arrives later. The reading before it (23:00, 1060) must be looked up all the same:
    08:00 = 1060 + 900 + 10 × 6 = 2020, so the pair 23:00 → 08:00 holds 960 kWh over 9 h,
    960/9 ≈ 106.67 in each of 23:00 … 07:00 (before: the old estimate 23:00 → 20:00, 51.43 an
    hour, kept; hours summed to 652.86). 08:00 and 09:00 measured, 10 each; the pair 10:00 →
    20:00 (100 kWh) 10 an hour. Hours: 60 + 960 + 20 + 100 + 10 = 1 150 = the register's
    rise 2 150 − 1 000; days: 28 Feb 60 + 960/9, 1 Mar 960 × 8/9 + 130."""

    def register(t: np.ndarray) -> np.ndarray:
        h = (t - FEB28) / H
        return (
            1000.0
            + 60 * np.minimum(h, 1)
            + 300 * np.clip(h - 1, 0, 3)
            + 10 * np.clip(h - 4, 0, None)
        )

    async def backlog(
        job: RollupJob, write: Callable[[np.ndarray], Awaitable[None]], t: np.ndarray
    ) -> None:
        late = (t >= FEB28 + 10 * H) & (t <= FEB28 + 12 * H)
        await write(late)
        job.mark_late("a-main", int(t[late][0]), int(t[late][-1]))

    hourly, daily = await _outage(influx_settings, register, FEB28 + 22 * H, 23, backlog)
    expected = [60] + [960 / 9] * 9 + [10] * 13
    assert [hourly[("a-main", FEB28 + k * H)]["value"] for k in range(23)] == pytest.approx(
        expected
    )
    assert sum(r["value"] for r in hourly.values()) == pytest.approx(1150.0)
    for k in range(1, 10):  # 23:00-08:00: silent, estimated from the pair 23:00 → 08:00
        assert hourly[("a-main", FEB28 + k * H)]["estimated"] == pytest.approx(960 / 9)
    assert daily[("a-main", FEB28 - 22 * H)]["value"] == pytest.approx(60 + 960 / 9)
    assert daily[("a-main", MAR1)]["value"] == pytest.approx(960 * 8 / 9 + 130)


@pytest.mark.anyio
async def test_a_backlog_whose_span_outgrows_the_data_read_keeps_the_last_hour_whole(
    influx_settings: InfluxSettings,
) -> None:
    """a-main (60 kWh/h) is silent 23:00-07:30; the 23:01-01:59 backlog arrives later. The
    hours recomputed run to the next reading, 07:30, past the 6 h margin read after 01:59
    (07:59): the 07:00 hour must still be computed from all its readings — 30 estimated (the
    pair 01:59 → 07:30) + 30 measured = 60, completeness 0.5 (before: 59, completeness 0.483,
    the 07:59-08:00 minute unread). Day 1 Mar: 9 hours × 60 = 540."""

    async def backlog(
        job: RollupJob, write: Callable[[np.ndarray], Awaitable[None]], t: np.ndarray
    ) -> None:
        late = (t > FEB28 + H) & (t < FEB28 + 4 * H)
        await write(late)
        job.mark_late("a-main", int(t[late][0]), int(t[late][-1]))

    def register(t: np.ndarray) -> np.ndarray:
        return 1000.0 + 60 * (t - FEB28) / H

    hourly, daily = await _outage(influx_settings, register, FEB28 + 9 * H + 30 * MIN, 11, backlog)
    for k in range(11):
        assert hourly[("a-main", FEB28 + k * H)]["value"] == pytest.approx(60.0), k
    resumed = hourly[("a-main", FEB28 + 9 * H)]
    assert resumed["completeness"] == pytest.approx(0.5)
    assert resumed["estimated"] == pytest.approx(30.0)
    assert daily[("a-main", MAR1)]["value"] == pytest.approx(540.0)


@pytest.mark.anyio
async def test_a_replacement_entered_after_a_long_outage_was_estimated_is_applied(
    influx_settings: InfluxSettings,
) -> None:
    """a-main counts 60 kWh/h until 23:00, then 120 kWh/h; its gateway is silent 23:00-13:30
    (14.5 h, more than twice the 6 h margin). It is exchanged at 06:00 (old final 1060 + 7 ×
    120 = 1900, new initial 0; the new meter counts 60 kWh/h), and the exchange is entered
    through the API after the job estimated the outage from the fall 1060 → 450 (as a
    replacement without readings: 60 kWh/h). The next passes apply it: the pair 23:00 →
    13:30 holds (1900 − 1060) + (450 − 0) = 1290 kWh, spread over its 14.5 h: 1290/14.5 ≈
    88.97 an hour; 13:00-14:00 half of that + 30 measured. Hours: 60 + 1290 + 90 = 1440 = 60
    + 840 + 9 × 60 (before: 17 × 60 = 1020, the exchange never applied). Days: 28 Feb
    60 + 1290/14.5; 1 Mar 1290 × 13.5/14.5 + 90."""
    swap = FEB28 + 8 * H

    def register(t: np.ndarray) -> np.ndarray:
        h = (t - FEB28) / H
        old = 1000.0 + 60 * np.minimum(h, 1) + 120 * np.clip(h - 1, 0, None)
        return np.where(t >= swap, 60 * (t - swap) / H, old)

    async def exchange(
        job: RollupJob, write: Callable[[np.ndarray], Awaitable[None]], t: np.ndarray
    ) -> None:
        async with InfluxWriter(job.reader.settings, flush_interval_s=0.05) as api:
            await api.write(
                [
                    encode_point(
                        "meter_replacement",
                        {"park": "acct", "meter": "a-main", "quantity": "e_kwh"},
                        {"old_final": 1900.0, "new_initial": 0.0},
                        swap,
                    )
                ]
            )

    hourly, daily = await _outage(
        influx_settings, register, FEB28 + 15 * H + 30 * MIN, 17, exchange
    )
    share = 1290 / 14.5
    expected = [60] + [share] * 14 + [share / 2 + 30, 60]
    assert [hourly[("a-main", FEB28 + k * H)]["value"] for k in range(17)] == pytest.approx(
        expected
    )
    assert sum(r["value"] for r in hourly.values()) == pytest.approx(60 + 840 + 9 * 60)
    assert hourly[("a-main", FEB28 + 15 * H)]["events"] == 1
    assert daily[("a-main", FEB28 - 22 * H)]["value"] == pytest.approx(60 + share)
    assert daily[("a-main", MAR1)]["value"] == pytest.approx(1290 * 13.5 / 14.5 + 90)


@pytest.mark.anyio
async def test_a_replacement_entered_again_with_corrected_readings_is_reapplied(
    influx_settings: InfluxSettings,
) -> None:
    """As above, but the exchange is first entered wrong (old final 1500) and the job applies
    it: the pair 23:00 → 13:30 holds (1500 − 1060) + 450 = 890, hours 60 + 890 + 90 = 1040.
    Then it is entered again for the same time with the right old final, 1900: the point is
    overwritten, and the job must apply the correction: (1900 − 1060) + 450 = 1290 over
    14.5 h, hours 60 + 1290 + 90 = 1440 (before: 1040 stayed, the exchange seen already)."""
    swap = FEB28 + 8 * H
    end = FEB28 + 17 * H

    def register(t: np.ndarray) -> np.ndarray:
        h = (t - FEB28) / H
        old = 1000.0 + 60 * np.minimum(h, 1) + 120 * np.clip(h - 1, 0, None)
        return np.where(t >= swap, 60 * (t - swap) / H, old)

    async def enter(job: RollupJob, old_final: float) -> None:
        async with InfluxWriter(job.reader.settings, flush_interval_s=0.05) as api:
            await api.write(
                [
                    encode_point(
                        "meter_replacement",
                        {"park": "acct", "meter": "a-main", "quantity": "e_kwh"},
                        {"old_final": old_final, "new_initial": 0.0},
                        swap,
                    )
                ]
            )

    wrong: list[float] = []

    async def exchange_twice(
        job: RollupJob, write: Callable[[np.ndarray], Awaitable[None]], t: np.ndarray
    ) -> None:
        await enter(job, 1500.0)
        await job.run(end + 5 * MIN)
        await job.run(end + 6 * MIN)
        stored = await rows(job.reader, Period.HOUR, "level = 'meter' AND id = 'a-main'")
        wrong.append(sum(r["value"] for r in stored.values()))
        await enter(job, 1900.0)

    hourly, daily = await _outage(
        influx_settings, register, FEB28 + 15 * H + 30 * MIN, 17, exchange_twice
    )
    assert wrong == [pytest.approx(60 + 890 + 90)]
    share = 1290 / 14.5
    expected = [60] + [share] * 14 + [share / 2 + 30, 60]
    assert [hourly[("a-main", FEB28 + k * H)]["value"] for k in range(17)] == pytest.approx(
        expected
    )
    assert sum(r["value"] for r in hourly.values()) == pytest.approx(60 + 840 + 9 * 60)
    assert daily[("a-main", MAR1)]["value"] == pytest.approx(1290 * 13.5 / 14.5 + 90)


@pytest.mark.anyio
async def test_a_meter_back_from_a_long_outage_is_recomputed_from_its_own_readings(
    influx_settings: InfluxSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every meter counts 10 kWh/h, read every 15 minutes; a-sub has been silent for 10 days
    (since 18 Feb 22:15) when its readings 28 Feb 22:30-23:00 arrive late, with a-main's
    (re-sent) over the same span. a-sub's hours from 18 Feb 22:00 on must be recomputed, but
    from its own readings only: the one before the outage (looked up) and the pair across
    22:00 before it (21:45, 22:00), and a-main is rewritten only around its own late readings
    (before: the other three meters were read again over the 10 days, 2 595 of their
    readings older than a day, and a-main's 10 days of hours rewritten).
    a-sub: 18 Feb 22:00 → 28 Feb 23:00 is 241 hours of 10 kWh (22:00-22:15 measured, 2.5;
    the pair across the outage holds 10 × 240.25 = 2 402.5, 10 an hour, then measured);
    days 18 Feb 2 × 10 = 20, 19-27 Feb 240 each, 28 Feb 23 × 10 = 230: 2 410."""
    park = Park.model_validate(PARK)
    q = 15 * MIN
    day = 24 * H
    t = np.arange(FEB28 - 12 * day, FEB28 + 3 * H + 1, q)
    dead = FEB28 - 10 * day + q  # 22:15

    def write_lines(sel: np.ndarray, meter: str) -> list[str]:
        tags = {"park": "acct", "enterprise": "x", "meter": meter}
        v = 1000.0 + 10 * (t[sel] - t[0]) / H
        return [
            encode_point("electricity", tags, {"e_kwh": float(x)}, int(ti))
            for ti, x in zip(t[sel], v, strict=True)
        ]

    config = RollupConfig(retention_policy="rollups")
    read: list[tuple[str, int]] = []  # (meter, time) of each raw reading the late pass read
    async with InfluxReader(influx_settings) as reader:
        await reader.create_database()
        await ensure_retention(reader, config)
        async with InfluxWriter(influx_settings, flush_interval_s=0.05) as raw:
            for meter in ("main", "a-main", "b-main"):
                await raw.write(write_lines(t <= FEB28 + 2 * H, meter))
            await raw.write(write_lines(t <= dead, "a-sub"))
        async with InfluxWriter(
            influx_settings, flush_interval_s=0.05, retention_policy="rollups"
        ) as out:
            job = RollupJob(park, reader, out, config)
            for now in range(FEB28 + 10 * MIN, FEB28 + 2 * H + 1, 10 * MIN):
                await job.run(now)
            async with InfluxWriter(influx_settings, flush_interval_s=0.05) as raw:
                late = (t >= FEB28 + 30 * MIN) & (t <= FEB28 + H)
                await raw.write(write_lines(late, "a-sub") + write_lines(late, "a-main"))
            query = reader.query

            async def spy(statement: str) -> list[Series]:
                result = await query(statement)
                if statement.startswith("SELECT") and 'FROM "electricity"' in statement:
                    read.extend(
                        (s.tags.get("meter", ""), int(row[0])) for s in result for row in s.values
                    )
                return result

            monkeypatch.setattr(reader, "query", spy)
            job.mark_late("a-main", FEB28 + 30 * MIN, FEB28 + H)
            job.mark_late("a-sub", FEB28 + 30 * MIN, FEB28 + H)
            await job.run(FEB28 + 2 * H + 10 * MIN)
            monkeypatch.undo()
        sub = await rows(reader, Period.HOUR, "level = 'meter' AND id = 'a-sub'")
        sub_days = await rows(reader, Period.DAY, "level = 'meter' AND id = 'a-sub'")
        main_hours = await rows(reader, Period.HOUR, "level = 'meter' AND id = 'a-main'")
    old = [(m, at) for m, at in read if at < FEB28 - day]
    # only a-sub's readings from the pair across its first hour recomputed on: none lies
    # between the last of them and the late ones
    assert {m for m, _ in old} == {"a-sub"}
    assert sorted({at for _, at in old}) == [dead - 2 * q, dead - q, dead]
    assert sorted(sub) == [("a-sub", dead - q + k * H) for k in range(241)]
    assert [r["value"] for _, r in sorted(sub.items())] == pytest.approx([10.0] * 241)
    assert sub[("a-sub", dead - q)]["estimated"] == pytest.approx(7.5)
    assert sub[("a-sub", dead - q + 120 * H)]["estimated"] == pytest.approx(10.0)
    days = [r["value"] for _, r in sorted(sub_days.items())]
    assert days == pytest.approx([20.0] + [240.0] * 9 + [230.0])
    assert sum(days) == pytest.approx(2410.0)
    # a-main: the hours the job wrote live (from 15:00, the 6 h catch-up and the pair before
    # it), none of the 10 days rewritten
    assert min(at for _, at in main_hours) == FEB28 - 7 * H
    assert [r["value"] for _, r in sorted(main_hours.items())] == pytest.approx(
        [10.0] * len(main_hours)
    )


@pytest.mark.anyio
async def test_the_rollup_pass_bench_times_live_passes(
    stack: LocalStack, demo_park_path: Path
) -> None:
    """``parkwatch bench rollup-pass`` on the demo park, briefly: a catch-up pass writes every
    stored hour, each live pass rewrites at least the running hour of every counter."""
    park = Park.from_yaml(demo_park_path)
    first, live = await bench_rollup_pass._bench(stack.influx_url, stack.influxdb.pid, park, 0.5, 2)
    series = len(accounting_series(park))
    assert first["points"] > series
    assert len(live) == 2
    for p in live:
        assert p["points"] >= series - 10  # a few demo counters report nothing here
        assert p["cpu_s"] > 0
        assert p["wall_s"] >= p["cpu_s"] * 0.5
