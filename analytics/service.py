"""The analytics service: subscribes to its parks' readings and writes derived series.

Now: 15-minute demand per electricity meter (measurement ``demand_15m``). Analytics shards by
park: each worker subscribes only to the data topics of the parks in its site files.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiomqtt
import numpy as np

from analytics.demand import DemandInterval, DemandWindows
from analytics.settings import AnalyticsSettings
from parkwatch import mqtt, topics
from parkwatch.influx import InfluxError, InfluxWriter, ensure_database
from parkwatch.lineprotocol import encode_point
from parkwatch.quantities import Utility
from parkwatch.retry import Backoff, OutageLog
from parkwatch.site import Park, SiteRegistry
from parkwatch.wire import parse_batch

log = logging.getLogger(__name__)

DEMAND_MEASUREMENT = "demand_15m"


class ParkDemand:
    """Demand windows of one park's electricity meters."""

    def __init__(self, park: Park, registry: SiteRegistry) -> None:
        self.park = park
        meters = [m for m in registry.meters(park.park) if m.utility is Utility.ELECTRICITY]
        self.enterprise = {m.id: m.enterprise for m in meters}
        self.windows = DemandWindows([m.id for m in meters], park.zone)

    def lines(self, intervals: list[DemandInterval]) -> list[str]:
        return [
            encode_point(
                DEMAND_MEASUREMENT,
                {"park": self.park.park, "enterprise": self.enterprise[i.meter], "meter": i.meter},
                {"p_kw_avg": i.p_kw_avg, "p_kw_max": i.p_kw_max, "samples": i.samples},
                i.start_ms,
            )
            for i in intervals
        ]


class AnalyticsService:
    def __init__(self, settings: AnalyticsSettings, registry: SiteRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.parks = {p: ParkDemand(park, registry) for p, park in registry.parks.items()}
        self.subscribed = asyncio.Event()
        self.intervals_written = 0
        self.outage = OutageLog(log, f"MQTT broker at {settings.mqtt.url}")

    async def run(self) -> None:
        s = self.settings
        async with InfluxWriter(s.influx, flush_interval_s=1.0) as writer:
            await ensure_database(s.influx, log)
            ticker = asyncio.create_task(self._close_due(writer), name="demand-ticker")
            try:
                backoff = Backoff()
                while True:
                    try:
                        await self._session(writer)
                    except aiomqtt.MqttError as exc:
                        self.subscribed.clear()
                        self.outage.failed(exc)
                        await asyncio.sleep(backoff.next_delay())
            finally:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)

    async def _session(self, writer: InfluxWriter) -> None:
        async with mqtt.client(self.settings.mqtt, self.settings.client_id) as client:
            for park in self.parks:
                await client.subscribe(topics.data_filter(park), qos=1)
            self.outage.recovered()
            self.subscribed.set()
            async for message in client.messages:
                await self._handle(message, writer)

    async def _handle(self, message: aiomqtt.Message, writer: InfluxWriter) -> None:
        try:
            data_topic = topics.parse_data_topic(str(message.topic))
        except topics.TopicError:
            return
        demand = self.parks.get(data_topic.park)
        payload = message.payload
        if demand is None or not isinstance(payload, bytes | bytearray):
            return
        # the same validation as ingest: analytics only ever sees readings ingest would store
        parsed = parse_batch(bytes(payload), data_topic, self.registry, int(time.time() * 1000))
        index = demand.windows.index
        rows = [(index[r.meter.id], r.t, r.q["p_kw"]) for r in parsed.readings if "p_kw" in r.q]
        if not rows:
            return
        arr = np.array(rows, dtype=np.float64)
        closed = demand.windows.add(
            arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2]
        )
        await self._write(writer, demand, closed)

    async def _close_due(self, writer: InfluxWriter) -> None:
        grace_ms = int(self.settings.grace_s * 1000)
        while True:
            await asyncio.sleep(self.settings.tick_s)
            now_ms = int(time.time() * 1000)
            for demand in self.parks.values():
                await self._write(writer, demand, demand.windows.close_due(now_ms, grace_ms))

    async def _write(
        self, writer: InfluxWriter, demand: ParkDemand, closed: list[DemandInterval]
    ) -> None:
        if not closed:
            return
        try:
            await writer.write(demand.lines(closed))
        except InfluxError as exc:
            # the writer retries outages itself; this is the database refusing the data,
            # which retrying cannot change: say so and keep computing
            log.error("demand intervals refused by InfluxDB, dropped: %s", exc)
            return
        self.intervals_written += len(closed)


async def run_analytics(settings: AnalyticsSettings) -> None:
    await AnalyticsService(settings, SiteRegistry.from_files(settings.sites)).run()
