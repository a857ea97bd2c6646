"""The `plancheck` command: a typer app over the Python API (`plancheck.api.Plancheck`).

Exit codes: 0 success; 1 and 2 are `plan checks` verdicts (see `plancheck.cli.render.exit_code`);
3 the command could not run (bad usage or input, unknown id, unreachable database), with one
`error: …` line on stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from plancheck.cli import catalog, ops, plans, review, rules, server
from plancheck.cli.common import EXIT_USAGE, CliError, JsonOption, stderr
from plancheck.cli.render import plain

app = typer.Typer(
    name="plancheck",
    help="Plan checks (SQL review and change summaries) for PostgreSQL change plans, run on a Celery cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(catalog.db_app, name="db")
app.add_typer(catalog.project_app, name="project")
app.add_typer(catalog.instance_app, name="instance")
app.add_typer(catalog.database_app, name="database")
app.add_typer(catalog.group_app, name="group")
app.add_typer(plans.plan_app, name="plan")
app.add_typer(plans.issue_app, name="issue")
app.add_typer(plans.rollout_app, name="rollout")
ops.register(app)  # `plancheck status`, `plancheck metrics serve`
review.register(app)  # `plancheck review FILE…`: no database needed
rules.register(app)  # `plancheck rules`
server.register(app)  # `plancheck api serve`, `plancheck token …`

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where PostgreSQL and Redis keep their data (default: the user data dir)."),
]


@app.command()
def dev(
    data_dir: DataDirOption = None,
    flower: Annotated[bool, typer.Option("--flower", help="Also run Flower on 127.0.0.1 with basic auth.")] = False,
    flower_port: Annotated[int, typer.Option("--flower-port", help="Flower's port.", min=1, max=65535)] = 5555,
    api_port: Annotated[
        int, typer.Option("--api-port", help="Port of the API server and results page (127.0.0.1).", min=1, max=65535)
    ] = 8080,
    json_output: JsonOption = False,
) -> None:
    """Run embedded PostgreSQL and Redis, a celery worker, a beat and the API server until Ctrl-C."""
    from plancheck.cli.devmode import run_dev

    run_dev(data_dir, flower, flower_port, api_port, json_output)


@app.command()
def demo(
    data_dir: DataDirOption = None,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Keep the dev environment running after the demo (Ctrl-C stops).")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Sample databases, a project and three plans (safe, risky, broken), checked end to end."""
    from plancheck.cli.devmode import run_demo

    run_demo(data_dir, keep_running, json_output)


def error_message(exc: BaseException) -> str | None:
    """The one-line message for an error the user can act on; None for a bug (keep its traceback)."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    from plancheck.core.errors import PlancheckError
    from plancheck.core.redact import error_line
    from plancheck.core.settings import SettingsError

    if isinstance(exc, (PlancheckError, SettingsError, CliError)):
        return str(exc)
    secrets = _metadata_secrets()
    if isinstance(exc, DBAPIError):
        detail = error_line(exc, *secrets)
        if type(exc.orig).__name__ == "UndefinedTable":
            return f"the metadata database has no plancheck schema; run `plancheck db upgrade` ({detail})"
        if isinstance(exc, OperationalError):
            return f"cannot use the metadata database (PLANCHECK_DATABASE_URL): {detail}"
        return f"database error: {detail}"
    if type(exc).__module__.startswith("psycopg"):  # direct connections (the demo's sample data)
        return f"database error: {error_line(exc, *secrets)}"
    if type(exc).__module__.startswith("alembic"):
        return f"migration failed: {error_line(exc, *secrets)}"
    return None


def _metadata_secrets() -> tuple[str, ...]:
    """Every spelling of the metadata database's password, to mask in error texts."""
    from plancheck.core.redact import url_secrets

    return url_secrets(os.environ.get("PLANCHECK_DATABASE_URL", ""))


def _click_exceptions() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """(usage errors, aborts) of the click typer runs on: its vendored copy (typer >= 0.20) or click."""
    usage: list[type[Exception]] = []
    aborts: list[type[Exception]] = [typer.Abort]
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        usage.append(module.ClickException)
        if hasattr(module, "Abort"):
            aborts.append(module.Abort)
    return tuple(usage), tuple(aborts)


def one_line(message: str) -> str:
    """Errors are one line on stderr: a multi-line message (e.g. a caret under a CEL error) is joined."""
    parts: list[str] = []
    for line in (line.rstrip() for line in message.strip().splitlines() if line.strip()):
        if parts and set(line.strip()) == {"^"}:
            parts[-1] += f" (column {len(line) - len(line.lstrip()) + 1})"
        else:
            parts.append(line.strip())
    return " ".join(parts)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    usage_errors, aborts = _click_exceptions()
    try:
        result = app(args=list(argv) if argv is not None else None, prog_name="plancheck", standalone_mode=False)
    except usage_errors as exc:
        message = plain(one_line(exc.format_message()))  # type: ignore[attr-defined]
        stderr.print(f"error: {message} (see --help)", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except aborts:
        stderr.print("aborted", markup=False)
        return 130
    except Exception as exc:
        reason = error_message(exc)
        if reason is None:
            raise
        stderr.print(f"error: {plain(one_line(reason))}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    return result if isinstance(result, int) else 0


def main(argv: Sequence[str] | None = None) -> NoReturn:
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
