"""`plancheck dev` and `plancheck demo`: the output around `plancheck.devtools.dev` and `plancheck.devtools.demo`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console

from plancheck.cli import render
from plancheck.cli.common import stderr, stdout


def _info_console(json_output: bool) -> Console:
    """Messages for people: stdout, or stderr when stdout carries the JSON document."""
    return stderr if json_output else stdout


def _say(console: Console) -> Any:
    return lambda message: console.print(message, markup=False, highlight=False, soft_wrap=True)


def run_dev(data_dir: Path | None, flower: bool, flower_port: int, api_port: int, json_output: bool) -> None:
    """Run dev mode in the foreground until Ctrl-C or SIGTERM."""
    from plancheck.devtools import dev

    data_dir = (data_dir or dev.default_data_dir()).expanduser().resolve()
    info = _info_console(json_output)
    with dev.stop_signals():
        try:
            with dev.dev_environment(
                data_dir, flower=flower, flower_port=flower_port, api_port=api_port, say=_say(info)
            ) as env:
                env.wait_ready()
                _print_ready(env, info, json_output)
                env.run_forever()
        except KeyboardInterrupt:
            info.print(f"plancheck dev stopped; data kept in {data_dir}", markup=False, highlight=False)


def _print_ready(env: Any, info: Console, json_output: bool) -> None:
    from plancheck.devtools import dev

    state = env.state()
    if json_output:
        render.print_json(
            stdout,
            {
                **state,
                "flower_user": "admin" if env.flower_url else None,
                "flower_password": env.flower_password,
                "api_token": env.api_token,
            },
        )
        stdout.file.flush()
    say = _say(info)
    say(f"PostgreSQL: {env.server_url} (metadata database: {dev.METADATA_DATABASE})")
    say(f"Redis: {env.broker_url}")
    say(
        "processes: "
        + ", ".join(f"{child.name} pid {child.pid}" for child in env.children)
        + f" (logs in {env.data_dir / 'logs'})"
    )
    if env.flower_url:
        say(f"Flower: {env.flower_url} user admin password {env.flower_password} (shown once)")
    say(f"API and results page: {env.api_url}/ (API docs at {env.api_url}/docs)")
    say(f"API token (scope submit; a new one at each start, the previous one revoked): {env.api_token}")
    say("To use the CLI from another terminal:")
    for line in env.exports():
        say(line)
    say(f"or, for the plan commands, through the API: PLANCHECK_API_URL={env.api_url} PLANCHECK_TOKEN={env.api_token}")
    say("plancheck dev is ready; press Ctrl-C to stop.")
    info.file.flush()


def run_demo(data_dir: Path | None, keep_running: bool, json_output: bool) -> None:
    """Run the demo on the dev environment of `data_dir`: a running one, else one started here."""
    from plancheck.devtools import dev

    data_dir = (data_dir or dev.default_data_dir()).expanduser().resolve()
    info = _info_console(json_output)
    say = _say(info)
    with dev.stop_signals():
        try:
            running = dev.running_environment(data_dir)
            if running is not None:
                say(f"using the plancheck dev already running on {data_dir} (pid {running['pid']})")
                _demo(running["server_url"], running["database_url"], running["broker_url"], info, json_output, True)
                return
            say(f"starting a dev environment in {data_dir} (first start takes a few seconds more)")
            with dev.dev_environment(data_dir, say=say) as env:
                _demo(env.server_url, env.database_url, env.broker_url, info, json_output, keep_running)
                if keep_running:
                    say("the dev environment keeps running; press Ctrl-C to stop.")
                    env.run_forever()
        except KeyboardInterrupt:
            say(f"stopped; data kept in {data_dir}")


def _demo(server_url: str, database_url: str, broker_url: str, info: Console, json_output: bool, reused: bool) -> None:
    from plancheck.api import Plancheck
    from plancheck.core.settings import load_settings
    from plancheck.devtools import demo

    # This process dispatches claims too: its Celery app must see the same broker as the worker.
    os.environ.update(PLANCHECK_DATABASE_URL=database_url, PLANCHECK_BROKER_URL=broker_url)
    api = Plancheck(load_settings())
    demo.prepare(api, server_url, say=_say(info))
    runs = demo.submit(api)
    for run in runs:
        with render.WaitProgress(info, run.plan_id) as progress:
            run.checks = api.wait(run.plan_id, demo.WAIT_TIMEOUT, on_progress=progress.update)
    if json_output:
        render.print_json(
            stdout,
            {"plans": [{"title": run.plan.title, **run.checks.to_json()} for run in runs if run.checks is not None]},
        )
        return
    for run in runs:
        assert run.checks is not None
        info.rule(f"[bold]plan {run.plan_id}: {render.safe(run.plan.title)}[/]")
        info.print(render.safe(run.plan.sql.rstrip(), newlines=True), style="dim", highlight=False)
        info.print()
        render.render_checks(info, run.checks, show_attempts=False, compact=True)
        info.print()
    info.print("Next:", style="bold")
    for line in _next_steps(runs[1].plan_id, database_url, broker_url, reused):
        info.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)


def _next_steps(plan_id: int, database_url: str, broker_url: str, reused: bool) -> list[str]:
    import shlex

    commands = [f"plancheck plan checks {plan_id}", "plancheck group show demo shop", "plancheck database list"]
    if reused:
        return [
            f"export PLANCHECK_DATABASE_URL={shlex.quote(database_url)}",
            f"export PLANCHECK_BROKER_URL={shlex.quote(broker_url)}",
            *commands,
        ]
    return [
        "plancheck dev        # keeps this PostgreSQL, Redis, a worker and a beat running; prints the exports",
        *(f"{command}   # in another terminal, after the exports" for command in commands[:1]),
        *commands[1:],
    ]
