"""`plancheck db|project|instance|database|group …`: the catalog a plan's targets come from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plancheck.cli import render
from plancheck.cli.common import JsonOption, api, emit, parse_labels, read_settings
from plancheck.core.conninfo import display_url

db_app = typer.Typer(help="The metadata database.", no_args_is_help=True)
project_app = typer.Typer(help="Projects: settings (SQL review rule levels) and their databases.", no_args_is_help=True)
instance_app = typer.Typer(help="PostgreSQL instances whose databases plans target.", no_args_is_help=True)
database_app = typer.Typer(help="Databases: project, environment and labels.", no_args_is_help=True)
group_app = typer.Typer(help="Database groups: a CEL expression selects a project's databases.", no_args_is_help=True)

ProjectArg = Annotated[str, typer.Argument(metavar="PROJECT", help="Project key.")]
GroupArg = Annotated[str, typer.Argument(metavar="KEY", help="Group key.")]
ProjectOption = Annotated[str | None, typer.Option("--project", "-p", help="Project key.")]


# -- db -------------------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(json_output: JsonOption = False) -> None:
    """Create or migrate the metadata database schema (PLANCHECK_DATABASE_URL) to the latest revision."""
    plancheck = api()
    revision = plancheck.upgrade_database()
    url = display_url(plancheck.settings.database_url)
    emit(
        json_output,
        {"revision": revision, "database_url": url},
        f"metadata database {render.safe(url)} is at revision [bold]{render.safe(revision)}[/]",
    )


# -- project --------------------------------------------------------------------------------------
@project_app.command("create")
def project_create(
    key: Annotated[str, typer.Argument(metavar="KEY", help="Project key: letters, digits, '-' or '_'.")],
    title: Annotated[str | None, typer.Option(help="Title (default: the key).")] = None,
    settings: Annotated[Path | None, typer.Option("--settings", help="Project settings, a JSON file.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Create a project."""
    project_id = api().create_project(key, title, read_settings(settings))
    emit(
        json_output,
        {"project_id": project_id, "key": key},
        f"project [bold]{render.safe(key)}[/] created (id {project_id})",
    )


@project_app.command("archive")
def project_archive(key: Annotated[str, typer.Argument(metavar="KEY")], json_output: JsonOption = False) -> None:
    """Archive a project: it takes no new plans."""
    api().set_project_archived(key, True)
    emit(json_output, {"key": key, "archived": True}, f"project [bold]{render.safe(key)}[/] archived")


# -- instance -------------------------------------------------------------------------------------
@instance_app.command("add")
def instance_add(
    key: Annotated[str, typer.Argument(metavar="KEY", help="Instance key: letters, digits, '-' or '_'.")],
    url: Annotated[str, typer.Option("--url", help="postgresql://user[:password]@host:port/database")],
    env: Annotated[str, typer.Option("--env", help="Environment of its databases, e.g. test or prod.")] = "test",
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="Read the password from this environment variable.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Register a PostgreSQL instance (the URL's password is stored, never printed)."""
    instance_id = api().add_instance(key, url, env, password_env)
    shown = display_url(url)
    emit(
        json_output,
        {"instance_id": instance_id, "key": key, "url": shown, "environment": env, "password_env": password_env},
        f"instance [bold]{render.safe(key)}[/] added (id {instance_id}, {render.safe(shown)}, "
        f"environment {render.safe(env)})",
    )


@instance_app.command("sync")
def instance_sync(
    key: Annotated[str, typer.Argument(metavar="KEY")],
    project: ProjectOption = None,
    env: Annotated[
        str | None, typer.Option("--env", help="Environment of databases new to plancheck (default: the instance's).")
    ] = None,
    include: Annotated[
        list[str] | None, typer.Option("--include", help="Only databases matching this glob, e.g. 'shop_*'; repeat.")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Skip databases matching this glob; repeat.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Register the instance's databases (optionally into a project); registered ones keep their settings."""
    synced = api().sync_instance(key, project, env, include or (), exclude or ())
    skipped = ", ".join(f"{name} ({why})" for name, why in synced.skipped.items())
    lines = [
        f"instance [bold]{render.safe(key)}[/]: {len(synced.added)} database(s) added"
        + (f": {render.safe(', '.join(synced.added))}" if synced.added else ""),
        f"{len(synced.kept)} already registered, kept as they were",
    ]
    if skipped:
        lines.append(f"skipped: {render.safe(skipped)}")
    emit(json_output, {**synced.to_json(), "project": project}, "\n".join(lines))


# -- database -------------------------------------------------------------------------------------
@database_app.command("set")
def database_set(
    target: Annotated[str, typer.Argument(metavar="INSTANCE/DB", help="The database, as INSTANCE/DATABASE.")],
    project: ProjectOption = None,
    env: Annotated[str | None, typer.Option("--env", help="Environment, e.g. test or prod.")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="key=value; repeat for more (replaces all labels).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Set a database's project, environment or labels."""
    labels = parse_labels(label)
    api().set_database(target, project, env, labels)
    changed = {"project": project, "environment": env, "labels": labels}
    data = {"target": target, **{key: value for key, value in changed.items() if value is not None}}
    shown = {**data, **({"labels": render.labels_text(labels)} if labels is not None else {})}
    emit(json_output, data, render.key_value_table(shown))


@database_app.command("list")
def database_list(project: ProjectOption = None, json_output: JsonOption = False) -> None:
    """List registered databases (of one project with --project)."""
    databases = api().list_databases(project)
    emit(json_output, {"databases": databases}, render.databases_table(databases))


# -- group ----------------------------------------------------------------------------------------
@group_app.command("create")
def group_create(
    project: ProjectArg,
    key: GroupArg,
    expr: Annotated[str, typer.Option("--expr", help='CEL, e.g. resource.database_name.startsWith("shop_")')],
    json_output: JsonOption = False,
) -> None:
    """Create a database group in a project."""
    group_id = api().create_group(project, key, expr)
    emit(
        json_output,
        {"group_id": group_id, "project": project, "key": key, "expression": expr},
        f"group [bold]{render.safe(key)}[/] created in project {render.safe(project)} (id {group_id})",
    )


@group_app.command("show")
def group_show(project: ProjectArg, key: GroupArg, json_output: JsonOption = False) -> None:
    """The databases the group matches now."""
    members = api().show_group(project, key)
    emit(
        json_output,
        {"project": project, "group": key, "databases": members},
        render.databases_table(members, title=f"Group {render.safe(key)} ({len(members)} database(s))"),
    )
