"""What a checked plan leads to: its issue (approval found from the checks) and its rollout."""

from __future__ import annotations

from plancheck.api import inputs
from plancheck.api.base import ApiBase
from plancheck.domain import followups
from plancheck.store import catalog, issues


class FollowUpsApi(ApiBase):
    def create_issue(self, plan_id: int) -> issues.IssueView:
        inputs.row_id(plan_id, "plan")
        with self.engine.begin() as conn:
            return followups.create_issue(conn, plan_id)

    def approve_issue(self, issue_id: int) -> issues.IssueView:
        inputs.row_id(issue_id, "issue")
        with self.engine.begin() as conn:
            return followups.approve_issue(conn, issue_id)

    def rollout(self, plan_id: int) -> issues.RolloutView | None:
        inputs.row_id(plan_id, "plan")
        with self.engine.connect() as conn:
            catalog.require_plan(conn, plan_id)
            return issues.latest_rollout(conn, plan_id)
