"""The Python API: the same verbs as the CLI, which only calls this module."""

from __future__ import annotations

import fnmatch
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import kombu
from sqlalchemy import Engine

from plancheck.checks import TargetError
from plancheck.checks.groups import MAX_LABELS, InvalidExpression, compile_expression
from plancheck.checks.instance import list_databases, resolve_url, validate_url
from plancheck.checks.project_settings import validate_project_settings
from plancheck.checks.specs import InvalidPlan, validate_specs
from plancheck.core.errors import MAX_ID, InvalidInput, NotFound, Unauthorized
from plancheck.core.logs import state_change
from plancheck.core.settings import Settings, load_settings
from plancheck.domain import access
from plancheck.domain.targets import group_members, project_databases
from plancheck.store import catalog, db, followups, listing, runs, tokens
from plancheck.store.models import RUN_STATUSES, TERMINAL_STATUSES

log = logging.getLogger(__name__)

MAX_SQL_BYTES = 16 * 1024 * 1024
MAX_NAME = 63
MAX_LABEL_VALUE = 255
MAX_GLOBS = 32
MAX_GLOB_LENGTH = 128
_IDENTIFIER = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_NAME}}}")
_LABEL_KEY = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_./-]{{0,{MAX_NAME - 1}}}")
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
        return self.status in TERMINAL_STATUSES

    @property
    def has_errors(self) -> bool:
        return any(result["status"] == "ERROR" for result in self.results)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CreatedToken:
    """A token as made: `token` is shown to its owner once and stored only as a hash."""

    id: int
    name: str
    scope: str
    project: str | None
    expires_at: datetime | None
    token: str


def decode_sql(data: bytes) -> str:
    """The plan's SQL as text, or a clear error for what PostgreSQL could not store or check."""
    if len(data) > MAX_SQL_BYTES:
        raise InvalidInput(f"SQL file is {len(data)} bytes; the limit is {MAX_SQL_BYTES}")
    try:
        sql = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"SQL file is not UTF-8 text (byte {exc.start} is invalid)") from None
    sql = sql.removeprefix("\ufeff")  # a byte order mark some editors write is not SQL
    if "\x00" in sql:
        raise InvalidInput("SQL file contains NUL bytes; is it a binary file?")
    if not sql.strip():
        raise InvalidInput("SQL file is empty")
    return sql


