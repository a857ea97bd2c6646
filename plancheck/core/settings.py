"""Settings from the environment, validated once by a schema, with a one-line error naming the bad variable.

Adding a setting is one line in `Settings`: its type, default, bounds and environment variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from plancheck.core.conninfo import InvalidURL, connection_params

DEFAULT_DATABASE_URL = "postgresql+psycopg://root@127.0.0.1:5432/plancheck"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
REDIS_SCHEMES = ("redis://", "rediss://", "redis+socket://")
BROKER_SCHEMES = (*REDIS_SCHEMES, "amqp://", "amqps://", "pyamqp://")
MAX_URL_LENGTH = 4096
DAY = 86_400.0
MIB = 1024 * 1024
MIN_SECRET_CHARS = 32


class SettingsError(ValueError):
    """An environment variable holds a value plancheck cannot use."""


def sqlalchemy_url(url: str) -> str:
    """Accept libpq-style postgresql:// URLs and pin the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _env(name: str, default: Any, **bounds: Any) -> Any:
    """A setting read from the environment variable `name`; `bounds` are pydantic's (ge, le, …)."""
    return Field(default, alias=name, **bounds)


class Settings(BaseModel):
    """Every setting of a plancheck process. URLs stay out of repr: they may hold passwords."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, allow_inf_nan=False, extra="ignore")

    database_url: str = _env("PLANCHECK_DATABASE_URL", DEFAULT_DATABASE_URL, max_length=MAX_URL_LENGTH, repr=False)
    broker_url: str = _env("PLANCHECK_BROKER_URL", DEFAULT_BROKER_URL, max_length=MAX_URL_LENGTH, repr=False)
    claim_batch: int = _env("PLANCHECK_CLAIM_BATCH", 20, ge=1, le=10_000)
    claim_interval: float = _env("PLANCHECK_CLAIM_INTERVAL", 2.0, ge=0.1, le=3600)
    reap_interval: float = _env("PLANCHECK_REAP_INTERVAL", 2.0, ge=0.1, le=3600)
    relay_interval: float = _env("PLANCHECK_RELAY_INTERVAL", 5.0, ge=0.1, le=3600)
    lease_seconds: float = _env("PLANCHECK_LEASE_SECONDS", 15.0, ge=1, le=DAY)
    heartbeat_seconds: float = _env("PLANCHECK_HEARTBEAT_SECONDS", 2.0, ge=0.1, le=3600)
    max_attempts: int = _env("PLANCHECK_MAX_ATTEMPTS", 3, ge=1, le=100)
    chunk_size: int = _env("PLANCHECK_CHUNK_SIZE", 20, ge=1, le=10_000)
    log_format: Literal["text", "json"] = _env("PLANCHECK_LOG_FORMAT", "text")
    queue: str = _env("PLANCHECK_QUEUE", "plancheck", max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    relay_delay: float = _env("PLANCHECK_RELAY_DELAY", 0.25, ge=0, le=60)
    beat_heartbeat_seconds: float = _env("PLANCHECK_BEAT_HEARTBEAT_SECONDS", 5.0, ge=0.5, le=3600)
    beat_stale_seconds: float = _env("PLANCHECK_BEAT_STALE_SECONDS", 30.0, ge=1, le=DAY)
    target_statement_timeout: float = _env("PLANCHECK_TARGET_STATEMENT_TIMEOUT", 5.0, ge=0.1, le=3600)
    target_lock_timeout: float = _env("PLANCHECK_TARGET_LOCK_TIMEOUT", 1.0, ge=0.01, le=3600)
    target_connect_timeout: int = _env("PLANCHECK_TARGET_CONNECT_TIMEOUT", 5, ge=1, le=300)
    target_idle_in_transaction_timeout: float = _env("PLANCHECK_TARGET_IDLE_IN_TRANSACTION_TIMEOUT", 60.0, ge=1, le=DAY)
    target_idle_connections: int = _env("PLANCHECK_TARGET_IDLE_CONNECTIONS", 4, ge=0, le=100)
    target_idle_seconds: float = _env("PLANCHECK_TARGET_IDLE_SECONDS", 30.0, ge=0, le=3600)
    max_sql_bytes: int = _env("PLANCHECK_MAX_SQL_BYTES", 16 * MIB, ge=1024, le=256 * MIB)
    review_max_bytes: int = _env("PLANCHECK_REVIEW_MAX_BYTES", 2 * MIB, ge=1024, le=64 * MIB)
    api_secret: str = _env("PLANCHECK_API_SECRET", "", max_length=MAX_URL_LENGTH, repr=False)
    session_seconds: int = _env("PLANCHECK_SESSION_SECONDS", 8 * 3600, ge=60, le=30 * 86_400)

    @field_validator("database_url")
    @classmethod
    def _postgresql(cls, url: str) -> str:
        url = sqlalchemy_url(url)
        try:
            connection_params(url)
        except InvalidURL as error:
            raise ValueError(str(error)) from None
        return url

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, url: str) -> str:
        if not url.startswith(BROKER_SCHEMES):
            raise ValueError("must be a Redis or RabbitMQ URL (" + ", ".join(BROKER_SCHEMES) + ")")
        return url

    @field_validator("api_secret")
    @classmethod
    def _long_secret(cls, secret: str) -> str:
        if secret and len(secret) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters")
        return secret

    @model_validator(mode="after")
    def _review_within_sql(self) -> Settings:
        if self.review_max_bytes > self.max_sql_bytes:
            raise ValueError(
                f"PLANCHECK_REVIEW_MAX_BYTES ({self.review_max_bytes}) must not exceed "
                f"PLANCHECK_MAX_SQL_BYTES ({self.max_sql_bytes})"
            )
        return self

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError(
                f"PLANCHECK_HEARTBEAT_SECONDS ({self.heartbeat_seconds:g}) must be shorter than "
                f"PLANCHECK_LEASE_SECONDS ({self.lease_seconds:g})"
            )
        return self


_SECRET_VARIABLES = frozenset({"PLANCHECK_DATABASE_URL", "PLANCHECK_BROKER_URL", "PLANCHECK_API_SECRET"})


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from `env` (default: the process environment); an empty variable means its default."""
    env = os.environ if env is None else env
    names = {field.alias for field in Settings.model_fields.values()}
    values = {name: value for name, value in env.items() if name in names and value != ""}
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        raise SettingsError(_message(error.errors()[0], values)) from None


def _message(error: ErrorDetails, values: Mapping[str, str]) -> str:
    """One line naming the variable and what it must be; URL values are not repeated (passwords)."""
    reason = error["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
    reason = reason.replace("String should have", "must have").replace("String should match pattern", "must match")
    if not error["loc"]:
        return reason
    name = str(error["loc"][0])
    field = next(field for field in Settings.model_fields.values() if field.alias == name)
    bounds = {type(item).__name__: item for item in field.metadata}
    kind = "a whole number" if field.annotation is int else "a number"
    if error["type"] in ("int_parsing", "float_parsing", "int_from_float"):
        reason = f"is not {kind}"
    elif "Ge" in bounds and "Le" in bounds:
        kind = "a whole number" if field.annotation is int else "a finite number"
        reason = f"must be {kind} from {bounds['Ge'].ge:g} to {bounds['Le'].le:g}"
    shown = name if name in _SECRET_VARIABLES else f"{name}={values.get(name, '')!r}"
    return f"{shown} {reason}"
