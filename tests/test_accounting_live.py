"""Live rollups against the offline accounting: simulated park → Mosquitto → ingest →
InfluxDB → the rollup job every 15 minutes of data time, all real; the hours and days it
writes must equal consumption computed at once from the stored raw readings."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analytics.accounting.consumption import FLAG_OF_QUALITY, Flag, consumption
from analytics.accounting.job import RollupConfig, RollupJob, ensure_retention, rollup_source
from analytics.accounting.rollup import Period, Rolled, accounting_series, group_sums, local_edges
from ingest.service import IngestService
from ingest.settings import IngestSettings
from parkwatch import mqtt, topics
from parkwatch.influx import InfluxReader, InfluxWriter, quote_ident
from parkwatch.settings import InfluxSettings, MqttSettings
from parkwatch.site import Park, SiteRegistry
from simulators.publisher import ParkSimulator, Schedule
from tests.support import background, eventually

pytestmark = pytest.mark.anyio

MIN = 60_000
H = 3_600_000
STEP = 15 * MIN  # data time between two passes of the job (its recent window: 15 minutes)
HOURS = 5
OFFLINE_GATEWAY = "gw-chemco"  # silent 1 h 30, across local midnight; its backlog comes late
OUTAGE = 1 * H + 45 * MIN, 3 * H + 15 * MIN  # from T0 + 1:45 to T0 + 3:15
BACKLOG_AT = 3 * H + 45 * MIN  # sent behind the live batches of 3:45-4:00


async def stored_raw(
    reader: InfluxReader, job: RollupJob, start: int, end: int
) -> tuple[Any, Any, Any, Any]:
    """Every stored counter reading of the job's series: (series, t, value, flag)."""
    s: list[int] = []
    t: list[int] = []
    v: list[float] = []
    f: list[int] = []
    for utility in {cs.meter.utility for cs in job.series}:
        statement = (
            f"SELECT * FROM {quote_ident(utility.value)} "
            f"WHERE time >= {start}ms AND time <= {end}ms GROUP BY meter"
        )
        for series in await reader.query(statement):
            meter = series.tags["meter"]
            for record in series.records():
                for name, value in record.items():
                    i = job.index.get((meter, name))
                    if i is None or value is None:
                        continue
                    s.append(i)
                    t.append(int(record["time"]))
                    v.append(float(value))
                    quality = record.get("quality")
                    f.append(FLAG_OF_QUALITY.get(quality, Flag.NONE) if quality else Flag.NONE)
    return np.array(s), np.array(t), np.array(v), np.array(f, np.int8)


async def rolled(
    reader: InfluxReader, job: RollupJob, period: Period, edges: Any
) -> tuple[Rolled, Rolled]:
    """The job's rollups of ``period`` as stored: meters [series, period], groups [group,
    period] (NaN: no point)."""
    meters = Rolled(edges, *(np.full((len(job.series), edges.size - 1), np.nan) for _ in "vce"))
    grouped = Rolled(edges, *(np.full((len(job.groups), edges.size - 1), np.nan) for _ in "vce"))
    of_meter = {(cs.meter.id, cs.reported_as): i for i, cs in enumerate(job.series)}
    of_group = {
        (g.level.value, g.id, g.utility.value, g.quantity): i for i, g in enumerate(job.groups)
    }
    statement = (
        f"SELECT value, completeness, estimated FROM {rollup_source('rollups', period)} "
        "GROUP BY level, id, utility, quantity"
    )
    for series in await reader.query(statement):
        tags = series.tags
        if tags["level"] == "meter":
            into, i = meters, of_meter[(tags["id"], tags["quantity"])]
        else:
            into = grouped
            i = of_group[(tags["level"], tags["id"], tags["utility"], tags["quantity"])]
        for t, v, c, e in series.values:
            k = int(np.searchsorted(edges, int(t)))
            assert edges[k] == int(t), "a rollup off the park's local edges"
            into.value[i, k], into.completeness[i, k], into.estimated[i, k] = v, c, e
    return meters, grouped


async def check(reader: InfluxReader, job: RollupJob, t0: int, now: int) -> Rolled:
    """The job's hours and days (meters and groups) against the offline accounting of every
    reading stored until ``now``; returns the offline hours."""
    zone = job.park.zone
    hours = local_edges(t0, now, zone, Period.HOUR)
    if hours[-1] < now:  # the running hour, as far as it has readings
        later = local_edges(now, now + H, zone, Period.HOUR)
        hours = np.r_[hours, later[later > now][:1]]
    days = local_edges(t0 - 24 * H, now + 24 * H, zone, Period.DAY)
    days = days[(days >= days[days <= t0][-1]) & (days <= days[days >= now][0])]
    s, t, v, f = await stored_raw(reader, job, t0, now)
    n = len(job.series)
    kw: dict[str, Any] = {"flags": f, "modulus": job.modulus, "max_gap_ms": job.max_gap}
    offline_hours: Rolled | None = None
    for period, edges in ((Period.HOUR, hours), (Period.DAY, days)):
        # the offline accounting: every stored reading at once, the period cut directly
        c = consumption(s, t, v, edges, n, **kw)
        offline = Rolled(edges, c.value, c.completeness, c.estimated)
        offline_hours = offline_hours or offline
        live, live_groups = await rolled(reader, job, period, edges)
        close = {"rtol": 1e-9, "atol": 1e-6}
        # the same hours and days known (NaN: no point written), with the same values
        np.testing.assert_allclose(live.value, offline.value, err_msg=str(period), **close)
        known = np.isfinite(offline.value)
        for name in ("completeness", "estimated"):
            np.testing.assert_allclose(
                getattr(live, name)[known],
                getattr(offline, name)[known],
                err_msg=f"{period} {name}",
                **close,
            )
        # workshops, enterprises and the park: the sums of their meters
        np.testing.assert_allclose(
            live_groups.value,
            group_sums(offline, job.groups).value,
            err_msg=f"{period} groups",
            **close,
        )
    assert offline_hours is not None
    return offline_hours


