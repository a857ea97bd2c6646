"""Read-only statements behind the HTTP API's listings and the results page.

Plans are listed newest first and paged by id (`before`), so a page never shifts while new plans
arrive. Finding counts are computed by PostgreSQL from each run's result document.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT

_PROJECTS = text("SELECT key, title, archived, created_at FROM project ORDER BY key")

_COUNT = """(SELECT count(*) FROM jsonb_array_elements(coalesce(r.result -> 'results', '[]'::jsonb)) e
             WHERE e ->> 'status' = '{level}' AND e ->> 'type' IS DISTINCT FROM 'STATEMENT_SUMMARY_REPORT')"""

_PLANS = text(
    f"""
    SELECT p.id AS plan_id, p.title, p.created_at, r.status, r.generation, r.targets_total, r.targets_done,
           r.finished_at, {_COUNT.format(level="ERROR")} AS errors, {_COUNT.format(level="WARNING")} AS warnings
    FROM plan p LEFT JOIN plan_check_run r ON r.plan_id = p.id
    WHERE p.project_id = :project_id
      AND (CAST(:status AS text) IS NULL OR r.status = :status)
      AND (CAST(:before AS bigint) IS NULL OR p.id < :before)
    ORDER BY p.id DESC
    LIMIT :limit
    """
)

_PLAN = text(
    """
    SELECT p.id AS plan_id, pr.key AS project, p.title, p.specs, p.version, p.created_at
    FROM plan p JOIN project pr ON pr.id = p.project_id WHERE p.id = :id
    """
)

_PLAN_PROJECT = text("SELECT pr.key FROM plan p JOIN project pr ON pr.id = p.project_id WHERE p.id = :id")

_PROGRESS = text(
    """
    SELECT plan_id, status, generation, targets_total, targets_done FROM plan_check_run
    WHERE plan_id = ANY(:plan_ids)
    """
).bindparams(bindparam("plan_ids", type_=ARRAY(BIGINT)))


def projects(conn: Connection) -> list[Row[Any]]:
    return list(conn.execute(_PROJECTS).all())


def plans(conn: Connection, project_id: int, status: str | None, limit: int, before: int | None) -> list[Row[Any]]:
    """Up to `limit` plans of the project with ids below `before`, newest first, with their run's state."""
    params = {"project_id": project_id, "status": status, "limit": limit, "before": before}
    return list(conn.execute(_PLANS, params).all())


def plan(conn: Connection, plan_id: int) -> Row[Any] | None:
    return conn.execute(_PLAN, {"id": plan_id}).one_or_none()


def plan_project(conn: Connection, plan_id: int) -> str | None:
    return conn.execute(_PLAN_PROJECT, {"id": plan_id}).scalar_one_or_none()


def progress(conn: Connection, plan_ids: Sequence[int]) -> list[Row[Any]]:
    """Status and progress of these plans' runs, in one statement whatever their number."""
    return list(conn.execute(_PROGRESS, {"plan_ids": list(plan_ids)}).all())
