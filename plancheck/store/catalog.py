"""Every statement of the catalog: projects, instances, databases, groups, sheets and plans."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TEXT
from sqlalchemy.exc import IntegrityError

from plancheck.core.errors import Conflict, NotFound

_PROJECT_COLUMNS = "id, key, title, archived, settings, created_at"
_INSTANCE_COLUMNS = "id, key, engine, url, password_env, environment, created_at"
_GROUP_COLUMNS = "id, project_id, key, expression, created_at"
_PLAN_COLUMNS = "id, project_id, title, specs, version, created_at"
# A database as checks need it: with its instance's key and connection settings.
_DATABASE_COLUMNS = "d.id, d.name, d.environment, d.labels, d.project_id, i.key AS instance_key, i.url, i.password_env"

# -- projects ---------------------------------------------------------------------------------------
_CREATE_PROJECT = text(
    "INSERT INTO project (key, title, settings) VALUES (:key, :title, :settings) RETURNING id"
).bindparams(bindparam("settings", type_=JSONB))

_PROJECT = text(f"SELECT {_PROJECT_COLUMNS} FROM project WHERE key = :key")

_SET_ARCHIVED = text("UPDATE project SET archived = :archived WHERE key = :key RETURNING id")

_PROJECT_SETTINGS_OF_PLAN = text(
    "SELECT p.settings FROM project p JOIN plan ON plan.project_id = p.id WHERE plan.id = :plan_id"
)

# -- instances and their databases ----------------------------------------------------------------
_ADD_INSTANCE = text(
    """
    INSERT INTO instance (key, url, password_env, environment) VALUES (:key, :url, :password_env, :environment)
    RETURNING id
    """
)

_INSTANCE = text(f"SELECT {_INSTANCE_COLUMNS} FROM instance WHERE key = :key")

_METADATA_IDENTITY = text("SELECT (SELECT system_identifier FROM pg_catalog.pg_control_system()), current_database()")

# A database registered before keeps its environment, labels and project.
_REGISTER_DATABASE = text(
    """
    INSERT INTO database (instance_id, name, environment, project_id)
    VALUES (:instance_id, :name, :environment, :project_id)
    ON CONFLICT (instance_id, name) DO NOTHING
    RETURNING name
    """
)

# ... but one without a project joins the project of a sync that names one.
_ADOPT_DATABASE = text(
    """
    UPDATE database SET project_id = :project_id
    WHERE instance_id = :instance_id AND name = :name AND project_id IS NULL
    """
)

# Only what is given changes (None keeps the current value).
_UPDATE_DATABASE = text(
    """
    UPDATE database SET
        project_id = coalesce(CAST(:project_id AS bigint), project_id),
        environment = coalesce(CAST(:environment AS text), environment),
        labels = coalesce(CAST(:labels AS jsonb), labels)
    WHERE instance_id = (SELECT id FROM instance WHERE key = :instance_key) AND name = :name
    RETURNING id
    """
).bindparams(bindparam("labels", type_=JSONB(none_as_null=True)))

_DATABASES = text(
    f"""
    SELECT {_DATABASE_COLUMNS} FROM database d JOIN instance i ON i.id = d.instance_id
    WHERE CAST(:project_id AS bigint) IS NULL OR d.project_id = :project_id
    ORDER BY i.key, d.name
    """
)

# Only the named databases (INSTANCE/DATABASE): a plan of a few targets never reads them all. The
# name alone narrows the rows first; arrays keep the statement's size fixed for 10,000 names.
_NAMED_DATABASES = text(
    f"""
    SELECT {_DATABASE_COLUMNS} FROM database d JOIN instance i ON i.id = d.instance_id
    WHERE d.name = ANY(:database_names) AND i.key || '/' || d.name = ANY(:names)
      AND (CAST(:project_id AS bigint) IS NULL OR d.project_id = :project_id)
    ORDER BY i.key, d.name
    """
).bindparams(bindparam("database_names", type_=ARRAY(TEXT)), bindparam("names", type_=ARRAY(TEXT)))

# -- groups ---------------------------------------------------------------------------------------
_CREATE_GROUP = text(
    "INSERT INTO database_group (project_id, key, expression) VALUES (:project_id, :key, :expression) RETURNING id"
)

_GROUP = text(f"SELECT {_GROUP_COLUMNS} FROM database_group WHERE project_id = :project_id AND key = :key")

_GROUPS = text(f"SELECT {_GROUP_COLUMNS} FROM database_group WHERE project_id = :project_id ORDER BY key")

# -- sheets and plans -----------------------------------------------------------------------------
_PUT_SHEET = text("INSERT INTO sheet (sha256, content) VALUES (:sha256, :content) ON CONFLICT (sha256) DO NOTHING")

_SHEETS = text("SELECT sha256, content FROM sheet WHERE sha256 = ANY(:shas)").bindparams(
    bindparam("shas", type_=ARRAY(TEXT))
)

_CREATE_PLAN = text(
    "INSERT INTO plan (project_id, title, specs) VALUES (:project_id, :title, :specs) RETURNING id"
).bindparams(bindparam("specs", type_=JSONB))

_PLAN = text(f"SELECT {_PLAN_COLUMNS} FROM plan WHERE id = :id")

_PLAN_WITH_PROJECT = text(
    """
    SELECT plan.specs, plan.project_id, p.key AS project_key, p.settings, p.archived
    FROM plan JOIN project p ON p.id = plan.project_id
    WHERE plan.id = :id
    """
)


def _insert_unique(conn: Connection, statement: TextClause, params: dict[str, Any], what: str) -> int:
    try:
        with conn.begin_nested():
            return int(conn.execute(statement, params).scalar_one())
    except IntegrityError:
        raise Conflict(f"{what} already exists") from None


def _one(conn: Connection, statement: TextClause, params: dict[str, Any], missing: str) -> Row[Any]:
    row = conn.execute(statement, params).one_or_none()
    if row is None:
        raise NotFound(missing)
    return row


# -- projects ---------------------------------------------------------------------------------------
def create_project(conn: Connection, key: str, title: str, settings: dict[str, Any]) -> int:
    return _insert_unique(conn, _CREATE_PROJECT, {"key": key, "title": title, "settings": settings}, f"project {key!r}")


def get_project(conn: Connection, key: str) -> Row[Any]:
    return _one(conn, _PROJECT, {"key": key}, f"project {key!r} not found")


def set_project_archived(conn: Connection, key: str, archived: bool) -> None:
    _one(conn, _SET_ARCHIVED, {"key": key, "archived": archived}, f"project {key!r} not found")


def project_settings_of_plan(conn: Connection, plan_id: int) -> dict[str, Any]:
    return dict(_one(conn, _PROJECT_SETTINGS_OF_PLAN, {"plan_id": plan_id}, f"plan {plan_id} not found").settings)


# -- instances and their databases ----------------------------------------------------------------
def add_instance(conn: Connection, key: str, url: str, password_env: str | None, environment: str) -> int:
    params = {"key": key, "url": url, "password_env": password_env, "environment": environment}
    return _insert_unique(conn, _ADD_INSTANCE, params, f"instance {key!r}")


def get_instance(conn: Connection, key: str) -> Row[Any]:
    return _one(conn, _INSTANCE, {"key": key}, f"instance {key!r} not found")


def metadata_identity(conn: Connection) -> tuple[int, str]:
    """(system identifier of the server, name) of the metadata database, to recognise it on an instance."""
    row = conn.execute(_METADATA_IDENTITY).one()
    return int(row[0]), str(row[1])


def register_databases(
    conn: Connection, instance_id: int, names: Sequence[str], environment: str, project_id: int | None
) -> list[str]:
    """Insert databases found on an instance; a database registered before keeps its environment, labels
    and project (a project is only given to one that has none). Returns the names inserted now."""
    added: list[str] = []
    for name in names:
        params = {"instance_id": instance_id, "name": name, "environment": environment, "project_id": project_id}
        added += conn.execute(_REGISTER_DATABASE, params).scalars().all()
        if project_id is not None:
            conn.execute(_ADOPT_DATABASE, params)
    return added


def update_database(
    conn: Connection,
    instance_key: str,
    name: str,
    project_id: int | None = None,
    environment: str | None = None,
    labels: dict[str, str] | None = None,
) -> None:
    """Change what is given of a database's project, environment and labels."""
    params = {
        "instance_key": instance_key,
        "name": name,
        "project_id": project_id,
        "environment": environment,
        "labels": labels,
    }
    _one(
        conn,
        _UPDATE_DATABASE,
        params,
        f"database {instance_key}/{name} not found; run `plancheck instance sync {instance_key}`",
    )


