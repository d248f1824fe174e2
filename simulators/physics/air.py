"""Compressed air: screw compressors under load/unload control feeding one header.

The lead compressor takes the demand first, the next ones follow; the one that cannot run
full cycles between loaded (full power, full air) and unloaded (~28 % power, no air) while the
receiver pressure swings 6.5-7.5 bar. Demand beyond the capacity makes the pressure sag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from simulators.physics.noise import fast, slow

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
U64Array = npt.NDArray[np.uint64]

MINUTE_MS = 60_000
SPECIFIC_POWER_KW = 6.5  # kW per m³/min of free air delivery, a screw compressor
UNLOADED_SHARE = 0.28  # a screw compressor running unloaded still draws ~25-30 % of full power
DEFAULT_MOTOR_KW = 110.0  # a compressor motor without ``rated``


@dataclass(frozen=True)
class Compressor:
    electric: int  # meter index of the motor
    air: int  # meter index of its air output meter, -1 when it has none
    fad: float  # free air delivery, Nm³/h
    period_ms: int  # load/unload cycle at half duty
    phase: float


def fad(motor_kw: float) -> float:
    """Free air delivery of a screw compressor of this motor size, Nm³/h."""
    return motor_kw / SPECIFIC_POWER_KW * 60


def cycle_period_ms(k: int) -> int:
    """The k-th compressor's load/unload cycle: periods incommensurate with whole-minute
    polling, so samples see every phase."""
    return (257 + 113 * k) * 1000


@dataclass
class AirSystemState:
    """What :func:`run` works out for one system: every compressor's motor power and air,
    the air delivered in all, and the header pressure."""

    power: dict[int, FloatArray]  # motor meter -> kW
    air: dict[int, FloatArray]  # output meter -> Nm³/h
    delivered: FloatArray
    pressure: FloatArray


def run(
    t: IntArray,
    group: list[Compressor],
    activity: FloatArray,
    leak: FloatArray | None,
    motor_kw: FloatArray,
    keys: U64Array,
    system_key: U64Array,
) -> AirSystemState:
    """One enterprise's compressors over ``t``: demand follows production ``activity`` (plus
    any ``leak``, Nm³/h); ``motor_kw`` and ``keys`` are indexed by meter."""
    capacity = sum(c.fad for c in group)
    wander = 1 + 0.05 * slow(t, system_key ^ np.uint64(0xA1), 30 * MINUTE_MS)[:, 0]
    demand = capacity * (0.12 + 0.55 * activity) * wander
    if leak is not None:
        demand = demand + leak
    remaining = demand.copy()
    header = np.full(t.size, 7.0)
    trimmed = np.zeros(t.size, dtype=bool)
    total_air = np.zeros(t.size)
    power: dict[int, FloatArray] = {}
    air_out: dict[int, FloatArray] = {}
    for k, c in enumerate(group):
        duty = np.clip(remaining / c.fad, 0.0, 1.0)
        remaining = remaining - duty * c.fad
        phase = (t / c.period_ms + c.phase) % 1.0
        cycling = (duty > 0.001) & (duty < 0.999)
        loaded = (duty >= 0.999) | (cycling & (phase < duty))
        running = (duty > 0.001) | (k == 0)
        share = np.where(loaded, 1.0, np.where(running, UNLOADED_SHARE, 0.0))
        motor_keys = keys[[c.electric]]
        power[c.electric] = motor_kw[c.electric] * share * (1 + 0.01 * fast(t, motor_keys)[:, 0])
        air = c.fad * loaded * (1 + 0.01 * fast(t, motor_keys ^ np.uint64(0xA2))[:, 0])
        total_air += air
        if c.air >= 0:
            air_out[c.air] = air
        # the receiver fills while the trim compressor is loaded and empties while not
        saw = np.where(
            phase < duty,
            phase / np.maximum(duty, 1e-9),
            1 - (phase - duty) / np.maximum(1 - duty, 1e-9),
        )
        use = cycling & ~trimmed
        header = np.where(use, 6.5 + saw, header)
        trimmed |= use
    header = np.where(remaining > 1e-6, 6.2, header)  # demand beyond capacity: pressure sags
    return AirSystemState(power, air_out, total_air, header)
