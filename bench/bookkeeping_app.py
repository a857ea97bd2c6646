"""Bench only: the plancheck Celery app with the check itself replaced by one constant result.

`celery -A bench.bookkeeping_app worker` runs plancheck's real claim, start, load, heartbeat, fenced
writes, finish, hand-on claim and relay, but never opens the target: the overhead benchmark uses
it to show what the scheduler's bookkeeping costs apart from the check.
"""

from __future__ import annotations

from typing import Any

from plancheck import app
from plancheck.checks.result import CheckResult, CheckType, Status
from plancheck.checks.target import Target
from plancheck.scheduler import runner

__all__ = ["app"]


def _constant_check(target: Target, sql: str, config: Any, **_: Any) -> list[CheckResult]:
    return [CheckResult(Status.SUCCESS, CheckType.STATEMENT_ADVISE, target.name, "OK", "not checked (bench)")]


runner.check_target = _constant_check  # type: ignore[assignment]
