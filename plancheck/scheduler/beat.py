"""The beat scheduler: Celery's in-memory scheduler that runs maintenance itself, plus a heartbeat row.

Maintenance (claim, reap, relay) runs here, in beat's own process, instead of being sent to the
workers: a worker whose every slot is busy with long checks would leave it waiting in the queue,
and recovery after a crash would wait for the queue to drain instead of the lease. Beat is the one
process every deployment runs (in any number: claims and reaps are `FOR UPDATE SKIP LOCKED`, so a
doubled tick is harmless) and it never runs checks, so the maintenance period is kept even at
capacity. Other schedule entries are sent to workers as usual.

Beat keeps no state (no schedule file). Whether one is alive can only be seen from outside it:
every few seconds the tick upserts beat_heartbeat(name, last_seen), read by `plancheck status`
and the metrics.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from celery import beat
from sqlalchemy.exc import SQLAlchemyError

from plancheck.core.settings import load_settings
from plancheck.store import beats
from plancheck.store.db import probe_engine

log = logging.getLogger(__name__)


# Tasks beat runs in its own process rather than sending them to a worker.
IN_PROCESS = frozenset({"plancheck.claim", "plancheck.reap", "plancheck.relay"})


class Scheduler(beat.Scheduler):
    """celery.beat.Scheduler that runs maintenance in-process and records its liveness; a database
    outage never fails a tick."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.beat_name = f"{socket.gethostname()}:{os.getpid()}"
        settings = load_settings()
        self._database_url = settings.database_url
        # Seconds between heartbeats (PLANCHECK_BEAT_HEARTBEAT_SECONDS); also the longest beat sleeps, so
        # a heartbeat is never late.
        self.heartbeat_every = settings.beat_heartbeat_seconds
        self._next_heartbeat = 0.0
        self._recording = True

    def apply_entry(self, entry: beat.ScheduleEntry, producer: Any = None) -> None:
        if entry.task not in IN_PROCESS:
            super().apply_entry(entry, producer)
            return
        try:
            self.app.tasks[entry.task]()
        except Exception:  # the next tick tries again; beat itself must go on
            log.exception("beat %s: maintenance %s failed", self.beat_name, entry.task)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self._maybe_record()
        return min(super().tick(*args, **kwargs), self.heartbeat_every)

    def _maybe_record(self) -> None:
        now = time.monotonic()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self.heartbeat_every
        try:
            with probe_engine(self._database_url, timeout=2).begin() as conn:
                beats.record(conn, self.beat_name)
        except SQLAlchemyError as exc:
            if self._recording:
                log.warning(
                    "beat %s: could not record its heartbeat (%s); scheduling goes on",
                    self.beat_name,
                    type(exc).__name__,
                )
            self._recording = False
        else:
            if not self._recording:
                log.info("beat %s: heartbeat recorded again", self.beat_name)
            self._recording = True
