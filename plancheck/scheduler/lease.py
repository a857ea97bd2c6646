"""Heartbeats for a started run: extend its lease while the work is alive, notice when it is lost."""

from __future__ import annotations

import logging
import os
import threading
import time
from functools import cache
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
    """Heartbeats the run every `interval` seconds while the `with` block runs, fenced by its token.

    When a heartbeat matches nothing, the run was cancelled, re-run or reaped: `lost` turns true
    and the target query in flight, if any, is cancelled so the worker stops promptly. A database
    outage only skips beats; if it outlasts the lease, the reaper decides. The beats come from one
    thread per process (`_Heartbeats`), so a short run costs no thread of its own.
    """

    def __init__(self, engine: Engine, started: runs.Started, interval: float, lease_seconds: float) -> None:
        self._engine = engine
        self._started = started
        self.interval = interval
        self._lease_seconds = lease_seconds
        self._lost = threading.Event()
        self._lock = threading.Lock()
        self._beating = threading.Lock()
        self._closed = False
        self._query: Cancellable | None = None

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

    def beat(self) -> None:
        """One fenced heartbeat; never after the `with` block ended (the exit waits for a beat in flight)."""
        started = self._started
        with self._beating:
            if self._closed or self.lost:
                return
            try:
                with self._engine.begin() as conn:
                    alive = runs.heartbeat(conn, started.id, started.token, self._lease_seconds)
            except DBAPIError as exc:
                log.warning("heartbeat for run %s skipped: %s", started.id, type(exc.orig).__name__)
                return
            if not alive:
                self.mark_lost()

    def __enter__(self) -> Lease:
        _heartbeats().add(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _heartbeats().remove(self)
        with self._beating:
            self._closed = True


class _Heartbeats:
    """The heartbeat service: one daemon thread that beats every open lease of this process when due."""

    def __init__(self) -> None:
        self._due: dict[Lease, float] = {}
        self._changed = threading.Condition()
        threading.Thread(target=self._run, name="plancheck-heartbeats", daemon=True).start()

    def add(self, lease: Lease) -> None:
        with self._changed:
            self._due[lease] = time.monotonic() + lease.interval
            self._changed.notify()

    def remove(self, lease: Lease) -> None:
        with self._changed:
            self._due.pop(lease, None)

    def _run(self) -> None:
        while True:
            for lease in self._wait_for_due():
                try:
                    lease.beat()
                except Exception:  # the service must outlive any one lease's trouble
                    log.exception("heartbeat failed")

    def _wait_for_due(self) -> list[Lease]:
        """Block until some lease is due; schedule its next beat and return the due ones."""
        with self._changed:
            while True:
                now = time.monotonic()
                due = [lease for lease, at in self._due.items() if at <= now]
                if due:
                    for lease in due:
                        self._due[lease] = now + lease.interval
                    return due
                self._changed.wait(min(self._due.values(), default=now + 60) - now)


@cache
def _heartbeats_of(pid: int) -> _Heartbeats:
    return _Heartbeats()


def _heartbeats() -> _Heartbeats:
    """This process's service: a forked pool child starts its own (threads do not survive a fork)."""
    return _heartbeats_of(os.getpid())
