"""API settings (env prefix ``PW_API_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from parkwatch.settings import ServiceSettings


class ApiSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PW_API_", env_nested_delimiter="__", extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65_535)
    max_points: int = Field(default=10_000, ge=1)  # buckets one series request may return
    rollup_retention_policy: str | None = "rollups"  # where the accounting's rollups are
