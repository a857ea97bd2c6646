"""Issues, rollouts and the outbox relay: the follow-ups a DONE check run triggers.

Each handler is idempotent by construction (it recomputes the same state, or inserts under a
unique key), and the relay applies a follow-up and marks it delivered in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, JSONB
from sqlalchemy.exc import IntegrityError

from plancheck.core.errors import Conflict, NotFound
from plancheck.core.redact import redact_urls
from plancheck.domain import risk
from plancheck.store import catalog, runs

log = logging.getLogger(__name__)


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


def create_issue(conn: Connection, plan_id: int) -> int:
    catalog.require_plan(conn, plan_id)
    try:
        with conn.begin_nested():
            issue_id = conn.execute(
                text("INSERT INTO issue (plan_id) VALUES (:p) RETURNING id"), {"p": plan_id}
            ).scalar_one()
    except IntegrityError:
        raise Conflict(f"plan {plan_id} already has an issue") from None
    find_approval(conn, plan_id)
    create_rollout(conn, plan_id)
    return int(issue_id)


def get_issue(conn: Connection, issue_id: int) -> IssueView:
    row = conn.execute(text("SELECT * FROM issue WHERE id = :i"), {"i": issue_id}).one_or_none()
    if row is None:
        raise NotFound(f"issue {issue_id} not found")
    return _issue_view(row)


def _issue_view(row: Any) -> IssueView:
    return IssueView(
        row.id, row.plan_id, row.status, row.approval_status, row.risk, row.approvers, row.approval_generation
    )


def approve_issue(conn: Connection, issue_id: int) -> IssueView:
    row = conn.execute(
        text("UPDATE issue SET approval_status = 'APPROVED' WHERE id = :i RETURNING *"), {"i": issue_id}
    ).one_or_none()
    if row is None:
        raise NotFound(f"issue {issue_id} not found")
    create_rollout(conn, row.plan_id)
    return _issue_view(row)


def find_approval(conn: Connection, plan_id: int, payload: dict[str, Any] | None = None) -> None:
    """Set the issue's risk and approvers from the plan's DONE run; a no-op when already found."""
    issue = conn.execute(text("SELECT * FROM issue WHERE plan_id = :p FOR UPDATE"), {"p": plan_id}).one_or_none()
    if issue is None:  # most checked plans have no issue yet: nothing to find, and no run to read
        return
    run = runs.get(conn, plan_id)
    if run is None or run.status != "DONE" or issue.approval_generation == run.generation:
        return
    project = conn.execute(
        text("SELECT p.settings FROM project p JOIN plan ON plan.project_id = p.id WHERE plan.id = :p"), {"p": plan_id}
    ).one()
    threshold = int(project.settings.get("risk_affected_rows", risk.DEFAULT_AFFECTED_ROWS_THRESHOLD))
    results = run.result.get("results", [])
    targets = sorted({result["target"] for result in results if isinstance(result.get("target"), str)})
    environments = {
        f"{db.instance_key}/{db.name}": db.environment for db in catalog.list_databases(conn, names=targets)
    }
    approval = risk.assess(results, environments, threshold)
    conn.execute(
        text(
            """
            UPDATE issue SET risk = :risk, approvers = :approvers, approval_generation = :generation,
                approval_status = CASE WHEN jsonb_array_length(:approvers) = 0 THEN 'APPROVED' ELSE 'PENDING' END
            WHERE id = :id
            """
        ).bindparams(bindparam("approvers", type_=JSONB)),
        {"risk": approval.risk, "approvers": approval.approvers, "generation": run.generation, "id": issue.id},
    )


def create_rollout(conn: Connection, plan_id: int, payload: dict[str, Any] | None = None) -> None:
    """Create the rollout once the issue is approved and the current plan version checked clean."""
    issue = conn.execute(text("SELECT approval_status FROM issue WHERE plan_id = :p"), {"p": plan_id}).one_or_none()
    if issue is None or issue.approval_status != "APPROVED":
        return
    plan = catalog.get_plan(conn, plan_id)
    run = runs.get(conn, plan_id)
    if plan is None or run is None:
        return
    results = run.result.get("results", [])
    clean = run.status == "DONE" and run.plan_version == plan.version and all(r["status"] != "ERROR" for r in results)
    if not clean:
        return
    rollout_id = conn.execute(
        text(
            "INSERT INTO rollout (plan_id, plan_version) VALUES (:p, :v) "
            "ON CONFLICT (plan_id, plan_version) DO NOTHING RETURNING id"
        ),
        {"p": plan_id, "v": plan.version},
    ).scalar_one_or_none()
    if rollout_id is None:
        return
    for target in sorted({r["target"] for r in results}):
        conn.execute(
            text("INSERT INTO rollout_task (rollout_id, target) VALUES (:r, :t)"), {"r": rollout_id, "t": target}
        )


def get_rollout(conn: Connection, plan_id: int) -> RolloutView | None:
    row = conn.execute(
        text("SELECT id, plan_id, plan_version FROM rollout WHERE plan_id = :p ORDER BY plan_version DESC LIMIT 1"),
        {"p": plan_id},
    ).one_or_none()
    if row is None:
        return None
    tasks = conn.execute(
        text("SELECT target, status FROM rollout_task WHERE rollout_id = :r ORDER BY target"), {"r": row.id}
    ).all()
    return RolloutView(row.id, row.plan_id, row.plan_version, [t._asdict() for t in tasks])


HANDLERS: dict[str, Callable[[Connection, int, dict[str, Any]], None]] = {
    "approval.find": find_approval,
    "rollout.create": create_rollout,
}


_PENDING = text(
    """
    SELECT id, kind, plan_id, payload FROM outbox
    WHERE delivered_at IS NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id LIMIT :batch FOR UPDATE SKIP LOCKED
    """
)

# A failing follow-up waits 2, 4, 8 … seconds, at most 5 minutes, so it never blocks the others.
_BACK_OFF = text(
    """
    UPDATE outbox SET failures = failures + 1, last_error = :error,
        next_attempt_at = now() + make_interval(secs => least(power(2, failures + 1), 300))
    WHERE id = :id
    """
)


_PLANS_WITH_ISSUE = text("SELECT plan_id FROM issue WHERE plan_id = ANY(:plan_ids)").bindparams(
    bindparam("plan_ids", type_=ARRAY(BIGINT))
)

_MARK_DELIVERED = text("UPDATE outbox SET delivered_at = now() WHERE id = ANY(:ids)").bindparams(
    bindparam("ids", type_=ARRAY(BIGINT))
)


def relay(conn: Connection, batch: int) -> int:
    """Apply up to `batch` due follow-ups, oldest first; each is marked delivered in the transaction
    that applies it. A failing one backs off and is retried by a later relay.

    Both follow-ups act on the plan's issue, and a plan that has none (most checks) has nothing to
    follow up: those rows are marked delivered together. An issue created later finds its approval
    and rollout itself (`create_issue`).
    """
    rows = conn.execute(_PENDING, {"batch": batch}).all()
    if not rows:
        return 0
    with_issue = set(conn.execute(_PLANS_WITH_ISSUE, {"plan_ids": sorted({row.plan_id for row in rows})}).scalars())
    idle = [row.id for row in rows if row.plan_id not in with_issue]
    if idle:
        conn.execute(_MARK_DELIVERED, {"ids": idle})
    return len(idle) + _apply(conn, [row for row in rows if row.plan_id in with_issue])


def _apply(conn: Connection, rows: Sequence[Row[Any]]) -> int:
    delivered = 0
    for row in rows:
        try:
            with conn.begin_nested():
                HANDLERS[row.kind](conn, row.plan_id, row.payload)
                conn.execute(_MARK_DELIVERED, {"ids": [row.id]})
            delivered += 1
        except Exception as exc:
            log.exception("follow-up %s (%s) for plan %s failed; it will be retried", row.id, row.kind, row.plan_id)
            conn.execute(_BACK_OFF, {"id": row.id, "error": f"{type(exc).__name__}: {redact_urls(str(exc))}"[:2000]})
    return delivered
