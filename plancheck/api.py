"""The Python API: the same verbs as the CLI, which only calls this module."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import kombu
from sqlalchemy import Engine

from plancheck.checks import ReviewConfig, TargetError
from plancheck.checks.groups import InvalidExpression, compile_expression
from plancheck.checks.instance import list_databases, resolve_url, validate_url
from plancheck.checks.targets import InvalidPlan, validate_specs
from plancheck.errors import InvalidInput, NotFound
from plancheck.logs import state_change
from plancheck.scheduler.work import group_members, project_databases
from plancheck.settings import Settings, load_settings
from plancheck.store import catalog, db, followups, runs
from plancheck.store.models import TERMINAL_STATUSES

log = logging.getLogger(__name__)

MAX_SQL_BYTES = 16 * 1024 * 1024


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
        return self.status in TERMINAL_STATUSES

    @property
    def has_errors(self) -> bool:
        return any(result["status"] == "ERROR" for result in self.results)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def decode_sql(data: bytes) -> str:
    """The plan's SQL as text, or a clear error for what PostgreSQL could not store or check."""
    if len(data) > MAX_SQL_BYTES:
        raise InvalidInput(f"SQL file is {len(data)} bytes; the limit is {MAX_SQL_BYTES}")
    try:
        sql = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"SQL file is not UTF-8 text (byte {exc.start} is invalid)") from None
    if "\x00" in sql:
        raise InvalidInput("SQL file contains NUL bytes; is it a binary file?")
    if not sql.strip():
        raise InvalidInput("SQL file is empty")
    return sql