async def test_live_rollups_equal_the_offline_accounting(
    mqtt_settings: MqttSettings, influx_settings: InfluxSettings, demo_park_path: Path
) -> None:
    """Five hours of the demo park (a reading a minute per meter) from 21:00 local, local
    midnight at 3 h; the job runs every 15 minutes of data time after that quarter's
    readings are stored, as live (its window starts inside an hour: commit ecf5d2a). One
    gateway is silent from 22:45 to 00:15 — its meters resume after a gap, which the job
    estimates — and its backlog arrives at 00:45, behind newer readings; its late spans are
    handed to the job directly, standing in for the analytics engine's report (no engine
    runs here). Before the backlog and at the end, every hour and day of every meter,
    workshop, enterprise and the park equals the consumption computed at once from the
    stored raw readings (the offline accounting), completeness and estimate included."""
    park = Park.from_yaml(demo_park_path)
    registry = SiteRegistry([park])
    zone = park.zone
    before = datetime.now(zone).date() - timedelta(days=2)
    t0 = int(datetime(before.year, before.month, before.day, 21, tzinfo=zone).timestamp())
    t0 *= 1000
    end = t0 + HOURS * H
    outage = (t0 + OUTAGE[0], t0 + OUTAGE[1])
    gateways = sorted({m.gateway for m in registry.meters(park.park)})
    settings = IngestSettings(
        mqtt=mqtt_settings,
        influx=influx_settings,
        client_id="live-ingest",
        share_group="live",
        session_expiry_s=0,
    )
    service = IngestService(settings, registry)
    chemco = [
        i for i, cs in enumerate(accounting_series(park)) if cs.meter.gateway == OFFLINE_GATEWAY
    ]
    assert chemco
    config = RollupConfig(retention_policy="rollups")
    sent = 0

    async def publish(a: int, b: int, exclude: frozenset[str]) -> None:
        nonlocal sent
        sim = ParkSimulator(
            park,
            mqtt_settings,
            seed=11,
            exclude_gateways=exclude,
            schedule=Schedule(
                interval_s=60, start_ms=t0, quiet_until_ms=a, until_ms=b, realtime=False
            ),
        )
        sent += (await sim.run()).value_count
        async with mqtt.client(mqtt_settings, "live-cleanup") as cleanup:
            for gateway in sim.gateways:  # the simulator's retained "offline": not for others
                await cleanup.publish(topics.status_topic(park.park, gateway), b"", retain=True)

        async def stored() -> bool:
            written = service.metrics.registry.get_sample_value("pw_ingest_values_written_total")
            return (written or 0) >= sent

        await eventually(stored, what="every value written")

    async with background(service.run()), InfluxReader(influx_settings) as reader:
        await reader.create_database()
        await ensure_retention(reader, config)
        async with InfluxWriter(
            influx_settings, flush_interval_s=0.05, retention_policy="rollups"
        ) as out:
            job = RollupJob(park, reader, out, config)
            silent = frozenset({OFFLINE_GATEWAY})
            for a in range(t0, end, STEP):
                b = a + STEP
                if a == t0 + BACKLOG_AT:
                    # before the backlog: the silent hours estimated from the register's
                    # rise over the gap, exactly as the offline accounting estimates them
                    gap = await check(reader, job, t0, a)
                    assert gap.estimated[chemco].sum() > 0
                await publish(a, b, silent if outage[0] <= a < outage[1] else frozenset())
                if a == t0 + BACKLOG_AT:
                    # the gateway's buffer drains behind its live batches. Simulated here: no
                    # analytics engine runs in this test, so the late span the engine would
                    # report is handed to the job as the service does (that the engine reports
                    # it and the service forwards it: tests/test_analytics_service.py)
                    await publish(outage[0], outage[1], frozenset(gateways) - silent)
                    for m in registry.meters(park.park):
                        if m.gateway == OFFLINE_GATEWAY:
                            job.mark_late(m.id, outage[0], outage[1] - MIN)
                await job.run(b)
            final = await check(reader, job, t0, end)
    assert final.edges.size == HOURS + 1
    # the backlog replaced the gap's estimates by measurements; the gateway's meters counted
    assert np.nanmax(final.estimated) == pytest.approx(0.0, abs=1e-9)
    assert (np.nan_to_num(final.value[chemco]) > 0).any()