@dataclass(frozen=True)
class SyncResult:
    """What `instance sync` did: databases added now, kept as registered before, skipped and why."""

    instance: str
    added: list[str]
    kept: list[str]
    skipped: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "databases": [*self.added, *self.kept]}


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
        _identifier(key, "project key")
        try:
            validate_project_settings(settings)
        except ValueError as exc:
            raise InvalidInput(f"project settings: {exc}") from None
        with self.engine.begin() as conn:
            return catalog.create_project(conn, key, title or key, settings)

    def set_project_archived(self, key: str, archived: bool = True) -> None:
        with self.engine.begin() as conn:
            catalog.set_project_archived(conn, key, archived)

    def add_instance(self, key: str, url: str, environment: str = "test", password_env: str | None = None) -> int:
        try:
            validate_url(url)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        _identifier(key, "instance key")
        _identifier(environment, "environment")
        with self.engine.begin() as conn:
            return catalog.add_instance(conn, key, url, password_env, environment)

    def sync_instance(
        self,
        key: str,
        project: str | None = None,
        environment: str | None = None,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
    ) -> SyncResult:
        """Register the instance's databases (optionally in a project).

        Only names matching an `include` glob (all, if none is given) and no `exclude` glob are taken;
        templates and, when the instance is the metadata database's server, the metadata database are
        never taken. New databases get `environment` (default: the instance's); databases registered
        before keep their environment, labels and project.
        """
        include, exclude = _globs(include, "--include"), _globs(exclude, "--exclude")
        with self.engine.connect() as conn:
            instance = catalog.get_instance(conn, key)
            project_id = catalog.get_project(conn, project).id if project else None
            metadata = catalog.metadata_identity(conn)
        new_environment = _identifier(environment, "environment") if environment else instance.environment
        try:
            server = list_databases(resolve_url(instance.url, instance.password_env))
        except TargetError as exc:
            raise InvalidInput(f"instance {key!r}: {exc}") from None
        candidates = [name for name in server.names if not include or _matches(name, include)]
        skipped = {name: "the metadata database" for name in candidates if (server.system_identifier, name) == metadata}
        skipped |= {name: "excluded" for name in candidates if name not in skipped and _matches(name, exclude)}
        names = [name for name in candidates if name not in skipped]
        with self.engine.begin() as conn:
            added = catalog.register_databases(conn, instance.id, names, new_environment, project_id)
        return SyncResult(key, added, [name for name in names if name not in added], skipped)

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
                values["environment"] = _identifier(environment, "environment")
            if labels is not None:
                values["labels"] = _labels(labels)
            if values:
                catalog.update_database(conn, instance_key, name, values)

    def list_databases(self, project: str | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            project_id = catalog.get_project(conn, project).id if project else None
            rows = catalog.list_databases(conn, project_id)
        return [_database_json(row) for row in rows]

    def create_group(self, project: str, key: str, expression: str) -> int:
        _identifier(key, "group key")
        try:
            compile_expression(expression)
        except InvalidExpression as exc:
            raise InvalidInput(f"group {key!r}: {exc}") from None
        with self.engine.begin() as conn:
            project_id = catalog.get_project(conn, project).id
            return catalog.create_group(conn, project_id, key, expression)

    def show_group(self, project: str, key: str) -> list[dict[str, Any]]:
        """The databases the group's expression matches now."""
        with self.engine.connect() as conn:
            project_row = catalog.get_project(conn, project)
            group = catalog.get_group(conn, project_row.id, key)
            try:
                members = group_members(conn, project_row, group.expression)
            except InvalidExpression as exc:
                raise InvalidInput(f"group {key!r}: {exc}") from None
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
        _id(plan_id, "plan")
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
        _id(plan_id, "plan")
        with self.engine.begin() as conn:
            plan = catalog.require_plan(conn, plan_id)
            runs.create(conn, plan_id, plan.version)
        self._dispatch_claim()

    def cancel(self, plan_ids: Sequence[int]) -> list[int]:
        """Cancel the unfinished runs of these plans; returns the plans whose run was cancelled."""
        for plan_id in plan_ids:
            _id(plan_id, "plan")
        with self.engine.begin() as conn:
            for plan_id in plan_ids:
                catalog.require_plan(conn, plan_id)
            cancelled = runs.cancel(conn, plan_ids)
        for run in cancelled:
            state_change("cancelled", run.id, run.plan_id)
        return [run.plan_id for run in cancelled]

    # -- issues and rollouts ----------------------------------------------------------------------
    def create_issue(self, plan_id: int) -> followups.IssueView:
        _id(plan_id, "plan")
        with self.engine.begin() as conn:
            issue_id = followups.create_issue(conn, plan_id)
            return followups.get_issue(conn, issue_id)

    def approve_issue(self, issue_id: int) -> followups.IssueView:
        _id(issue_id, "issue")
        with self.engine.begin() as conn:
            return followups.approve_issue(conn, issue_id)

    def rollout(self, plan_id: int) -> followups.RolloutView | None:
        _id(plan_id, "plan")
        with self.engine.connect() as conn:
            catalog.require_plan(conn, plan_id)
            return followups.get_rollout(conn, plan_id)

    # -- HTTP API: tokens, sessions, listings ----------------------------------------------------
    def create_token(
        self, name: str, scope: str, project: str | None = None, expires: str | None = None
    ) -> CreatedToken:
        """A new API token (`expires` like 90d); the token itself is returned here and never again."""
        granted = access.parse_scope(scope)
        lifetime = access.parse_duration(expires).total_seconds() if expires else None
        made = access.new_token()
        with self.engine.begin() as conn:
            project_id = catalog.get_project(conn, project).id if project else None
            token_id, expires_at = tokens.create(
                conn, _identifier(name, "token name"), made.key_id, made.secret_hash, granted, project_id, lifetime
            )
        return CreatedToken(token_id, name, str(granted), project, expires_at, made.token)

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every token ever made, with its state (active, expired or revoked); never a token or hash."""
        with self.engine.connect() as conn:
            rows = tokens.list_all(conn)
        return [_token_json(row) for row in rows]

    def revoke_token(self, name: str) -> None:
        with self.engine.begin() as conn:
            if not tokens.revoke(conn, name):
                raise NotFound(f"no unrevoked token named {name!r}")

    def authenticate(self, token: str) -> access.Grant:
        """What the bearer of `token` may do; Unauthorized for a malformed, unknown, expired or revoked one."""
        key_id = access.key_id_of(token)
        row = None
        if key_id is not None:
            with self.engine.connect() as conn:
                row = tokens.by_key_id(conn, key_id)
        if not access.matches(token, row.secret_hash if row else None):
            raise Unauthorized("the token is not valid")
        assert row is not None
        return _grant(row)

    def session_grant(self, token_id: int) -> access.Grant:
        """The grant behind a page session, checked again on every request (revocation ends sessions)."""
        with self.engine.connect() as conn:
            row = tokens.by_id(conn, token_id)
        if row is None:
            raise Unauthorized("the token of this session no longer exists")
        return _grant(row)

    def session_secret(self) -> str:
        """The key that signs page sessions: generated once, stored, shared by every server process."""
        with self.engine.begin() as conn:
            return tokens.session_secret(conn, secrets.token_urlsafe(48))

    def list_projects(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [row._asdict() for row in listing.projects(conn)]

    def list_plans(
        self, project: str, status: str | None = None, limit: int = 50, before: int | None = None
    ) -> dict[str, Any]:
        """A page of the project's plans, newest first, with status and finding counts.

        `next_before` continues the listing (None on the last page); new plans never shift a page.
        """
        if status is not None and status not in RUN_STATUSES:
            raise InvalidInput(f"status {status!r} must be one of {', '.join(RUN_STATUSES)}")
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
        specs = [{**{k: v for k, v in spec.items() if k != "sheet"}, "sql": sheets.get(spec["sheet"], "")}
                 for spec in row.specs]
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
        return {row.plan_id: {**row._asdict(), "finished": row.status in TERMINAL_STATUSES} for row in rows}

    def health(self, timeout: float = 1.0) -> dict[str, bool]:
        """Whether the metadata database (at the schema head) and the broker answer within `timeout`."""
        from plancheck.ops.status import check_broker, check_database

        database, broker = check_database(self.settings, timeout), check_broker(self.settings, timeout)
        return {"database": database.ok, "broker": broker.ok}

    def metrics(self) -> bytes:
        """The Prometheus exposition of plancheck's metrics, computed from PostgreSQL now."""
        from prometheus_client import generate_latest

        from plancheck.ops.metrics import registry_for

        return bytes(generate_latest(registry_for(self.engine)))

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


def _identifier(value: Any, what: str) -> str:
    """A key or environment name: bounded ASCII, safe to print, to put in a URL and to compare."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        shown = repr(value)[:80]
        raise InvalidInput(f"{what} {shown} must be 1 to {MAX_NAME} ASCII letters, digits, '-' or '_'")
    return value


def _id(value: Any, what: str) -> int:
    """A row id as PostgreSQL stores it (bigint): a clear error instead of "bigint out of range"."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise InvalidInput(f"{what} id must be a whole number from 1 to {MAX_ID}, got {str(value)[:40]}")
    return value


def _globs(patterns: Sequence[str], option: str) -> list[str]:
    """Shell-style patterns (`shop_*`, `tenant_?[0-9]`), bounded: matching them costs little."""
    if len(patterns) > MAX_GLOBS:
        raise InvalidInput(f"at most {MAX_GLOBS} {option} patterns are allowed, got {len(patterns)}")
    for pattern in patterns:
        if not pattern or len(pattern) > MAX_GLOB_LENGTH or not pattern.isprintable():
            raise InvalidInput(f"{option} pattern {repr(pattern)[:80]} must be 1 to {MAX_GLOB_LENGTH} "
                               "printable characters")
    return list(patterns)


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _labels(labels: dict[str, str]) -> dict[str, str]:
    """At most MAX_LABELS labels (group expressions iterate them), with bounded keys and values."""
    if len(labels) > MAX_LABELS:
        raise InvalidInput(f"a database has at most {MAX_LABELS} labels, got {len(labels)}")
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
            raise InvalidInput(f"label key {repr(key)[:80]} must be 1 to {MAX_NAME} ASCII letters, digits, "
                               "'-', '_', '.' or '/', starting with a letter or digit")
        if not isinstance(value, str) or len(value) > MAX_LABEL_VALUE:
            raise InvalidInput(f"label {key!r}: the value must be text of at most {MAX_LABEL_VALUE} characters")
    return labels


def _split_target(target: str) -> tuple[str, str]:
    instance_key, _, name = target.partition("/")
    if not instance_key or not name or "/" in name:
        raise InvalidInput(f"target {target!r} must be INSTANCE/DATABASE")
    return instance_key, name


def _grant(row: tokens.TokenRow) -> access.Grant:
    if row.revoked_at is not None:
        raise Unauthorized(f"token {row.name!r} was revoked")
    if row.expired:
        raise Unauthorized(f"token {row.name!r} has expired")
    return access.Grant(row.id, row.name, access.Scope(row.scope), row.project)


def _token_json(row: tokens.TokenRow) -> dict[str, Any]:
    state = "revoked" if row.revoked_at else "expired" if row.expired else "active"
    fields = ("id", "name", "scope", "project", "created_at", "expires_at", "revoked_at")
    return {**{name: getattr(row, name) for name in fields}, "state": state}


def rule_fixes() -> dict[str, str]:
    """How to fix what each SQL review rule catches, by rule name (the results page's guidance)."""
    from plancheck.checks.rules import ALL_RULES

    return {rule.name: " ".join(rule.fix.split()) for rule in ALL_RULES}


def _database_json(row: Any) -> dict[str, Any]:
    return {
        "target": f"{row.instance_key}/{row.name}",
        "environment": row.environment,
        "labels": row.labels,
    }
