"""Detectors: each follows ``analytics.engine.contract``."""

from __future__ import annotations

from analytics.detectors.baseline import BaselineDetector
from analytics.engine.contract import Detector

DETECTORS: list[type[Detector]] = [BaselineDetector]
