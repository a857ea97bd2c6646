"""Security with real processes: workers execute JSON messages only, and instance passwords never
reach a log line, a result or an exception."""

from __future__ import annotations

import json
import os
import pickle
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kombu import Connection
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from plancheck.api import Plancheck
from plancheck.checks.session import libpq_url
from plancheck.embedded import free_port
from plancheck.errors import InvalidInput
from plancheck.scheduler.app import broker_connection
from plancheck.scheduler.tasks import run as run_task
from plancheck.store import catalog, runs
from plancheck.store.claims import ClaimedRun
from tests.integration.helpers import TargetDatabase, claim_directly, make_target, register_target
from tests.processes import Cluster, queued_messages, wait_for

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
        "lang": "py", "task": "plancheck.run", "id": task_id, "root_id": task_id, "parent_id": None,
        "group": None, "shadow": None, "eta": None, "expires": None, "retries": 0, "timelimit": [None, None],
        "argsrepr": args_repr, "kwargsrepr": "{}", "origin": "test@security", "ignore_result": True,
    }


def test_worker_refuses_a_pickled_message(
    api: Plancheck, target: TargetDatabase, cluster: Cluster, tmp_path: Path
) -> None:
    worker = cluster.worker("w1")
    wait_for(lambda: "ready." in worker.log(), 60, message="worker ready")
    claimed = _stored_claimed_run(api, target)
    marker = tmp_path / "unpickled.marker"
    task_id = str(uuid.uuid4())
    body = ((claimed.id, str(claimed.token)), {}, {"callbacks": None, "errbacks": None, "chain": None,
                                                    "chord": None, "payload": _CreatesMarker(marker)})
    with Connection(api.settings.broker_url) as conn:
        conn.Producer().publish(
            pickle.dumps(body), exchange="", routing_key=api.settings.queue,
            content_type="application/x-python-serialize", content_encoding="binary",
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
@pytest.fixture
def needle_roles(pg_server_url: str) -> Iterator[dict[str, str]]:
    """Two roles whose passwords are easy to spot: one that may log in, one that may not."""
    token = uuid.uuid4().hex[:12]  # in the passwords only: role names are no secret
    role = uuid.uuid4().hex[:8]
    roles = {
        "login": (f"pc_sec_{role}", f"Needle-{token}-login/x"),
        "nologin": (f"pc_sec_nl_{role}", f"Needle-{token}-nologin"),
    }
    admin = create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {roles['login'][0]} LOGIN PASSWORD '{roles['login'][1]}'"))
        conn.execute(text(f"CREATE ROLE {roles['nologin'][0]} NOLOGIN PASSWORD '{roles['nologin'][1]}'"))
    yield {
        "token": token,
        **{f"{k}_role": v[0] for k, v in roles.items()},
        **{f"{k}_password": v[1] for k, v in roles.items()},
    }
    with admin.connect() as conn:
        for role, _ in roles.values():
            conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
    admin.dispose()


def _url(base: str, user: str | None, password: str | None, port: int | None = None) -> str:
    url = make_url(base).set(username=user, password=password)
    if port is not None:
        url = url.set(port=port)
    return url.render_as_string(hide_password=False)


def _register_database(api: Plancheck, instance: str, database: str) -> None:
    with api.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO database (instance_id, name, environment, project_id) "
                "SELECT i.id, :n, 'test', (SELECT id FROM project WHERE key = 'shop') FROM instance i WHERE i.key = :k"
            ),
            {"n": database, "k": instance},
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
    with psycopg.connect(libpq_url(target.url), autocommit=True) as conn:
        conn.execute(f"GRANT SELECT ON items TO {login}")
    try:
        _check_no_password_anywhere(api, target, needle_roles, plancheck_env, tmp_path, monkeypatch)
    finally:
        with psycopg.connect(libpq_url(target.url), autocommit=True) as conn:
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

    # 1. password in the URL (percent-encoded '/'), 2. password from an environment variable,
    # 3. password in the URL of an unreachable port, 4. a role that may not log in.
    env = dict(plancheck_env, PC_NEEDLE_PASSWORD=password)
    monkeypatch.setenv("PC_NEEDLE_PASSWORD", password)
    api.add_instance("inurl", _url(tcp_base, login, password))
    api.add_instance("fromenv", _url(tcp_base, login, None), password_env="PC_NEEDLE_PASSWORD")
    api.add_instance("down", _url(tcp_base, login, password))
    api.add_instance("nologin", _url(tcp_base, needle_roles["nologin_role"], needle_roles["nologin_password"]))
    exceptions: list[str] = []
    for instance in ("inurl", "fromenv", "down"):
        api.sync_instance(instance, "shop")
    with api.engine.begin() as conn:  # "down" now points at a port nobody listens on
        conn.execute(text("UPDATE instance SET url = :u WHERE key = 'down'"),
                     {"u": _url(tcp_base, login, password, port=free_port())})
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
            (instance, sql): api.create_plan("shop", sql, targets=[f"{instance}/{target.name}"])
            for instance in ("inurl", "fromenv", "down", "nologin")
            for sql in (FAST_SQL, UPDATE_SQL)
        }
        for plan_id in plans.values():
            wait_for(lambda: api.checks(plan_id).finished, 60, message=f"plan {plan_id} finished")
        logs = {process.name: process.log() for process in running.processes + running_json.processes}

    checks = {key: api.checks(plan_id) for key, plan_id in plans.items()}
    assert all(c.status == "DONE" for c in checks.values()), {k: (c.status, c.reason) for k, c in checks.items()}
    titles = {key: {r["title"] for r in c.results if r["status"] == "ERROR"} for key, c in checks.items()}
    assert titles[("inurl", FAST_SQL)] == titles[("fromenv", FAST_SQL)] == set()
    assert titles[("down", FAST_SQL)] and titles[("nologin", FAST_SQL)]  # the failing variants did fail

    texts = {f"log {name}": body for name, body in logs.items()}
    texts.update({f"checks {key[0]} {key[1][:6]}": json.dumps(c.to_json(), default=str) for key, c in checks.items()})
    texts.update({f"exception {i}": e for i, e in enumerate(exceptions)})
    texts["database list"] = json.dumps(api.list_databases("shop"), default=str)
    with api.engine.connect() as conn:  # control: the needle is really in what the workers were given
        assert needle in conn.execute(text("SELECT url FROM instance WHERE key = 'inurl'")).scalar_one()
    leaks = {where: body[max(0, body.find(needle) - 120): body.find(needle) + 60]
             for where, body in texts.items() if needle in body}
    assert leaks == {}, leaks
    assert any("Target unreachable" in c.results[0]["title"] for k, c in checks.items() if k[0] == "down")
    assert any(line.startswith('{"time"') for line in logs["w2"].splitlines())  # w2 did log JSON lines
