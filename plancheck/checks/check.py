"""`check_target`: SQL review and summary report of one target, on a read-only session.

The worker calls `check_target` once per target; everything that can go wrong with a target ends up
as ERROR results for that target, so one bad database never fails a whole plan's run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from plancheck.checks.advise import ReviewConfig, review, shared_parse
from plancheck.checks.limits import DEFAULT_LIMITS, CheckLimits
from plancheck.checks.result import CheckResult, CheckType, Status
from plancheck.checks.rules.script import Script
from plancheck.checks.session import TargetSession, open_target_session
from plancheck.checks.summary import summarize
from plancheck.checks.target import Target, TargetError

log = logging.getLogger(__name__)


class CheckStopped(Exception):
    """The caller asked to stop (run canceled, lease lost); this target's results are to be discarded."""


def check_target(
    target: Target,
    sql: str,
    config: ReviewConfig,
    limits: CheckLimits = DEFAULT_LIMITS,
    should_stop: Callable[[], bool] = lambda: False,
    on_session: Callable[[TargetSession | None], None] = lambda session: None,
) -> list[CheckResult]:
    """SQL review plus summary report of `sql` on `target`.

    `on_session` receives the open session (so a heartbeat thread can `cancel()` a running EXPLAIN)
    and None before it closes. Target trouble becomes an ERROR result; only a stop request raises.
    """
    _stop_if(should_stop)
    try:
        with open_target_session(target, limits) as session:
            on_session(session)
            try:
                return _run_checks(target, sql, config, limits, session, should_stop)
            finally:
                on_session(None)
    except TargetError as error:
        _stop_if(should_stop)  # a cancel surfaces as a canceled query: it is a stop, not target trouble
        log.warning("check of %s failed: %s: %s", target.name, error.title, error)
        return [CheckResult(Status.ERROR, CheckType.STATEMENT_ADVISE, target.name, error.title, str(error))]


def _run_checks(
    target: Target,
    sql: str,
    config: ReviewConfig,
    limits: CheckLimits,
    session: TargetSession,
    should_stop: Callable[[], bool],
) -> list[CheckResult]:
    parsed = shared_parse(sql, limits.review_max_bytes)  # once per process: review, summary, the next targets
    results = review(
        sql, target.name, config, session.estimate_rows, parsed=parsed, function_volatility=session.function_volatility
    )
    session.raise_if_failed()  # in case the advisor swallowed a TargetError from estimate_rows
    _stop_if(should_stop)
    results.append(summarize(sql, target.name, session, parsed if isinstance(parsed, Script) else None))
    _stop_if(should_stop)
    return results


def _stop_if(should_stop: Callable[[], bool]) -> None:
    if should_stop():
        raise CheckStopped("check stopped on request")
