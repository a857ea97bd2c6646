"""Chaos fixtures: the suite's own PostgreSQL and Redis (so it may restart and flush them), target
databases with real rows, and per test a fresh metadata database, an API and a process cluster.

A scenario runs on Redis unless it is parametrized (indirectly, through `chaos`) with
{"broker": "rabbitmq"}: then on the RabbitMQ of PLANCHECK_TEST_AMQP_URL (CI sets it; without it such
a scenario is skipped, with the reason in the summary)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text

from tests.chaos.harness import (
    ChaosCluster,
    ChaosPostgres,
    ChaosRedis,
    Targets,
    report_path,
    wait_ready,
)
from tests.processes import Process, delete_queue, plancheck_env

TARGET_ROWS = 2000
# The fast target is never locked; the slow ones are, by the scenarios' LockCycler (the first two
# serve the steady plan stream, all of them the fanned-out plans).
TARGET_NAMES = ("chaos_fast", *(f"chaos_slow_{letter}" for letter in "abcdefgh"))
STREAM_SLOW = 2
INSTANCE = "chaos"
PROJECT = "shop"
MAX_ATTEMPTS = "5"  # a run may be hit by several faults in one scenario; stated in the report


@pytest.fixture(scope="session")
def chaos_pg() -> Iterator[ChaosPostgres]:
    # Not under pytest's basetemp: every pytest session that starts (ours or a concurrent one) resets
    # /tmp/pytest-of-<user> to mode 0700, and the server, which runs as another user when the tests
    # run as root, would lose its data directory.
    root = Path(tempfile.mkdtemp(prefix="plancheck-chaos-pg-"))
    server = ChaosPostgres(root / "pgdata")
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def chaos_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosRedis]:
    server = ChaosRedis(tmp_path_factory.mktemp("chaos-redis"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def chaos_targets(chaos_pg: ChaosPostgres) -> dict[str, str]:
    """Target databases on the chaos server, each with an analyzed `items` table; name -> URL."""
    urls: dict[str, str] = {}
    admin = create_engine(chaos_pg.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in TARGET_NAMES:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    for name in TARGET_NAMES:
        urls[name] = chaos_pg.url(name)
        with psycopg.connect(urls[name].replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, price numeric)")
            conn.execute(
                "INSERT INTO items SELECT g, 'item ' || g, g %% 100 FROM generate_series(1, %s) g", (TARGET_ROWS,)
            )
            conn.execute("ANALYZE items")
    return urls


@pytest.fixture(scope="session")
def chaos_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = report_path(tmp_path_factory.getbasetemp())
    print(f"\nchaos report: {path}")
    return path


@dataclass
class Chaos:
    pg: ChaosPostgres
    redis: ChaosRedis
    env: dict[str, str]
    api: object  # plancheck.api.Plancheck
    cluster: ChaosCluster
    targets: Targets
    target_urls: dict[str, str]
    report: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def engine(self) -> Engine:
        return self.api.engine  # type: ignore[attr-defined]

    def start(self, workers: int = 2, beats: int = 2, concurrency: int = 2) -> tuple[list[Process], list[Process]]:
        started_workers = [self.cluster.worker(f"w{i}", concurrency) for i in range(1, workers + 1)]
        started_beats = [self.cluster.beat(f"b{i}") for i in range(1, beats + 1)]
        for process in started_workers + started_beats:
            wait_ready(process)
        self.cluster.supervise()
        return started_workers, started_beats

    def logs(self) -> list[str]:
        return list(self.cluster.logs().values())

    @property
    def slow_urls(self) -> list[str]:
        """The slow targets of the plan stream."""
        return [self.target_urls[name] for name in TARGET_NAMES[1 : 1 + STREAM_SLOW]]

    @property
    def fanout_urls(self) -> list[str]:
        """Every slow target: what the fanned-out plans check."""
        return [self.target_urls[name] for name in TARGET_NAMES[1:]]

    @property
    def broker_url(self) -> str:
        return self.env["PLANCHECK_BROKER_URL"]

    @property
    def queue(self) -> str:
        return self.env["PLANCHECK_QUEUE"]

    @property
    def on_broker(self) -> str:
        """A scenario name's suffix: empty on Redis (the default), " (RabbitMQ)" on RabbitMQ."""
        return "" if self.broker_url.startswith("redis") else " (RabbitMQ)"


@pytest.fixture
def chaos(
    request: pytest.FixtureRequest,
    chaos_pg: ChaosPostgres,
    chaos_redis: ChaosRedis,
    chaos_targets: dict[str, str],
    chaos_report: Path,
    tmp_path: Path,
) -> Iterator[Chaos]:
    from plancheck.api import Plancheck
    from plancheck.core.settings import load_settings
    from plancheck.store.db import upgrade
    from tests.integration.helpers import register_target

    overrides = dict(getattr(request, "param", None) or {})
    broker_url = _broker(overrides.pop("broker", "redis"), chaos_redis)
    chaos_redis.client().flushall()
    meta = f"chaos_meta_{uuid.uuid4().hex[:8]}"
    admin = create_engine(chaos_pg.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{meta}"'))
    meta_url = chaos_pg.url(meta)
    upgrade(meta_url)

    env = plancheck_env(meta_url, broker_url, **{"PLANCHECK_MAX_ATTEMPTS": MAX_ATTEMPTS, **overrides})
    api = Plancheck(load_settings(env))
    for name in TARGET_NAMES:
        register_target(api, chaos_targets[name], name, project=PROJECT, instance=INSTANCE)
    names = [f"{INSTANCE}/{name}" for name in TARGET_NAMES]
    targets = Targets(fast=names[0], slow=tuple(names[1 : 1 + STREAM_SLOW]), fanout=tuple(names[1:]))
    cluster = ChaosCluster(env, tmp_path)
    try:
        yield Chaos(chaos_pg, chaos_redis, env, api, cluster, targets, chaos_targets, chaos_report)
    finally:
        cluster.stop_all()
        api.engine.dispose()
        admin.dispose()  # its pooled connection may predate a PostgreSQL restart
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{meta}" WITH (FORCE)'))
        admin.dispose()
        delete_queue(broker_url, env["PLANCHECK_QUEUE"])


def _broker(kind: str, redis_server: ChaosRedis) -> str:
    if kind == "redis":
        return redis_server.url
    url = os.environ.get("PLANCHECK_TEST_AMQP_URL")
    if not url:
        pytest.skip("RabbitMQ scenario: set PLANCHECK_TEST_AMQP_URL=amqp://user:password@host:5672// to run it")
    return url
