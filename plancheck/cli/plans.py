"""`plancheck plan|issue|rollout …`: submit plans, read their checks, and the follow-ups."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from plancheck.cli import render
from plancheck.cli.common import JsonOption, api, emit, plans_api, read_bytes, stderr, stdout
from plancheck.cli.review import FormatOption, OutputFormat
from plancheck.core.errors import MAX_ID
from plancheck.core.states import RunStatus

plan_app = typer.Typer(
    help="Plans: submit SQL for target databases and read its checks. With PLANCHECK_API_URL and "
    "PLANCHECK_TOKEN set, create, checks, rerun and cancel go through the HTTP API.",
    no_args_is_help=True,
)
issue_app = typer.Typer(help="Issues: approval of a checked plan.", no_args_is_help=True)
rollout_app = typer.Typer(
    help="Rollouts: created once a plan's issue is approved and its checks are clean.", no_args_is_help=True
)

PlanId = Annotated[int, typer.Argument(metavar="PLAN_ID", help="Plan id.", min=1, max=MAX_ID)]


@plan_app.command("create")
def plan_create(
    project: Annotated[str, typer.Argument(metavar="PROJECT", help="Project key.")],
    sql: Annotated[Path, typer.Option("--sql", help="File with the plan's SQL (UTF-8).")],
    target: Annotated[
        list[str] | None, typer.Option("--target", "-t", help="INSTANCE/DATABASE; repeat for more.")
    ] = None,
    group: Annotated[str | None, typer.Option("--group", "-g", help="A database group of the project.")] = None,
    title: Annotated[str | None, typer.Option(help="Plan title.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Create a plan; its checks start at once. Prints the new plan id."""
    from plancheck.core.settings import load_settings

    data = read_bytes(sql, "SQL file", load_settings().max_sql_bytes)
    plan_id = plans_api().create_plan(project, data, targets=target or (), group=group, title=title)
    emit(json_output, {"plan_id": plan_id}, str(plan_id))


@plan_app.command("checks")
def plan_checks(
    plan_id: PlanId,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the checks finish, showing progress.")] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: give up after this many seconds.", min=0)] = 300.0,
    json_output: JsonOption = False,
    output_format: FormatOption = OutputFormat.text,
    sql_path: Annotated[
        str | None, typer.Option("--sql-path", help="The file the plan's SQL came from: annotations point at it.")
    ] = None,
) -> None:
    """Show a plan's check results. Exit 0: DONE without ERROR results; 1: DONE with ERROR results;
    2: FAILED, CANCELED, or not finished (without --wait, or --wait timed out)."""
    plancheck = plans_api()
    machine = json_output or output_format is not OutputFormat.text
    if wait:
        with render.WaitProgress(stderr if machine else stdout, plan_id) as progress:
            checks = plancheck.wait(plan_id, timeout, on_progress=progress.update)
    else:
        checks = plancheck.checks(plan_id)
    if json_output or output_format is OutputFormat.json:
        render.print_json(stdout, checks.to_json())
    elif machine:
        from importlib.metadata import version

        from plancheck.cli import formats

        located = [formats.Located(result, sql_path) for result in checks.results]
        typer.echo(formats.machine_text(output_format, located, version("plancheck")), nl=False)
        if not checks.finished:
            stderr.print(f"plan {plan_id}: {checks.status}, not finished", markup=False)
    else:
        render.render_checks(stdout, checks)
        if not checks.finished:
            hint = (
                f"still {checks.status} after waiting {timeout:g}s"
                if wait
                else f"{checks.status}, not finished (add --wait to wait for the result)"
            )
            stderr.print(f"plan {plan_id}: {hint}", markup=False)
    raise typer.Exit(render.exit_code(checks.status, checks.results))


@plan_app.command("rerun")
def plan_rerun(plan_id: PlanId, json_output: JsonOption = False) -> None:
    """Run a plan's checks again (results of a run still in progress are discarded)."""
    plans_api().rerun(plan_id)
    emit(json_output, {"plan_id": plan_id, "status": RunStatus.AVAILABLE}, f"plan {plan_id}: checks queued again")


@plan_app.command("cancel")
def plan_cancel(
    plan_ids: Annotated[list[int], typer.Argument(metavar="PLAN_ID", help="Plan ids.", min=1, max=MAX_ID)],
    json_output: JsonOption = False,
) -> None:
    """Cancel plans' unfinished checks (running work stops within a heartbeat)."""
    canceled = plans_api().cancel(plan_ids)
    untouched = [plan_id for plan_id in plan_ids if plan_id not in canceled]
    lines = [f"plan {plan_id}: canceled" for plan_id in canceled]
    lines += [f"plan {plan_id}: nothing to cancel (checks already finished)" for plan_id in untouched]
    emit(json_output, {"canceled": canceled, "not_running": untouched}, "\n".join(lines))


@issue_app.command("create")
def issue_create(plan_id: PlanId, json_output: JsonOption = False) -> None:
    """Open the plan's issue; approval is found from its checks."""
    issue = asdict(api().create_issue(plan_id))
    emit(json_output, issue, render.key_value_table(issue, title=f"Issue {issue['id']}"))


@issue_app.command("approve")
def issue_approve(
    issue_id: Annotated[int, typer.Argument(metavar="ISSUE_ID", help="Issue id.", min=1, max=MAX_ID)],
    json_output: JsonOption = False,
) -> None:
    """Approve an issue; a rollout follows when the plan's checks are clean."""
    issue = asdict(api().approve_issue(issue_id))
    emit(json_output, issue, render.key_value_table(issue, title=f"Issue {issue['id']}"))


@rollout_app.command("show")
def rollout_show(plan_id: PlanId, json_output: JsonOption = False) -> None:
    """The plan's rollout and its tasks, if one was created."""
    rollout = api().rollout(plan_id)
    if rollout is None:
        emit(json_output, None, f"plan {plan_id} has no rollout yet (it needs an approved issue and clean checks)")
        return
    title = f"Rollout {rollout.id} of plan {plan_id} (version {rollout.plan_version})"
    emit(json_output, asdict(rollout), render.tasks_table(rollout.tasks, title))
