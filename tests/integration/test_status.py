"""`plancheck status` against real PostgreSQL, Redis, `celery worker` and `celery beat` processes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import create_engine

from plancheck import app
from plancheck.core.settings import load_settings
from plancheck.devtools.embedded import free_port
from plancheck.ops.status import check_workers
from plancheck.scheduler.beat import Scheduler
from plancheck.store import beats
from plancheck.store.db import upgrade
from tests.processes import REPO_ROOT, Cluster, Process, wait_for

HEARTBEAT_SCHEDULER = "plancheck.scheduler.beat:Scheduler"
NEEDLE = "Status-Needle-Pw-77"


def run_status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plancheck.cli.ops", "status", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def checks_of(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in json.loads(result.stdout)["checks"]}


def start_beat(cluster: Cluster, name: str) -> Process:
    """A beat with the heartbeat scheduler (named in -S until celeryconfig names it)."""
    import celeryconfig

    if celeryconfig.beat_scheduler == HEARTBEAT_SCHEDULER:
        return cluster.beat(name)
    return cluster._start(name, ["beat", "-l", "INFO", "-S", HEARTBEAT_SCHEDULER])


def test_healthy_cluster(plancheck_env: dict[str, str], metadata_url: str, cluster: Cluster) -> None:
    cluster.worker("w1")
    beat = start_beat(cluster, "b1")
    engine = create_engine(metadata_url)

    def beat_seen() -> bool:
        assert beat.popen.poll() is None, beat.log()
        with engine.connect() as conn:
            return bool(beats.seen(conn))

    wait_for(beat_seen, timeout=20, message="beat heartbeat")
    engine.dispose()
    settings = load_settings(plancheck_env)
    wait_for(lambda: check_workers(settings, 0.5).ok, timeout=30, message="worker w1 answering a ping")

    table = run_status(plancheck_env)
    assert table.returncode == 0, table.stdout + table.stderr
    assert "w1@" in table.stdout and "healthy" in table.stdout

    result = run_status(plancheck_env, "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["healthy"] is True
    checks = checks_of(result)
    assert list(checks) == ["database", "broker", "workers", "beat", "backlog"]
    assert all(check["ok"] for check in checks.values())
    assert checks["database"]["data"]["revision"] == checks["database"]["data"]["head"]
    assert [name.split("@")[0] for name in checks["workers"]["data"]["workers"]] == ["w1"]
    assert checks["beat"]["data"]["last_seen_age_seconds"] < 30
    assert checks["backlog"]["data"] == {"available": 0, "oldest_available_age_seconds": None}


def test_unreachable_broker(plancheck_env: dict[str, str]) -> None:
    env = dict(plancheck_env, PLANCHECK_BROKER_URL=f"redis://:{NEEDLE}@127.0.0.1:{free_port()}/0")
    for args in ((), ("--json",)):
        result = run_status(env, *args)
        assert result.returncode == 1
        output = result.stdout + result.stderr
        assert NEEDLE not in output
        assert "unreachable" in output
    checks = checks_of(result)
    assert not checks["broker"]["ok"] and not checks["workers"]["ok"]
    assert checks["database"]["ok"]


def test_unreachable_database(plancheck_env: dict[str, str]) -> None:
    env = dict(plancheck_env, PLANCHECK_DATABASE_URL=f"postgresql://plancheck:{NEEDLE}@127.0.0.1:{free_port()}/meta")
    result = run_status(env, "--json")
    assert result.returncode == 1
    assert NEEDLE not in result.stdout + result.stderr
    checks = checks_of(result)
    assert not checks["database"]["ok"] and "unreachable" in checks["database"]["detail"]
    assert checks["broker"]["ok"]
    assert not checks["beat"]["ok"] and not checks["backlog"]["ok"]


def test_database_behind_head(plancheck_env: dict[str, str], create_database: Callable[[str], str]) -> None:
    url = create_database("old")
    upgrade(url, "0004_followups")
    result = run_status(dict(plancheck_env, PLANCHECK_DATABASE_URL=url), "--json")
    assert result.returncode == 1
    checks = checks_of(result)
    assert not checks["database"]["ok"] and "plancheck db upgrade" in checks["database"]["detail"]
    assert checks["database"]["data"]["revision"] == "0004_followups"
    assert not checks["beat"]["ok"]
    assert checks["backlog"]["ok"]


def test_bad_setting_is_a_one_line_error(plancheck_env: dict[str, str]) -> None:
    result = run_status(dict(plancheck_env, PLANCHECK_LEASE_SECONDS="soon"))
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == ["error: PLANCHECK_LEASE_SECONDS='soon' is not a number"]


def _scheduler(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Scheduler:
    monkeypatch.setenv("PLANCHECK_DATABASE_URL", database_url)
    return Scheduler(app=app, lazy=True)


def test_beat_tick_records_a_heartbeat(metadata_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler = _scheduler(monkeypatch, metadata_url)
    assert 0 <= scheduler.tick() <= scheduler.heartbeat_every
    engine = create_engine(metadata_url)
    with engine.connect() as conn:
        (seen,) = beats.seen(conn)
    engine.dispose()
    assert seen.name == scheduler.beat_name and seen.age_seconds < 5


def test_beat_tick_survives_an_unreachable_database(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler = _scheduler(monkeypatch, f"postgresql://beat:{NEEDLE}@127.0.0.1:{free_port()}/meta")
    assert scheduler.tick() <= scheduler.heartbeat_every
    assert "could not record its heartbeat" in caplog.text and NEEDLE not in caplog.text
