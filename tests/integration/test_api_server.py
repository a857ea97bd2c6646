"""The HTTP API as a CI job uses it: a real `plancheck api serve`, PostgreSQL, Redis and celery workers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from plancheck.api import Plancheck
from plancheck.cli.render import json_text
from plancheck.core.states import FINAL_STATUSES as TERMINAL_STATUSES
from plancheck.devtools.embedded import free_port
from tests.integration.conftest import ApiServer, start_api_server
from tests.integration.helpers import TargetDatabase, make_target, register_target
from tests.processes import Cluster

RISKY_SQL = "DELETE FROM items;\nUPDATE items SET price = 0;\n"
CLEAN_SQL = "SELECT id FROM items WHERE id = 1;\n"
STATS_DELAY = 10.0
API_PATHS = {
    "/api/v1/projects/{project}/plans",
    "/api/v1/plans/{plan_id}/checks",
    "/api/v1/plans/{plan_id}/rerun",
    "/api/v1/plans/{plan_id}/cancel",
    "/api/v1/projects",
    "/healthz",
    "/metrics",
}


@pytest.fixture
def target(api: Plancheck, create_database: Callable[[str], str]) -> TargetDatabase:
    return register_target(api, *make_target(create_database, rows=50))


def wait_finished(http: httpx.Client, plan_id: int, rounds: int = 6) -> dict[str, Any]:
    """Long-poll the checks until the run is finished (each request waits up to 30 s)."""
    for _ in range(rounds):
        response = http.get(f"/api/v1/plans/{plan_id}/checks", params={"wait": 30}, timeout=60)
        assert response.status_code == 200, response.text
        if response.json()["status"] in TERMINAL_STATUSES:
            return dict(response.json())
    raise AssertionError(f"plan {plan_id} did not finish: {response.json()}")


def submit(http: httpx.Client, project: str = "shop", **body: object) -> int:
    response = http.post(f"/api/v1/projects/{project}/plans", json=body)
    assert response.status_code == 201, response.text
    plan_id = int(response.json()["plan_id"])
    assert response.headers["location"] == f"/api/v1/plans/{plan_id}/checks"
    return plan_id


def test_a_ci_job_submits_and_waits_with_only_a_token(
    api: Plancheck, api_server: ApiServer, make_token: Callable[..., str], target: TargetDatabase, cluster: Cluster
) -> None:
    cluster.worker("w1")
    with api_server.client(make_token("submit", project="shop")) as http:
        plan_id = submit(http, sql=RISKY_SQL, targets=[target.target], title="risky clean-up")
        checks = wait_finished(http, plan_id)
    assert checks["status"] == "DONE"
    errors = {(r["title"], r["position"]["line"]) for r in checks["results"] if r["status"] == "ERROR"}
    assert {("statement.where-require-update-delete", 1), ("statement.where-require-update-delete", 2)} <= errors
    # the same document as `plancheck plan checks --json`
    assert checks == json.loads(json_text(api.checks(plan_id).to_json()))


def test_a_plan_for_a_group(
    api: Plancheck, api_server: ApiServer, make_token: Callable[..., str], target: TargetDatabase, cluster: Cluster
) -> None:
    api.create_group("shop", "targets", f'resource.database_name == "{target.name}"')
    cluster.worker("w1")
    with api_server.client(make_token("submit")) as http:
        checks = wait_finished(http, submit(http, sql=CLEAN_SQL, group="targets"))
    assert checks["status"] == "DONE" and checks["targets_total"] == 1
    assert {result["target"] for result in checks["results"]} == {target.target}


def test_cancel_and_rerun(api_server: ApiServer, make_token: Callable[..., str], target: TargetDatabase) -> None:
    """No worker runs: the plan waits, is cancelled (once), then queued again as a new generation."""
    with api_server.client(make_token("submit")) as http:
        plan_id = submit(http, sql=CLEAN_SQL, targets=[target.target])
        assert http.post(f"/api/v1/plans/{plan_id}/cancel").json() == {"plan_id": plan_id, "canceled": True}
        assert http.get(f"/api/v1/plans/{plan_id}/checks").json()["status"] == "CANCELED"
        assert http.post(f"/api/v1/plans/{plan_id}/cancel").json() == {"plan_id": plan_id, "canceled": False}
        rerun = http.post(f"/api/v1/plans/{plan_id}/rerun")
        assert rerun.status_code == 202 and rerun.json() == {"plan_id": plan_id, "status": "AVAILABLE"}
        checks = http.get(f"/api/v1/plans/{plan_id}/checks").json()
        assert checks["generation"] == 2 and checks["status"] in ("AVAILABLE", "RUNNING")
        for path in ("/api/v1/plans/999999/checks",):
            missing = http.get(path)
            assert missing.status_code == 404 and missing.json() == {
                "error": "not_found",
                "message": "plan 999999 not found",
            }
        for action in ("rerun", "cancel"):
            assert http.post(f"/api/v1/plans/999999/{action}").status_code == 404


def test_a_long_poll_returns_the_unfinished_run_when_its_time_is_up(
    api_server: ApiServer, make_token: Callable[..., str], target: TargetDatabase
) -> None:
    with api_server.client(make_token("submit")) as http:
        plan_id = submit(http, sql=CLEAN_SQL, targets=[target.target])
        checks = http.get(f"/api/v1/plans/{plan_id}/checks", params={"wait": 1}).json()
        assert checks["status"] in ("AVAILABLE", "RUNNING") and checks["results"] == []
        for bad in ("-1", "soon", "nan"):
            assert http.get(f"/api/v1/plans/{plan_id}/checks", params={"wait": bad}).status_code == 422, bad


def test_listings_page_newest_first_without_shifting(
    api_server: ApiServer, make_token: Callable[..., str], target: TargetDatabase
) -> None:
    with api_server.client(make_token("submit")) as http:
        created = [submit(http, sql=CLEAN_SQL, targets=[target.target], title=f"plan {n}") for n in range(5)]
        http.post(f"/api/v1/plans/{created[1]}/cancel")
        projects = http.get("/api/v1/projects").json()["projects"]
        assert [project["key"] for project in projects] == ["shop"]

        seen: list[int] = []
        params: dict[str, Any] = {"limit": 2}
        while True:
            page = http.get("/api/v1/projects/shop/plans", params=params).json()
            seen += [plan["plan_id"] for plan in page["plans"]]
            if not seen[2:]:  # a plan created between two pages does not shift the next page
                submit(http, sql=CLEAN_SQL, targets=[target.target])
            if page["next_before"] is None:
                break
            params["before"] = page["next_before"]
        assert seen == sorted(created, reverse=True)

        canceled = http.get("/api/v1/projects/shop/plans", params={"status": "CANCELED"}).json()
        assert [(plan["plan_id"], plan["status"]) for plan in canceled["plans"]] == [(created[1], "CANCELED")]
        assert set(canceled["plans"][0]) >= {
            "title",
            "created_at",
            "targets_done",
            "targets_total",
            "errors",
            "warnings",
            "generation",
        }
        for bad in ({"status": "WAITING"}, {"limit": 0}, {"limit": 201}, {"before": "x"}):
            response = http.get("/api/v1/projects/shop/plans", params=bad)
            assert response.status_code == 422 and response.json()["error"] == "invalid", bad
        assert http.get("/api/v1/projects/nope/plans").status_code == 404


def _server_threads(server: ApiServer) -> int:
    status = Path(f"/proc/{server.popen.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


async def _long_polls(client: httpx.AsyncClient) -> int:
    """How many requests the server says are waiting (its plancheck_api_long_polls gauge)."""
    metrics = (await client.get("/metrics")).text
    return int(
        float(next(line.split()[1] for line in metrics.splitlines() if line.startswith("plancheck_api_long_polls ")))
    )


def _transactions(metadata_url: str) -> int:
    """Transactions committed or rolled back in the metadata database so far (PostgreSQL's statistics)."""
    engine = create_engine(metadata_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
                ).scalar_one()
            )
    finally:
        engine.dispose()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the server's thread count from /proc")
