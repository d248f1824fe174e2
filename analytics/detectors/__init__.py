"""Detectors: each follows ``analytics.engine.contract``; ``DETECTORS`` is what the engine runs."""

from __future__ import annotations

from analytics.detectors.baseline import BaselineDetector
from analytics.detectors.leaks import ZoneLeaks
from analytics.detectors.meter_faults import MeterFaults
from analytics.detectors.peaks import CoincidentPeaks, Peaks
from analytics.detectors.shift import ShiftDetector
from analytics.detectors.waste_heat import WasteHeat
from analytics.engine.contract import Detector

DETECTORS: list[type[Detector]] = [
    Peaks,
    CoincidentPeaks,
    MeterFaults,
    BaselineDetector,
    ShiftDetector,
    ZoneLeaks,
    WasteHeat,
]
