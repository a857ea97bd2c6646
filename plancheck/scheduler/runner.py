"""Executes delivered run and chunk messages: start (or ignore), check targets, finish fenced.

Nothing here remembers running checks: the only state is the run row, reached through its token.
Commits are few on purpose: the start and the loading of the plan share one transaction, and the
write that stores the last target's results also ends the run DONE — decided by PostgreSQL, so a
fanned-out run finishes exactly once whichever chunk reports last. The transaction that ends a run
also claims the next AVAILABLE run, so a busy cluster keeps its pipeline full without extra messages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine

from plancheck.checks import CheckStopped, ReviewConfig, check_target
from plancheck.checks.result import CheckResult, CheckType, Status
from plancheck.logs import state_change
from plancheck.redact import redact_urls
from plancheck.scheduler.lease import Lease
from plancheck.scheduler.work import Item, RunAbort, Work, load_chunk, load_work
from plancheck.settings import Settings
from plancheck.store import runs
from plancheck.store.db import engine_for

log = logging.getLogger(__name__)

IGNORED = "ignored"
DISCARDED = "discarded"
RUNNING = "running"
FANNED_OUT = "fanned out"


@dataclass(frozen=True)
class Outcome:
    """What became of a delivery, and the messages the task must send next."""

    status: str
    chunks: list[list[tuple[str, str]]] = field(default_factory=list)  # per chunk: (target name, sheet)
    handoff: list[runs.Claimed] = field(default_factory=list)


@dataclass(frozen=True)
class Execution:
    engine: Engine
    started: runs.Started
    settings: Settings
    worker: str
    chunk: int | None = None

    def log(self, event: str, **fields: object) -> None:
        started = self.started
        state_change(
            event, started.id, started.plan_id, attempt=started.attempt, worker=self.worker, chunk=self.chunk, **fields
        )


def execute(run_id: int, token: str, worker: str, settings: Settings) -> Outcome:
    """Run the checks of a claimed run if this delivery wins its start."""
    engine = engine_for(settings.database_url)
    with engine.begin() as conn:
        started = runs.start(conn, run_id, token, worker, settings.lease_seconds)
        if started is None:
            state_change("ignored", run_id, worker=worker, reason="duplicate or stale delivery")
            return Outcome(IGNORED)
        execution = Execution(engine, started, settings, worker)
        execution.log("started")
        prepared = _prepare(conn, execution)
    if isinstance(prepared, Outcome):
        return prepared
    if len(prepared.items) > settings.chunk_size:
        return _fan_out(execution, prepared)
    return _check_with_lease(execution, prepared.items, prepared.config)


def execute_chunk(
    run_id: int, token: str, chunk: int, assignments: Sequence[tuple[str, str]], worker: str, settings: Settings
) -> Outcome:
    """Check one chunk of a fanned-out run's targets, if this delivery wins the chunk."""
    engine = engine_for(settings.database_url)
    with engine.begin() as conn:
        started = runs.start_chunk(conn, run_id, token, chunk, worker)
        if started is None:
            state_change("ignored", run_id, worker=worker, chunk=chunk, reason="duplicate or stale delivery")
            return Outcome(IGNORED)
        execution = Execution(engine, started, settings, worker, chunk)
        execution.log("chunk started", targets=len(assignments))
        prepared = _prepare(conn, execution, assignments)
    if isinstance(prepared, Outcome):
        return prepared
    return _check_with_lease(execution, prepared.items, prepared.config)


def _prepare(conn: Connection, execution: Execution, chunk: Sequence[tuple[str, str]] | None = None) -> Work | Outcome:
    """Load the run's (or one chunk's) work in the start's transaction; a run that cannot be checked
    ends right here."""
    started = execution.started
    try:
        with conn.begin_nested():
            work = load_work(conn, started) if chunk is None else load_chunk(conn, started, chunk)
    except RunAbort as abort:
        return _finish(conn, execution, abort.status, abort.reason)
    except Exception as exc:
        log.exception("run %s could not be loaded", started.id)
        return _finish(conn, execution, "FAILED", _internal_error(exc))
    if chunk is None:
        runs.set_targets_total(conn, started.id, started.token, len(work.items), execution.settings.lease_seconds)
        if not work.items:
            return _finish(conn, execution, "DONE")
    return work