def test_200_concurrent_long_polls_share_one_status_query(
    api_server: ApiServer,
    make_token: Callable[..., str],
    target: TargetDatabase,
    cluster: Cluster,
    metadata_url: str,
) -> None:
    """200 clients long-poll one plan while no worker runs: the server holds no thread per waiter
    and reads the statuses in one statement per tick; when a worker starts, all 200 get DONE."""
    token = make_token("submit")
    with api_server.client(token) as http:
        plan_id = submit(http, sql=CLEAN_SQL, targets=[target.target])

    async def scenario() -> tuple[list[httpx.Response], int, int]:
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
        async with httpx.AsyncClient(
            base_url=api_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=120, limits=limits
        ) as client:
            polls = [
                asyncio.create_task(client.get(f"/api/v1/plans/{plan_id}/checks", params={"wait": 60}))
                for _ in range(200)
            ]
            while await _long_polls(client) < 200:  # authenticated, read the run once, now waiting
                assert not any(poll.done() for poll in polls), "a long-poll returned early"
                await asyncio.sleep(0.5)
            threads = _server_threads(api_server)
            # PostgreSQL publishes an idle connection's statistics up to 10 s late: let the 200 requests'
            # own reads land first, then count what waiting costs over 10 s.
            await asyncio.sleep(STATS_DELAY)
            before = _transactions(metadata_url)
            await asyncio.sleep(STATS_DELAY)
            during = _transactions(metadata_url) - before
            assert not any(poll.done() for poll in polls)
            cluster.worker("w1")
            return await asyncio.gather(*polls), threads, during

    responses, threads, transactions = asyncio.run(scenario())
    assert [response.status_code for response in responses] == [200] * 200
    assert {response.json()["status"] for response in responses} == {"DONE"}
    assert threads < 100, f"{threads} threads for 200 waiters"
    # One status read per 0.5 s tick (two transactions with the pool's ping): ~40 in 10 s whatever the
    # number of waiters; a read per waiter per tick would be ~8,000.
    assert transactions < 200, f"{transactions} transactions in {STATS_DELAY:g} s with 200 waiters"


