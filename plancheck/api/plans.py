"""Plans and their checks: submit SQL for targets, read (or wait for) the checks, re-run, cancel, list."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection

from plancheck.api import inputs
from plancheck.api.base import ApiBase
from plancheck.checks.specs import InvalidPlan, validate_specs
from plancheck.core.errors import InvalidInput, NotFound
from plancheck.core.logs import state_change
from plancheck.core.states import FINAL_STATUSES, RunStatus
from plancheck.domain.targets import project_databases
from plancheck.store import catalog, listing, runs

MAX_PAGE = 200  # plans per page of a listing


@dataclass(frozen=True)
class Checks:
    """A plan's check run as the CLI and machines see it."""

    plan_id: int
    status: str
    results: list[dict[str, Any]]
    reason: str | None
    targets_total: int | None
    targets_done: int
    attempts: list[dict[str, Any]]
    generation: int

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class PlansApi(ApiBase):
    def create_plan(
        self,
        project: str,
        sql: bytes | str,
        targets: Sequence[str] = (),
        group: str | None = None,
        title: str | None = None,
    ) -> int:
        """Store the plan and its check run (AVAILABLE), then claim at once if a worker slot is free."""
        text = inputs.decode_sql(sql if isinstance(sql, bytes) else sql.encode(), self.settings.max_sql_bytes)
        if bool(targets) == bool(group):
            raise InvalidInput("give either targets (INSTANCE/DB …) or exactly one --group")
        with self.engine.begin() as conn:
            project_row = catalog.get_project(conn, project)
            if project_row.archived:
                raise InvalidInput(f"project {project!r} is archived")
            spec = _spec(conn, project_row.id, targets, group)
            spec["sheet"] = catalog.put_sheet(conn, text)
            plan_id = catalog.create_plan(conn, project_row.id, title or f"plan for {project}", [spec])
            runs.create(conn, plan_id, 1)
        self._dispatch_claim()
        return plan_id

    def checks(self, plan_id: int) -> Checks:
        inputs.row_id(plan_id, "plan")
        with self.engine.connect() as conn:
            run = runs.get(conn, plan_id)
            if run is None:
                catalog.require_plan(conn, plan_id)
                raise NotFound(f"plan {plan_id} has no check run")
            attempts = runs.attempts(conn, run.id)
        return Checks(
            plan_id=plan_id,
            status=run.status,
            results=run.result.get("results", []),
            reason=run.result.get("reason"),
            targets_total=run.targets_total,
            targets_done=run.targets_done,
            attempts=[asdict(attempt) for attempt in attempts],
            generation=run.generation,
        )

    def wait(
        self,
        plan_id: int,
        timeout: float = 300.0,
        poll: float = 0.2,
        on_progress: Callable[[Checks], None] = lambda checks: None,
    ) -> Checks:
        """Poll PostgreSQL until the run is finished or `timeout` passes; returns the last view."""
        deadline = time.monotonic() + timeout
        while True:
            checks = self.checks(plan_id)
            on_progress(checks)
            if checks.finished or time.monotonic() >= deadline:
                return checks
            time.sleep(poll)

    def rerun(self, plan_id: int) -> None:
        inputs.row_id(plan_id, "plan")
        with self.engine.begin() as conn:
            plan = catalog.require_plan(conn, plan_id)
            runs.create(conn, plan_id, plan.version)
        self._dispatch_claim()

    def cancel(self, plan_ids: Sequence[int]) -> list[int]:
        """Cancel the unfinished runs of these plans; returns the plans whose run was cancelled."""
        for plan_id in plan_ids:
            inputs.row_id(plan_id, "plan")
        with self.engine.begin() as conn:
            for plan_id in plan_ids:
                catalog.require_plan(conn, plan_id)
            cancelled = runs.cancel(conn, plan_ids)
        for run in cancelled:
            state_change("cancelled", run.id, run.plan_id)
        return [run.plan_id for run in cancelled]

    def list_plans(
        self, project: str, status: str | None = None, limit: int = 50, before: int | None = None
    ) -> dict[str, Any]:
        """A page of the project's plans, newest first, with status and finding counts.

        `next_before` continues the listing (None on the last page); new plans never shift a page.
        """
        if status is not None and status not in set(RunStatus):
            raise InvalidInput(f"status {status!r} must be one of {', '.join(RunStatus)}")
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
        with self.engine.connect() as conn:
            project_row = catalog.get_project(conn, project)
            rows = listing.plans(conn, project_row.id, status, limit + 1, before)
        plans = [row._asdict() for row in rows[:limit]]
        return {"plans": plans, "next_before": plans[-1]["plan_id"] if len(rows) > limit else None}

    def plan(self, plan_id: int) -> dict[str, Any]:
        """The plan as submitted: project, title, and each spec's targets or group with its SQL."""
        with self.engine.connect() as conn:
            row = listing.plan(conn, plan_id)
            if row is None:
                raise NotFound(f"plan {plan_id} not found")
            sheets = catalog.sheet_contents(conn, [spec["sheet"] for spec in row.specs])
        specs = [
            {**{k: v for k, v in spec.items() if k != "sheet"}, "sql": sheets.get(spec["sheet"], "")}
            for spec in row.specs
        ]
        return {**row._asdict(), "specs": specs}

    def plan_project(self, plan_id: int) -> str:
        with self.engine.connect() as conn:
            project = listing.plan_project(conn, plan_id)
        if project is None:
            raise NotFound(f"plan {plan_id} not found")
        return project

    def progress(self, plan_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Status, generation and targets done/total of these plans' runs, read in one statement."""
        with self.engine.connect() as conn:
            rows = listing.progress(conn, plan_ids)
        return {row.plan_id: {**row._asdict(), "finished": row.status in FINAL_STATUSES} for row in rows}


def _spec(conn: Connection, project_id: int, targets: Sequence[str], group: str | None) -> dict[str, Any]:
    """The plan's single spec, validated now so a bad plan is refused before anything is stored."""
    spec: dict[str, Any] = {"group": group} if group else {"targets": list(targets)}
    try:
        validate_specs([{**spec, "sheet": "0" * 64}])
    except InvalidPlan as exc:
        raise InvalidInput(str(exc)) from None
    if group:
        catalog.get_group(conn, project_id, group)
        return spec
    known = project_databases(conn, project_id, targets)
    missing = [target for target in targets if target not in known]
    if missing:
        raise NotFound(
            f"target {missing[0]!r} is not a database of this project; "
            "register it with `plancheck instance sync INSTANCE --project PROJECT`"
        )
    return spec
