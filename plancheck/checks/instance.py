"""An instance's connection: its parameters with the password resolved, and the databases it holds."""

from __future__ import annotations

import os
from typing import NamedTuple

import psycopg
from psycopg.conninfo import make_conninfo

from plancheck.checks.target import TargetError
from plancheck.core.conninfo import InvalidURL, connection_params
from plancheck.core.redact import error_line, url_secrets

# The server's identity (pg_control_system: the cluster's system identifier, the same on every path to
# it and on its replicas) and the databases that accept connections, templates excluded.
_LIST_DATABASES = """
SELECT (SELECT system_identifier FROM pg_catalog.pg_control_system()), datname
FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname
"""


class ServerDatabases(NamedTuple):
    system_identifier: int
    names: list[str]


def validate_url(url: str) -> None:
    """A clear error for anything but a postgresql:// URL (or key=value string) plancheck can connect with."""
    try:
        connection_params(url)
    except InvalidURL as error:
        raise ValueError(f"instance URL {error}") from None


def resolve_url(url: str, password_env: str | None, database: str | None = None) -> str:
    """The libpq connection string (key=value, quoted) to connect with: the password from
    `password_env` when set, the database swapped in. Built from keyword parameters, so any character
    of a password survives; the result is a secret like the password itself."""
    try:
        params = connection_params(url)
    except InvalidURL as error:
        raise TargetError(f"the instance URL {error}", "Target unreachable") from None
    if password_env:
        password = os.environ.get(password_env)
        if password is None:
            raise TargetError(
                f"environment variable {password_env} (the instance password) is not set", "Target unreachable"
            )
        params["password"] = password
    if database is not None:
        params["dbname"] = database
    return make_conninfo(**params)


def list_databases(conninfo: str, connect_timeout_s: int = 5) -> ServerDatabases:
    """The instance's identity and the names of its databases that accept connections (templates excluded)."""
    try:
        with psycopg.connect(conninfo, connect_timeout=connect_timeout_s, autocommit=True) as conn:
            rows = conn.execute(_LIST_DATABASES).fetchall()
            return ServerDatabases(rows[0][0], [row[1] for row in rows])
    except psycopg.Error as exc:
        raise TargetError(error_line(exc, *url_secrets(conninfo)), "Target unreachable") from None