class Plancheck:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self._local = threading.local()  # a kombu connection is not thread-safe: one per calling thread

    @property
    def engine(self) -> Engine:
        return db.engine_for(self.settings.database_url)

    # -- database -------------------------------------------------------------------------------
    def upgrade_database(self) -> str | None:
        db.upgrade(self.settings.database_url)
        return db.current_revision(self.settings.database_url)

    # -- projects, instances, databases, groups -------------------------------------------------
    def create_project(self, key: str, title: str | None = None, settings: dict[str, Any] | None = None) -> int:
        settings = settings or {}
        try:
            ReviewConfig.from_project_settings(settings)
        except ValueError as exc:
            raise InvalidInput(f"project settings: {exc}") from None
        with self.engine.begin() as conn:
            return catalog.create_project(conn, _key(key, "project"), title or key, settings)

    def set_project_archived(self, key: str, archived: bool = True) -> None:
        with self.engine.begin() as conn:
            catalog.set_project_archived(conn, key, archived)

    def add_instance(self, key: str, url: str, environment: str = "test", password_env: str | None = None) -> int:
        try:
            validate_url(url)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        with self.engine.begin() as conn:
            return catalog.add_instance(conn, _key(key, "instance"), url, password_env, environment)

    def sync_instance(self, key: str, project: str | None = None) -> list[str]:
        """Register every database the instance holds (in its environment, optionally in a project)."""
        with self.engine.connect() as conn:
            instance = catalog.get_instance(conn, key)
            project_id = catalog.get_project(conn, project).id if project else None
        try:
            names = list_databases(resolve_url(instance.url, instance.password_env))
        except TargetError as exc:
            raise InvalidInput(f"instance {key!r}: {exc}") from None
        with self.engine.begin() as conn:
            catalog.register_databases(conn, instance.id, names, instance.environment, project_id)
        return names

    def set_database(
        self,
        target: str,
        project: str | None = None,
        environment: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        instance_key, name = _split_target(target)
        with self.engine.begin() as conn:
            values: dict[str, Any] = {}
            if project is not None:
                values["project_id"] = catalog.get_project(conn, project).id
            if environment is not None:
                values["environment"] = environment
            if labels is not None:
                values["labels"] = labels
            if values:
                catalog.update_database(conn, instance_key, name, values)

    def list_databases(self, project: str | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            project_id = catalog.get_project(conn, project).id if project else None
            rows = catalog.list_databases(conn, project_id)
        return [_database_json(row) for row in rows]

    def create_group(self, project: str, key: str, expression: str) -> int:
        try:
            compile_expression(expression)
        except InvalidExpression as exc:
            raise InvalidInput(f"group {key!r}: {exc}") from None
        with self.engine.begin() as conn:
            project_id = catalog.get_project(conn, project).id
            return catalog.create_group(conn, project_id, _key(key, "group"), expression)

    def show_group(self, project: str, key: str) -> list[dict[str, Any]]:
        """The databases the group's expression matches now."""
        with self.engine.connect() as conn:
            project_row = catalog.get_project(conn, project)
            group = catalog.get_group(conn, project_row.id, key)
            members = group_members(conn, project_row, group.expression)
        return [_database_json(row) for row in members]

    # -- plans and their checks -------------------------------------------------------------------
    def create_plan(
        self,
        project: str,
        sql: bytes | str,
        targets: Sequence[str] = (),
        group: str | None = None,
        title: str | None = None,
    ) -> int:
        """Store the plan and its check run (AVAILABLE), then ask for a claim at once."""
        text = decode_sql(sql if isinstance(sql, bytes) else sql.encode())
        if bool(targets) == bool(group):
            raise InvalidInput("give either targets (INSTANCE/DB …) or exactly one --group")
        with self.engine.begin() as conn:
            project_row = catalog.get_project(conn, project)
            if project_row.archived:
                raise InvalidInput(f"project {project!r} is archived")
            spec = self._spec(conn, project_row.id, targets, group)
            spec["sheet"] = catalog.put_sheet(conn, text)
            plan_id = catalog.create_plan(conn, project_row.id, title or f"plan for {project}", [spec])
            runs.create(conn, plan_id, 1)
        self._dispatch_claim()
        return plan_id

    def _spec(self, conn: Any, project_id: int, targets: Sequence[str], group: str | None) -> dict[str, Any]:
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

    def checks(self, plan_id: int) -> Checks:
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
        """Poll PostgreSQL until the run is terminal or `timeout` passes; returns the last view."""
        deadline = time.monotonic() + timeout
        while True:
            checks = self.checks(plan_id)
            on_progress(checks)
            if checks.finished or time.monotonic() >= deadline:
                return checks
            time.sleep(poll)

    def rerun(self, plan_id: int) -> None:
        with self.engine.begin() as conn:
            plan = catalog.require_plan(conn, plan_id)
            runs.create(conn, plan_id, plan.version)
        self._dispatch_claim()

    def cancel(self, plan_ids: Sequence[int]) -> list[int]:
        """Cancel the unfinished runs of these plans; returns the plans whose run was cancelled."""
        with self.engine.begin() as conn:
            for plan_id in plan_ids:
                catalog.require_plan(conn, plan_id)
            cancelled = runs.cancel(conn, plan_ids)
        for run in cancelled:
            state_change("cancelled", run.id, run.plan_id)
        return [run.plan_id for run in cancelled]

    # -- issues and rollouts ----------------------------------------------------------------------
    def create_issue(self, plan_id: int) -> followups.IssueView:
        with self.engine.begin() as conn:
            issue_id = followups.create_issue(conn, plan_id)
            return followups.get_issue(conn, issue_id)

    def approve_issue(self, issue_id: int) -> followups.IssueView:
        with self.engine.begin() as conn:
            return followups.approve_issue(conn, issue_id)

    def rollout(self, plan_id: int) -> followups.RolloutView | None:
        with self.engine.connect() as conn:
            catalog.require_plan(conn, plan_id)
            return followups.get_rollout(conn, plan_id)

    def _dispatch_claim(self) -> None:
        """Claim now and send the run messages, rather than wait for a beat tick.

        The broker connection is opened first and kept for the next call: when the broker is down
        nothing is claimed, and beat claims the run once it is back.
        """
        from plancheck.scheduler.tasks import claim_now

        try:
            claim_now(self.settings, self._broker_connection())
        except Exception as exc:
            self._drop_broker_connection()
            log.warning("could not dispatch a claim (%s); beat will claim the run", type(exc).__name__)

    def _broker_connection(self) -> kombu.Connection:
        connection: kombu.Connection | None = getattr(self._local, "broker", None)
        if connection is None:
            from plancheck.scheduler.app import broker_connection

            connection = broker_connection(self.settings.broker_url)
            self._local.broker = connection = connection.ensure_connection(max_retries=0)
        return connection

    def _drop_broker_connection(self) -> None:
        connection: kombu.Connection | None = getattr(self._local, "broker", None)
        if connection is not None:
            connection.release()
            self._local.broker = None


def _key(value: str, what: str) -> str:
    if not value or not value.replace("-", "").replace("_", "").isalnum():
        raise InvalidInput(f"{what} key {value!r} must be letters, digits, '-' or '_'")
    return value


def _split_target(target: str) -> tuple[str, str]:
    instance_key, _, name = target.partition("/")
    if not instance_key or not name or "/" in name:
        raise InvalidInput(f"target {target!r} must be INSTANCE/DATABASE")
    return instance_key, name


def _database_json(row: Any) -> dict[str, Any]:
    return {
        "target": f"{row.instance_key}/{row.name}",
        "environment": row.environment,
        "labels": row.labels,
    }
