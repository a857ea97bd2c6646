"""The HA core end to end: real `celery worker` and `celery beat` processes, real PostgreSQL and Redis."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from plancheck.api import Plancheck
from plancheck.scheduler.app import broker_connection
from plancheck.scheduler.tasks import run as run_task
from plancheck.store import runs
from plancheck.store.claims import ClaimedRun
from plancheck.store.db import upgrade
from tests.integration.helpers import TargetDatabase, claim_directly, hold_lock, make_target, register_target
from tests.processes import Cluster, wait_for

SLOW_SQL = "UPDATE items SET price = price + 1 WHERE id = 1;\n" * 10
FAST_SQL = "SELECT id FROM items WHERE id = 1;\n"
SEED_SHEET = hashlib.sha256(b"SELECT 1;").hexdigest()


@pytest.fixture
def target(api: Plancheck, create_database: Callable[[str], str]) -> TargetDatabase:
    url, name = make_target(create_database)
    return register_target(api, url, name)


def _send_run(api: Plancheck, run_id: int, token: str) -> None:
    with broker_connection(api.settings.broker_url) as connection:
        run_task.apply_async((run_id, token), connection=connection, queue=api.settings.queue)


def _claim_directly(api: Plancheck) -> ClaimedRun:
    with api.engine.begin() as conn:
        (claimed,) = claim_directly(conn, 1, 60)
    return claimed


def _wait_status(api: Plancheck, plan_id: int, statuses: tuple[str, ...], timeout: float = 60) -> None:
    wait_for(lambda: api.checks(plan_id).status in statuses, timeout, message=f"plan {plan_id} in {statuses}")


def _scalar(api: Plancheck, sql: str, **params: object) -> int:
    with api.engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def test_many_plans_many_workers_many_beats(api: Plancheck, target: TargetDatabase, cluster: Cluster) -> None:
    """300 plans, 2 workers and 3 beats: every run DONE once, follow-ups applied once each."""
    for name in ("w1", "w2"):
        cluster.worker(name)
    for name in ("b1", "b2", "b3"):
        cluster.beat(name)
    plan_ids = [api.create_plan("shop", FAST_SQL, targets=[target.target]) for _ in range(300)]
    wait_for(
        lambda: _scalar(api, "SELECT count(*) FROM plan_check_run WHERE status = 'DONE'") == 300,
        timeout=240,
        interval=0.5,
        message="300 DONE runs",
    )
    wait_for(
        lambda: _scalar(api, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL") == 0,
        timeout=30,
        message="follow-ups delivered",
    )
    assert _scalar(api, "SELECT count(*) FROM plan_check_attempt") == 300
    assert _scalar(api, "SELECT count(DISTINCT run_id) FROM plan_check_attempt WHERE outcome = 'DONE'") == 300
    assert _scalar(api, "SELECT count(*) FROM outbox") == 600
    workers = {a["worker"].split("@")[0] for p in plan_ids[:300] for a in api.checks(p).attempts}
    assert workers == {"w1", "w2"}


def test_one_api_object_dispatches_from_many_threads(
    api: Plancheck, target: TargetDatabase, cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Plans created from 4 threads at once through one Plancheck are all dispatched, without a
    warning, each thread over a broker connection of its own (kombu's are not thread-safe), and
    all run (no beat)."""
    cluster.worker("w1")
    connections: dict[int, int] = {}

    def create(_: int) -> int:
        plan_id = api.create_plan("shop", FAST_SQL, targets=[target.target])
        connections[threading.get_ident()] = id(api._local.broker)
        return plan_id

    with ThreadPoolExecutor(max_workers=4) as pool:
        plan_ids = list(pool.map(create, range(40)))
    for plan_id in plan_ids:
        _wait_status(api, plan_id, ("DONE",))
    assert not [r for r in caplog.records if "could not dispatch" in r.getMessage()]
    assert len(set(connections.values())) == len(connections) > 1


def test_duplicate_and_stale_deliveries_are_no_ops(api: Plancheck, target: TargetDatabase, cluster: Cluster) -> None:
    cluster.worker("w1")
    plan_id = api.create_plan("shop", FAST_SQL, targets=[target.target])
    _wait_status(api, plan_id, ("DONE",))
    first = api.checks(plan_id)

    with api.engine.begin() as conn:  # re-run, and claim it ourselves so we hold its message
        runs.create(conn, plan_id, 1)
    claimed = _claim_directly(api)
    _send_run(api, claimed.id, str(claimed.token))
    _send_run(api, claimed.id, str(claimed.token))
    _wait_status(api, plan_id, ("DONE",))
    time.sleep(2)  # let the duplicate arrive and be ignored
    second = api.checks(plan_id)
    generation_two = [a for a in second.attempts if a["generation"] == 2]
    assert len(generation_two) == 1 and generation_two[0]["outcome"] == "DONE"

    _send_run(api, claimed.id, str(claimed.token))  # stale: the run already finished with this token
    with api.engine.begin() as conn:
        runs.create(conn, plan_id, 1)
    _send_run(api, claimed.id, str(claimed.token))  # stale: generation 3 has a new token
    time.sleep(2)
    assert api.checks(plan_id).status == "AVAILABLE"
    assert len(api.checks(plan_id).attempts) == len(second.attempts)
    assert first.results == second.results
    assert "duplicate or stale delivery" in cluster.processes[0].log()


