"""Ingest's per-chunk counts: kept as plain numbers on the hot path and folded into the
Prometheus metrics whenever the registry is read."""

from __future__ import annotations

from prometheus_client import generate_latest

from ingest.metrics import IngestMetrics
from parkwatch.influx import WriterStats


def test_chunk_counts_are_up_to_date_whenever_the_metrics_are_read() -> None:
    metrics = IngestMetrics()
    tally = metrics.tally
    tally.messages += 3
    tally.readings += 5
    tally.values += 9
    tally.in_progress += 4
    tally.lag = 1.5
    tally.latency(0.02)
    sample = metrics.registry.get_sample_value
    assert sample("pw_ingest_messages_total") == 3
    assert sample("pw_ingest_readings_total") == 5
    assert sample("pw_ingest_values_written_total") == 9
    assert sample("pw_ingest_messages_in_progress") == 4
    assert sample("pw_ingest_lag_seconds") == 1.5
    assert sample("pw_ingest_write_seconds_count") == 1
    # folded once: a second read adds nothing, later counts add to the first
    tally.messages += 2
    tally.in_progress -= 4
    text = generate_latest(metrics.registry).decode()
    assert "pw_ingest_messages_total 5.0" in text
    assert "pw_ingest_messages_in_progress 0.0" in text
    assert sample("pw_ingest_messages_total") == 5
    assert sample("pw_ingest_write_seconds_count") == 1


def test_latencies_waiting_for_a_read_stay_bounded() -> None:
    metrics = IngestMetrics()
    for _ in range(5000):
        metrics.tally.latency(0.01)
    assert len(metrics.tally.latencies) < 1024
    assert metrics.registry.get_sample_value("pw_ingest_write_seconds_count") == 5000


def test_writes_follow_the_writers_own_count() -> None:
    metrics = IngestMetrics()
    sample = metrics.registry.get_sample_value
    assert sample("pw_ingest_database_writes_total") == 0  # no writer yet
    stats = WriterStats(batches_written=7)
    metrics.tally.writer_stats = stats
    metrics.tally.writes_shown = stats.batches_written  # counted from the writer's start
    stats.batches_written += 3
    assert sample("pw_ingest_database_writes_total") == 3
    stats.batches_written += 2
    assert sample("pw_ingest_database_writes_total") == 5
    assert sample("pw_ingest_database_writes_total") == 5
