"""Executes one delivered run message: start (or ignore), check every target, finish fenced.

Nothing here remembers running checks: the only state is the run row, reached through its token.
Commits are few on purpose: the start and the loading of the plan share one transaction, and the
write that stores the last target's results also ends the run DONE, decided by PostgreSQL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from plancheck.checks import CheckStopped, ReviewConfig, check_target
from plancheck.checks.target import Target
from plancheck.logs import state_change
from plancheck.redact import redact_urls
from plancheck.scheduler.lease import Lease
from plancheck.scheduler.work import RunAbort, Work, load_work
from plancheck.settings import Settings
from plancheck.store import runs
from plancheck.store.db import engine_for

log = logging.getLogger(__name__)

IGNORED = "ignored"
DISCARDED = "discarded"


@dataclass(frozen=True)
class Execution:
    engine: Engine
    started: runs.Started
    settings: Settings
    worker: str

    def log(self, event: str, **fields: object) -> None:
        started = self.started
        state_change(event, started.id, started.plan_id, attempt=started.attempt, worker=self.worker, **fields)


def execute(run_id: int, token: str, worker: str, settings: Settings) -> str:
    """Run the checks of a claimed run if this delivery wins its start; returns the outcome."""
    engine = engine_for(settings.database_url)
    with engine.begin() as conn:
        started = runs.start(conn, run_id, token, worker, settings.lease_seconds)
        if started is None:
            state_change("ignored", run_id, worker=worker, reason="duplicate or stale delivery")
            return IGNORED
        execution = Execution(engine, started, settings, worker)
        execution.log("started")
        work_or_outcome = _prepare(conn, execution)
    if isinstance(work_or_outcome, str):
        return work_or_outcome
    with Lease(engine, started, settings.heartbeat_seconds, settings.lease_seconds) as lease:
        try:
            return _check_all(execution, lease, work_or_outcome)
        except CheckStopped:
            return _discard(execution)
        except Exception as exc:
            log.exception("run %s failed", run_id)
            with engine.begin() as conn:
                return _finish(conn, execution, "FAILED", _internal_error(exc))


def _prepare(conn: Connection, execution: Execution) -> Work | str:
    """Load the plan's work in the start's transaction; a run that cannot be checked ends right here."""
    started = execution.started
    try:
        with conn.begin_nested():
            work = load_work(conn, started)
    except RunAbort as abort:
        return _finish(conn, execution, abort.status, abort.reason)
    except Exception as exc:
        log.exception("run %s could not be loaded", started.id)
        return _finish(conn, execution, "FAILED", _internal_error(exc))
    runs.set_targets_total(conn, started.id, started.token, len(work.items), execution.settings.lease_seconds)
    if not work.items:
        return _finish(conn, execution, "DONE")
    return work


def _check_all(execution: Execution, lease: Lease, work: Work) -> str:
    outcome = DISCARDED
    for target, sql in work.items:
        if lease.lost:
            return _discard(execution)
        outcome = _check_one(execution, lease, target, sql, work.config)
        if outcome == DISCARDED:
            return outcome
    return outcome


def _check_one(execution: Execution, lease: Lease, target: Target, sql: str, config: ReviewConfig) -> str:
    """Check one target and store its results at once (fenced), so progress is visible; the write
    that completes the last target finishes the run in the same transaction."""
    results = check_target(target, sql, config, should_stop=lambda: lease.lost, on_session=lease.track)
    payload = [result.to_json() for result in results]
    started, lease_seconds = execution.started, execution.settings.lease_seconds
    with execution.engine.begin() as conn:
        progress = runs.add_results(conn, started.id, started.token, payload, 1, lease_seconds)
        if progress is None:
            return _discard(execution)
        if progress.targets_done == progress.targets_total:
            return _finish(conn, execution, "DONE")
    return "running"


def _finish(conn: Connection, execution: Execution, status: str, reason: str | None = None) -> str:
    extra = {"reason": reason} if reason else {}
    if not runs.finish(conn, execution.started.id, execution.started.token, status, extra):
        return _discard(execution)
    execution.log("finished", status=status, reason=reason)
    return status


def _discard(execution: Execution) -> str:
    """The token lost (cancel, re-run or reap): this execution's results are dropped, nothing written."""
    execution.log("discarded", reason="run cancelled, re-run or reaped")
    return DISCARDED


def _internal_error(exc: Exception) -> str:
    return f"internal error: {type(exc).__name__}: {redact_urls(str(exc))}"
