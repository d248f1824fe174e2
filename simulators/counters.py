"""Cumulative registers: every counter integrates its published instantaneous value.

The trapezoid rule, sample to sample, exactly as generated: ``e_kwh[k] = e_kwh[k−1] +
(p⁺[k−1] + p⁺[k]) / 2 × Δt_h`` (GJ from kW with 0.0036), carried from one call to the next, so
stepping one timestamp at a time and a block at once give the same floats. Installed meters show
some history: each counter opens at a seeded reading.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from simulators.physics.noise import uniform

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
U64Array = npt.NDArray[np.uint64]

HOUR_MS = 3_600_000

# counter -> (instantaneous source, factor to the counter's unit per hour, which part:
# +1 positive, -1 negative, 0 all)
COUNTERS: dict[str, tuple[str, float, int]] = {
    "e_kwh": ("p_kw", 1.0, 1),
    "e_export_kwh": ("p_kw", 1.0, -1),
    "vol_m3": ("flow_m3h", 1.0, 0),
    "vol_nm3": ("flow_nm3h", 1.0, 0),
    "steam_t": ("steam_th", 1.0, 0),
    "heat_gj": ("heat_kw", 0.0036, 0),  # kWh -> GJ
}

OPENING = {  # order of magnitude of a counter's opening reading
    "e_kwh": 1e6,
    "e_export_kwh": 1e5,
    "vol_m3": 1e5,
    "vol_nm3": 1e5,
    "steam_t": 1e4,
    "heat_gj": 1e4,
}


class Counters:
    """The counters among a model's series, integrated from call to call.

    ``columns``: which series are counters; ``quantities``: each of those columns' quantity;
    ``meters``: each one's meter index; ``keys``: every meter's noise key (for the opening
    readings).
    """

    def __init__(
        self,
        columns: IntArray,
        quantities: Sequence[str],
        meters: IntArray,
        keys: U64Array,
    ) -> None:
        self.columns = columns
        self.meters = meters
        sources = [COUNTERS[q] for q in quantities]
        self.source = [s[0] for s in sources]
        self._factor = np.array([s[1] for s in sources])
        self._part = np.array([s[2] for s in sources])
        # seeded opening readings, kept small enough for a 32-bit litre or 0.01-unit register
        opening = uniform(np.array([7]), keys[meters] ^ columns.astype(np.uint64))[0]
        scale = np.array([OPENING.get(q, 1e4) for q in quantities])
        self._total = np.round(scale * (0.1 + 0.9 * opening), 1)
        self._prev_t: int | None = None
        self._prev_rate = np.zeros(columns.size)

    def integrate(self, t: IntArray, instant: dict[str, FloatArray]) -> FloatArray:
        """Every counter at ``t`` from the instantaneous values ``instant[quantity][time,
        meter]``, carried on from the last call."""
        rate = np.empty((t.size, self.columns.size))
        for k, (source, meter) in enumerate(zip(self.source, self.meters, strict=True)):
            rate[:, k] = instant[source][:, meter]
        part = self._part
        rate = np.where(part > 0, np.maximum(rate, 0.0), rate)
        rate = np.where(part < 0, np.maximum(-rate, 0.0), rate)
        rate *= self._factor
        if self._prev_t is None:
            self._prev_t, self._prev_rate = int(t[0]), rate[0].copy()
        # a caller whose clock repeats or steps back (a wall clock) holds the counters
        dt_h = np.maximum(np.diff(t, prepend=self._prev_t), 0) / HOUR_MS
        before = np.vstack([self._prev_rate[None, :], rate[:-1]])
        steps = (before + rate) / 2 * dt_h[:, None]
        # the running total starts from the carried counter, added in order, so stepping one
        # timestamp at a time and a block at once give the same floats
        out = np.cumsum(np.vstack([self._total[None, :], steps]), axis=0)[1:]
        self._total = out[-1].copy()
        self._prev_t, self._prev_rate = int(t[-1]), rate[-1].copy()
        return out
