"""Catalog rows to check targets: what a started run (or chunk) has to check, each target with its SQL,
read from PostgreSQL, and the limits its checks keep. The worker and the API both derive targets here.

Reads are shaped by the plan: a plan of named targets reads only those databases, and a chunk of a
fanned-out run reads only the targets stored with it; only a group's CEL expression needs the
project's whole database list. Loading holds no row lock: group expressions are user logic and may
take a while, so they never run inside the transaction that started the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row

from plancheck.checks.instance import resolve_url
from plancheck.checks.limits import CheckLimits
from plancheck.checks.resource import DatabaseResource
from plancheck.checks.specs import InvalidPlan, derive_targets
from plancheck.checks.target import Target
from plancheck.core.settings import Settings
from plancheck.core.states import RunStatus
from plancheck.store import catalog

if TYPE_CHECKING:
    from plancheck.checks.advise import ReviewConfig


class RunAbort(Exception):
    """The run cannot be checked at all; it ends with `status` and this reason."""

    def __init__(self, status: RunStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Item:
    """One target to check, the sheet (sha256) it gets and that sheet's SQL ("" if the target is gone)."""

    target: Target
    sheet: str
    sql: str


@dataclass(frozen=True)
class Work:
    items: list[Item]
    config: ReviewConfig


def load_work(conn: Connection, plan_id: int) -> Work:
    """Every target of the run's plan, derived from its specs now (group membership included)."""
    plan = _checkable_plan(conn, plan_id)
    config = _review_config(plan)
    specs = plan.specs
    grouped = any(isinstance(spec, dict) and "group" in spec for spec in specs)
    rows = project_databases(conn, plan.project_id, None if grouped else _named_targets(specs))
    groups = {group.key: group.expression for group in catalog.list_groups(conn, plan.project_id)} if grouped else {}
    try:
        planned = derive_targets(specs, [resource(row) for row in rows.values()], groups, _sampling(plan))
    except (InvalidPlan, ValueError) as exc:
        raise RunAbort(RunStatus.FAILED, str(exc)) from None
    sheets = catalog.sheet_contents(conn, [check.sheet for check in planned])
    items = [Item(_target(rows[check.database.name]), check.sheet, sheets[check.sheet]) for check in planned]
    return Work(items, config)


def load_chunk(conn: Connection, plan_id: int, assignments: Sequence[tuple[str, str]]) -> Work:
    """A chunk's targets, each with its sheet, as the run derived them when it fanned out (stored with
    the chunk); a target unregistered since then comes back without SQL and is reported as not found."""
    plan = _checkable_plan(conn, plan_id)
    config = _review_config(plan)
    rows = project_databases(conn, plan.project_id, [name for name, _ in assignments])
    sheets = catalog.sheet_contents(conn, sorted({sheet for _, sheet in assignments}))
    items = [
        Item(_target(rows[name]), sheet, sheets[sheet]) if name in rows else Item(_missing(name), sheet, "")
        for name, sheet in assignments
    ]
    return Work(items, config)


def project_databases(conn: Connection, project_id: int, names: Sequence[str] | None = None) -> dict[str, Row[Any]]:
    rows = catalog.list_databases(conn, project_id, names)
    return {f"{row.instance_key}/{row.name}": row for row in rows}


def group_members(conn: Connection, project: Row[Any], expression: str) -> list[Row[Any]]:
    """The project's databases the group expression matches now, limited by `ci_sampling_size`."""
    from plancheck.checks.groups import compile_expression, select_members  # CEL: only where a group is used

    rows = project_databases(conn, project.id)
    members = select_members(
        compile_expression(expression), [resource(row) for row in rows.values()], _sampling(project)
    )
    return [rows[member.name] for member in members]


def resource(row: Row[Any]) -> DatabaseResource:
    return DatabaseResource(row.instance_key, row.name, row.environment, row.labels)


def _checkable_plan(conn: Connection, plan_id: int) -> Row[Any]:
    plan = catalog.plan_with_project(conn, plan_id)
    if plan is None:
        raise RunAbort(RunStatus.FAILED, "plan not found")
    if plan.archived:
        raise RunAbort(RunStatus.CANCELED, f"project {plan.project_key!r} is archived")
    return plan


def _review_config(plan: Row[Any]) -> ReviewConfig:
    from plancheck.checks.advise import ReviewConfig  # the rules: for the worker, not for reading runs

    try:
        return ReviewConfig.from_project_settings(plan.settings)
    except ValueError as exc:
        raise RunAbort(RunStatus.FAILED, str(exc)) from None


def _named_targets(specs: Any) -> list[str]:
    """Target names of specs that list targets; malformed specs are left for derive_targets to reject."""
    if not isinstance(specs, list):
        return []
    return [
        name
        for spec in specs
        if isinstance(spec, dict) and isinstance(spec.get("targets"), list)
        for name in spec["targets"]
        if isinstance(name, str)
    ]


def _sampling(project: Row[Any]) -> int | None:
    return project.settings.get("ci_sampling_size")


def _target(row: Row[Any]) -> Target:
    return Target(
        instance_key=row.instance_key,
        database_name=row.name,
        environment=row.environment,
        url=resolve_url(row.url, row.password_env, row.name),
        labels=row.labels,
    )


def _missing(name: str) -> Target:
    instance_key, _, database = name.partition("/")
    return Target(instance_key, database, "", url="")


def check_limits(settings: Settings) -> CheckLimits:
    """The limits of one check, as the PLANCHECK_TARGET_* and PLANCHECK_REVIEW_MAX_BYTES settings say."""
    return CheckLimits(
        review_max_bytes=settings.review_max_bytes,
        statement_timeout_ms=round(settings.target_statement_timeout * 1000),
        lock_timeout_ms=round(settings.target_lock_timeout * 1000),
        connect_timeout_s=settings.target_connect_timeout,
        idle_in_transaction_ms=round(settings.target_idle_in_transaction_timeout * 1000),
        idle_connections=settings.target_idle_connections,
        idle_seconds=settings.target_idle_seconds,
    )
