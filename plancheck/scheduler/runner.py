"""Executes one delivered run message: start (or ignore), check every target, finish fenced.

Nothing here remembers running checks: the only state is the run row, reached through its token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine

from plancheck.checks import CheckStopped, ReviewConfig, check_target
from plancheck.checks.target import Target
from plancheck.logs import state_change
from plancheck.redact import redact_urls
from plancheck.scheduler.lease import Lease
from plancheck.scheduler.work import RunAbort, load_work
from plancheck.settings import Settings
from plancheck.store import runs
from plancheck.store.db import engine_for

log = logging.getLogger(__name__)


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
        return "ignored"
    execution = Execution(engine, started, settings, worker)
    execution.log("started")
    with Lease(engine, started, settings.heartbeat_seconds, settings.lease_seconds) as lease:
        try:
            return _check_all(execution, lease)
        except CheckStopped:
            return _discard(execution)
        except RunAbort as abort:
            return _finish(execution, abort.status, abort.reason)
        except Exception as exc:
            log.exception("run %s failed", run_id)
            return _finish(execution, "FAILED", f"internal error: {type(exc).__name__}: {redact_urls(str(exc))}")


def _check_all(execution: Execution, lease: Lease) -> str:
    engine, started, settings = execution.engine, execution.started, execution.settings
    with engine.connect() as conn:
        work = load_work(conn, started)
    with engine.begin() as conn:
        if not runs.set_targets_total(conn, started.id, started.token, len(work.items), settings.lease_seconds):
            return _discard(execution)
    for target, sql in work.items:
        if lease.lost:
            return _discard(execution)
        if not _check_one(execution, lease, target, sql, work.config):
            return _discard(execution)
    return _finish(execution, "DONE")


def _check_one(execution: Execution, lease: Lease, target: Target, sql: str, config: ReviewConfig) -> bool:
    """Check one target and store its results at once (fenced), so progress is visible."""
    results = check_target(target, sql, config, should_stop=lambda: lease.lost, on_session=lease.track)
    payload = [result.to_json() for result in results]
    with execution.engine.begin() as conn:
        progress = runs.add_results(
            conn, execution.started.id, execution.started.token, payload, 1, execution.settings.lease_seconds
        )
    return progress is not None


def _finish(execution: Execution, status: str, reason: str | None = None) -> str:
    extra = {"reason": reason} if reason else {}
    with execution.engine.begin() as conn:
        won = runs.finish(conn, execution.started.id, execution.started.token, status, extra)
    if not won:
        return _discard(execution)
    execution.log("finished", status=status, reason=reason)
    return status


def _discard(execution: Execution) -> str:
    """The token lost (cancel, re-run or reap): this execution's results are dropped, nothing written."""
    execution.log("discarded", reason="run cancelled, re-run or reaped")
    return "discarded"
