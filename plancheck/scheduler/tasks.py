"""Celery tasks: run, run_chunk, claim, reap and relay — thin shells around the store and the runner.

Messages carry ids and tokens only, never targets, SQL, URLs or credentials: whatever a message
says beyond which work it names is read from PostgreSQL, so a forged or replayed message can at
most start work that was claimed anyway. A malformed one is logged and dropped.

claim, reap and relay are maintenance: beat runs them in its own process (see `beat.Scheduler`),
so they never wait for a free worker slot; workers send relay after finishing a run, for prompt
follow-ups.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from functools import cache
from typing import Any

from celery import Task
from kombu import Connection

from plancheck.core.logs import state_change
from plancheck.core.settings import Settings, load_settings
from plancheck.core.states import RunStatus
from plancheck.domain import followups
from plancheck.scheduler import runner
from plancheck.scheduler.app import app
from plancheck.store import chunks, claims, runs
from plancheck.store.db import engine_for

log = logging.getLogger(__name__)

_MAX_ID = 2**63 - 1


@cache
def settings() -> Settings:
    return load_settings()


def _worker(task: Task) -> str:
    return f"{task.request.hostname or 'local'}:{os.getpid()}"


class _Debounce:
    """True at most once per `window` seconds: the first caller schedules, the others are covered."""

    def __init__(self, window: float) -> None:
        self._window = window
        self._covered_until = 0.0

    def first(self) -> bool:
        now = time.monotonic()
        if now < self._covered_until:
            return False
        self._covered_until = now + self._window
        return True


@cache
def _relay_debounce() -> _Debounce:
    """A DONE run's follow-ups wait up to PLANCHECK_RELAY_DELAY, so that one relay task delivers those of
    every run a process finishes meanwhile instead of one relay per run (beat's relay is the safety net)."""
    return _Debounce(settings().relay_delay)


def claim_now(config: Settings, connection: Connection | None = None) -> int:
    """Claim work for free worker slots and send one message per claimed run or chunk.

    The API calls it right after creating a run, over its own broker connection: the run message
    goes out from the client, without a hop through a worker.
    """
    claimed = runner.claim_work(engine_for(config.database_url), config)
    dispatch(claimed, config.queue, connection)
    return len(claimed)


def dispatch(claimed: claims.Claims, queue: str, connection: Connection | None = None) -> None:
    """One message per claimed piece of work, ids and tokens only, on the deployment's queue."""
    options = {"queue": queue, "connection": connection, "retry": connection is None}
    for item in claimed.runs:
        state_change("claimed", item.id, item.plan_id, attempt=item.attempt + 1)
        run.apply_async((item.id, str(item.token)), **options)
    for piece in claimed.chunks:
        state_change("chunk claimed", piece.run_id, chunk=piece.chunk)
        run_chunk.apply_async((piece.id, str(piece.token)), **options)


def _follow_through(outcome: runner.Outcome) -> str:
    """Send what the outcome asks for: messages for the work it claimed, the follow-up relay."""
    dispatch(outcome.claimed, settings().queue)
    if outcome.run_status == RunStatus.DONE and _relay_debounce().first():
        relay.apply_async(countdown=settings().relay_delay, queue=settings().queue)
    return str(outcome.run_status or outcome.delivery)


def _valid_ids(task: str, work_id: Any, token: Any) -> tuple[int, str] | None:
    """The message's (id, token) if they are what plancheck sends; else None, logged once."""
    try:
        if isinstance(work_id, bool) or not isinstance(work_id, int) or not 0 < work_id <= _MAX_ID:
            raise ValueError("id")
        return work_id, str(uuid.UUID(str(token)))
    except ValueError:
        log.warning("dropped a malformed %s message (id %.40r, token %.40r)", task, work_id, token)
        return None


def _execute(task: Task, work_id: Any, token: Any, execute: Callable[[int, str, str, Settings], runner.Outcome]) -> str:
    ids = _valid_ids(task.name, work_id, token)
    if ids is None:
        return "malformed"
    return _follow_through(execute(*ids, _worker(task), settings()))


@app.task(name="plancheck.run", bind=True)
def run(self: Task, run_id: Any, token: Any) -> str:
    """Check a claimed run (or fan it out into chunks)."""
    return _execute(self, run_id, token, runner.execute)


@app.task(name="plancheck.run_chunk", bind=True)
def run_chunk(self: Task, chunk_id: Any, token: Any) -> str:
    """Check one claimed chunk of a fanned-out run; its targets are read from its row."""
    return _execute(self, chunk_id, token, runner.execute_chunk)


@app.task(name="plancheck.claim")
def claim() -> int:
    """Claim work for free worker slots, oldest first, and send one message each."""
    return claim_now(settings())


@app.task(name="plancheck.reap")
def reap() -> int:
    """Return runs and chunks whose lease expired (dead worker, lost message) to AVAILABLE, or fail
    them; then claim, so recovered work is sent again without waiting for the next claim."""
    config = settings()
    with engine_for(config.database_url).begin() as conn:
        reaped = runs.reap(conn, config.max_attempts, config.claim_batch)
        reaped_chunks = chunks.reap(conn, config.max_attempts, config.claim_batch)
    for item in reaped:
        state_change("reaped", item.id, item.plan_id, attempt=item.attempt, status=item.status)
    for piece in reaped_chunks:
        state_change(
            "chunk reaped",
            piece.run_id,
            chunk=piece.chunk,
            attempt=piece.attempt,
            status=RunStatus.FAILED if piece.abandoned else RunStatus.AVAILABLE,
        )
    if reaped or reaped_chunks:
        claim_now(config)
    return len(reaped) + len(reaped_chunks)


@app.task(name="plancheck.relay")
def relay() -> int:
    """Deliver pending follow-ups (approval finding, rollout creation) from the outbox."""
    config = settings()
    with engine_for(config.database_url).begin() as conn:
        delivered = followups.relay(conn, config.claim_batch)
    if delivered >= config.claim_batch:  # a full batch: more may be due, keep going now
        relay.apply_async(queue=config.queue)
    return delivered
