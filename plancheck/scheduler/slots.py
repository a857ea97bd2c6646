"""A worker's pool slots, recorded in PostgreSQL while it takes work (a Celery worker bootstep).

Claims send no more work than the live workers' free slots, so a claimed message never waits in the
broker behind busy workers until its lease lapses. Each worker records `name -> slots` when it starts
and every heartbeat period after, and forgets it when it stops taking work; a worker that dies
without saying so stops counting once its record is older than a lease. A starting worker claims
work for its slots at once, so a backlog does not wait for the next beat tick.

The same step marks the broker queue as this deployment's (`ownership`), and refuses to start the
worker when another deployment uses the queue.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import bootsteps
from sqlalchemy.exc import SQLAlchemyError

from plancheck.core.redact import named_error_line
from plancheck.core.settings import Settings, load_settings
from plancheck.scheduler.ownership import mark_queue
from plancheck.scheduler.tasks import claim_now
from plancheck.store import workers
from plancheck.store.db import engine_for

log = logging.getLogger(__name__)

# The queue mark outlives a deployment's workers by this much at least (see `ownership`).
MARK_SECONDS = 60


def pool_slots(worker: Any) -> int:
    """How many tasks the worker runs at once: its concurrency, or one for the solo pool."""
    pool = getattr(worker.pool_cls, "__name__", str(worker.pool_cls)).lower()
    return 1 if "solo" in pool else max(1, int(worker.concurrency or 1))


class WorkerSlots(bootsteps.StartStopStep):
    """Records the worker's slots from the moment its pool runs until it stops taking work."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, parent: Any) -> None:
        settings = load_settings()
        deployment = self._deployment(settings)
        self._mark_queue(parent, settings, deployment)  # before the consumer starts: refuse a shared queue
        name, slots = parent.hostname, pool_slots(parent)
        self._thread = threading.Thread(
            target=self._record, args=(parent, settings, deployment, name, slots), name="plancheck-slots", daemon=True
        )
        self._thread.start()
        log.info("worker %s: %s slot(s), queue %s", name, slots, settings.queue)

    def _deployment(self, settings: Settings) -> str:
        with engine_for(settings.database_url).connect() as conn:
            return str(workers.deployment_id(conn))

    def _mark_queue(self, parent: Any, settings: Settings, deployment: str) -> None:
        ttl = max(MARK_SECONDS, int(4 * settings.lease_seconds))
        with parent.app.connection_for_write() as connection:
            mark_queue(connection, settings.broker_url, settings.queue, deployment, ttl)

    def _record(self, parent: Any, settings: Settings, deployment: str, name: str, slots: int) -> None:
        engine = engine_for(settings.database_url)
        claimed = False
        mark_due = time.monotonic() + MARK_SECONDS / 4
        while True:
            try:
                with engine.begin() as conn:
                    workers.record(conn, name, slots)
                if time.monotonic() >= mark_due:
                    self._mark_queue(parent, settings, deployment)
                    mark_due = time.monotonic() + MARK_SECONDS / 4
                if not claimed:
                    claim_now(settings)
                    claimed = True
            except Exception as exc:  # the database or broker is away (or the queue was taken): next period
                log.warning("worker %s: could not record its slots (%.300s)", name, named_error_line(exc))
            if self._stop.wait(settings.heartbeat_seconds):
                return

    def stop(self, parent: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            with engine_for(load_settings().database_url).begin() as conn:
                workers.forget(conn, parent.hostname)
        except SQLAlchemyError as exc:
            log.warning("worker %s: could not forget its slots (%s)", parent.hostname, type(exc).__name__)

    terminate = stop  # a cold shutdown stops taking work too
