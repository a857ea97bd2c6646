"""Celery tasks: claim, run, reap and relay. Each is a thin shell around the store and the runner."""

from __future__ import annotations

import os
from functools import cache

from plancheck.logs import state_change
from plancheck.scheduler import runner
from plancheck.scheduler.app import app
from plancheck.settings import Settings, load_settings
from plancheck.store import followups, runs
from plancheck.store.db import engine_for


@cache
def settings() -> Settings:
    return load_settings()


@app.task(name="plancheck.claim")
def claim() -> int:
    """Claim a batch of AVAILABLE runs and send one run message each; more backlog claims again."""
    config = settings()
    with engine_for(config.database_url).begin() as conn:
        claimed = runs.claim(conn, config.claim_batch, config.lease_seconds)
    for item in claimed:
        state_change("claimed", item.id, item.plan_id, attempt=item.attempt)
        run.apply_async((item.id, str(item.token)))
    if len(claimed) == config.claim_batch:
        claim.delay()
    return len(claimed)


@app.task(name="plancheck.run")
def run(run_id: int, token: str) -> str:
    worker = f"{run.request.hostname or 'local'}:{os.getpid()}"
    outcome = runner.execute(run_id, token, worker, settings())
    if outcome == "DONE":
        relay.delay()
    return outcome


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
