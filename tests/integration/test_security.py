"""Security with real processes: workers execute JSON messages only, and instance passwords never
reach a log line, a result or an exception."""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from kombu import Connection
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import make_url

from plancheck.api import Plancheck
from plancheck.checks.advise import ReviewConfig
from plancheck.checks.check import check_target
from plancheck.checks.instance import list_databases, resolve_url
from plancheck.checks.result import Status
from plancheck.checks.target import Target, TargetError
from plancheck.core.conninfo import connection_params, conninfo
from plancheck.core.errors import InvalidInput
from plancheck.devtools.embedded import free_port
from plancheck.scheduler.app import broker_connection
from plancheck.scheduler.tasks import run as run_task
from plancheck.store import catalog, runs
from plancheck.store.claims import ClaimedRun
from tests.integration.helpers import TargetDatabase, claim_directly, make_target, register_target
from tests.processes import REPO_ROOT, Cluster, queued_messages, wait_for
from tests.processes import plancheck_env as make_env

FAST_SQL = "SELECT id FROM items WHERE id = 1;\n"
UPDATE_SQL = "UPDATE items SET price = 0 WHERE id < 100;\n"


@pytest.fixture
def target(api: Plancheck, create_database: Callable[[str], str]) -> TargetDatabase:
    url, name = make_target(create_database)
    return register_target(api, url, name)


def _stored_claimed_run(api: Plancheck, target: TargetDatabase) -> ClaimedRun:
    """A plan whose run is claimed (token known to the test), no message sent for it."""
    with api.engine.begin() as conn:
        project = catalog.get_project(conn, "shop")
        sheet = catalog.put_sheet(conn, FAST_SQL)
        plan_id = catalog.create_plan(conn, project.id, "p", [{"targets": [target.target], "sheet": sheet}])
        runs.create(conn, plan_id, 1)
        (claimed,) = claim_directly(conn, 1, 600)
    return claimed


class _CreatesMarker:
    """Unpickling this object runs `touch MARKER`: proof that a pickled message was deserialized."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _celery_headers(task_id: str, args_repr: str) -> dict[str, Any]:
    return {
        "lang": "py",
        "task": "plancheck.run",
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "shadow": None,
        "eta": None,
        "expires": None,
        "retries": 0,
        "timelimit": [None, None],
        "argsrepr": args_repr,
        "kwargsrepr": "{}",
        "origin": "test@security",
        "ignore_result": True,
    }


def test_worker_refuses_a_pickled_message(
    api: Plancheck, target: TargetDatabase, cluster: Cluster, tmp_path: Path
) -> None:
    worker = cluster.worker("w1")
    wait_for(lambda: "ready." in worker.log(), 60, message="worker ready")
    claimed = _stored_claimed_run(api, target)
    marker = tmp_path / "unpickled.marker"
    task_id = str(uuid.uuid4())
    body = (
        (claimed.id, str(claimed.token)),
        {},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None, "payload": _CreatesMarker(marker)},
    )
    with Connection(api.settings.broker_url) as conn:
        conn.Producer().publish(
            pickle.dumps(body),
            exchange="",
            routing_key=api.settings.queue,
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers=_celery_headers(task_id, repr((claimed.id, str(claimed.token)))),
        )
    refusal = "Refusing to deserialize untrusted content of type pickle (application/x-python-serialize)"
    wait_for(lambda: refusal in worker.log(), 30, message="the worker's refusal in its log")
    time.sleep(1)
    assert not marker.exists(), "the worker unpickled the message"
    with api.engine.connect() as conn:
        run = runs.get(conn, claimed.plan_id)
        assert run is not None and run.status == "RUNNING" and run.started_at is None
        assert runs.attempts(conn, claimed.id) == []
    # the message was consumed, not left to come back
    assert queued_messages(api.settings.broker_url, api.settings.queue) == 0

    # Control: the same run sent as JSON executes, so the pickled one was refused for its content type only.
    with broker_connection(api.settings.broker_url) as connection:
        run_task.apply_async((claimed.id, str(claimed.token)), connection=connection, queue=api.settings.queue)
    wait_for(lambda: api.checks(claimed.plan_id).status == "DONE", 60, message="JSON run DONE")
    assert not marker.exists()


# -- credentials --------------------------------------------------------------------------------------
def odd_password(token: str, tag: str) -> str:
    """A password holding every character that broke or leaked somewhere (space, @, :, /, %, quotes,
    backslash, non-ASCII); every segment carries `token`, so any part of it that leaks is found."""
    return f"{tag}{token} sp{token}@at{token}:co{token}/sl{token}%pc{token}'q{token}\"dq{token}\\bs{token}é{token}ü"


def create_role(admin: psycopg.Connection[Any], role: str, password: str, login: bool = True) -> None:
    admin.execute(
        sql.SQL("CREATE ROLE {} {} PASSWORD {}").format(
            sql.Identifier(role), sql.SQL("LOGIN" if login else "NOLOGIN"), sql.Literal(password)
        )
    )


@pytest.fixture
def needle_roles(pg_server_url: str) -> Iterator[dict[str, str]]:
    """Two roles whose passwords hold odd characters and a token: one that may log in, one that may not."""
    token = uuid.uuid4().hex[:12]  # in the passwords only: role names are no secret
    role = uuid.uuid4().hex[:8]
    roles = {
        "login": (f"pc_sec_{role}", odd_password(token, "login")),
        "nologin": (f"pc_sec_nl_{role}", odd_password(token, "nologin")),
    }
    with psycopg.connect(conninfo(pg_server_url), autocommit=True) as admin:
        create_role(admin, *roles["login"])
        create_role(admin, *roles["nologin"], login=False)
    yield {
        "token": token,
        **{f"{k}_role": v[0] for k, v in roles.items()},
        **{f"{k}_password": v[1] for k, v in roles.items()},
    }
    with psycopg.connect(conninfo(pg_server_url), autocommit=True) as admin:
        for role, _ in roles.values():
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _url(base: str, user: str, password: str | None, port: int | None = None, encode: bool = True) -> str:
    """A TCP URL to `base`'s host and database, the password percent-encoded or pasted as is."""
    params = connection_params(base)
    secret = "" if password is None else ":" + (quote(password, safe="") if encode else password)
    return f"postgresql://{user}{secret}@{params['host']}:{port or params['port']}/{params['dbname']}"


