"""The catalog a plan's targets come from: projects, instances, their databases, database groups."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from plancheck.api import inputs
from plancheck.api.base import ApiBase
from plancheck.checks.groups import InvalidExpression, compile_expression
from plancheck.checks.instance import list_databases, resolve_url, validate_url
from plancheck.checks.project_settings import validate_project_settings
from plancheck.checks.target import TargetError
from plancheck.core.errors import InvalidInput
from plancheck.domain.targets import group_members
from plancheck.store import catalog, listing


@dataclass(frozen=True)
class SyncResult:
    """What `instance sync` did: databases added now, kept as registered before, skipped and why."""

    instance: str
    added: list[str]
    kept: list[str]
    skipped: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "databases": [*self.added, *self.kept]}


class CatalogApi(ApiBase):
    def create_project(self, key: str, title: str | None = None, settings: dict[str, Any] | None = None) -> int:
        settings = settings or {}
        inputs.identifier(key, "project key")
        try:
            validate_project_settings(settings)
        except ValueError as exc:
            raise InvalidInput(f"project settings: {exc}") from None
        with self.engine.begin() as conn:
            return catalog.create_project(conn, key, title or key, settings)

    def set_project_archived(self, key: str, archived: bool = True) -> None:
        with self.engine.begin() as conn:
            catalog.set_project_archived(conn, key, archived)

    def list_projects(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [row._asdict() for row in listing.projects(conn)]

    def add_instance(self, key: str, url: str, environment: str = "test", password_env: str | None = None) -> int:
        try:
            validate_url(url)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        inputs.identifier(key, "instance key")
        inputs.identifier(environment, "environment")
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
        include, exclude = inputs.globs(include, "--include"), inputs.globs(exclude, "--exclude")
        with self.engine.connect() as conn:
            instance = catalog.get_instance(conn, key)
            project_id = catalog.get_project(conn, project).id if project else None
            metadata = catalog.metadata_identity(conn)
        new_environment = inputs.identifier(environment, "environment") if environment else instance.environment
        try:
            server = list_databases(
                resolve_url(instance.url, instance.password_env), self.settings.target_connect_timeout
            )
        except TargetError as exc:
            raise InvalidInput(f"instance {key!r}: {exc}") from None
        candidates = [name for name in server.names if not include or inputs.matches(name, include)]
        skipped = {name: "the metadata database" for name in candidates if (server.system_identifier, name) == metadata}
        skipped |= {name: "excluded" for name in candidates if name not in skipped and inputs.matches(name, exclude)}
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
        instance_key, name = inputs.split_target(target)
        environment = None if environment is None else inputs.identifier(environment, "environment")
        labels = None if labels is None else inputs.labels(labels)
        with self.engine.begin() as conn:
            project_id = None if project is None else catalog.get_project(conn, project).id
            catalog.update_database(conn, instance_key, name, project_id, environment, labels)

    def list_databases(self, project: str | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            project_id = catalog.get_project(conn, project).id if project else None
            rows = catalog.list_databases(conn, project_id)
        return [database_json(row) for row in rows]

    def create_group(self, project: str, key: str, expression: str) -> int:
        inputs.identifier(key, "group key")
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
        return [database_json(row) for row in members]


def database_json(row: Any) -> dict[str, Any]:
    return {"target": f"{row.instance_key}/{row.name}", "environment": row.environment, "labels": row.labels}
