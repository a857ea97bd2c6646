"""Statements for the catalog: projects, instances, databases, groups, sheets and plans."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, Text, any_, literal, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.exc import IntegrityError

from plancheck.core.errors import Conflict, NotFound
from plancheck.store.models import Database, DatabaseGroup, Instance, Plan, Project, Sheet


def _insert_unique(conn: Connection, statement: Any, what: str) -> Row[Any]:
    try:
        with conn.begin_nested():
            return conn.execute(statement).one()
    except IntegrityError:
        raise Conflict(f"{what} already exists") from None


def create_project(conn: Connection, key: str, title: str, settings: dict[str, Any]) -> int:
    statement = insert(Project).values(key=key, title=title, settings=settings).returning(Project.id)
    return int(_insert_unique(conn, statement, f"project {key!r}").id)


def get_project(conn: Connection, key: str) -> Row[Any]:
    row = conn.execute(select(Project).where(Project.key == key)).one_or_none()
    if row is None:
        raise NotFound(f"project {key!r} not found")
    return row


def set_project_archived(conn: Connection, key: str, archived: bool) -> None:
    if conn.execute(update(Project).where(Project.key == key).values(archived=archived)).rowcount == 0:
        raise NotFound(f"project {key!r} not found")


def add_instance(conn: Connection, key: str, url: str, password_env: str | None, environment: str) -> int:
    statement = (
        insert(Instance)
        .values(key=key, url=url, password_env=password_env, environment=environment)
        .returning(Instance.id)
    )
    return int(_insert_unique(conn, statement, f"instance {key!r}").id)


def get_instance(conn: Connection, key: str) -> Row[Any]:
    row = conn.execute(select(Instance).where(Instance.key == key)).one_or_none()
    if row is None:
        raise NotFound(f"instance {key!r} not found")
    return row


def metadata_identity(conn: Connection) -> tuple[int, str]:
    """(system identifier of the server, name) of the metadata database, to recognise it on an instance."""
    row = conn.execute(
        text("SELECT (SELECT system_identifier FROM pg_catalog.pg_control_system()), current_database()")
    ).one()
    return int(row[0]), str(row[1])


def register_databases(
    conn: Connection, instance_id: int, names: Sequence[str], environment: str, project_id: int | None
) -> list[str]:
    """Insert databases found on an instance; a database registered before keeps its environment, labels
    and project (a project is only given to one that has none). Returns the names inserted now."""
    added = []
    for name in names:
        values = {"instance_id": instance_id, "name": name, "environment": environment, "project_id": project_id}
        statement = (insert(Database).values(**values).on_conflict_do_nothing(index_elements=["instance_id", "name"])
                     .returning(Database.name))
        added += conn.execute(statement).scalars().all()
        if project_id is not None:
            conn.execute(
                update(Database)
                .where(Database.instance_id == instance_id, Database.name == name, Database.project_id.is_(None))
                .values(project_id=project_id)
            )
    return added


def update_database(conn: Connection, instance_key: str, name: str, values: dict[str, Any]) -> None:
    instance = get_instance(conn, instance_key)
    statement = update(Database).where(Database.instance_id == instance.id, Database.name == name).values(**values)
    if conn.execute(statement).rowcount == 0:
        raise NotFound(f"database {instance_key}/{name} not found; run `plancheck instance sync {instance_key}`")


def list_databases(
    conn: Connection, project_id: int | None = None, names: Sequence[str] | None = None
) -> list[Row[Any]]:
    """Databases with their instance's key, environment and connection settings; `names`
    (INSTANCE/DATABASE) limits the list to those, so a plan of a few targets never reads them all."""
    statement = (
        select(
            Database.id,
            Database.name,
            Database.environment,
            Database.labels,
            Database.project_id,
            Instance.key.label("instance_key"),
            Instance.url,
            Instance.password_env,
        )
        .join(Instance, Instance.id == Database.instance_id)
        .order_by(Instance.key, Database.name)
    )
    if project_id is not None:
        statement = statement.where(Database.project_id == project_id)
    if names is not None:
        databases = sorted({name.partition("/")[2] for name in names})
        statement = statement.where(
            Database.name == any_(literal(databases, ARRAY(Text))),
            (Instance.key + "/" + Database.name) == any_(literal(list(names), ARRAY(Text))),
        )
    return list(conn.execute(statement).all())


def create_group(conn: Connection, project_id: int, key: str, expression: str) -> int:
    statement = (
        insert(DatabaseGroup).values(project_id=project_id, key=key, expression=expression).returning(DatabaseGroup.id)
    )
    return int(_insert_unique(conn, statement, f"group {key!r}").id)


def get_group(conn: Connection, project_id: int, key: str) -> Row[Any]:
    statement = select(DatabaseGroup).where(DatabaseGroup.project_id == project_id, DatabaseGroup.key == key)
    row = conn.execute(statement).one_or_none()
    if row is None:
        raise NotFound(f"database group {key!r} not found in this project")
    return row


def list_groups(conn: Connection, project_id: int) -> list[Row[Any]]:
    statement = select(DatabaseGroup).where(DatabaseGroup.project_id == project_id).order_by(DatabaseGroup.key)
    return list(conn.execute(statement).all())


def put_sheet(conn: Connection, content: str) -> str:
    """Store SQL by content: the same statement text is kept once."""
    sha = hashlib.sha256(content.encode()).hexdigest()
    conn.execute(insert(Sheet).values(sha256=sha, content=content).on_conflict_do_nothing(index_elements=["sha256"]))
    return sha


def sheet_contents(conn: Connection, shas: Sequence[str]) -> dict[str, str]:
    rows = conn.execute(select(Sheet.sha256, Sheet.content).where(Sheet.sha256.in_(list(shas)))).all()
    return {row.sha256: row.content for row in rows}


def create_plan(conn: Connection, project_id: int, title: str, specs: list[dict[str, Any]]) -> int:
    statement = insert(Plan).values(project_id=project_id, title=title, specs=specs).returning(Plan.id)
    return int(conn.execute(statement).one().id)


def plan_with_project(conn: Connection, plan_id: int) -> Row[Any] | None:
    """The plan's specs with its project's id, key, settings and archived flag, in one query."""
    statement = select(
        Plan.specs, Plan.project_id, Project.key.label("project_key"), Project.settings, Project.archived
    ).join(Project, Project.id == Plan.project_id).where(Plan.id == plan_id)
    return conn.execute(statement).one_or_none()


def get_plan(conn: Connection, plan_id: int) -> Row[Any] | None:
    return conn.execute(select(Plan).where(Plan.id == plan_id)).one_or_none()


def require_plan(conn: Connection, plan_id: int) -> Row[Any]:
    plan = get_plan(conn, plan_id)
    if plan is None:
        raise NotFound(f"plan {plan_id} not found")
    return plan