def test_rerun_while_running_discards_the_old_result(api: Plancheck, target: TargetDatabase, cluster: Cluster) -> None:
    cluster.worker("w1")
    cluster.beat("b1")
    lock = hold_lock(target.url)
    try:
        plan_id = api.create_plan("shop", SLOW_SQL, targets=[target.target])
        wait_for(lambda: api.checks(plan_id).attempts != [], timeout=30, message="first execution started")
        api.rerun(plan_id)
    finally:
        lock.rollback()
        lock.close()
    _wait_status(api, plan_id, ("DONE",))
    checks = api.checks(plan_id)
    outcomes = [(a["generation"], a["outcome"]) for a in checks.attempts]
    assert outcomes == [(1, "SUPERSEDED"), (2, "DONE")]
    assert checks.generation == 2
    assert not any("lock" in r["content"].lower() for r in checks.results)


def test_cancel_available_and_running(api: Plancheck, target: TargetDatabase, cluster: Cluster) -> None:
    waiting = api.create_plan("shop", FAST_SQL, targets=[target.target])  # no worker yet: stays AVAILABLE
    assert api.cancel([waiting]) == [waiting]
    assert api.checks(waiting).status == "CANCELED"

    worker = cluster.worker("w1")
    cluster.beat("b1")
    lock = hold_lock(target.url)
    try:
        running = api.create_plan("shop", SLOW_SQL, targets=[target.target])
        wait_for(lambda: api.checks(running).attempts != [], timeout=30, message="execution started")
        cancelled_at = time.monotonic()
        assert api.cancel([running]) == [running]
        wait_for(lambda: "discarded" in worker.log(), timeout=30, message="worker noticed the cancel")
        print(f"\ncancel -> worker stopped: {time.monotonic() - cancelled_at:.2f}s (heartbeat 0.5s)")
    finally:
        lock.rollback()
        lock.close()
    checks = api.checks(running)
    assert checks.status == "CANCELED"
    assert checks.results == []
    assert [a["outcome"] for a in checks.attempts] == ["CANCELED"]
    assert api.cancel([running]) == []  # finished runs are never touched again


def test_upgrade_from_seed_turns_running_rows_into_done(
    create_database: Callable[[str], str], broker_url: str, tmp_path: Path
) -> None:
    """A database at the seed revision with RUNNING rows: after `upgrade head` they are claimed and end DONE."""
    from plancheck.core.settings import load_settings
    from tests.processes import cluster as make_cluster
    from tests.processes import plancheck_env

    url = create_database("seed")
    upgrade(url, "0001_seed")
    env = plancheck_env(url, broker_url)
    target_url, target_name = make_target(create_database)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO project (key, title) VALUES ('legacy', 'legacy')"))
        instance = conn.execute(
            text("INSERT INTO instance (key, url) VALUES ('local', :u) RETURNING id"), {"u": target_url}
        ).scalar_one()
        conn.execute(
            text("INSERT INTO database (instance_id, name, environment, project_id) VALUES (:i, :n, 'test', 1)"),
            {"i": instance, "n": target_name},
        )
        conn.execute(text("INSERT INTO sheet (sha256, content) VALUES (:sha, 'SELECT 1;')"), {"sha": SEED_SHEET})
        for plan_id in (1, 2, 3):
            conn.execute(
                text("INSERT INTO plan (project_id, title, specs) VALUES (1, 'p', CAST(:s AS jsonb))"),
                {"s": json.dumps([{"sheet": SEED_SHEET, "targets": [f"local/{target_name}"]}])},
            )
            conn.execute(text("INSERT INTO plan_check_run (plan_id, status) VALUES (:p, 'RUNNING')"), {"p": plan_id})
    upgrade(url)
    with engine.connect() as conn:
        statuses = conn.execute(text("SELECT DISTINCT status FROM plan_check_run")).scalars().all()
    assert statuses == ["AVAILABLE"]
    api = Plancheck(load_settings(env))
    with make_cluster(env, tmp_path) as running:
        running.worker("w1")
        running.beat("b1")
        for plan_id in (1, 2, 3):
            _wait_status(api, plan_id, ("DONE",))
    engine.dispose()


def test_fan_out_checks_chunks_on_any_worker_and_finishes_once(
    api: Plancheck, create_database: Callable[[str], str], plancheck_env: dict[str, str], tmp_path: Path
) -> None:
    """A group plan with more targets than PLANCHECK_CHUNK_SIZE is split into chunk tasks; the run
    ends DONE exactly once, with one result set per target, when the last chunk reports."""
    from tests.processes import cluster as make_cluster

    targets = [register_target(api, *make_target(create_database, rows=100)) for _ in range(6)]
    for target in targets:
        api.set_database(target.target, labels={"fan": "yes"})
    api.create_group("shop", "fan", '"fan" in resource.labels')
    with make_cluster({**plancheck_env, "PLANCHECK_CHUNK_SIZE": "2"}, tmp_path) as running:
        running.worker("w1")
        running.worker("w2")
        running.beat("b1")
        plan_id = api.create_plan("shop", "UPDATE items SET price = 1 WHERE id < 10;", group="fan")
        _wait_status(api, plan_id, ("DONE",))
    checks = api.checks(plan_id)
    summaries = [r["target"] for r in checks.results if r["type"] == "STATEMENT_SUMMARY_REPORT"]
    assert sorted(summaries) == sorted(t.target for t in targets)
    assert (checks.targets_done, checks.targets_total) == (6, 6)
    run_attempts = [a["outcome"] for a in checks.attempts if a["chunk"] is None]
    chunk_attempts = sorted((a["chunk"], a["attempt"], a["outcome"]) for a in checks.attempts if a["chunk"] is not None)
    assert run_attempts == ["DONE"]
    assert chunk_attempts == [(0, 1, "DONE"), (1, 1, "DONE"), (2, 1, "DONE")]
    with api.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM plan_check_chunk")).scalar_one() == 0