def list_databases(
    conn: Connection, project_id: int | None = None, names: Sequence[str] | None = None
) -> list[Row[Any]]:
    """Databases with their instance's key, environment and connection settings, in (instance, name)
    order; `names` (INSTANCE/DATABASE) limits the list to those."""
    if names is None:
        return list(conn.execute(_DATABASES, {"project_id": project_id}).all())
    params = {
        "project_id": project_id,
        "names": list(names),
        "database_names": sorted({name.partition("/")[2] for name in names}),
    }
    return list(conn.execute(_NAMED_DATABASES, params).all())


# -- groups ---------------------------------------------------------------------------------------
def create_group(conn: Connection, project_id: int, key: str, expression: str) -> int:
    params = {"project_id": project_id, "key": key, "expression": expression}
    return _insert_unique(conn, _CREATE_GROUP, params, f"group {key!r}")


def get_group(conn: Connection, project_id: int, key: str) -> Row[Any]:
    return _one(
        conn, _GROUP, {"project_id": project_id, "key": key}, f"database group {key!r} not found in this project"
    )


def list_groups(conn: Connection, project_id: int) -> list[Row[Any]]:
    return list(conn.execute(_GROUPS, {"project_id": project_id}).all())


# -- sheets and plans -----------------------------------------------------------------------------
def put_sheet(conn: Connection, content: str) -> str:
    """Store SQL by content: the same statement text is kept once."""
    sha = hashlib.sha256(content.encode()).hexdigest()
    conn.execute(_PUT_SHEET, {"sha256": sha, "content": content})
    return sha


def sheet_contents(conn: Connection, shas: Sequence[str]) -> dict[str, str]:
    return {row.sha256: row.content for row in conn.execute(_SHEETS, {"shas": list(shas)})}


def create_plan(conn: Connection, project_id: int, title: str, specs: list[dict[str, Any]]) -> int:
    return int(conn.execute(_CREATE_PLAN, {"project_id": project_id, "title": title, "specs": specs}).scalar_one())


def plan_with_project(conn: Connection, plan_id: int) -> Row[Any] | None:
    """The plan's specs with its project's id, key, settings and archived flag, in one query."""
    return conn.execute(_PLAN_WITH_PROJECT, {"id": plan_id}).one_or_none()


def get_plan(conn: Connection, plan_id: int) -> Row[Any] | None:
    return conn.execute(_PLAN, {"id": plan_id}).one_or_none()


def require_plan(conn: Connection, plan_id: int) -> Row[Any]:
    return _one(conn, _PLAN, {"id": plan_id}, f"plan {plan_id} not found")
