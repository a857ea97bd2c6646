"""Celery tasks: claim, run, run_chunk, reap and relay — thin shells around the store and the runner.

Messages carry ids and tokens only (target names for chunks), never URLs or credentials.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import cache

from celery import Task

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


def _dispatch(claimed: Iterable[runs.Claimed]) -> None:
    for item in claimed:
        state_change("claimed", item.id, item.plan_id, attempt=item.attempt + 1)
        run.apply_async((item.id, str(item.token)))


def _follow_through(run_id: int, token: str, outcome: runner.Outcome) -> str:
    """Send what the outcome asks for: chunk messages, the handed-on run, the follow-up relay."""
    for index, names in enumerate(outcome.chunks):
        run_chunk.apply_async((run_id, token, index, names))
    _dispatch(outcome.handoff)
    if outcome.status == "DONE":
        relay.delay()
    return outcome.status


@app.task(name="plancheck.claim")
def claim() -> int:
    """Claim AVAILABLE runs, oldest first, and send one run message each."""
    config = settings()
    with engine_for(config.database_url).begin() as conn:
        claimed = runs.claim(conn, config.claim_batch, config.lease_seconds)
    _dispatch(claimed)
    return len(claimed)


@app.task(name="plancheck.run", bind=True)
def run(self: Task, run_id: int, token: str) -> str:
    return _follow_through(run_id, token, runner.execute(run_id, token, _worker(self), settings()))


@app.task(name="plancheck.run_chunk", bind=True)
def run_chunk(self: Task, run_id: int, token: str, chunk: int, names: list[str]) -> str:
    outcome = runner.execute_chunk(run_id, token, chunk, names, _worker(self), settings())
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
        return followups.relay(conn, config.claim_batch)
