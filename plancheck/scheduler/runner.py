"""Executes delivered run and chunk messages: start (or ignore), check targets, finish fenced.

Nothing here remembers running checks: the only state is the run's (or chunk's) row, reached
through its token. The start commits on its own, so the work is loaded — group expressions
evaluated — without holding a row lock. A run with more targets than the chunk size fans out: its
chunks become claimable rows and the run keeps no lease; each chunk is then executed like a small
run, under a lease of its own. The write that completes the last target ends the run DONE — decided
by PostgreSQL, so a fanned-out run finishes exactly once whichever chunk completes last — and the
same transaction claims the next work for the slot this execution frees.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine

from plancheck.checks.advise import ReviewConfig
from plancheck.checks.check import CheckStopped, check_target
from plancheck.checks.limits import CheckLimits
from plancheck.checks.result import CheckResult, CheckType, Status
from plancheck.core.logs import state_change
from plancheck.core.redact import named_error_line
from plancheck.core.settings import Settings
from plancheck.core.states import RunStatus
from plancheck.domain.targets import Item, RunAbort, Work, check_limits, load_chunk, load_work
from plancheck.scheduler.lease import Interrupted, Lease
from plancheck.store import chunks, claims, runs
from plancheck.store.db import engine_for

log = logging.getLogger(__name__)


class Delivery(StrEnum):
    """What became of one delivered message."""

    EXECUTED = "executed"  # it ran the work, to the end of the run or of its part
    FANNED_OUT = "fanned out"  # it split the run into chunks
    IGNORED = "ignored"  # duplicate, stale or forged: it started nothing
    DISCARDED = "discarded"  # the work lost its token meanwhile: its results were dropped


@dataclass(frozen=True)
class Outcome:
    """A delivery's fate, the run status it ended in (if it ended the run), and the work it claimed."""

    delivery: Delivery
    run_status: RunStatus | None = None
    claimed: claims.Claims = field(default_factory=claims.Claims)


@dataclass(frozen=True)
class Recorded:
    """A target's results are stored: did that finish this execution's part, and the whole run?"""

    part_done: bool
    run_done: bool


@dataclass
class Execution:
    """One started run or chunk: how to keep it alive, store its results and log its events."""

    engine: Engine
    settings: Settings
    worker: str
    run_id: int
    plan_id: int
    run_token: str
    attempt: int
    chunk: chunks.StartedChunk | None = None

    def log(self, event: str, **fields: Any) -> None:
        number = None if self.chunk is None else self.chunk.chunk
        attempt = self.attempt if self.chunk is None else self.chunk.attempt
        state_change(event, self.run_id, self.plan_id, attempt=attempt, worker=self.worker, chunk=number, **fields)

    def renew(self, conn: Connection) -> bool:
        lease = self.settings.lease_seconds
        if self.chunk is None:
            return runs.heartbeat(conn, self.run_id, self.run_token, lease)
        return chunks.heartbeat(conn, self.chunk.id, self.chunk.token, lease)

    def lease(self) -> Lease:
        return Lease(self.engine, self.renew, self.settings.heartbeat_seconds, lambda: self.log("heartbeat lost"))

    def record(self, conn: Connection, results: list[dict[str, Any]]) -> Recorded | None:
        """Store one target's results (fenced); a chunk's last target moves the chunk's results into
        its run. None when the token lost."""
        lease = self.settings.lease_seconds
        if self.chunk is None:
            progress = runs.add_results(conn, self.run_id, self.run_token, results, 1, lease)
            return None if progress is None else Recorded(progress.complete, progress.complete)
        part = chunks.add_results(conn, self.chunk.id, self.chunk.token, results, lease)
        if part is None or not part.complete:
            return None if part is None else Recorded(False, False)
        run = chunks.finish(conn, self.chunk.id, self.chunk.token)
        return None if run is None else Recorded(True, run.complete)


def execute(run_id: int, token: str, worker: str, settings: Settings) -> Outcome:
    """Run the checks of a claimed run if this delivery wins its start."""
    engine = engine_for(settings.database_url)
    with engine.begin() as conn:
        started = runs.start(conn, run_id, token, worker, settings.lease_seconds)
    if started is None:
        state_change(Delivery.IGNORED, run_id, worker=worker, reason="duplicate or stale delivery")
        return Outcome(Delivery.IGNORED)
    execution = Execution(engine, settings, worker, started.id, started.plan_id, str(started.token), started.attempt)
    execution.log("started")
    return _execute(execution, lambda conn: load_work(conn, started.plan_id))


def execute_chunk(chunk_id: int, token: str, worker: str, settings: Settings) -> Outcome:
    """Check one chunk of a fanned-out run, if this delivery wins the chunk's start."""
    engine = engine_for(settings.database_url)
    with engine.begin() as conn:
        started = chunks.start(conn, chunk_id, token, worker, settings.lease_seconds)
    if started is None:
        state_change("chunk ignored", None, chunk_id=chunk_id, worker=worker, reason="duplicate or stale delivery")
        return Outcome(Delivery.IGNORED)
    execution = Execution(
        engine, settings, worker, started.run_id, started.plan_id, str(started.run_token), started.run_attempt, started
    )
    execution.log("chunk started", targets=len(started.targets))
    return _execute(execution, lambda conn: load_chunk(conn, started.plan_id, started.targets))


