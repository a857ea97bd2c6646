"""Heartbeats for a started run: extend its lease while the work is alive, notice when it is lost."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from plancheck.logs import state_change
from plancheck.store import runs

log = logging.getLogger(__name__)


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Lease:
    """A background thread heartbeats the run every `interval` seconds, fenced by its token.

    When a heartbeat matches nothing, the run was cancelled, re-run or reaped: `lost` turns true
    and the target query in flight, if any, is cancelled so the worker stops promptly. A database
    outage only skips beats; if it outlasts the lease, the reaper decides.
    """

    def __init__(self, engine: Engine, started: runs.Started, interval: float, lease_seconds: float) -> None:
        self._engine = engine
        self._started = started
        self._interval = interval
        self._lease_seconds = lease_seconds
        self._lost = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._query: Cancellable | None = None
        self._thread = threading.Thread(target=self._beat, name=f"lease-{started.id}", daemon=True)

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def track(self, query: Cancellable | None) -> None:
        """Remember the target session in flight, so a lost lease can cancel it."""
        with self._lock:
            self._query = query
        if query is not None and self.lost:
            query.cancel()

    def mark_lost(self) -> None:
        if self._lost.is_set():
            return
        self._lost.set()
        state_change("heartbeat lost", self._started.id, self._started.plan_id, attempt=self._started.attempt)
        with self._lock:
            if self._query is not None:
                self._query.cancel()

    def _beat(self) -> None:
        started = self._started
        while not self._done.wait(self._interval):
            try:
                with self._engine.begin() as conn:
                    alive = runs.heartbeat(conn, started.id, started.token, self._lease_seconds)
            except DBAPIError as exc:
                log.warning("heartbeat for run %s skipped: %s", started.id, type(exc.orig).__name__)
                continue
            if not alive and not self._done.is_set():
                self.mark_lost()
                return

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        self._thread.join()