def _register_database(api: Plancheck, instance: str, database: str) -> None:
    with api.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO database (instance_id, name, environment, project_id) "
                "SELECT i.id, :n, 'test', (SELECT id FROM project WHERE key = 'shop') FROM instance i WHERE i.key = :k"
            ),
            {"n": database, "k": instance},
        )


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plancheck.cli.main", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_no_password_in_logs_results_or_exceptions(
    api: Plancheck,
    target: TargetDatabase,
    needle_roles: dict[str, str],
    plancheck_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    login = needle_roles["login_role"]
    with psycopg.connect(conninfo(target.url), autocommit=True) as conn:
        conn.execute(f"GRANT SELECT ON items TO {login}")
    try:
        _check_no_password_anywhere(api, target, needle_roles, plancheck_env, tmp_path, monkeypatch)
    finally:
        with psycopg.connect(conninfo(target.url), autocommit=True) as conn:
            conn.execute(f"REVOKE ALL ON items FROM {login}")


def _check_no_password_anywhere(
    api: Plancheck,
    target: TargetDatabase,
    needle_roles: dict[str, str],
    plancheck_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    needle = needle_roles["token"]
    login, password = needle_roles["login_role"], needle_roles["login_password"]
    tcp_base = target.url
    if make_url(tcp_base).host is None:
        pytest.skip("the test server listens on a Unix socket only; the unreachable-port variant needs TCP")

    # 1. password in the URL, percent-encoded, 2. pasted unencoded, 3. from an environment variable (a
    # rotation to a password with spaces), 4. in the URL of an unreachable port, 5. a role that may not log in.
    env = dict(plancheck_env, PC_NEEDLE_PASSWORD=password)
    monkeypatch.setenv("PC_NEEDLE_PASSWORD", password)
    api.add_instance("inurl", _url(tcp_base, login, password))
    api.add_instance("raw", _url(tcp_base, login, password, encode=False))
    api.add_instance("fromenv", _url(tcp_base, login, None), password_env="PC_NEEDLE_PASSWORD")
    api.add_instance("down", _url(tcp_base, login, password))
    api.add_instance("nologin", _url(tcp_base, needle_roles["nologin_role"], needle_roles["nologin_password"]))
    exceptions: list[str] = []
    for instance in ("inurl", "raw", "fromenv", "down"):
        api.sync_instance(instance, "shop")
    with api.engine.begin() as conn:  # "down" now points at a port nobody listens on
        conn.execute(
            text("UPDATE instance SET url = :u WHERE key = 'down'"),
            {"u": _url(tcp_base, login, password, port=free_port())},
        )
    for instance in ("down", "nologin"):
        with pytest.raises(InvalidInput) as raised:
            api.sync_instance(instance, "shop")
        exceptions.append(str(raised.value))
    _register_database(api, "nologin", target.name)

    from tests.processes import cluster as make_cluster

    worker_args = ["-c", "1", "-l", "DEBUG", "--without-mingle", "--without-gossip"]  # DEBUG: every line is searched
    json_env = dict(env, PLANCHECK_LOG_FORMAT="json")  # the log format of docker-compose
    (tmp_path / "json").mkdir()
    with make_cluster(env, tmp_path) as running, make_cluster(json_env, tmp_path / "json") as running_json:
        running._start("w1", ["worker", "-n", "w1@%h", *worker_args])
        running_json._start("w2", ["worker", "-n", "w2@%h", *worker_args])
        running._start("b1", ["beat", "-l", "DEBUG"])
        plans = {
            (instance, sql_text): api.create_plan("shop", sql_text, targets=[f"{instance}/{target.name}"])
            for instance in ("inurl", "raw", "fromenv", "down", "nologin")
            for sql_text in (FAST_SQL, UPDATE_SQL)
        }
        for plan_id in plans.values():
            wait_for(lambda plan_id=plan_id: api.checks(plan_id).finished, 60, message=f"plan {plan_id} finished")
        logs = {process.name: process.log() for process in running.processes + running_json.processes}

    checks = {key: api.checks(plan_id) for key, plan_id in plans.items()}
    assert all(c.status == "DONE" for c in checks.values()), {k: (c.status, c.reason) for k, c in checks.items()}
    titles = {key: {r["title"] for r in c.results if r["status"] == "ERROR"} for key, c in checks.items()}
    for instance in ("inurl", "raw", "fromenv"):
        assert titles[(instance, FAST_SQL)] == set(), instance
    assert titles[("down", FAST_SQL)] and titles[("nologin", FAST_SQL)]  # the failing variants did fail

    texts = {f"log {name}": body for name, body in logs.items()}
    texts.update({f"checks {key[0]} {key[1][:6]}": json.dumps(c.to_json(), default=str) for key, c in checks.items()})
    texts.update({f"exception {i}": e for i, e in enumerate(exceptions)})
    texts["database list"] = json.dumps(api.list_databases("shop"), default=str)
    for instance in ("fromenv", "down", "nologin"):  # what `plan checks` shows people and machines
        plan_id = str(plans[(instance, UPDATE_SQL)])
        texts[f"plan checks {instance}"] = cli(env, "plan", "checks", plan_id).stdout
        texts[f"plan checks --json {instance}"] = cli(env, "plan", "checks", plan_id, "--json").stdout
    added = cli(env, "instance", "add", "pasted", "--url", _url(tcp_base, login, password, encode=False))
    assert added.returncode == 0, added.stderr
    texts["instance add"] = added.stdout + added.stderr
    with api.engine.connect() as conn:  # control: the needle is really in what the workers were given
        assert needle in conn.execute(text("SELECT url FROM instance WHERE key = 'inurl'")).scalar_one()
    leaks = {
        where: body[max(0, body.find(needle) - 120) : body.find(needle) + 60]
        for where, body in texts.items()
        if needle in body
    }
    assert leaks == {}, leaks
    assert any("Target unreachable" in c.results[0]["title"] for k, c in checks.items() if k[0] == "down")
    assert any(line.startswith('{"time"') for line in logs["w2"].splitlines())  # w2 did log JSON lines


@pytest.fixture
def odd_role(password_server: str) -> Iterator[tuple[str, str, str]]:
    """A role on the password-demanding server whose password holds odd characters, owning a database
    with an `items` table: (role, password, database). The token is the role's password suffix."""
    token = uuid.uuid4().hex[:12]
    role, database = f"pc_odd_{uuid.uuid4().hex[:8]}", f"pc_odd_db_{uuid.uuid4().hex[:8]}"
    password = odd_password(token, "odd")
    admin_info = {"host": password_server, "user": "postgres", "autocommit": True}
    with psycopg.connect(dbname="postgres", **admin_info) as admin:
        create_role(admin, role, password)
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(role)))
    with psycopg.connect(dbname=database, **admin_info) as conn:
        conn.execute(sql.SQL("CREATE TABLE items (id bigint PRIMARY KEY, price numeric)"))
        conn.execute("INSERT INTO items SELECT g, g FROM generate_series(1, 1000) g")
        conn.execute(sql.SQL("ALTER TABLE items OWNER TO {}").format(sql.Identifier(role)))
        conn.execute("ANALYZE items")
    yield role, password, database
    with psycopg.connect(dbname="postgres", **admin_info) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _socket_url(role: str, password: str | None, database: str, socket: str, encode: bool = True) -> str:
    secret = "" if password is None else ":" + (quote(password, safe="") if encode else password)
    return f"postgresql://{role}{secret}@/{database}?host={socket}"


