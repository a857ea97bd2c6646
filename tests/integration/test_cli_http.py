"""`plancheck plan …` over HTTP: with PLANCHECK_API_URL and PLANCHECK_TOKEN only (the database URL
points nowhere), the same output and exit codes as against the database, and the same one-line errors."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from plancheck.api import Plancheck
from plancheck.devtools.embedded import free_port
from tests.integration.conftest import ApiServer
from tests.integration.helpers import TargetDatabase, make_target, register_target
from tests.processes import REPO_ROOT, Cluster

RISKY_SQL = b"DELETE FROM items;\nUPDATE items SET price = 0;\n"
CLEAN_SQL = b"SELECT id FROM items WHERE id = 1;\n"
NOWHERE = "postgresql://nobody@127.0.0.1:1/nothing"  # the HTTP client must never need it


@pytest.fixture
def target(api: Plancheck, create_database: Callable[[str], str]) -> TargetDatabase:
    return register_target(api, *make_target(create_database, rows=50))


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plancheck.cli.main", *args],
        env={**env, "COLUMNS": "150"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def http_env(plancheck_env: dict[str, str], url: str, token: str) -> dict[str, str]:
    return {
        **plancheck_env,
        "PLANCHECK_DATABASE_URL": NOWHERE,
        "PLANCHECK_BROKER_URL": "redis://127.0.0.1:1/0",
        "PLANCHECK_API_URL": url,
        "PLANCHECK_TOKEN": token,
    }


def sql_file(tmp_path: Path, content: bytes, name: str = "plan.sql") -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def same(first: subprocess.CompletedProcess[str], second: subprocess.CompletedProcess[str]) -> None:
    """Same exit code and output; progress lines may differ only in the elapsed time they show."""

    def elapsed(text: str) -> str:
        return re.sub(r"\d+\.\ds elapsed", "…s elapsed", text)

    assert (first.returncode, first.stdout, elapsed(first.stderr)) == (
        second.returncode,
        second.stdout,
        elapsed(second.stderr),
    )


def test_submit_wait_and_read_like_the_database_cli(
    api: Plancheck,
    plancheck_env: dict[str, str],
    api_server: ApiServer,
    make_token: Callable[..., str],
    target: TargetDatabase,
    cluster: Cluster,
    tmp_path: Path,
) -> None:
    cluster.worker("w1")
    token = make_token("submit", project="shop")
    remote = http_env(plancheck_env, api_server.url, token)
    risky = sql_file(tmp_path, RISKY_SQL)

    created = run(remote, "plan", "create", "shop", "--sql", risky, "--target", target.target, "--title", "risky")
    assert created.returncode == 0 and created.stderr == "", created.stderr
    plan_id = int(created.stdout)
    waited = run(remote, "plan", "checks", str(plan_id), "--wait", "--timeout", "120", "--json")
    assert waited.returncode == 1, waited.stderr  # DONE with ERROR results
    assert f"plan {plan_id}: DONE" in waited.stderr  # progress lines on stderr, stdout holds the JSON

    for args in (["--json"], [], ["--wait", "--json"], ["--wait"]):
        same(
            run(remote, "plan", "checks", str(plan_id), *args),
            run(plancheck_env, "plan", "checks", str(plan_id), *args),
        )
    assert run(remote, "plan", "checks", str(plan_id), "--json").stdout == waited.stdout

    json_create = run(
        remote,
        "plan",
        "create",
        "shop",
        "--sql",
        sql_file(tmp_path, CLEAN_SQL, "c.sql"),
        "--target",
        target.target,
        "--json",
    )
    clean = int(json_create.stdout.split(":")[1].strip(" }\n"))
    assert json_create.stdout == f'{{\n  "plan_id": {clean}\n}}\n'
    assert run(remote, "plan", "checks", str(clean), "--wait", "--timeout", "120").returncode == 0

    rerun = run(remote, "plan", "rerun", str(clean))
    assert (rerun.returncode, rerun.stdout) == (0, f"plan {clean}: checks queued again\n")
    assert run(remote, "plan", "checks", str(clean), "--wait", "--timeout", "120", "--json").returncode == 0
    assert api.checks(clean).generation == 2
    for output in (created, waited, json_create, rerun):
        assert token not in output.stdout + output.stderr


def test_cancel_and_timeouts_without_a_worker(
    api: Plancheck,
    plancheck_env: dict[str, str],
    api_server: ApiServer,
    make_token: Callable[..., str],
    target: TargetDatabase,
    tmp_path: Path,
) -> None:
    remote = http_env(plancheck_env, api_server.url, make_token("submit"))
    plan_id = int(
        run(remote, "plan", "create", "shop", "--sql", sql_file(tmp_path, CLEAN_SQL), "--target", target.target).stdout
    )
    waiting = run(remote, "plan", "checks", str(plan_id), "--wait", "--timeout", "1")
    assert waiting.returncode == 2 and f"plan {plan_id}: still " in waiting.stderr
    unfinished = run(remote, "plan", "checks", str(plan_id))
    assert unfinished.returncode == 2 and "not finished (add --wait" in unfinished.stderr

    canceled = run(remote, "plan", "cancel", str(plan_id), str(plan_id))
    assert canceled.returncode == 0
    assert canceled.stdout == f"plan {plan_id}: canceled\n"  # the second request found nothing to cancel
    assert api.checks(plan_id).status == "CANCELED"
    again = run(remote, "plan", "cancel", str(plan_id), "--json")
    assert again.stdout.replace(" ", "").replace("\n", "") == f'{{"canceled":[],"not_running":[{plan_id}]}}'
    assert run(remote, "plan", "checks", str(plan_id)).returncode == 2


def one_line_error(done: subprocess.CompletedProcess[str], fragment: str) -> str:
    assert done.returncode == 3, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], done.stderr
    return lines[0]


def test_errors_are_the_same_one_line_as_against_the_database(
    plancheck_env: dict[str, str],
    api_server: ApiServer,
    make_token: Callable[..., str],
    target: TargetDatabase,
    tmp_path: Path,
) -> None:
    submit = make_token("submit")
    remote = http_env(plancheck_env, api_server.url, submit)
    risky = sql_file(tmp_path, RISKY_SQL)
    cases = [
        (["plan", "checks", "999999"], "plan 999999 not found"),
        (["plan", "rerun", "999999"], "plan 999999 not found"),
        (["plan", "create", "nope", "--sql", risky, "--target", target.target], "project 'nope' not found"),
        (["plan", "create", "shop", "--sql", risky, "--target", "local/missing"], "local/missing"),
        (
            [
                "plan",
                "create",
                "shop",
                "--sql",
                sql_file(tmp_path, b"SELECT '\xff';", "bad.sql"),
                "--target",
                target.target,
            ],
            "not UTF-8",
        ),
        (["plan", "create", "shop", "--sql", str(tmp_path / "missing.sql"), "--target", target.target], "not found"),
    ]
    for args, fragment in cases:
        assert one_line_error(run(remote, *args), fragment) == one_line_error(run(plancheck_env, *args), fragment)

    read_only = http_env(plancheck_env, api_server.url, make_token("read", name="reader"))
    one_line_error(
        run(read_only, "plan", "create", "shop", "--sql", risky, "--target", target.target),
        "token 'reader' has scope read; this needs submit",
    )
    bad = "pct_0123456789ab_" + "x" * 43
    assert bad not in one_line_error(
        run(http_env(plancheck_env, api_server.url, bad), "plan", "checks", "1"), "the token is not valid"
    )
    down = f"http://127.0.0.1:{free_port()}"
    one_line_error(
        run(http_env(plancheck_env, down, submit), "plan", "checks", "1"), f"cannot reach the plancheck API at {down}"
    )
    half = {**plancheck_env, "PLANCHECK_API_URL": api_server.url}
    one_line_error(run(half, "plan", "checks", "1"), "PLANCHECK_TOKEN is not set")
    one_line_error(
        run({**half, "PLANCHECK_API_URL": "ftp://x", "PLANCHECK_TOKEN": submit}, "plan", "checks", "1"),
        "must be an http:// or https:// URL",
    )
