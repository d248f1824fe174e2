"""Scoring detectors against labelled data: the Numenta Anomaly Benchmark's method (``nab``)
and its harness (``nab_runner``)."""
