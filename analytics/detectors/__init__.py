"""Detectors: each follows ``analytics.engine.contract``."""
