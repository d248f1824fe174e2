"""Scoring detectors: the Numenta Anomaly Benchmark's method (``nab``) and its harness
(``nab_runner``); the simulator's ground truth (``ground_truth``)."""
