"""Settings from the environment, validated once, with a clear error naming the bad variable."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

T = TypeVar("T", int, float)


class SettingsError(ValueError):
    """An environment variable holds a value plancheck cannot use."""


DEFAULT_DATABASE_URL = "postgresql+psycopg://root@127.0.0.1:5432/plancheck"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Settings:
    database_url: str
    broker_url: str
    claim_batch: int
    claim_interval: float
    reap_interval: float
    relay_interval: float
    lease_seconds: float
    heartbeat_seconds: float
    max_attempts: int
    chunk_size: int
    log_format: str
    queue: str


def sqlalchemy_url(url: str) -> str:
    """Accept libpq-style postgresql:// URLs and pin the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _database_url(raw: str, name: str) -> str:
    url = sqlalchemy_url(raw)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SettingsError(f"{name} is not a database URL (expected postgresql://user@host:port/db)") from None
    if parsed.get_backend_name() != "postgresql":
        raise SettingsError(f"{name} must be a postgresql:// URL, not {parsed.get_backend_name()}://")
    return url


REDIS_SCHEMES = ("redis://", "rediss://", "redis+socket://")
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")
_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def _broker_url(raw: str, name: str) -> str:
    if not raw.startswith(REDIS_SCHEMES + AMQP_SCHEMES):
        raise SettingsError(f"{name} must be a redis:// or amqp:// URL")
    return raw


def _queue(raw: str, name: str) -> str:
    if not _QUEUE_NAME.fullmatch(raw):
        raise SettingsError(f"{name}={raw!r} must be 1-63 letters, digits, '_', '.' or '-' (a letter or digit first)")
    return raw


def _number(env: Mapping[str, str], name: str, default: T, kind: Callable[[str], T], minimum: T) -> T:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r} must be at least {minimum}")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    log_format = env.get("PLANCHECK_LOG_FORMAT", "text") or "text"
    if log_format not in ("text", "json"):
        raise SettingsError(f"PLANCHECK_LOG_FORMAT={log_format!r} must be 'text' or 'json'")
    lease = _number(env, "PLANCHECK_LEASE_SECONDS", 15.0, float, 1.0)
    heartbeat = _number(env, "PLANCHECK_HEARTBEAT_SECONDS", 2.0, float, 0.1)
    if heartbeat >= lease:
        raise SettingsError(
            f"PLANCHECK_HEARTBEAT_SECONDS ({heartbeat}) must be shorter than PLANCHECK_LEASE_SECONDS ({lease})"
        )
    claim_interval = _number(env, "PLANCHECK_CLAIM_INTERVAL", 2.0, float, 0.1)
    return Settings(
        database_url=_database_url(env.get("PLANCHECK_DATABASE_URL") or DEFAULT_DATABASE_URL, "PLANCHECK_DATABASE_URL"),
        broker_url=_broker_url(env.get("PLANCHECK_BROKER_URL") or DEFAULT_BROKER_URL, "PLANCHECK_BROKER_URL"),
        claim_batch=_number(env, "PLANCHECK_CLAIM_BATCH", 20, int, 1),
        claim_interval=claim_interval,
        reap_interval=_number(env, "PLANCHECK_REAP_INTERVAL", 2.0, float, 0.1),
        relay_interval=_number(env, "PLANCHECK_RELAY_INTERVAL", 5.0, float, 0.1),
        lease_seconds=lease,
        heartbeat_seconds=heartbeat,
        max_attempts=_number(env, "PLANCHECK_MAX_ATTEMPTS", 3, int, 1),
        chunk_size=_number(env, "PLANCHECK_CHUNK_SIZE", 20, int, 1),
        log_format=log_format,
        queue=_queue(env.get("PLANCHECK_QUEUE") or "plancheck", "PLANCHECK_QUEUE"),
    )
