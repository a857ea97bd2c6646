"""Test hook (test suite only): the plancheck Celery app whose check spins on the CPU, forever, for
SQL that carries the marker `-- spin`; any other SQL is checked as usual.

It stands in for a pathological check (a review of a huge script, an expensive expression) that
never waits on I/O, so only an interruption of the executing thread can stop it.
"""

from __future__ import annotations

from typing import Any

from plancheck import app
from plancheck.scheduler import runner

__all__ = ["SPIN_MARKER", "app"]

SPIN_MARKER = "-- spin"
_real_check = runner.check_target


def _check(target: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
    if SPIN_MARKER not in sql:
        return _real_check(target, sql, *args, **kwargs)
    spins = 0
    while True:  # pure Python: no I/O, no sleep, nothing a cancelled query could interrupt
        spins += 1


runner.check_target = _check  # type: ignore[assignment]
