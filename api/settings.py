"""API settings (env prefix ``PW_API_``)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from parkwatch.energy import ROLLUP_RETENTION_POLICY
from parkwatch.settings import ServiceSettings


class ApiSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="PW_API_", env_nested_delimiter="__", extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65_535)
    max_points: int = Field(default=10_000, ge=1)  # buckets one series request may return
    rollup_retention_policy: str | None = ROLLUP_RETENTION_POLICY  # where the rollups are

    @field_validator("rollup_retention_policy")
    @classmethod
    def _default_policy(cls, value: str | None) -> str | None:
        # PW_..._ROLLUP_RETENTION_POLICY= (empty): the database's default policy
        return value or None