def test_odd_passwords_authenticate_where_passwords_are_checked(
    password_server: str,
    odd_role: tuple[str, str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """scram-sha-256 over the socket: the password really is what authenticates, in every spelling; a
    stale one (the rotation case) is refused; none of it is ever shown."""
    caplog.set_level(logging.DEBUG)
    role, password, database = odd_role
    token = password.removeprefix("odd")[:12]
    monkeypatch.setenv("PC_ODD_PASSWORD", password)
    monkeypatch.setenv("PC_STALE_PASSWORD", password + "-before-rotation")
    bare = _socket_url(role, None, database, password_server)
    urls = {
        "encoded": resolve_url(_socket_url(role, password, database, password_server), None),
        "pasted": resolve_url(_socket_url(role, password, database, password_server, encode=False), None),
        "from env": resolve_url(bare, "PC_ODD_PASSWORD"),
        "stale": resolve_url(bare, "PC_STALE_PASSWORD"),
    }
    results = {
        case: check_target(Target("odd", database, "test", url), UPDATE_SQL, ReviewConfig({}, {}))
        for case, url in urls.items()
    }
    for case in ("encoded", "pasted", "from env"):
        assert [r.title for r in results[case] if r.status == Status.ERROR] == [], case
        assert database in list_databases(urls[case]).names
    [stale] = results["stale"]
    assert (stale.status, stale.title) == (Status.ERROR, "Target unreachable")
    assert "password authentication failed" in stale.content
    with pytest.raises(TargetError) as refused:
        list_databases(urls["stale"])
    everything = repr(results) + caplog.text + json.dumps([r.to_json() for rs in results.values() for r in rs])
    everything += str(refused.value) + repr(Target("odd", database, "test", urls["encoded"]))
    assert token not in everything


def test_metadata_database_with_an_odd_password(
    password_server: str, odd_role: tuple[str, str, str], redis_server_url: str
) -> None:
    """PLANCHECK_DATABASE_URL with the password pasted as is: `db upgrade`, alembic itself and the other
    commands connect, and nothing they print holds the password."""
    role, password, database = odd_role
    token = password.removeprefix("odd")[:12]
    env = make_env(_socket_url(role, password, database, password_server, encode=False), redis_server_url)
    outputs = []
    for args in (
        ["db", "upgrade"],
        ["db", "upgrade", "--json"],
        ["project", "create", "shop"],
        ["instance", "add", "odd", "--url", _socket_url(role, password, database, password_server)],
        ["database", "list", "--json"],
    ):
        done = cli(env, *args)
        assert done.returncode == 0, (args, done.stderr)
        outputs.append(done.stdout + done.stderr)
    assert json.loads(cli(env, "db", "upgrade", "--json").stdout)["database_url"] == (
        f"postgresql+psycopg://{role}:***@/{database}?host={password_server}"
    )
    alembic = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert alembic.returncode == 0, alembic.stderr
    outputs.append(alembic.stdout + alembic.stderr)
    stale = dict(env, PLANCHECK_DATABASE_URL=_socket_url(role, password + "x", database, password_server, False))
    refused = cli(stale, "database", "list")
    assert refused.returncode == 3 and "password authentication failed" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    outputs.append(refused.stdout + refused.stderr)
    assert not [output for output in outputs if token in output]


def _documented_role_sql(role: str, password: str, database: str) -> str:
    """The README's SQL for the target role, with its placeholders filled in."""
    readme = (REPO_ROOT / "README.md").read_text()
    script = readme.split("### The role plancheck uses on targets", 1)[1].split("```sql\n", 1)[1].split("```", 1)[0]
    assert script.count("plancheck_checker") == 2 and "CHANGE-ME" in script and "DATABASE shop " in script
    return (
        script.replace("plancheck_checker", role)
        .replace("CHANGE-ME", password)
        .replace("DATABASE shop ", f'DATABASE "{database}" ')
    )


def test_the_documented_target_role_cannot_call_dblink_while_planning(
    create_database: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    """A function marked IMMUTABLE that calls dblink_exec runs when the planner folds it: as a role
    that may call dblink it writes a row during EXPLAIN. The role the README documents may not."""
    url = create_database("role")
    database = make_url(url).database or ""
    with psycopg.connect(conninfo(url), autocommit=True) as owner:
        try:
            owner.execute("CREATE EXTENSION dblink")
        except psycopg.Error as error:
            pytest.skip(f"dblink is not available on the test server: {error.sqlstate}")
        owner.execute("CREATE TABLE items (id bigint PRIMARY KEY, price numeric)")
        owner.execute("INSERT INTO items SELECT g, g FROM generate_series(1, 1000) g")
        owner.execute("ANALYZE items")
        owner.execute("CREATE TABLE audit (note text)")
        loopback = conninfo(url).replace("'", "''")
        owner.execute(f"""
            CREATE FUNCTION sneaky() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
            BEGIN
                PERFORM dblink_exec('{loopback}', 'INSERT INTO audit VALUES (''written while planning'')');
                RETURN 1;
            END $$""")
        owner.execute("GRANT SELECT ON audit TO PUBLIC")
        with owner.transaction():  # control: a role that may call dblink writes a row by planning
            owner.execute("SET TRANSACTION READ ONLY")
            owner.execute("EXPLAIN SELECT sneaky()")
        assert owner.execute("SELECT count(*) FROM audit").fetchone() == (1,)

        role, password = f"pc_checker_{uuid.uuid4().hex[:8]}", f"pw {uuid.uuid4().hex}"
        owner.execute(_documented_role_sql(role, password.replace("'", "''"), database))
        try:
            _check_as_documented_role(owner, url, role, password, caplog)
        finally:
            owner.execute(
                sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(sql.Identifier(database), sql.Identifier(role))
            )
            owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _check_as_documented_role(
    owner: psycopg.Connection[Any], url: str, role: str, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    superuser, may_call = owner.execute(
        "SELECT rolsuper, has_function_privilege(%s, 'dblink_exec(text,text)', 'EXECUTE') "
        "FROM pg_roles WHERE rolname = %s",
        (role, role),
    ).fetchone()
    assert (superuser, may_call) == (False, False)
    checker = conninfo(url, user=role, password=password)
    with psycopg.connect(checker, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("EXPLAIN SELECT sneaky()")

    caplog.set_level(logging.DEBUG)
    target = Target("checked", make_url(url).database or "", "prod", checker)
    results = check_target(target, "DELETE FROM items WHERE id > sneaky();\n", ReviewConfig({}, {}))
    assert [r.title for r in results if r.status == Status.ERROR] == []
    [summary] = [r for r in results if r.report is not None]
    assert summary.report["estimate_reliable"] is False and "could not be estimated" in summary.content
    assert summary.report["changed_resources"] == [{"schema": "public", "table": "items", "row_estimate": 1000}]
    assert owner.execute("SELECT count(*) FROM audit").fetchone() == (1,)  # the check wrote nothing
    assert "permission denied for function dblink_exec" in caplog.text  # why the EXPLAIN was refused
