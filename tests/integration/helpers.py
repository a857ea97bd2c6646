"""Shared set-up for integration tests: a target database with real rows, registered in plancheck."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from plancheck.api import Plancheck
from plancheck.checks.session import libpq_url
from plancheck.store import claims, workers
from plancheck.store.claims import ClaimedRun


@dataclass(frozen=True)
class TargetDatabase:
    url: str
    name: str
    instance: str

    @property
    def target(self) -> str:
        return f"{self.instance}/{self.name}"


def make_target(create_database: Callable[[str], str], rows: int = 1000) -> tuple[str, str]:
    """A database with an `items` table of `rows` rows, analyzed; returns (url, name)."""
    url = create_database("target")
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, price numeric)")
        conn.execute("INSERT INTO items SELECT g, 'item ' || g, g %% 100 FROM generate_series(1, %s) g", (rows,))
        conn.execute("ANALYZE items")
    return url, make_url(url).database or ""


def register_target(
    api: Plancheck, url: str, name: str, project: str = "shop", instance: str = "local"
) -> TargetDatabase:
    """Create the project (if needed), the instance and the database in plancheck's catalog."""
    with api.engine.begin() as conn:
        if conn.execute(text("SELECT 1 FROM project WHERE key = :k"), {"k": project}).first() is None:
            api.create_project(project)
        if conn.execute(text("SELECT 1 FROM instance WHERE key = :k"), {"k": instance}).first() is None:
            api.add_instance(instance, url)
    api.sync_instance(instance, project)
    api.set_database(f"{instance}/{name}", project=project)
    return TargetDatabase(url, name, instance)


def hold_lock(url: str, table: str = "items") -> psycopg.Connection:
    """Hold an ACCESS EXCLUSIVE lock on `table` until the returned connection rolls back."""
    conn = psycopg.connect(libpq_url(url))
    conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    return conn


def claim_directly(conn: Connection, batch: int, lease_seconds: float) -> list[ClaimedRun]:
    """Claim runs as a claimer would, whatever slots the live workers have: the tests that claim by
    hand lend the claim slots of a stand-in worker for this one statement."""
    workers.record(conn, STAND_IN_WORKER, 1_000_000)
    try:
        return claims.claim(conn, batch, lease_seconds, stale_seconds=60).runs
    finally:
        workers.forget(conn, STAND_IN_WORKER)


STAND_IN_WORKER = "stand-in@tests"
