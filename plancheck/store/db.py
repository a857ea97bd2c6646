"""Engines and migrations for the metadata database."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine

from plancheck.core.conninfo import engine_url

if TYPE_CHECKING:
    from alembic.config import Config

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def create_metadata_engine(url: str, **options: Any) -> Engine:
    """An engine on the metadata database, connected from the URL's keyword parameters: a password
    with spaces, `@`, `%` or quotes works, and the URL is never rendered back to text."""
    return create_engine(engine_url(url), **options)


@cache
def _engine(url: str, pid: int) -> Engine:
    # A connect gives up after a while: beat's maintenance and heartbeats must not hang on a network
    # partition (an unreachable server refuses at once anyway).
    return create_metadata_engine(
        url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args={"connect_timeout": 10}
    )


def engine_for(url: str) -> Engine:
    """One pooled engine per URL and process: a forked Celery pool child never reuses its parent's sockets."""
    return _engine(url, os.getpid())


@cache
def _probe_engine(url: str, pid: int, timeout: int) -> Engine:
    return create_metadata_engine(
        url,
        pool_size=1,
        max_overflow=2,
        pool_pre_ping=True,
        connect_args={"connect_timeout": timeout, "options": f"-c statement_timeout={timeout * 1000}"},
    )


def probe_engine(url: str, timeout: int = 3) -> Engine:
    """An engine whose connects and statements give up within `timeout` seconds.

    Scrapes, `plancheck status` and beat heartbeats must report an unreachable database, not hang
    on it; one engine per process so a fork never shares sockets.
    """
    return _probe_engine(url, os.getpid(), timeout)


def migrations_dir() -> Path:
    """The Alembic migrations: the repository's top-level alembic/, which a wheel ships as
    plancheck/migrations (pyproject.toml), so an installed plancheck migrates from any directory."""
    for candidate in (PACKAGE_DIR / "migrations", PACKAGE_DIR.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise RuntimeError(f"plancheck's migrations are missing from {PACKAGE_DIR}: reinstall plancheck")


def alembic_config(url: str) -> Config:
    """Alembic's configuration for `url`, built in code: alembic.ini is for `alembic` run in a checkout.
    Alembic is imported here, not with the module: reading runs needs no migration tooling."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = url
    config.attributes["skip_logging_config"] = True
    return config


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def current_revision(url: str, engine: Engine | None = None) -> str | None:
    """The schema revision of the metadata database (through `engine` if given, e.g. one with timeouts)."""
    from alembic.runtime.migration import MigrationContext

    with (engine or engine_for(url)).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(url: str) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()
