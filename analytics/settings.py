"""Analytics settings (env prefix ``PW_ANALYTICS_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from parkwatch.settings import ServiceSettings


class AnalyticsSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PW_ANALYTICS_", env_nested_delimiter="__", extra="ignore"
    )

    client_id: str = "analytics-0"
    # readings may arrive this long after their interval ended and still count
    grace_s: float = Field(default=60.0, ge=0)
    tick_s: float = Field(default=5.0, gt=0)  # how often windows are checked for closing
