"""An instance's connection: its URL with the password resolved, and the databases it holds."""

from __future__ import annotations

import os

import psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from plancheck.checks.session import TargetError, libpq_url
from plancheck.redact import redact, url_secrets
from plancheck.settings import sqlalchemy_url

_LIST_DATABASES = "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"


def validate_url(url: str) -> None:
    """A clear error for anything but a postgresql:// URL naming a host or socket."""
    try:
        parsed = make_url(sqlalchemy_url(url))
    except ArgumentError:
        raise ValueError("instance URL must look like postgresql://user[:password]@host:port/database") from None
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"instance URL must be postgresql://, not {parsed.get_backend_name()}://")


def resolve_url(url: str, password_env: str | None, database: str | None = None) -> str:
    """The URL to connect with: the password from `password_env` when set, the database swapped in."""
    parsed = make_url(sqlalchemy_url(url))
    if password_env:
        password = os.environ.get(password_env)
        if password is None:
            raise TargetError(
                f"environment variable {password_env} (the instance password) is not set", "Target unreachable"
            )
        parsed = parsed.set(password=password)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def list_databases(url: str, connect_timeout_s: int = 5) -> list[str]:
    """Names of the databases on the instance that accept connections (templates excluded)."""
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=connect_timeout_s, autocommit=True) as conn:
            return [row[0] for row in conn.execute(_LIST_DATABASES)]
    except psycopg.Error as exc:
        raise TargetError(redact(str(exc).strip(), *url_secrets(url)), "Target unreachable") from None
