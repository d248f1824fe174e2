"""Simulated parks: a load model with ground truth, Modbus and MQTT meters, load generation."""

from pathlib import Path

DEMO_PARK = Path(__file__).resolve().parent / "parks" / "demo.yaml"