def _execute(execution: Execution, load: Callable[[Connection], Work]) -> Outcome:
    with execution.lease() as lease:
        try:
            with lease.interruptible(), execution.engine.connect() as conn:
                work = load(conn)
            return _proceed(execution, lease, work)
        except RunAbort as abort:
            return _end(execution, abort.status, abort.reason)
        except (CheckStopped, Interrupted):
            return _discard(execution)
        except Exception as exc:
            log.exception("run %s failed", execution.run_id)
            return _end(execution, RunStatus.FAILED, _internal_error(exc))


def _proceed(execution: Execution, lease: Lease, work: Work) -> Outcome:
    if execution.chunk is not None:
        return _check_all(execution, lease, work)
    if not work.items:
        return _end(execution, RunStatus.DONE)
    if len(work.items) > execution.settings.chunk_size:
        return _fan_out(execution, work)
    with execution.engine.begin() as conn:
        if not runs.set_targets_total(
            conn, execution.run_id, execution.run_token, len(work.items), execution.settings.lease_seconds
        ):
            return _discard(execution)
    return _check_all(execution, lease, work)


def _fan_out(execution: Execution, work: Work) -> Outcome:
    """Store the run's chunks and claim what free slots there are; the rest wait for later claims."""
    size = execution.settings.chunk_size
    assignments = [(item.target.name, item.sheet) for item in work.items]
    pieces = [assignments[i : i + size] for i in range(0, len(assignments), size)]
    with execution.engine.begin() as conn:
        if not runs.fan_out(conn, execution.run_id, execution.run_token, pieces):
            return _discard(execution)
        claimed = _claim(conn, execution.settings)
    execution.log("fanned out", chunks=len(pieces), targets=len(assignments))
    return Outcome(Delivery.FANNED_OUT, claimed=claimed)


def _check_all(execution: Execution, lease: Lease, work: Work) -> Outcome:
    outcome = Outcome(Delivery.EXECUTED)
    limits = check_limits(execution.settings)
    for item in work.items:
        if lease.lost:
            return _discard(execution)
        with lease.interruptible():
            results = _check(item, work.config, limits, lease)
        outcome = _record(execution, [result.to_json() for result in results])
        if outcome.delivery is Delivery.DISCARDED:
            return outcome
    return outcome


def _check(item: Item, config: ReviewConfig, limits: CheckLimits, lease: Lease) -> list[CheckResult]:
    name = item.target.name
    if not item.sql:
        return [
            CheckResult(
                Status.ERROR,
                CheckType.STATEMENT_ADVISE,
                name,
                "Target not found",
                f"{name} is no longer a database of this plan's project or group",
            )
        ]
    return check_target(item.target, item.sql, config, limits, should_stop=lambda: lease.lost, on_session=lease.track)


def _record(execution: Execution, results: list[dict[str, Any]]) -> Outcome:
    """Store one target's results at once (fenced), so progress is visible; the write that completes
    the run's last target finishes it in the same transaction."""
    with execution.engine.begin() as conn:
        recorded = execution.record(conn, results)
        if recorded is None:
            return _discard(execution)
        if recorded.run_done:
            return _finish(conn, execution, RunStatus.DONE)
        if recorded.part_done:  # a chunk is done, its run is not: the slot it frees takes new work
            execution.log("chunk finished")
            return Outcome(Delivery.EXECUTED, claimed=_claim(conn, execution.settings))
    return Outcome(Delivery.EXECUTED)


def _end(execution: Execution, status: RunStatus, reason: str | None = None) -> Outcome:
    with execution.engine.begin() as conn:
        return _finish(conn, execution, status, reason)


def _finish(conn: Connection, execution: Execution, status: RunStatus, reason: str | None = None) -> Outcome:
    """End the run (fenced by its token) and, in the same transaction, claim work for the freed slot."""
    extra = {"reason": reason} if reason else {}
    if not runs.finish(conn, execution.run_id, execution.run_token, status, extra):
        return _discard(execution)
    execution.log("finished", status=status, reason=reason)
    return Outcome(Delivery.EXECUTED, status, _claim(conn, execution.settings))


def _claim(conn: Connection, settings: Settings) -> claims.Claims:
    return claims.claim(conn, settings.claim_batch, settings.lease_seconds, settings.lease_seconds)


def _discard(execution: Execution) -> Outcome:
    """The token lost (cancel, re-run or reap): this execution's results are dropped, nothing written."""
    execution.log("discarded", reason="cancelled, re-run or reaped")
    return Outcome(Delivery.DISCARDED)


def _internal_error(exc: Exception) -> str:
    return f"internal error: {named_error_line(exc)}"


def claim_work(engine: Engine, settings: Settings) -> claims.Claims:
    """A claim in a transaction of its own (beat's claim, plan creation, a reap that freed work)."""
    with engine.begin() as conn:
        return _claim(conn, settings)
