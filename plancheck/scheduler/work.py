"""What a started run has to check: its plan's targets, each with its SQL, read from PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row

from plancheck.checks import ReviewConfig
from plancheck.checks.groups import DatabaseResource, compile_expression, select_members
from plancheck.checks.instance import resolve_url
from plancheck.checks.target import Target
from plancheck.checks.targets import InvalidPlan, derive_targets
from plancheck.store import catalog, runs


class RunAbort(Exception):
    """The run cannot be checked at all; it ends with `status` and this reason."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Work:
    items: list[tuple[Target, str]]
    config: ReviewConfig


def load_work(conn: Connection, started: runs.Started) -> Work:
    plan = catalog.get_plan(conn, started.plan_id)
    if plan is None:
        raise RunAbort("FAILED", "plan not found")
    project = catalog.project_by_id(conn, plan.project_id)
    if project is None:
        raise RunAbort("FAILED", "project not found")
    if project.archived:
        raise RunAbort("CANCELED", f"project {project.key!r} is archived")
    try:
        config = ReviewConfig.from_project_settings(project.settings)
        rows = project_databases(conn, project.id)
        groups = {group.key: group.expression for group in catalog.list_groups(conn, project.id)}
        planned = derive_targets(plan.specs, [resource(row) for row in rows.values()], groups, _sampling(project))
    except (InvalidPlan, ValueError) as exc:
        raise RunAbort("FAILED", str(exc)) from None
    sheets = catalog.sheet_contents(conn, [check.sheet for check in planned])
    return Work([(_target(rows[check.database.name]), sheets[check.sheet]) for check in planned], config)


def project_databases(conn: Connection, project_id: int) -> dict[str, Row[Any]]:
    return {f"{row.instance_key}/{row.name}": row for row in catalog.list_databases(conn, project_id)}


def group_members(conn: Connection, project: Row[Any], expression: str) -> list[Row[Any]]:
    """The project's databases the group expression matches now, limited by `ci_sampling_size`."""
    rows = project_databases(conn, project.id)
    members = select_members(compile_expression(expression), [resource(row) for row in rows.values()], _sampling(project))
    return [rows[member.name] for member in members]


def resource(row: Row[Any]) -> DatabaseResource:
    return DatabaseResource(row.instance_key, row.name, row.environment, row.labels)


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
