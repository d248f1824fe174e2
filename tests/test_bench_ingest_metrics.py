"""``parkwatch bench ingest`` reads ingest's chunk sizes and chunk latency off its metrics, and
names the event loop ingest ran on."""

from __future__ import annotations

import pytest

from parkwatch_cli.bench import ingest_chunks, ingest_event_loop, metric_total

METRICS = """\
# HELP pw_ingest_messages_total MQTT messages received
pw_ingest_messages_total 300.0
pw_ingest_messages_created 1.7e9
pw_ingest_rejected_total{reason="bad_value"} 2.0
pw_ingest_rejected_total{reason="unknown_meter"} 1.0
pw_ingest_write_seconds_bucket{le="0.1"} 10.0
pw_ingest_write_seconds_count 12.0
pw_ingest_write_seconds_sum 3.0
pw_ingest_messages_total 100.0
pw_ingest_write_seconds_count 8.0
pw_ingest_write_seconds_sum 1.0
pw_ingest_readings_total 4000.0
pw_ingest_database_writes_total 3.0
pw_ingest_database_writes_created 1.7e9
pw_ingest_database_writes_total 2.0
"""


def test_totals_over_labels_and_replicas() -> None:
    assert metric_total(METRICS, "pw_ingest_rejected_total") == 3
    # not pw_ingest_messages_created, nor the in-progress gauge's name
    assert metric_total(METRICS, "pw_ingest_messages_total") == 400


def test_messages_per_chunk_and_chunk_latency() -> None:
    assert ingest_chunks(METRICS) == {
        "ingest_messages_per_chunk": 20.0,
        "ingest_received_to_stored_ms": 200.0,
        "ingest_writes": 5.0,
        "ingest_lines_per_write": 800,
    }
    assert ingest_chunks("") == {
        "ingest_messages_per_chunk": None,
        "ingest_received_to_stored_ms": None,
        "ingest_writes": 0.0,
        "ingest_lines_per_write": None,
    }


def test_report_names_the_event_loop_ingest_runs_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # the spawned ingest inherits the bench's environment (issue 12: the loops' figures differ)
    monkeypatch.delenv("PW_INGEST_EVENT_LOOP", raising=False)
    assert ingest_event_loop() == "asyncio"
    monkeypatch.setenv("PW_INGEST_EVENT_LOOP", "uvloop")
    assert ingest_event_loop() == "uvloop"
