"""Recovery with real `celery worker`/`beat` processes: dead workers, exhausted attempts, graceful
shutdown, runs that cannot be checked, and follow-ups that must be applied once in effect."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from plancheck.api import Plancheck
from plancheck.core.settings import load_settings
from plancheck.domain import followups
from plancheck.store import catalog, issues, runs
from tests.integration.helpers import TargetDatabase, claim_directly, hold_lock, make_target, register_target
from tests.processes import Cluster, Process, plancheck_env, wait_for
from tests.processes import cluster as make_cluster

SLOW_SQL = "UPDATE items SET price = price + 1 WHERE id = 1;\n" * 10
FAST_SQL = "SELECT id FROM items WHERE id = 1;\n"


@pytest.fixture
def make_env(metadata_url: str, broker_url: str) -> Callable[..., dict[str, str]]:
    return lambda **overrides: plancheck_env(metadata_url, broker_url, **overrides)


@pytest.fixture
def target(api: Plancheck, create_database: Callable[[str], str]) -> TargetDatabase:
    url, name = make_target(create_database)
    return register_target(api, url, name)


def _kill(process: Process) -> None:
    """kill -9 the worker and its pool children."""
    process.signal(signal.SIGKILL)
    process.popen.wait(10)


def _attempts(api: Plancheck, plan_id: int) -> list[tuple[int, str | None, str]]:
    return [(a["attempt"], a["outcome"], a["worker"].split("@")[0]) for a in api.checks(plan_id).attempts]


def _wait_status(api: Plancheck, plan_id: int, statuses: tuple[str, ...], timeout: float = 60) -> None:
    wait_for(lambda: api.checks(plan_id).status in statuses, timeout, message=f"plan {plan_id} in {statuses}")


def _db_now(api: Plancheck) -> Any:
    with api.engine.connect() as conn:
        return conn.execute(text("SELECT now()")).scalar_one()


def _stored_plan(api: Plancheck, target: TargetDatabase, sql: str = FAST_SQL, project: str = "shop") -> int:
    """A plan and its AVAILABLE run written through the store, without dispatching a claim."""
    with api.engine.begin() as conn:
        project_row = catalog.get_project(conn, project)
        sheet = catalog.put_sheet(conn, sql)
        plan_id = catalog.create_plan(conn, project_row.id, "stored", [{"targets": [target.target], "sheet": sheet}])
        runs.create(conn, plan_id, 1)
    return plan_id


# -- dead workers ----------------------------------------------------------------------------------
def test_killed_worker_run_returns_after_the_lease_and_ends_done_elsewhere(
    api: Plancheck, target: TargetDatabase, cluster: Cluster
) -> None:
    lease = api.settings.lease_seconds
    w1 = cluster.worker("w1")
    lock = hold_lock(target.url)
    try:
        plan_id = api.create_plan("shop", SLOW_SQL, targets=[target.target])
        wait_for(lambda: api.checks(plan_id).attempts != [], timeout=30, interval=0.05, message="w1 started the check")
        _kill(w1)
        killed_at = _db_now(api)
    finally:
        lock.rollback()
        lock.close()
    assert api.checks(plan_id).status == "RUNNING"  # nobody else knows yet: PostgreSQL holds the lease
    cluster.worker("w2")
    b1 = cluster.beat("b1")
    _wait_status(api, plan_id, ("DONE",))

    checks = api.checks(plan_id)
    assert _attempts(api, plan_id) == [(1, "LOST", "w1"), (2, "DONE", "w2")]
    lost, done = checks.attempts
    # The reaper gave the run back only once the lease ran out (the last heartbeat was at most one
    # heartbeat interval before the kill), and the second claim came after that.
    assert (lost["finished_at"] - killed_at).total_seconds() >= lease - api.settings.heartbeat_seconds - 0.1
    assert done["claimed_at"] >= lost["finished_at"]
    reaped = f"reaped run_id={_run_id(api, plan_id)} plan_id={plan_id} attempt=1 status=AVAILABLE"
    assert reaped in b1.log()  # beat reaps, in its own process
    assert checks.targets_done == checks.targets_total == 1


def _run_id(api: Plancheck, plan_id: int) -> int:
    with api.engine.connect() as conn:
        run = runs.get(conn, plan_id)
    assert run is not None
    return run.id


def test_attempts_exhausted_ends_failed_with_the_attempts_listed(
    make_env: Callable[..., dict[str, str]], target: TargetDatabase, tmp_path: Path
) -> None:
    """PLANCHECK_MAX_ATTEMPTS=2: the worker of each attempt is killed mid-check; the reaper then fails the run."""
    env = make_env(PLANCHECK_MAX_ATTEMPTS="2")
    api = Plancheck(load_settings(env))
    lock = hold_lock(target.url)
    try:
        with make_cluster(env, tmp_path) as running:
            first = running.worker("w1")
            running.beat("b1")
            plan_id = api.create_plan("shop", SLOW_SQL, targets=[target.target])
            wait_for(lambda: len(api.checks(plan_id).attempts) == 1, 30, 0.05, "attempt 1 started on w1")
            _kill(first)
            second = running.worker("w2")
            wait_for(lambda: len(api.checks(plan_id).attempts) == 2, 60, 0.05, "attempt 2 started on w2")
            _kill(second)
            running.worker("w3")  # beat reaps: there is no attempt left to claim
            _wait_status(api, plan_id, ("FAILED",))
            time.sleep(1)  # a further claim or reap must change nothing
    finally:
        lock.rollback()
        lock.close()
    checks = api.checks(plan_id)
    assert checks.status == "FAILED"
    assert checks.reason == "abandoned after 2 attempts"
    assert checks.results == []
    assert _attempts(api, plan_id) == [(1, "LOST", "w1"), (2, "LOST", "w2")]
    assert all(a["finished_at"] is not None for a in checks.attempts)


def test_never_started_claims_are_no_attempts(
    make_env: Callable[..., dict[str, str]], target: TargetDatabase, tmp_path: Path
) -> None:
    """A claim whose run message never arrives is not an execution: with PLANCHECK_MAX_ATTEMPTS=1
    the reaper gives it back (again and again if need be) instead of failing it, and the run ends
    DONE with its one started execution as attempt 1."""
    env = make_env(PLANCHECK_MAX_ATTEMPTS="1", PLANCHECK_LEASE_SECONDS="2")
    api = Plancheck(load_settings(env))
    plan_id = _stored_plan(api, target)
    with api.engine.begin() as conn:
        (claimed,) = claim_directly(conn, 1, 2)  # claimed, but no run message is ever sent
    assert claimed.attempt == 0
    with make_cluster(env, tmp_path) as running:
        running.worker("w1")
        beat = running.beat("b1")
        _wait_status(api, plan_id, ("DONE", "FAILED"), timeout=30)
    checks = api.checks(plan_id)
    assert (checks.status, checks.reason) == ("DONE", None)
    assert _attempts(api, plan_id) == [(1, "DONE", "w1")]
    assert f"reaped run_id={claimed.id} plan_id={plan_id} attempt=0 status=AVAILABLE" in beat.log()


# -- graceful shutdown --------------------------------------------------------------------------------
@pytest.fixture
def locked_targets(api: Plancheck, create_database: Callable[[str], str]) -> Iterator[list[TargetDatabase]]:
    """Three targets whose `items` is locked: a check of all three lasts ~3 lock timeouts (1 s each)."""
    targets = []
    for _ in range(3):
        url, name = make_target(create_database, rows=100)
        targets.append(register_target(api, url, name))
    locks = [hold_lock(t.url) for t in targets]
    yield targets
    for lock in locks:
        lock.rollback()
        lock.close()


def test_sigterm_to_the_worker_lets_the_running_check_finish(
    api: Plancheck, locked_targets: list[TargetDatabase], cluster: Cluster
) -> None:
    """SIGTERM to the worker's main process (what `docker stop` does): Celery's warm shutdown stops
    taking messages, lets the running check finish (DONE, one attempt, nothing LOST, long before
    the lease would have expired), then exits 0."""
    w1 = cluster.worker("w1")
    plan_id = api.create_plan("shop", SLOW_SQL, targets=[t.target for t in locked_targets])
    wait_for(lambda: api.checks(plan_id).attempts != [], timeout=30, interval=0.05, message="check started")
    signalled = time.monotonic()
    os.kill(w1.popen.pid, signal.SIGTERM)
    assert w1.popen.wait(30) == 0
    exited = time.monotonic() - signalled
    checks = api.checks(plan_id)
    assert checks.status == "DONE"
    assert _attempts(api, plan_id) == [(1, "DONE", "w1")]
    assert checks.targets_done == 3
    assert exited < api.settings.lease_seconds
    assert "warm shutdown" in w1.log().lower()


def test_sigterm_to_the_whole_process_group_gives_the_run_back(
    api: Plancheck, locked_targets: list[TargetDatabase], cluster: Cluster
) -> None:
    """SIGTERM to every process of the worker (a terminal's Ctrl-C, systemd's KillMode=control-group):
    the pool child dies mid-check, Celery requeues the message (reject on worker lost), the requeued
    delivery is a logged no-op because the token already started, and the run comes back through the
    lease: LOST on w1, DONE on w2."""
    w1 = cluster.worker("w1")
    plan_id = api.create_plan("shop", SLOW_SQL, targets=[t.target for t in locked_targets])
    wait_for(lambda: api.checks(plan_id).attempts != [], timeout=30, interval=0.05, message="check started")
    os.killpg(w1.popen.pid, signal.SIGTERM)
    assert w1.popen.wait(30) == 0
    assert "WorkerLostError" in w1.log()
    assert api.checks(plan_id).status == "RUNNING"
    w2 = cluster.worker("w2")
    cluster.beat("b1")
    _wait_status(api, plan_id, ("DONE",))
    assert _attempts(api, plan_id) == [(1, "LOST", "w1"), (2, "DONE", "w2")]
    assert "duplicate or stale delivery" in w2.log()


# -- runs that cannot be checked ---------------------------------------------------------------------
def test_archived_project_ends_canceled(api: Plancheck, target: TargetDatabase, cluster: Cluster) -> None:
    plan_id = _stored_plan(api, target)
    api.set_project_archived("shop")
    cluster.worker("w1")
    cluster.beat("b1")
    _wait_status(api, plan_id, ("CANCELED",))
    checks = api.checks(plan_id)
    assert checks.reason == "project 'shop' is archived"
    assert checks.results == []
    assert _attempts(api, plan_id) == [(1, "CANCELED", "w1")]
    with api.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM outbox")).scalar_one() == 0


def test_deleted_plan_ends_failed(api: Plancheck, target: TargetDatabase, cluster: Cluster) -> None:
    plan_id = _stored_plan(api, target)
    with api.engine.begin() as conn:
        conn.execute(text("DELETE FROM plan WHERE id = :p"), {"p": plan_id})
    cluster.worker("w1")
    cluster.beat("b1")
    wait_for(lambda: _run(api, plan_id).status == "FAILED", 60, message="run FAILED")
    run = _run(api, plan_id)
    assert run.result == {"reason": "plan not found"}
    with api.engine.connect() as conn:
        outcomes = (
            conn.execute(text("SELECT outcome FROM plan_check_attempt WHERE run_id = :r"), {"r": run.id})
            .scalars()
            .all()
        )
    assert outcomes == ["FAILED"]


def _run(api: Plancheck, plan_id: int) -> runs.RunView:
    with api.engine.connect() as conn:
        run = runs.get(conn, plan_id)
    assert run is not None
    return run


# -- follow-ups ------------------------------------------------------------------------------------
def _finish_done_without_relay(
    api: Plancheck, target: TargetDatabase, plan_id: int, status: str = "SUCCESS", result: dict[str, Any] | None = None
) -> None:
    """What a worker commits when it ends a run DONE — then it "dies": no relay is dispatched."""
    result = result or {
        "status": status,
        "type": "STATEMENT_SUMMARY_REPORT",
        "target": target.target,
        "title": "Summary",
        "content": "1 statement",
        "code": 0,
        "position": None,
        "report": {"statement_types": {"SELECT": 1}, "affected_rows": 1},
    }
    with api.engine.begin() as conn:
        (claimed,) = claim_directly(conn, 1, 60)
        assert claimed.plan_id == plan_id
        assert runs.start(conn, claimed.id, claimed.token, "ghost@test", 60) is not None
        assert runs.set_targets_total(conn, claimed.id, claimed.token, 1, 60)
        assert runs.add_results(conn, claimed.id, claimed.token, [result], 1, 60) is not None
        assert runs.finish(conn, claimed.id, claimed.token, "DONE")


def _follow_up_state(api: Plancheck, plan_id: int) -> dict[str, Any]:
    with api.engine.connect() as conn:

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in conn.execute(text(sql), {"p": plan_id}).all()]

        return {
            "issue": rows("SELECT * FROM issue WHERE plan_id = :p"),
            "rollout": rows("SELECT * FROM rollout WHERE plan_id = :p ORDER BY id"),
            "tasks": rows(
                "SELECT t.* FROM rollout_task t JOIN rollout r ON r.id = t.rollout_id "
                "WHERE r.plan_id = :p ORDER BY t.id"
            ),
            "outbox": rows(
                "SELECT id, kind, dedupe_key, delivered_at IS NOT NULL FROM outbox WHERE plan_id = :p ORDER BY id"
            ),
        }


@pytest.mark.parametrize(
    ("status", "risk", "approvers", "approval"),
    [
        ("SUCCESS", "LOW", [], "APPROVED"),
        ("ERROR", "HIGH", ["project-owner", "dba"], "PENDING"),
    ],
)
def test_find_approval_stores_risk_and_approvers(
    api: Plancheck, target: TargetDatabase, status: str, risk: str, approvers: list[str], approval: str
) -> None:
    plan_id = _stored_plan(api, target)
    issue = api.create_issue(plan_id)
    _finish_done_without_relay(api, target, plan_id, status)
    with api.engine.begin() as conn:
        followups.find_approval(conn, plan_id)
    with api.engine.connect() as conn:
        found = issues.get_issue(conn, issue.id)
    assert (found.risk, found.approvers, found.approval_status, found.approval_generation) == (
        risk,
        approvers,
        approval,
        1,
    )


def test_follow_up_handlers_applied_twice_change_nothing(api: Plancheck, target: TargetDatabase) -> None:
    plan_id = _stored_plan(api, target)
    issue = api.create_issue(plan_id)
    api.approve_issue(issue.id)
    _finish_done_without_relay(api, target, plan_id)
    before = _follow_up_state(api, plan_id)
    assert before["rollout"] == []
    assert [row[3] for row in before["outbox"]] == [False, False]

    for kind in ("approval.find", "rollout.create"):
        with api.engine.begin() as conn:
            followups.HANDLERS[kind](conn, plan_id, {})
    once = _follow_up_state(api, plan_id)
    assert once != before
    view = api.rollout(plan_id)
    assert view is not None and [t["target"] for t in view.tasks] == [target.target]

    for _ in range(2):
        with api.engine.begin() as conn:
            followups.find_approval(conn, plan_id)
            followups.create_rollout(conn, plan_id)
        assert _follow_up_state(api, plan_id) == once

    # The relay delivering the (already applied) outbox rows, twice over, changes nothing either.
    with api.engine.begin() as conn:
        assert followups.relay(conn, 10) == 2
    with api.engine.begin() as conn:
        conn.execute(text("UPDATE outbox SET delivered_at = NULL WHERE plan_id = :p"), {"p": plan_id})
        assert followups.relay(conn, 10) == 2
        assert followups.relay(conn, 10) == 0
    after = _follow_up_state(api, plan_id)
    assert after["issue"] == once["issue"] and after["rollout"] == once["rollout"] and after["tasks"] == once["tasks"]


def test_relay_delivers_a_follow_up_left_pending(api: Plancheck, target: TargetDatabase, cluster: Cluster) -> None:
    """A worker died right after its DONE commit, before any relay: a beat and a worker deliver it."""
    plan_id = _stored_plan(api, target)
    issue = api.create_issue(plan_id)
    api.approve_issue(issue.id)
    _finish_done_without_relay(api, target, plan_id)
    pending = _follow_up_state(api, plan_id)
    assert [row[3] for row in pending["outbox"]] == [False, False]
    assert pending["rollout"] == []

    cluster.worker("w1")
    cluster.beat("b1")
    wait_for(
        lambda: all(row[3] for row in _follow_up_state(api, plan_id)["outbox"]), 30, message="follow-ups delivered"
    )
    delivered = _follow_up_state(api, plan_id)
    with api.engine.connect() as conn:
        issue_view = issues.get_issue(conn, issue.id)
    assert issue_view.risk == "LOW" and issue_view.approval_status == "APPROVED"
    assert issue_view.approval_generation == 1
    rollout = api.rollout(plan_id)
    assert rollout is not None and [t["target"] for t in rollout.tasks] == [target.target]
    time.sleep(2)  # further relay ticks: nothing pending, nothing changes
    assert _follow_up_state(api, plan_id) == delivered


def test_a_failing_follow_up_does_not_block_the_others(api: Plancheck, target: TargetDatabase) -> None:
    """A follow-up whose handler keeps failing stays pending — but the relay must still deliver the
    follow-ups behind it. Here 6 plans' rollout.create fail for good (a result the handler cannot
    read stands in for any persistent failure) and the relay batch is 5."""
    poisoned = []
    for _ in range(6):
        plan_id = _stored_plan(api, target)
        api.approve_issue(api.create_issue(plan_id).id)
        _finish_done_without_relay(api, target, plan_id, result={"target": target.target})  # no "status"
        poisoned.append(plan_id)
    healthy = _stored_plan(api, target)  # no issue: both follow-ups are no-ops that succeed
    _finish_done_without_relay(api, target, healthy)
    for _ in range(10):
        with api.engine.begin() as conn:
            followups.relay(conn, 5)
    with api.engine.connect() as conn:
        delivered = conn.execute(
            text("SELECT kind, delivered_at IS NOT NULL FROM outbox WHERE plan_id = :p ORDER BY kind"), {"p": healthy}
        ).all()
    assert [tuple(row) for row in delivered] == [("approval.find", True), ("rollout.create", True)]
