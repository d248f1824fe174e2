"""Tariffs as data: what a unit of each utility costs the park.

``tariffs:`` in park.yaml. Today a flat price per utility, in ¥ per unit of the utility's main
counter (kWh, m³, Nm³, t, GJ); the accounting extends it with time-of-use periods, seasons,
tiers and demand charges. Detectors price their estimates through :func:`unit_price`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from parkwatch.quantities import Utility

if TYPE_CHECKING:
    from parkwatch.site import Park


class Tariffs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # ¥ per kWh, m³, Nm³, t or GJ; a utility without a price has no cost estimate
    prices: dict[Utility, float] = Field(default_factory=dict)


def unit_price(park: Park, utility: Utility, t_ms: int) -> float | None:
    """¥ per unit of ``utility`` at ``t_ms`` (None: the park has no price for it)."""
    del t_ms  # flat prices; time-of-use periods make it depend on the time
    return park.tariffs.prices.get(utility)
