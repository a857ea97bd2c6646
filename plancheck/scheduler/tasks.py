"""Celery tasks: claim, run, run_chunk, reap and relay — thin shells around the store and the runner.

Messages carry ids and tokens only (and, for chunks, target names with sheet hashes), never URLs or credentials.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from functools import cache

from celery import Task
from kombu import Connection

from plancheck.logs import state_change
from plancheck.scheduler import runner
from plancheck.scheduler.app import app
from plancheck.settings import Settings, load_settings
from plancheck.store import followups, runs
from plancheck.store.db import engine_for


@cache
def settings() -> Settings:
    return load_settings()


def _worker(task: Task) -> str:
    return f"{task.request.hostname or 'local'}:{os.getpid()}"


# A DONE run's follow-ups wait up to this long, so that one relay task delivers those of every run a
# process finishes meanwhile instead of one relay per run (beat's relay remains the safety net).
RELAY_DELAY = 0.25


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


_relay_debounce = _Debounce(RELAY_DELAY)


def claim_now(config: Settings, connection: Connection | None = None) -> int:
    """Claim AVAILABLE runs, oldest first, and send one run message each (the claim task's body).

    The API calls it right after creating a run, over its own broker connection: the run message
    goes out from the client, without a claim message's hop through a worker.
    """
    with engine_for(config.database_url).begin() as conn:
        claimed = runs.claim(conn, config.claim_batch, config.lease_seconds)
    _dispatch(claimed, connection)
    return len(claimed)


def _dispatch(claimed: Iterable[runs.Claimed], connection: Connection | None = None) -> None:
    for item in claimed:
        state_change("claimed", item.id, item.plan_id, attempt=item.attempt + 1)
        run.apply_async((item.id, str(item.token)), connection=connection, retry=connection is None)


def _follow_through(run_id: int, token: str, outcome: runner.Outcome) -> str:
    """Send what the outcome asks for: chunk messages, the handed-on run, the follow-up relay."""
    for index, assignments in enumerate(outcome.chunks):
        run_chunk.apply_async((run_id, token, index, assignments))
    _dispatch(outcome.handoff)
    if outcome.status == "DONE" and _relay_debounce.first():
        relay.apply_async(countdown=RELAY_DELAY)
    return outcome.status


@app.task(name="plancheck.claim")
def claim() -> int:
    """Claim AVAILABLE runs, oldest first, and send one run message each."""
    return claim_now(settings())


@app.task(name="plancheck.run", bind=True)
def run(self: Task, run_id: int, token: str) -> str:
    return _follow_through(run_id, token, runner.execute(run_id, token, _worker(self), settings()))


@app.task(name="plancheck.run_chunk", bind=True)
def run_chunk(self: Task, run_id: int, token: str, chunk: int, assignments: list[list[str]]) -> str:
    """Check one chunk of a fanned-out run: `assignments` are [target name, sheet sha256] pairs."""
    pairs = [(name, sheet) for name, sheet in assignments]
    outcome = runner.execute_chunk(run_id, token, chunk, pairs, _worker(self), settings())
    return _follow_through(run_id, token, outcome)


@app.task(name="plancheck.reap")
def reap() -> int:
    """Return runs whose lease expired (dead worker, lost message) to AVAILABLE, or fail them."""
    config = settings()
    with engine_for(config.database_url).begin() as conn:
        reaped = runs.reap(conn, config.max_attempts, config.claim_batch)
    for item in reaped:
        state_change("reaped", item.id, item.plan_id, attempt=item.attempt, status=item.status)
    if any(item.status == "AVAILABLE" for item in reaped):
        claim.delay()
    return len(reaped)


@app.task(name="plancheck.relay")
def relay() -> int:
    """Deliver pending follow-ups (approval finding, rollout creation) from the outbox."""
    config = settings()
    with engine_for(config.database_url).begin() as conn:
        delivered = followups.relay(conn, config.claim_batch)
    if delivered >= config.claim_batch:  # a full batch: more may be due, keep going now
        relay.delay()
    return delivered
