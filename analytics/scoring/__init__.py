"""Scoring detectors: NAB and the simulator's ground truth."""