def test_healthz_needs_no_token_and_reports_an_unreachable_broker(
    api_server: ApiServer, plancheck_env: dict[str, str], tmp_path: Path
) -> None:
    healthy = httpx.get(f"{api_server.url}/healthz")
    assert healthy.status_code == 200 and healthy.json() == {"status": "ok", "database": True, "broker": True}
    broken = start_api_server({**plancheck_env, "PLANCHECK_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}, tmp_path)
    try:
        response = httpx.get(f"{broken.url}/healthz", timeout=30)
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable", "database": True, "broker": False}
    finally:
        broken.stop()


def test_metrics_openapi_and_docs(
    api_server: ApiServer, make_token: Callable[..., str], target: TargetDatabase
) -> None:
    metrics_path = "/metrics"
    assert httpx.get(api_server.url + metrics_path).status_code == 401
    with api_server.client(make_token("read")) as http:
        metrics = http.get(metrics_path)
        assert metrics.status_code == 200 and "plancheck_database_up 1.0" in metrics.text
        assert metrics.headers["content-type"].startswith("text/plain")
    with api_server.client(make_token("admin", project="shop")) as http:
        refused = http.get(metrics_path)
        assert refused.status_code == 403 and "limited to project 'shop'" in refused.json()["message"]

    document = httpx.get(f"{api_server.url}/openapi.json").json()
    assert set(document["paths"]) >= API_PATHS
    assert document["components"]["schemas"]["PlanIn"]["additionalProperties"] is False  # unknown fields: 422
    docs = httpx.get(f"{api_server.url}/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert "'sha256-" in docs.headers["content-security-policy"]


def test_a_restart_loses_nothing_and_sessions_survive(
    api_server: ApiServer,
    make_token: Callable[..., str],
    target: TargetDatabase,
    plancheck_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """Tokens and the session-signing key live in PostgreSQL: a second server process accepts both."""
    token = make_token("read")
    login = httpx.post(f"{api_server.url}/login", data={"token": token, "next": "/projects"})
    assert login.status_code == 303
    second = start_api_server(plancheck_env, tmp_path)
    try:
        assert (
            httpx.get(f"{second.url}/api/v1/projects", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        )
        page = httpx.get(f"{second.url}/projects", cookies=login.cookies)
        assert page.status_code == 200 and "shop" in page.text
    finally:
        second.stop()
