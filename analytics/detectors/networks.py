"""Zones of a park's networks as arrays: a zone's consumption, for every zone at once.

A zone (``zones:`` in park.yaml, :class:`parkwatch.site.NetworkZone`) consumes
``Σ inflow − Σ outflow − Σ area · d(level)/dt``: what came in, less what left through its
outflow meters, less what went into storage. :class:`ZoneLayout` turns the zones into one row
per flow or level series and two matrices, so that :func:`zone_net` is two matrix products per
block of slots whatever the number of zones.

A level is differenced between consecutive slots (the previous block's last level is carried),
so over any run of slots the storage term telescopes to ``area · (last − first level)``: an
hour's mean consumption is exact however noisy or coarsely resolved the level is. A slot where
one of a zone's series has no reading, or a level outside the tank's range (a level meter's
fault, not water), gives that zone no consumption for the slot: NaN, never a guess.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analytics.engine.contract import FloatArray, ParkContext, SeriesKey
from parkwatch.quantities import Utility
from parkwatch.site import NetworkZone

BoolArray = npt.NDArray[np.bool_]
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class ZoneLayout:
    """The zones of some utilities, their series and the matrices that add them up."""

    zones: list[NetworkZone]
    series: list[SeriesKey]  # flow rows, then level rows
    sign: FloatArray  # [zones, rows]: +1 an inflow, −1 an outflow
    area: FloatArray  # [zones, rows]: a tank's cross-section on its level row, m²
    is_level: BoolArray  # [rows]
    level_low: FloatArray  # [rows]: a tank's working range (−inf/inf for flow rows)
    level_high: FloatArray

    @classmethod
    def of(cls, ctx: ParkContext, utilities: Collection[Utility] | None = None) -> ZoneLayout:
        zones = [z for z in ctx.park.zones if utilities is None or z.utility in utilities]
        flows: list[SeriesKey] = []
        levels: list[SeriesKey] = []
        for zone in zones:
            for meter in [*zone.inflow, *zone.outflow]:
                key = SeriesKey(meter, zone.flow_quantity)
                if key not in flows:
                    flows.append(key)
            for tank in zone.tanks:
                key = SeriesKey(tank.level, "level_m")
                if key not in levels:
                    levels.append(key)
        series = flows + levels
        row = {k: i for i, k in enumerate(series)}
        sign = np.zeros((len(zones), len(series)))
        area = np.zeros((len(zones), len(series)))
        low = np.full(len(series), -np.inf)
        high = np.full(len(series), np.inf)
        for z, zone in enumerate(zones):
            for meter in zone.inflow:
                sign[z, row[SeriesKey(meter, zone.flow_quantity)]] += 1.0
            for meter in zone.outflow:
                sign[z, row[SeriesKey(meter, zone.flow_quantity)]] -= 1.0
            for tank in zone.tanks:
                r = row[SeriesKey(tank.level, "level_m")]
                area[z, r] = tank.area
                low[r] = tank.min_m
                high[r] = np.inf if tank.max_m is None else tank.max_m
        is_level = np.zeros(len(series), dtype=bool)
        is_level[len(flows) :] = True
        return cls(zones, series, sign, area, is_level, low, high)

    @property
    def uses(self) -> BoolArray:
        """[zones, rows]: which series each zone's consumption needs."""
        uses: BoolArray = (self.sign != 0) | (self.area != 0)
        return uses


def zone_net(
    layout: ZoneLayout, values: FloatArray, last_level: FloatArray, step_ms: int
) -> tuple[FloatArray, FloatArray]:
    """Each zone's consumption in each slot ``[zones, slots]`` (in its flow unit, per hour)
    from its series' slot values ``[rows, slots]``, and the level rows' last values to carry
    to the next block. ``last_level`` is the level of each row in the slot before the block
    (NaN: unknown)."""
    slots = values.shape[1]
    levels = np.where(
        (values >= layout.level_low[:, None]) & (values <= layout.level_high[:, None]),
        values,
        np.nan,
    )
    previous = np.concatenate([last_level[:, None], levels[:, :-1]], axis=1)
    # level rows: metres per hour of rise; flow rows: the flow itself
    step_h = step_ms / HOUR_MS
    per_hour = np.where(layout.is_level[:, None], (levels - previous) / step_h, values)
    missing = ~np.isfinite(per_hour)
    filled = np.where(missing, 0.0, per_hour)
    net = layout.sign @ filled - layout.area @ filled
    gaps = layout.uses.astype(np.float64) @ missing.astype(np.float64)
    net[gaps > 0] = np.nan
    carry = np.where(layout.is_level, levels[:, -1] if slots else last_level, np.nan)
    return net, carry
