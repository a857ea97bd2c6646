"""Test servers: real PostgreSQL and Redis, from PLANCHECK_TEST_* URLs or started embedded.

Every test run gets its own databases (created here, dropped at the end) and its own Redis database;
every test its own broker queue. With PLANCHECK_TEST_BROKER_URL=amqp://… the plancheck processes of
the tests use that RabbitMQ instead of Redis (tests of Redis itself are skipped then, saying so).
"""

from __future__ import annotations

import os
import random
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from plancheck.core.settings import sqlalchemy_url
from plancheck.devtools.embedded import start_postgres, start_redis

if TYPE_CHECKING:
    from plancheck.api import Plancheck
    from tests.processes import Cluster


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """SQLAlchemy URL of a maintenance database on the test PostgreSQL server.

    The embedded server's data lives outside pytest's temp dir: pytest resets that dir's mode at
    every session start, which would lock out pgserver's own (non-root) server user.
    """
    url = os.environ.get("PLANCHECK_TEST_DATABASE_URL")
    if url:
        yield sqlalchemy_url(url)
        return
    yield start_postgres(Path(tempfile.mkdtemp(prefix="plancheck-test-pg-")), cleanup=True)


@pytest.fixture(scope="session")
def create_database(pg_server_url: str) -> Iterator[Callable[[str], str]]:
    """Factory: a fresh, empty database on the test server; returns its SQLAlchemy URL."""
    admin = create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def create(prefix: str = "t") -> str:
        name = f"pc_{prefix}_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)

    yield create
    with admin.connect() as conn:
        for name in created:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Redis URL with a database of this run's own, flushed at the end."""
    url = os.environ.get("PLANCHECK_TEST_REDIS_URL")
    if url:
        base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
        run_url = f"{base}/{random.randint(1, 15)}"
        yield run_url
        redis.Redis.from_url(run_url).flushdb()
        return
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def broker_url(redis_server_url: str) -> str:
    """The broker plancheck's processes use: PLANCHECK_TEST_BROKER_URL (e.g. RabbitMQ), else the Redis."""
    return os.environ.get("PLANCHECK_TEST_BROKER_URL") or redis_server_url


@pytest.fixture
def redis_broker(broker_url: str) -> str:
    """For tests of Redis behaviour itself (queue items, restarts): the broker, which must be Redis."""
    if not broker_url.startswith("redis"):
        pytest.skip(f"needs the Redis broker; this pass runs on {broker_url.split(':', 1)[0]}")
    return broker_url


@pytest.fixture
def metadata_url(create_database: Callable[[str], str]) -> Iterator[str]:
    """A fresh metadata database migrated to head. The test's pooled connections to it are closed
    after the test: a shared server's connection slots are few, and hundreds of tests would keep
    their idle ones until the session ends."""
    from plancheck.store.db import engine_for, upgrade

    url = create_database("meta")
    upgrade(url)
    yield url
    engine_for(url).dispose()


@pytest.fixture
def plancheck_env(metadata_url: str, broker_url: str) -> Iterator[dict[str, str]]:
    """Environment for plancheck processes (workers, beats, CLI) of one test; its queue is removed after."""
    from tests.processes import delete_queue
    from tests.processes import plancheck_env as make_env

    env = make_env(metadata_url, broker_url)
    yield env
    delete_queue(broker_url, env["PLANCHECK_QUEUE"])


@pytest.fixture
def api(plancheck_env: dict[str, str]) -> Plancheck:
    from plancheck.api import Plancheck
    from plancheck.core.settings import load_settings

    return Plancheck(load_settings(plancheck_env))


@pytest.fixture
def cluster(plancheck_env: dict[str, str], tmp_path) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    """Start real `celery worker` / `celery beat` processes with `cluster.worker(name)` / `cluster.beat(name)`."""
    from tests.processes import cluster as make_cluster

    with make_cluster(plancheck_env, tmp_path) as running:
        yield running
