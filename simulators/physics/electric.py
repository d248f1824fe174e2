"""Electricity: rooftop PV, a battery doing peak/valley arbitrage, and reactive power.

Sign: power drawn through a meter towards its loads is positive, so PV generation and battery
discharge are negative.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

PV_PERFORMANCE_RATIO = 0.8
BATTERY_HOURS = 2.0  # energy / power of the battery
BATTERY_EFFICIENCY = 0.95  # each way
BATTERY_AUX_SHARE = 0.003  # BMS and container HVAC, drawn all the time
# state of charge over a local day: charge in the night valley, discharge in the two peaks,
# top up at noon (flat tariff, PV surplus); the same every day, so it never drifts
SOC_HOURS = np.array([0.0, 1.0, 5.0, 10.0, 12.0, 14.0, 18.0, 21.0, 24.0])
SOC_PCT = np.array([20.0, 20.0, 90.0, 90.0, 40.0, 65.0, 65.0, 20.0, 20.0])


def pv(irradiance: FloatArray, kwp: FloatArray, noise: FloatArray) -> FloatArray:
    """PV output (negative: generation) from the irradiance ``[time, 1]`` in W/m²."""
    sun = irradiance / 1000 * PV_PERFORMANCE_RATIO
    return -kwp * sun * (1 + 0.01 * noise)


def state_of_charge(tod: FloatArray) -> FloatArray:
    """The battery's state of charge in % at each local hour of the day."""
    soc: FloatArray = np.interp(tod, SOC_HOURS, SOC_PCT)
    return soc


def battery(tod: FloatArray, rated_kw: FloatArray) -> FloatArray:
    """Battery power ``[time, battery]``: what follows the state-of-charge curve, with the
    losses on each way, plus its auxiliaries."""
    segment = np.clip(np.searchsorted(SOC_HOURS, tod, side="right") - 1, 0, 7)
    slope = (np.diff(SOC_PCT) / np.diff(SOC_HOURS))[segment]  # % per hour
    per_kw = np.where(
        slope > 0,
        BATTERY_HOURS * slope / 100 / BATTERY_EFFICIENCY,
        BATTERY_HOURS * slope / 100 * BATTERY_EFFICIENCY,
    )
    return rated_kw * (per_kw[:, None] + BATTERY_AUX_SHARE)


def tan_phi(pf: float) -> float:
    """Reactive over active power at a power factor."""
    return math.tan(math.acos(pf))


def power_factor(p: FloatArray, q: FloatArray) -> FloatArray:
    """``|p| / sqrt(p² + q²)``, 1 when both are 0."""
    apparent = np.hypot(p, q)
    return np.where(apparent > 1e-9, np.abs(p) / np.maximum(apparent, 1e-12), 1.0)
