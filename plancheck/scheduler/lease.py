"""Heartbeats for executing work (a run or a chunk): extend its lease while alive, stop it when lost.

When a heartbeat matches nothing, the work was cancelled, re-run or reaped: the lease turns lost,
the target query in flight is cancelled, and code running inside `Lease.interruptible()` is
interrupted even when it is busy on the CPU (a huge script's review, a group expression), so the
pool slot frees within a heartbeat.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from types import TracebackType
from typing import Protocol

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Interrupted(BaseException):
    """Raised inside `Lease.interruptible()` when the lease is lost.

    A BaseException, so no `except Exception` in the interrupted code swallows it.
    """


def _raise_in_thread(thread_id: int, exception: type[BaseException] | None) -> None:
    """Make `thread_id` raise `exception` at its next bytecode (None withdraws a pending one).

    Withdraw only what was sent: on Python 3.11 a withdrawal with nothing pending leaves the
    interpreter's "pending call" flag set, and the next call under a profiler or tracer (cProfile,
    coverage, a debugger) never returns."""
    target = ctypes.c_ulong(thread_id)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(target, ctypes.py_object(exception) if exception else None)


class Lease:
    """Heartbeats `renew` every `interval` seconds while the `with` block runs.

    `renew` is one fenced statement that extends the lease; False means the work lost its token.
    A database outage only skips beats; if it outlasts the lease, the reaper decides. The beats come
    from one thread per process (`_Heartbeats`), so short work costs no thread of its own.
    """

    def __init__(
        self, engine: Engine, renew: Callable[[Connection], bool], interval: float, on_lost: Callable[[], None]
    ) -> None:
        self._engine = engine
        self._renew = renew
        self.interval = interval
        self._on_lost = on_lost
        self._lost = threading.Event()
        self._lock = threading.Lock()
        self._beating = threading.Lock()
        self._closed = False
        self._query: Cancellable | None = None
        self._interruptible_thread: int | None = None
        self._interrupt_sent = False

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def track(self, query: Cancellable | None) -> None:
        """Remember the target session in flight, so a lost lease can cancel it."""
        with self._lock:
            self._query = query
        if query is not None and self.lost:
            query.cancel()

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """Within the block, a lost lease raises `Interrupted` in this thread, wherever it is."""
        with self._lock:
            if self.lost:
                raise Interrupted
            self._interruptible_thread = threading.get_ident()
        delivered = False
        try:
            yield
        except Interrupted:
            delivered = True
            raise
        finally:
            with self._lock:
                self._interruptible_thread = None
                if self._interrupt_sent and not delivered:  # sent, not yet raised: withdrawn
                    _raise_in_thread(threading.get_ident(), None)

    def mark_lost(self) -> None:
        with self._lock:
            if self._lost.is_set():
                return
            self._lost.set()
            if self._query is not None:
                self._query.cancel()
            if self._interruptible_thread is not None:
                _raise_in_thread(self._interruptible_thread, Interrupted)
                self._interrupt_sent = True
        self._on_lost()

    def beat(self) -> None:
        """One fenced heartbeat; never after the `with` block ended (the exit waits for a beat in flight)."""
        with self._beating:
            if self._closed or self.lost:
                return
            try:
                with self._engine.begin() as conn:
                    alive = self._renew(conn)
            except DBAPIError as exc:
                log.warning("heartbeat skipped: %s", type(exc.orig).__name__)
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
