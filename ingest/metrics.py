"""Ingest's Prometheus metrics, in a registry of their own (never the global one)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

from parkwatch.influx import WriterStats


class Tally:
    """What ingest counts per chunk of messages (one socket read), kept as plain numbers and
    folded into the metrics whenever the registry is read: an update of a Prometheus metric
    takes a lock and checks its argument (~0.5 µs, 1.4 for the histogram), and at one
    reading per message a chunk holds a few messages, so the chunk's seven updates cost
    ~1 µs per message in a ``bench ingest-path --chunk 4`` run. Registered as the registry's first
    collector, so that every read (a scrape, ``get_sample_value``) sees the counts up to
    date. Six updates become plain additions; the histogram's observations are only
    postponed (each still goes through ``Histogram.observe`` at the fold), and are folded
    early when many wait, so that memory stays bounded."""

    __slots__ = (
        "in_progress",
        "lag",
        "latencies",
        "messages",
        "metrics",
        "readings",
        "values",
        "writer_stats",
        "writes_shown",
    )

    def __init__(self, metrics: IngestMetrics) -> None:
        self.metrics = metrics
        self.messages = 0
        self.readings = 0
        self.values = 0
        self.in_progress = 0  # messages received, not yet acknowledged
        self.lag: float | None = None  # the newest value, set as it comes
        self.latencies: list[float] = []
        # the writer's own count of stored batches (set by the service), shown as a counter
        self.writer_stats: WriterStats | None = None
        self.writes_shown = 0

    def latency(self, seconds: float) -> None:
        self.latencies.append(seconds)
        if len(self.latencies) >= 1024:
            self.fold()

    def fold(self) -> None:
        m = self.metrics
        if self.messages:
            m.messages.inc(self.messages)
            self.messages = 0
        if self.readings:
            m.readings.inc(self.readings)
            self.readings = 0
        if self.values:
            m.values_written.inc(self.values)
            self.values = 0
        m.in_progress.set(self.in_progress)
        if self.lag is not None:
            m.lag.set(self.lag)
            self.lag = None
        if self.writer_stats is not None:
            added = self.writer_stats.batches_written - self.writes_shown
            if added > 0:
                m.writes.inc(added)
                self.writes_shown += added
        latencies, self.latencies = self.latencies, []
        for seconds in latencies:
            m.write_latency.observe(seconds)

    def collect(self) -> Iterable[Metric]:
        self.fold()
        return []


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # first: a read of the registry folds the hot path's counts in before the metrics
        self.tally = Tally(self)
        r.register(self.tally)
        self.messages = Counter("pw_ingest_messages", "MQTT messages received", registry=r)
        self.readings = Counter("pw_ingest_readings", "readings accepted for writing", registry=r)
        self.values_written = Counter(
            "pw_ingest_values_written", "quantity values stored in InfluxDB", registry=r
        )
        self.rejected = Counter(
            "pw_ingest_rejected", "rejections by reason", ["reason"], registry=r
        )
        self.deadletters = Counter(
            "pw_ingest_deadletters", "messages published to a dead-letter topic", registry=r
        )
        self.deadletters_failed = Counter(
            "pw_ingest_deadletters_failed",
            "dead letters that could not be published (rejections still counted above)",
            registry=r,
        )
        self.in_progress = Gauge(
            "pw_ingest_messages_in_progress", "messages received, not yet acknowledged", registry=r
        )
        self.write_latency = Histogram(
            "pw_ingest_write_seconds",
            "time from receiving a chunk of messages (one socket read) to its points being stored",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.lag = Gauge(
            "pw_ingest_lag_seconds",
            "age of the newest reading stored, by its source time",
            registry=r,
        )
        self.seq_tracking = Gauge(
            "pw_ingest_seq_tracking",
            "1 if this replica tracks each gateway's seq (gaps, late, replays, restarts, "
            "outliers); 0 with a share group, where it sees only part of each sequence",
            registry=r,
        )
        self.seq_gaps = Counter(
            "pw_ingest_seq_gaps", "batches missing between a gateway's seq numbers", registry=r
        )
        self.seq_replays = Counter(
            "pw_ingest_seq_replays",
            "batches whose seq was seen before (a re-delivery or a re-sent batch)",
            registry=r,
        )
        self.seq_late = Counter(
            "pw_ingest_seq_late",
            "batches that arrived after later ones of their gateway, filling a gap counted "
            "before (a gateway's backlog sent behind its live batches)",
            registry=r,
        )
        self.seq_restarts = Counter(
            "pw_ingest_seq_restarts",
            "gateways whose seq started again from a small number (a reinstall, a wiped buffer)",
            registry=r,
        )
        self.seq_outliers = Counter(
            "pw_ingest_seq_outliers",
            "batches numbered far ahead of their gateway's sequence that the gateway did not "
            "go on from (absurd or hostile numbers); ignored by the gap and replay counts",
            registry=r,
        )
        self.counter_decreases = Counter(
            "pw_ingest_counter_decreases",
            "counter values lower than their meter's previous reading (stored, flagged with "
            "quality decreased unless the gateway flagged the reading itself)",
            ["quantity"],
            registry=r,
        )
        self.broker_up = Gauge("pw_ingest_broker_up", "1 while connected to the broker", registry=r)
        # with pw_ingest_readings: the lines per write (issue 12: small batches cost InfluxDB
        # and ingest more per point)
        self.writes = Counter(
            "pw_ingest_database_writes", "batches InfluxDB stored (write requests)", registry=r
        )
        self.database_up = Gauge(
            "pw_ingest_database_up", "0 while InfluxDB writes are failing", registry=r
        )
