"""Flower over a real worker: it lists plancheck's tasks, requires basic auth, and shows no URLs."""

from __future__ import annotations

import ast
import base64
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine

from plancheck import app
from plancheck.devtools.embedded import free_port
from plancheck.devtools.processes import start_celery
from plancheck.scheduler.app import broker_connection
from plancheck.store import runs
from tests.processes import Cluster, Process, wait_for

USER, PASSWORD = "admin", "Flower-Secret-31"


class FlowerClient:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def status(self, path: str, credentials: str | None = f"{USER}:{PASSWORD}", method: str = "GET") -> int:
        try:
            with urllib.request.urlopen(self._request(path, credentials, method), timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code

    def get(self, path: str) -> Any:
        return json.loads(self.text(path))

    def text(self, path: str) -> str:
        with urllib.request.urlopen(self._request(path, f"{USER}:{PASSWORD}"), timeout=10) as response:
            return response.read().decode()

    def _request(self, path: str, credentials: str | None, method: str = "GET") -> urllib.request.Request:
        data = b"{}" if method == "POST" else None
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        if credentials:
            request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
        return request


def start_flower(cluster: Cluster, log_dir: Path, port: int) -> Process:
    """`celery -A plancheck flower`, stopped with the cluster; credentials from the environment, as
    docker-compose.yml gives them (never on the command line)."""
    args = ["flower", "--address=127.0.0.1", f"--port={port}"]
    env = {**cluster.env, "FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}"}
    process = start_celery("flower", args, env=env, log_dir=log_dir, signal_group=False)
    cluster.processes.append(process)
    return process


@pytest.fixture
def engine(metadata_url: str) -> Iterator[Engine]:
    engine = create_engine(metadata_url)
    yield engine
    engine.dispose()


def _listed_workers(client: FlowerClient) -> list[str]:
    try:
        return list(client.get("/api/workers?refresh=1"))
    except OSError:
        return []


def _send_claim(broker_url: str, queue: str) -> None:
    """Ask a worker for a claim now (beat runs its claims in its own process, which Flower does not see)."""
    with broker_connection(broker_url) as connection:
        app.send_task("plancheck.claim", connection=connection, queue=queue)


def test_flower_lists_plancheck_tasks(
    engine: Engine, plancheck_env: dict[str, str], cluster: Cluster, tmp_path: Path
) -> None:
    cluster.worker("w1")
    port = free_port()
    flower = start_flower(cluster, tmp_path, port)
    client = FlowerClient(port)

    def worker_listed() -> bool:
        assert flower.popen.poll() is None, flower.log()
        return any(name.startswith("w1@") for name in _listed_workers(client))

    wait_for(worker_listed, timeout=25, interval=0.3, message="Flower listing worker w1")

    # Runs of plans that do not exist: each is claimed, run, and ends FAILED ("plan not found").
    with engine.begin() as conn:
        run_ids = {runs.create(conn, plan_id, 1) for plan_id in (101, 102)}
    _send_claim(plancheck_env["PLANCHECK_BROKER_URL"], plancheck_env["PLANCHECK_QUEUE"])

    def finished_runs() -> list[dict[str, Any]]:
        return [
            task
            for task in client.get("/api/tasks").values()
            if task["name"] == "plancheck.run" and task["state"] == "SUCCESS"
        ]

    wait_for(
        lambda: len(finished_runs()) >= 2,
        timeout=20,
        interval=0.3,
        message="Flower showing two finished plancheck.run tasks",
    )
    listed = client.get("/api/tasks")
    assert {"plancheck.claim", "plancheck.run"} <= {task["name"] for task in listed.values()}
    for task in listed.values():
        shown = json.dumps(task)
        assert "postgresql" not in shown and "redis://" not in shown, task
    # A run message carries the run id and its token, nothing else.
    run_args = [ast.literal_eval(task["args"]) for task in finished_runs()]
    assert {args[0] for args in run_args} == run_ids
    for run_id, token in run_args:
        assert isinstance(run_id, int) and str(uuid.UUID(token)) == token
    assert all(task["kwargs"] in ("{}", {}, None) for task in finished_runs())

    # Flower's own Prometheus endpoint (scraped next to `plancheck metrics serve`) counts them too.
    flower_metrics = client.text("/metrics")
    assert "flower_events_total{" in flower_metrics and 'task="plancheck.run"' in flower_metrics
    assert "postgresql" not in flower_metrics

    assert client.status("/api/tasks") == 200
    assert client.status("/api/tasks", credentials=None) == 401
    assert client.status("/api/workers", credentials=f"{USER}:wrong") == 401
    assert client.status("/", credentials=None) == 401
    # The task-sending API is behind the same credentials: without them nobody can send a task.
    for path in (
        "/api/task/async-apply/plancheck.run",
        "/api/task/send-task/plancheck.claim",
        "/api/task/apply/plancheck.run",
    ):
        assert client.status(path, credentials=None, method="POST") == 401, path
        assert client.status(path, credentials=f"{USER}:wrong", method="POST") == 401, path
    assert PASSWORD not in " ".join(flower.popen.args)  # not on the command line, where `ps` shows it
    # Flower 2 serves its Prometheus metrics and health check without credentials: counts by task name
    # and worker, never a task's arguments (so never a run token).
    assert client.status("/metrics", credentials=None) == client.status("/healthcheck", credentials=None) == 200
    tokens = [args[1] for args in run_args]
    assert not [token for token in tokens if token in flower_metrics]
