"""Every statement of issues and rollouts (tables issue, rollout, rollout_task).

What they should say — a plan's risk, who approves, when a rollout may exist — is decided above
the store (`plancheck.domain.followups`); here are only the reads and writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError

from plancheck.core.errors import Conflict, NotFound
from plancheck.core.states import ApprovalStatus

_ISSUE_COLUMNS = "id, plan_id, status, approval_status, risk, approvers, approval_generation"


@dataclass(frozen=True)
class IssueView:
    id: int
    plan_id: int
    status: str
    approval_status: str
    risk: str | None
    approvers: list[str]
    approval_generation: int | None


@dataclass(frozen=True)
class RolloutView:
    id: int
    plan_id: int
    plan_version: int
    tasks: list[dict[str, Any]]


_CREATE_ISSUE = text(f"INSERT INTO issue (plan_id) VALUES (:plan_id) RETURNING {_ISSUE_COLUMNS}")

_ISSUE = text(f"SELECT {_ISSUE_COLUMNS} FROM issue WHERE id = :id")

# The approval of a plan's issue is found by one follow-up at a time: the row is locked.
_ISSUE_OF_PLAN_FOR_UPDATE = text(f"SELECT {_ISSUE_COLUMNS} FROM issue WHERE plan_id = :plan_id FOR UPDATE")

_ISSUE_OF_PLAN = text(f"SELECT {_ISSUE_COLUMNS} FROM issue WHERE plan_id = :plan_id")

_APPROVE = text(
    f"UPDATE issue SET approval_status = '{ApprovalStatus.APPROVED}' WHERE id = :id RETURNING {_ISSUE_COLUMNS}"
)

_SET_APPROVAL = text(
    """
    UPDATE issue SET risk = :risk, approvers = :approvers, approval_generation = :generation,
        approval_status = :approval_status
    WHERE id = :id
    """
).bindparams(bindparam("approvers", type_=JSONB))

_CREATE_ROLLOUT = text(
    """
    INSERT INTO rollout (plan_id, plan_version) VALUES (:plan_id, :plan_version)
    ON CONFLICT (plan_id, plan_version) DO NOTHING
    RETURNING id
    """
)

_ADD_ROLLOUT_TASK = text("INSERT INTO rollout_task (rollout_id, target) VALUES (:rollout_id, :target)")

_LATEST_ROLLOUT = text(
    "SELECT id, plan_id, plan_version FROM rollout WHERE plan_id = :plan_id ORDER BY plan_version DESC LIMIT 1"
)

_ROLLOUT_TASKS = text("SELECT target, status FROM rollout_task WHERE rollout_id = :rollout_id ORDER BY target")


def create_issue(conn: Connection, plan_id: int) -> IssueView:
    try:
        with conn.begin_nested():
            row = conn.execute(_CREATE_ISSUE, {"plan_id": plan_id}).one()
    except IntegrityError:
        raise Conflict(f"plan {plan_id} already has an issue") from None
    return IssueView(**row._asdict())


def get_issue(conn: Connection, issue_id: int) -> IssueView:
    row = conn.execute(_ISSUE, {"id": issue_id}).one_or_none()
    if row is None:
        raise NotFound(f"issue {issue_id} not found")
    return IssueView(**row._asdict())


def issue_of_plan(conn: Connection, plan_id: int, lock: bool = False) -> IssueView | None:
    """The plan's issue, if it has one; `lock` holds its row until the transaction ends."""
    row = conn.execute(_ISSUE_OF_PLAN_FOR_UPDATE if lock else _ISSUE_OF_PLAN, {"plan_id": plan_id}).one_or_none()
    return None if row is None else IssueView(**row._asdict())


def approve(conn: Connection, issue_id: int) -> IssueView:
    row = conn.execute(_APPROVE, {"id": issue_id}).one_or_none()
    if row is None:
        raise NotFound(f"issue {issue_id} not found")
    return IssueView(**row._asdict())


def set_approval(
    conn: Connection, issue_id: int, risk: str, approvers: Sequence[str], status: str, generation: int
) -> None:
    """Record the approval found for a run generation: its risk, approvers and resulting status."""
    params = {
        "id": issue_id,
        "risk": risk,
        "approvers": list(approvers),
        "approval_status": status,
        "generation": generation,
    }
    conn.execute(_SET_APPROVAL, params)


def create_rollout(conn: Connection, plan_id: int, plan_version: int, targets: Sequence[str]) -> bool:
    """A rollout of this plan version with one task per target, unless it exists already (False)."""
    rollout_id = conn.execute(_CREATE_ROLLOUT, {"plan_id": plan_id, "plan_version": plan_version}).scalar_one_or_none()
    if rollout_id is None:
        return False
    for target in targets:
        conn.execute(_ADD_ROLLOUT_TASK, {"rollout_id": rollout_id, "target": target})
    return True


def latest_rollout(conn: Connection, plan_id: int) -> RolloutView | None:
    row = conn.execute(_LATEST_ROLLOUT, {"plan_id": plan_id}).one_or_none()
    if row is None:
        return None
    tasks = conn.execute(_ROLLOUT_TASKS, {"rollout_id": row.id}).all()
    return RolloutView(row.id, row.plan_id, row.plan_version, [task._asdict() for task in tasks])
