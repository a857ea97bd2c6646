"""The `plancheck` CLI as a subprocess, against real PostgreSQL, Redis, worker and beat."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from plancheck.api import Checks, Plancheck
from plancheck.core.errors import Unauthorized
from plancheck.store.db import head_revision
from tests.integration.helpers import make_target
from tests.processes import REPO_ROOT, Cluster

CLEAN_SQL = "SELECT id FROM items WHERE id = 1;\n"
RISKY_SQL = "DELETE FROM items;\nUPDATE items SET price = 0;\n"


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plancheck.cli.main", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(env: dict[str, str], *args: str) -> str:
    done = cli(env, *args)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done.stdout


def ok_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(ok(env, *args, "--json"))


def assert_one_line_error(done: subprocess.CompletedProcess[str], *fragments: str, code: int = 3) -> None:
    assert done.returncode == code, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def count(api: Plancheck, table: str) -> int:
    with api.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.fixture
def target(plancheck_env: dict[str, str], create_database: Callable[[str], str]) -> str:
    """A target database with rows, registered through the CLI in project `shop` as `local/<db>`."""
    url, name = make_target(create_database)
    ok(plancheck_env, "project", "create", "shop")
    ok(plancheck_env, "instance", "add", "local", "--url", url)  # SQLAlchemy form: postgresql+psycopg://
    ok(plancheck_env, "instance", "sync", "local", "--project", "shop")
    return f"local/{name}"


def sql_file(tmp_path: Path, content: bytes, name: str = "plan.sql") -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


# -- catalog --------------------------------------------------------------------------------------
def test_db_upgrade_reports_the_head_revision(plancheck_env: dict[str, str]) -> None:
    first = ok_json(plancheck_env, "db", "upgrade")
    again = ok_json(plancheck_env, "db", "upgrade")
    assert first["revision"] == again["revision"] == head_revision(plancheck_env["PLANCHECK_DATABASE_URL"])


def test_catalog_commands(plancheck_env: dict[str, str], target: str, api: Plancheck, tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"ci_sampling_size": 10, "risk_affected_rows": 500}))
    created = ok_json(plancheck_env, "project", "create", "other", "--title", "Other", "--settings", str(settings))
    assert created["key"] == "other" and created["project_id"] > 0

    added = ok_json(
        plancheck_env,
        "instance",
        "add",
        "vault",
        "--url",
        "postgresql://app:s3cret@db.example:5432/app",
        "--env",
        "prod",
    )
    assert added["url"] == "postgresql://app:***@db.example:5432/app" and added["environment"] == "prod"
    human = ok(plancheck_env, "instance", "add", "vault2", "--url", "postgresql://app:s3cret@db.example/app")
    assert "s3cret" not in human and "***" in human

    name = target.split("/", 1)[1]
    assert ok_json(
        plancheck_env, "database", "set", target, "--env", "prod", "--label", "tier=gold", "--label", "team=core"
    ) == {"target": target, "environment": "prod", "labels": {"tier": "gold", "team": "core"}}
    listed = ok_json(plancheck_env, "database", "list", "--project", "shop")["databases"]
    assert {"target": target, "environment": "prod", "labels": {"tier": "gold", "team": "core"}} in listed
    assert target in ok(plancheck_env, "database", "list")

    expression = f'resource.labels.exists(k, k == "tier") && resource.database_name == "{name}"'
    assert ok_json(plancheck_env, "group", "create", "shop", "gold", "--expr", expression)["group_id"] > 0
    members = ok_json(plancheck_env, "group", "show", "shop", "gold")["databases"]
    assert [member["target"] for member in members] == [target]

    assert ok_json(plancheck_env, "project", "archive", "other") == {"key": "other", "archived": True}
    assert_one_line_error(cli(plancheck_env, "project", "create", "shop"), "already exists")


def test_token_commands(plancheck_env: dict[str, str], api: Plancheck) -> None:
    """`token create` prints the token once on stdout (only its hash is stored), `token list` never shows
    it, `token revoke` makes it useless at once; bad scopes, lifetimes, projects and names are one line."""
    ok(plancheck_env, "project", "create", "shop")
    created = cli(plancheck_env, "token", "create", "ci", "--scope", "submit", "--project", "shop", "--expires", "90d")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("pct_") and "\n" not in token
    assert "shown only this once" in created.stderr and token not in created.stderr
    grant = api.authenticate(token)
    assert (grant.scope, grant.project) == ("submit", "shop")
    with api.engine.connect() as conn:
        stored = " ".join(str(value) for row in conn.execute(text("SELECT * FROM api_token")) for value in row)
    secret = token.split("_", 2)[2]  # pct_<key id>_<secret>
    assert secret not in stored and token not in stored
    listed = cli(plancheck_env, "token", "list")
    assert listed.returncode == 0 and "ci" in listed.stdout and secret not in listed.stdout
    [row] = ok_json(plancheck_env, "token", "list")["tokens"]
    assert (row["name"], row["scope"], row["project"], row["state"]) == ("ci", "submit", "shop", "active")
    assert secret not in json.dumps(row)
    assert_one_line_error(cli(plancheck_env, "token", "create", "ci", "--scope", "read"), "ci")
    ok(plancheck_env, "token", "revoke", "ci")
    with pytest.raises(Unauthorized):
        api.authenticate(token)
    assert ok_json(plancheck_env, "token", "list")["tokens"][0]["state"] == "revoked"
    assert_one_line_error(cli(plancheck_env, "token", "revoke", "ci"), "ci")
    for args, fragment in [
        (("--scope", "root"), "scope"),
        (("--scope", "read", "--expires", "soon"), "soon"),
        (("--scope", "read", "--expires", "0d"), "0d"),
        (("--scope", "read", "--project", "nope"), "nope"),
    ]:
        assert_one_line_error(cli(plancheck_env, "token", "create", "bad", *args), fragment)
    assert len(ok_json(plancheck_env, "token", "list")["tokens"]) == 1


# -- plans end to end -----------------------------------------------------------------------------
def test_plan_checks_end_to_end(
    plancheck_env: dict[str, str], target: str, api: Plancheck, cluster: Cluster, tmp_path: Path
) -> None:
    cluster.worker("w1")
    cluster.beat("b1")
    clean = ok_json(
        plancheck_env,
        "plan",
        "create",
        "shop",
        "--sql",
        sql_file(tmp_path, CLEAN_SQL.encode()),
        "--target",
        target,
        "--title",
        "clean",
    )["plan_id"]
    risky = ok_json(
        plancheck_env,
        "plan",
        "create",
        "shop",
        "--sql",
        sql_file(tmp_path, RISKY_SQL.encode(), "r.sql"),
        "--target",
        target,
    )["plan_id"]

    for plan_id in (clean, risky):
        done = cli(plancheck_env, "plan", "checks", str(plan_id), "--wait", "--timeout", "90", "--json")
        checks = json.loads(done.stdout)
        assert checks["plan_id"] == plan_id and checks["status"] == "DONE", checks
        assert done.returncode == (1 if _has_errors(api.checks(plan_id)) else 0), done.stderr
        assert {result["target"] for result in checks["results"]} == {target}
        assert any(result["type"] == "STATEMENT_SUMMARY_REPORT" for result in checks["results"])
        (attempt,) = checks["attempts"]
        assert attempt["worker"].startswith("w1@") and attempt["outcome"] == "DONE"
        assert attempt["started_at"] and attempt["finished_at"]
        assert "plan" in done.stderr and "DONE" in done.stderr  # plain progress lines, stdout not a tty

    # the risky plan counts its DELETE: the summary line is in the readable report
    human = cli(plancheck_env, "plan", "checks", str(risky))
    assert human.returncode in (0, 1)
    assert target in human.stdout and "summary" in human.stdout and "DELETE" in human.stdout
    assert f"plan {risky}: DONE" in human.stdout

    # re-run: a new generation, checked again
    assert ok_json(plancheck_env, "plan", "rerun", str(clean))["plan_id"] == clean
    again = json.loads(cli(plancheck_env, "plan", "checks", str(clean), "--wait", "--timeout", "90", "--json").stdout)
    assert again["status"] == "DONE" and again["generation"] == 2
    assert [attempt["generation"] for attempt in again["attempts"]] == [1, 2]

    # cancel of finished checks changes nothing
    assert ok_json(plancheck_env, "plan", "cancel", str(clean), str(risky)) == {
        "canceled": [],
        "not_running": [clean, risky],
    }


def test_issue_approval_and_rollout(
    plancheck_env: dict[str, str], target: str, api: Plancheck, cluster: Cluster, tmp_path: Path
) -> None:
    cluster.worker("w1")
    plan_id = ok_json(
        plancheck_env, "plan", "create", "shop", "--sql", sql_file(tmp_path, CLEAN_SQL.encode()), "--target", target
    )["plan_id"]
    assert cli(plancheck_env, "plan", "checks", str(plan_id), "--wait", "--timeout", "90").returncode in (0, 1)
    assert ok_json(plancheck_env, "rollout", "show", str(plan_id)) is None
    assert "no rollout yet" in ok(plancheck_env, "rollout", "show", str(plan_id))

    issue = ok_json(plancheck_env, "issue", "create", str(plan_id))
    assert issue["plan_id"] == plan_id and issue["approval_status"] in ("PENDING", "APPROVED")
    approved = ok_json(plancheck_env, "issue", "approve", str(issue["id"]))
    assert approved["approval_status"] == "APPROVED"
    rollout = ok_json(plancheck_env, "rollout", "show", str(plan_id))
    if _has_errors(api.checks(plan_id)):
        assert rollout is None
    else:
        assert rollout["plan_id"] == plan_id and [task["target"] for task in rollout["tasks"]] == [target]
    assert_one_line_error(cli(plancheck_env, "issue", "create", str(plan_id)), "already has an issue")


def test_unfinished_checks_exit_2_and_cancel(
    plancheck_env: dict[str, str], target: str, api: Plancheck, tmp_path: Path
) -> None:
    """No worker runs: no slot is free, so nothing claims the run (no message waits in the broker for
    a lease to lapse); it stays AVAILABLE until cancelled."""
    plan_id = ok(
        plancheck_env, "plan", "create", "shop", "--sql", sql_file(tmp_path, CLEAN_SQL.encode()), "--target", target
    ).strip()
    assert int(plan_id) > 0

    now = cli(plancheck_env, "plan", "checks", plan_id)
    assert now.returncode == 2 and "--wait" in now.stderr
    assert "AVAILABLE (waiting for a free worker slot)" in now.stdout
    waited = cli(plancheck_env, "plan", "checks", plan_id, "--wait", "--timeout", "1", "--json")
    assert waited.returncode == 2
    assert (json.loads(waited.stdout)["status"], json.loads(waited.stdout)["attempts"]) == ("AVAILABLE", [])

    assert ok_json(plancheck_env, "plan", "cancel", plan_id) == {"canceled": [int(plan_id)], "not_running": []}
    canceled = cli(plancheck_env, "plan", "checks", plan_id, "--json")
    assert canceled.returncode == 2 and json.loads(canceled.stdout)["status"] == "CANCELED"


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "empty"),
        (b"  \n\t\n", "empty"),
        (b"SELECT 'caf\xe9';\n", "not UTF-8"),
        (b"SELECT 1;\x00\x00", "NUL"),
    ],
    ids=["empty", "blank", "latin-1", "nul"],
)
def test_bad_sql_files_are_rejected_before_anything_is_written(
    plancheck_env: dict[str, str], target: str, api: Plancheck, tmp_path: Path, content: bytes, fragment: str
) -> None:
    done = cli(plancheck_env, "plan", "create", "shop", "--sql", sql_file(tmp_path, content), "--target", target)
    assert_one_line_error(done, fragment)
    assert (count(api, "plan"), count(api, "sheet"), count(api, "plan_check_run")) == (0, 0, 0)


def test_bad_plan_requests(plancheck_env: dict[str, str], target: str, api: Plancheck, tmp_path: Path) -> None:
    sql = sql_file(tmp_path, CLEAN_SQL.encode())
    assert_one_line_error(
        cli(plancheck_env, "plan", "create", "shop", "--sql", str(tmp_path / "missing.sql"), "--target", target),
        "missing.sql",
        "not found",
    )
    assert_one_line_error(
        cli(plancheck_env, "plan", "create", "shop", "--sql", sql, "--target", "local/nope"), "local/nope"
    )
    assert_one_line_error(
        cli(plancheck_env, "plan", "create", "shop", "--sql", sql, "--target", "no-slash"), "no-slash"
    )
    assert_one_line_error(cli(plancheck_env, "plan", "create", "shop", "--sql", sql), "--group")
    assert_one_line_error(
        cli(plancheck_env, "plan", "create", "nope", "--sql", sql, "--target", target), "project 'nope' not found"
    )
    assert_one_line_error(cli(plancheck_env, "plan", "create", "shop", "--sql", sql, "--group", "nope"), "nope")
    assert (count(api, "plan"), count(api, "plan_check_run")) == (0, 0)

    assert_one_line_error(cli(plancheck_env, "plan", "checks", "999999"), "plan 999999 not found")
    assert_one_line_error(cli(plancheck_env, "plan", "checks", "999999", "--wait", "--json"), "999999")
    assert_one_line_error(cli(plancheck_env, "plan", "rerun", "999999"), "999999")
    assert_one_line_error(cli(plancheck_env, "plan", "cancel", "999999"), "999999")
    assert_one_line_error(cli(plancheck_env, "issue", "approve", "999999"), "issue 999999 not found")


def test_bad_catalog_requests(plancheck_env: dict[str, str], api: Plancheck, tmp_path: Path) -> None:
    ok(plancheck_env, "project", "create", "shop")
    assert_one_line_error(cli(plancheck_env, "instance", "add", "x", "--url", "notaurl"), "postgresql://")
    assert_one_line_error(cli(plancheck_env, "instance", "add", "x", "--url", "mysql://u@h/db"), "postgresql://")
    assert count(api, "instance") == 0
    assert_one_line_error(
        cli(plancheck_env, "group", "create", "shop", "g", "--expr", "resource.database_name ==("), "group 'g'"
    )
    assert_one_line_error(cli(plancheck_env, "group", "create", "shop", "g", "--expr", "resource.nope == 1"))
    assert count(api, "database_group") == 0
    assert_one_line_error(cli(plancheck_env, "instance", "sync", "ghost"), "instance 'ghost' not found")
    assert_one_line_error(cli(plancheck_env, "database", "set", "ghost/db", "--label", "novalue"), "key=value")
    bad_json = tmp_path / "settings.json"
    bad_json.write_text("{not json")
    assert_one_line_error(cli(plancheck_env, "project", "create", "p2", "--settings", str(bad_json)), "not valid JSON")
    assert count(api, "project") == 1


def test_bad_settings_and_unreachable_database(plancheck_env: dict[str, str]) -> None:
    for bad in (
        {"PLANCHECK_DATABASE_URL": "mysql://x"},
        {"PLANCHECK_DATABASE_URL": "not a url"},
        {"PLANCHECK_LEASE_SECONDS": "soon"},
        {"PLANCHECK_BROKER_URL": "http://x"},
        {"PLANCHECK_LEASE_SECONDS": "nan"},
    ):
        assert_one_line_error(cli({**plancheck_env, **bad}, "plan", "checks", "1"), next(iter(bad)))

    password_url = make_url("postgresql+psycopg://someone:hunter2@127.0.0.1:1/nothing")
    unreachable = {**plancheck_env, "PLANCHECK_DATABASE_URL": password_url.render_as_string(hide_password=False)}
    done = cli(unreachable, "database", "list")
    assert_one_line_error(done, "metadata database")
    assert "hunter2" not in done.stderr


def test_usage_errors_exit_3_not_2(plancheck_env: dict[str, str]) -> None:
    """2 is reserved for `plan checks` verdicts; a mistyped command must not look like one."""
    done = cli(plancheck_env, "plan", "checks", "12", "--wiat")
    assert done.returncode == 3 and "--wiat" in done.stderr
    assert cli(plancheck_env, "plan", "checks", "not-a-number").returncode == 3
    assert cli(plancheck_env, "--help").returncode == 0


def test_bad_ids_keys_urls_and_settings_are_one_line_errors(
    plancheck_env: dict[str, str], api: Plancheck, tmp_path: Path
) -> None:
    huge = "99999999999999999999"
    for args in (
        ["plan", "checks", huge],
        ["plan", "checks", huge, "--wait", "--json"],
        ["plan", "rerun", huge],
        ["plan", "cancel", "1", huge],
        ["issue", "create", huge],
        ["issue", "approve", huge],
        ["rollout", "show", huge],
        ["plan", "checks", "0"],
    ):
        done = cli(plancheck_env, *args)
        assert_one_line_error(done)
        assert "bigint" not in done.stderr and "database error" not in done.stderr, args
    largest = str(2**63 - 1)
    assert_one_line_error(cli(plancheck_env, "plan", "checks", largest), f"plan {largest} not found")

    for url in ("postgresql://u@h:99999/db", "postgresql://u:se%20cret@h:abc/db"):
        done = cli(plancheck_env, "instance", "add", "x", "--url", url)
        assert_one_line_error(done, "invalid port")
        assert "invalid literal" not in done.stderr and "se cret" not in done.stderr and "se%20cret" not in done.stderr

    for key in ("bad key", "café", "k" * 64, "semi;colon", "\x1b[2J"):
        assert_one_line_error(cli(plancheck_env, "project", "create", key), "project key")
    ok(plancheck_env, "project", "create", "k" * 63)
    assert_one_line_error(cli(plancheck_env, "group", "create", "k" * 63, "g g", "--expr", "true"), "group key")
    assert_one_line_error(
        cli(plancheck_env, "instance", "add", "in/st", "--url", "postgresql://u@h/db"), "instance key"
    )
    assert_one_line_error(
        cli(plancheck_env, "instance", "add", "x", "--url", "postgresql://u@h/db", "--env", "pro d"),
        "environment 'pro d'",
    )

    settings = tmp_path / "settings.json"
    for content, fragment in (
        ({"ci_sampling_size": -1}, "ci_sampling_size must be greater than or equal to 0"),
        ({"risk_affected_rows": "lots"}, "risk_affected_rows must be a whole number"),
        ({"risk_afected_rows": 5}, "unknown setting 'risk_afected_rows'"),
        ({"sql_review": {"rules": []}}, "sql_review.rules must be a JSON object"),
        ({"sql_review": {"rules": {"naming.table": {"levle": "ERROR"}}}}, "levle"),
        ([1, 2], "must hold a JSON object"),
    ):
        settings.write_text(json.dumps(content))
        assert_one_line_error(cli(plancheck_env, "project", "create", "p2", "--settings", str(settings)), fragment)
    settings.write_bytes(b"\xef\xbb\xbf" + json.dumps({"ci_sampling_size": 0}).encode())  # a BOM is fine here too
    ok(plancheck_env, "project", "create", "p3", "--settings", str(settings))
    assert count(api, "project") == 2


def test_a_byte_order_mark_is_not_sql(
    plancheck_env: dict[str, str], target: str, api: Plancheck, tmp_path: Path
) -> None:
    plan_id = ok_json(
        plancheck_env,
        "plan",
        "create",
        "shop",
        "--sql",
        sql_file(tmp_path, b"\xef\xbb\xbf" + CLEAN_SQL.encode()),
        "--target",
        target,
    )["plan_id"]
    with api.engine.connect() as conn:
        assert conn.execute(text("SELECT content FROM sheet")).scalar_one() == CLEAN_SQL
    assert api.checks(plan_id).plan_id == plan_id


def _has_errors(checks: Checks) -> bool:
    return any(result["status"] == "ERROR" for result in checks.results)