def _fan_out(execution: Execution, work: Work) -> Outcome:
    size = execution.settings.chunk_size
    assignments = [(item.target.name, item.sheet) for item in work.items]
    chunks = [assignments[i : i + size] for i in range(0, len(assignments), size)]
    execution.log("fanned out", chunks=len(chunks), targets=len(assignments))
    return Outcome(FANNED_OUT, chunks=chunks)


def _check_with_lease(execution: Execution, items: Sequence[Item], config: ReviewConfig) -> Outcome:
    settings = execution.settings
    with Lease(execution.engine, execution.started, settings.heartbeat_seconds, settings.lease_seconds) as lease:
        try:
            return _check_all(execution, lease, items, config)
        except CheckStopped:
            return _discard(execution)
        except Exception as exc:
            log.exception("run %s failed", execution.started.id)
            with execution.engine.begin() as conn:
                return _finish(conn, execution, "FAILED", _internal_error(exc))


def _check_all(execution: Execution, lease: Lease, items: Sequence[Item], config: ReviewConfig) -> Outcome:
    outcome = Outcome(RUNNING)
    for index, item in enumerate(items):
        if lease.lost:
            return _discard(execution)
        results = _check(item, config, lease)
        outcome = _record(execution, results, last_of_chunk=index == len(items) - 1)
        if outcome.status == DISCARDED:
            return outcome
    return outcome


def _check(item: Item, config: ReviewConfig, lease: Lease) -> list[CheckResult]:
    name = item.target.name
    if not item.sql:
        return [CheckResult(Status.ERROR, CheckType.STATEMENT_ADVISE, name, "Target not found",
                            f"{name} is no longer a database of this plan's project or group")]
    return check_target(item.target, item.sql, config, should_stop=lambda: lease.lost, on_session=lease.track)


def _record(execution: Execution, results: list[CheckResult], last_of_chunk: bool) -> Outcome:
    """Store one target's results at once (fenced), so progress is visible; the write that
    completes the run's last target finishes it in the same transaction."""
    started, lease_seconds = execution.started, execution.settings.lease_seconds
    payload = [result.to_json() for result in results]
    with execution.engine.begin() as conn:
        progress = runs.add_results(conn, started.id, started.token, payload, 1, lease_seconds)
        if progress is None:
            return _discard(execution)
        if execution.chunk is not None and last_of_chunk:
            runs.finish_chunk(conn, started.token, execution.chunk)
        if progress.targets_done == progress.targets_total:
            return _finish(conn, execution, "DONE")
    return Outcome(RUNNING)


def _finish(conn: Connection, execution: Execution, status: str, reason: str | None = None) -> Outcome:
    """End the run (fenced) and, in the same transaction, claim the next AVAILABLE run to hand on to."""
    extra = {"reason": reason} if reason else {}
    if not runs.finish(conn, execution.started.id, execution.started.token, status, extra):
        return _discard(execution)
    execution.log("finished", status=status, reason=reason)
    settings = execution.settings
    return Outcome(status, handoff=runs.claim(conn, 1, settings.lease_seconds, cap=settings.claim_batch))


def _discard(execution: Execution) -> Outcome:
    """The token lost (cancel, re-run or reap): this execution's results are dropped, nothing written."""
    execution.log("discarded", reason="run cancelled, re-run or reaped")
    return Outcome(DISCARDED)


def _internal_error(exc: Exception) -> str:
    return f"internal error: {type(exc).__name__}: {redact_urls(str(exc))}"
