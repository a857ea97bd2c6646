"""Engines and migrations for the metadata database."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine

from plancheck.core.conninfo import engine_url

REPO_ROOT = Path(__file__).resolve().parents[2]


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


def alembic_config(url: str) -> Config:
    ini = REPO_ROOT / "alembic.ini"
    if not ini.exists():
        raise RuntimeError(
            f"alembic.ini not found at {ini}: install plancheck from a source checkout (pip install -e .)"
        )
    config = Config(str(ini))
    config.attributes["database_url"] = url
    config.attributes["skip_logging_config"] = True
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str, engine: Engine | None = None) -> str | None:
    """The schema revision of the metadata database (through `engine` if given, e.g. one with timeouts)."""
    with (engine or engine_for(url)).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()
