"""A gas-fired steam boiler: the gas its steam takes, its flue-gas temperature, and the steam
network's temperatures and pressures.

Flue gas runs hotter at high firing; fouling or excess air (the ``flue_temp_rise`` fault) adds
to it and costs efficiency, so the same steam burns more gas.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

GAS_LHV_MJ = 35.9  # MJ per Nm³ of natural gas
STEAM_MJ_PER_T = 2550.0  # MJ to raise a tonne of 10 bar steam from ~90 °C feedwater
BOILER_EFFICIENCY = 0.92
EFFICIENCY_LOSS_PER_K = 0.0005  # a boiler loses ~1 % efficiency per 20 K of flue-gas rise
DEFAULT_STEAM_TH = 10.0  # a boiler without ``rated``


def gas_nm3h(steam_th: FloatArray | float, efficiency: FloatArray | float) -> FloatArray:
    """Gas burnt for ``steam_th`` tonnes of steam an hour at ``efficiency``."""
    return np.asarray(steam_th * STEAM_MJ_PER_T / (GAS_LHV_MJ * efficiency))


def efficiency(flue_rise_k: FloatArray) -> FloatArray:
    return BOILER_EFFICIENCY - EFFICIENCY_LOSS_PER_K * flue_rise_k


def flue_c(load: FloatArray, flue_rise_k: FloatArray) -> FloatArray:
    """Flue-gas temperature before noise, at ``load`` (share of the rated steam)."""
    return 120 + 35 * load + flue_rise_k


def supply_c(slow_noise: FloatArray) -> FloatArray:
    return 184 + 0.5 * slow_noise  # saturated steam at 10 bar(a)


def feedwater_c(slow_noise: FloatArray, rise_k: FloatArray) -> FloatArray:
    return 88 + 1.5 * slow_noise + rise_k


def boiler_bar(slow_noise: FloatArray) -> FloatArray:
    return 9.5 + 0.1 * slow_noise


def network_bar(slow_noise: FloatArray) -> FloatArray:
    """Steam pressure at a consumer's meter, after the network's drop."""
    return 9.0 + 0.1 * slow_noise
