"""Ingest: broker → validate → batch → InfluxDB, with dead letters for what is rejected."""
