"""What a checked plan leads to: its issue's approval (risk and approvers) and its rollout, and the
relay that applies both from the outbox.

The rules live here, above the store: an issue's risk comes from `risk.assess` over the DONE run's
results; no approvers means approved at once; a rollout exists once the issue is approved and the
plan's current version was checked clean. Each handler recomputes the same state or inserts under
a unique key, so applying a follow-up twice changes nothing; the relay applies one and marks it
delivered in one transaction, and a failing one backs off without blocking the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection

from plancheck.core.redact import named_error_line
from plancheck.core.states import ApprovalStatus, FollowUpKind, RunStatus
from plancheck.domain import risk
from plancheck.store import catalog, issues, outbox, runs

log = logging.getLogger(__name__)


def create_issue(conn: Connection, plan_id: int) -> issues.IssueView:
    """Open the plan's issue; its approval and rollout follow from the checks already done."""
    catalog.require_plan(conn, plan_id)
    issue = issues.create_issue(conn, plan_id)
    find_approval(conn, plan_id)
    create_rollout(conn, plan_id)
    return issues.get_issue(conn, issue.id)


def approve_issue(conn: Connection, issue_id: int) -> issues.IssueView:
    issue = issues.approve(conn, issue_id)
    create_rollout(conn, issue.plan_id)
    return issue


def find_approval(conn: Connection, plan_id: int, payload: dict[str, Any] | None = None) -> None:
    """Set the issue's risk and approvers from the plan's DONE run; a no-op when already found."""
    issue = issues.issue_of_plan(conn, plan_id, lock=True)
    if issue is None:  # most checked plans have no issue yet: nothing to find, and no run to read
        return
    run = runs.get(conn, plan_id)
    if run is None or run.status != RunStatus.DONE or issue.approval_generation == run.generation:
        return
    settings = catalog.project_settings_of_plan(conn, plan_id)
    threshold = int(settings.get("risk_affected_rows", risk.DEFAULT_AFFECTED_ROWS_THRESHOLD))
    results = run.result.get("results", [])
    targets = sorted({result["target"] for result in results if isinstance(result.get("target"), str)})
    databases = catalog.list_databases(conn, names=targets)
    environments = {f"{db.instance_key}/{db.name}": db.environment for db in databases}
    approval = risk.assess(results, environments, threshold)
    status = ApprovalStatus.PENDING if approval.approvers else ApprovalStatus.APPROVED
    issues.set_approval(conn, issue.id, approval.risk, approval.approvers, status, run.generation)


def create_rollout(conn: Connection, plan_id: int, payload: dict[str, Any] | None = None) -> None:
    """Create the rollout once the issue is approved and the current plan version checked clean."""
    issue = issues.issue_of_plan(conn, plan_id)
    if issue is None or issue.approval_status != ApprovalStatus.APPROVED:
        return
    plan = catalog.get_plan(conn, plan_id)
    run = runs.get(conn, plan_id)
    if plan is None or run is None:
        return
    results = run.result.get("results", [])
    if run.status != RunStatus.DONE or run.plan_version != plan.version or any(r["status"] == "ERROR" for r in results):
        return
    issues.create_rollout(conn, plan_id, plan.version, sorted({r["target"] for r in results}))


HANDLERS: dict[str, Callable[[Connection, int, dict[str, Any]], None]] = {
    FollowUpKind.APPROVAL_FIND: find_approval,
    FollowUpKind.ROLLOUT_CREATE: create_rollout,
}


def relay(conn: Connection, batch: int) -> int:
    """Apply up to `batch` due follow-ups, oldest first; each is marked delivered in the transaction
    that applies it. A failing one backs off and is retried by a later relay.

    Both follow-ups act on the plan's issue, and a plan that has none (most checks) has nothing to
    follow up: those rows are marked delivered together. An issue created later finds its approval
    and rollout itself (`create_issue`).
    """
    due = outbox.take_due(conn, batch)
    if not due:
        return 0
    with_issue = outbox.plans_with_issue(conn, [follow_up.plan_id for follow_up in due])
    idle = [follow_up.id for follow_up in due if follow_up.plan_id not in with_issue]
    outbox.mark_delivered(conn, idle)
    return len(idle) + _apply(conn, [follow_up for follow_up in due if follow_up.plan_id in with_issue])


def _apply(conn: Connection, due: Sequence[outbox.FollowUp]) -> int:
    delivered = 0
    for follow_up in due:
        try:
            with conn.begin_nested():
                HANDLERS[follow_up.kind](conn, follow_up.plan_id, follow_up.payload)
                outbox.mark_delivered(conn, [follow_up.id])
            delivered += 1
        except Exception as exc:
            log.exception(
                "follow-up %s (%s) for plan %s failed; it will be retried",
                follow_up.id,
                follow_up.kind,
                follow_up.plan_id,
            )
            outbox.back_off(conn, follow_up.id, named_error_line(exc))
    return delivered
