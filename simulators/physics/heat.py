"""Hot water and cooling water: heat meters and the cooling loop's temperatures.

A heat meter's power is ``1.163 × flow × (t_supply − t_return)``. The flow is what carries
the heat it would deliver at its design spread, so a heat-recovery unit that is bypassed (the
``heat_recovery_bypass`` fault) keeps its flow while its spread and power collapse; the heat it
no longer takes out ends up in the enterprise's cooling water, which returns hotter.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

RHO_C = 1.163  # kWh per m³ and kelvin: the heat water carries
DUMPED_K = 8.0  # how much hotter cooling water returns when all recoverable heat is dumped


def hot_water(
    basis_kw: FloatArray,
    heat_kw: FloatArray,
    rated_kw: FloatArray,
    recovery: BoolArray,
    slow_noise: FloatArray,
    rise_k: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(flow m³/h, supply °C, return °C) of heat meters delivering ``heat_kw`` where they
    would deliver ``basis_kw`` unbypassed. Heat recovery runs a 15 K design spread with a 40 °C
    return, other hot-water loops 20 K and 45 °C; the spread narrows at part load."""
    fraction = np.clip(basis_kw / np.maximum(rated_kw, 1e-9), 0, 1.2)
    nominal = np.where(recovery, 15.0, 20.0)
    spread = nominal * (0.6 + 0.4 * fraction)
    carried = np.maximum(basis_kw, 0.0) / (RHO_C * spread)
    back = np.where(recovery, 40.0, 45.0) + 0.8 * slow_noise
    back = back + rise_k
    gain = np.where(carried > 1e-9, heat_kw / (RHO_C * np.maximum(carried, 1e-9)), 0)
    return carried, back + gain, back


def cooling_water(
    t_air: FloatArray,
    slow_noise: FloatArray,
    activity: FloatArray,
    dumped: FloatArray,
    rise_k: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """(supply °C, return °C) of cooling-water meters ``[time, meter]``: the tower's supply
    follows the air temperature; the return is 6-10 K warmer with production, up to
    ``DUMPED_K`` more with the share of recoverable heat ``dumped``, plus any fault ``rise_k``."""
    supply = 28 + 0.25 * (t_air - 18)
    t_supply = supply[:, None] + 0.3 * slow_noise
    t_return = t_supply + 6 + 4 * activity + DUMPED_K * dumped[:, None] + rise_k
    return t_supply, t_return
