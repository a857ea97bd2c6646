"""At capacity and under attack, with real workers: worker slots steer claims, a cancel stops
CPU-bound work, hostile messages never kill a worker, and two deployments never share a queue."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from kombu import Connection
from sqlalchemy import text

from plancheck import app
from plancheck.api import Plancheck
from plancheck.scheduler.app import broker_connection
from plancheck.store.db import upgrade
from tests.hooks.cpu_bound_app import SPIN_MARKER
from tests.integration.helpers import TargetDatabase, make_target, register_target
from tests.processes import Cluster, wait_for
from tests.processes import cluster as make_cluster
from tests.processes import plancheck_env as make_env

FAST_SQL = "SELECT id FROM items WHERE id = 1;\n"


@pytest.fixture
def target(api: Plancheck, create_database: Callable[[str], str]) -> TargetDatabase:
    url, name = make_target(create_database)
    return register_target(api, url, name)


def _slots(api: Plancheck) -> dict[str, int]:
    with api.engine.connect() as conn:
        return dict(conn.execute(text("SELECT name, slots FROM worker_slots")).all())


def test_workers_record_their_slots_and_forget_them_on_shutdown(api: Plancheck, cluster: Cluster) -> None:
    w1 = cluster.worker("w1", concurrency=3)
    cluster.worker("w2", concurrency=1, pool="solo")
    wait_for(lambda: len(_slots(api)) == 2, 30, message="both workers recorded")
    assert sorted(_slots(api).values()) == [1, 3]
    w1.stop()
    assert [name.split("@")[0] for name in _slots(api)] == ["w2"]


def test_a_cancel_stops_a_check_busy_on_the_cpu(api: Plancheck, target: TargetDatabase, cluster: Cluster) -> None:
    """The check never waits on I/O, so no cancelled query can stop it: the lost lease interrupts the
    executing thread. The single slot frees within a few heartbeats and takes the next plan, and a
    SIGTERM still completes a warm shutdown."""
    worker = cluster.worker("w1", concurrency=1, app="tests.hooks.cpu_bound_app")
    spinning = api.create_plan("shop", f"{SPIN_MARKER}\n{FAST_SQL}", targets=[target.target])
    wait_for(lambda: api.checks(spinning).attempts != [], 30, message="the spinning check started")
    time.sleep(1)  # well into the loop
    cancelled = time.monotonic()
    assert api.cancel([spinning]) == [spinning]
    wait_for(lambda: "discarded run_id=" in worker.log(), 10, message="the spinning check stopped")
    stopped_in = time.monotonic() - cancelled
    following = api.create_plan("shop", FAST_SQL, targets=[target.target])
    wait_for(lambda: api.checks(following).status == "DONE", 30, message="the freed slot ran the next plan")
    assert api.checks(spinning).status == "CANCELED"
    print(f"\nCPU-bound check stopped {stopped_in:.2f} s after cancel (heartbeat {api.settings.heartbeat_seconds} s)")
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.popen.wait(20) == 0


def test_no_row_lock_is_held_while_a_runs_targets_are_evaluated(
    api: Plancheck, target: TargetDatabase, plancheck_env: dict[str, str], tmp_path: Path
) -> None:
    """Group expressions are user logic and may take a while: they are evaluated after the start has
    committed, so a cancel (or a reap) never queues behind them on the run's row."""
    marker = tmp_path / "loading"
    env = {**plancheck_env, "PLANCHECK_TEST_LOADING_MARKER": str(marker)}
    with make_cluster(env, tmp_path) as running:
        worker = running.worker("w1", concurrency=1, app="tests.hooks.slow_load_app")
        plan_id = api.create_plan("shop", FAST_SQL, targets=[target.target])
        wait_for(marker.exists, 30, interval=0.02, message="the worker loading the plan's targets")
        assert api.cancel([plan_id]) == [plan_id]
        assert marker.exists(), "cancel waited for the loading to end: a row lock was held"
        wait_for(lambda: "discarded run_id=" in worker.log(), 30, message="the loaded work discarded")
    assert api.checks(plan_id).status == "CANCELED"


def _publish_raw(broker_url: str, queue: str, body: bytes, content_type: str = "application/json") -> None:
    with Connection(broker_url) as connection:
        connection.Producer().publish(
            body, exchange="", routing_key=queue, content_type=content_type, content_encoding="utf-8", serializer=None
        )


def test_hostile_messages_never_kill_a_worker(
    api: Plancheck, target: TargetDatabase, cluster: Cluster, broker_url: str
) -> None:
    """On either broker: bodies that are not JSON, not a task, or 5 MB large are dropped with a short
    log line; the worker lives on and checks the next plan."""
    worker = cluster.worker("w1")
    wait_for(lambda: " ready." in worker.log(), 60, message="worker ready")
    queue = api.settings.queue
    for body in (b"not json", b"[1, 2", json.dumps({"task": "plancheck.nope"}).encode(), b"x" * 5_000_000):
        _publish_raw(broker_url, queue, body)
    # Chunk messages once named their targets and sheets: a forged one of that shape names nothing now.
    with broker_connection(broker_url) as connection:
        app.send_task(
            "plancheck.run_chunk",
            args=[1, str(uuid.uuid4()), 0, [["local/x", "0" * 64]]],
            connection=connection,
            queue=queue,
        )
    plan_id = api.create_plan("shop", FAST_SQL, targets=[target.target])
    wait_for(lambda: api.checks(plan_id).status == "DONE", 60, message="a plan checked after the hostile messages")
    assert worker.is_alive()
    assert len(worker.log()) < 200_000, "a hostile message reached the log"
    assert "plancheck.run_chunk" in worker.log() and "TypeError" in worker.log()  # refused by its arity
    assert "Unrecoverable error" not in worker.log()


def test_malformed_redis_queue_items_never_kill_a_worker(
    api: Plancheck, target: TargetDatabase, cluster: Cluster, redis_broker: str
) -> None:
    """Items pushed straight onto the Redis list, as `LPUSH queue 'not json'` does: kombu decodes them
    before Celery sees them (it used to stop the worker). Each is dropped with one line."""
    worker = cluster.worker("w1")
    wait_for(lambda: " ready." in worker.log(), 60, message="worker ready")
    items = [b"not json", b"\xff\xfe", b"[]", b'{"body": 1}', json.dumps({"x": "y" * 3_000_000}).encode()]
    with Connection(redis_broker) as connection:
        client = connection.default_channel.client
        for item in items:
            client.lpush(api.settings.queue, item)
    wait_for(lambda: worker.log().count("dropped a message") >= len(items), 30, message="every item dropped")
    plan_id = api.create_plan("shop", FAST_SQL, targets=[target.target])
    wait_for(lambda: api.checks(plan_id).status == "DONE", 60, message="a plan checked after the bad items")
    assert worker.is_alive()
    assert len(worker.log()) < 200_000, "an item reached the log"


def test_a_worker_refuses_a_queue_another_deployment_uses(
    create_database: Callable[[str], str], broker_url: str, cluster: Cluster, tmp_path: Path
) -> None:
    """Two metadata databases, one broker, one PLANCHECK_QUEUE: the second deployment's worker refuses
    to start, naming the setting to change; with a queue of its own it starts."""
    first = cluster.worker("w1")
    wait_for(lambda: " ready." in first.log(), 60, message="first deployment's worker ready")
    other_url = create_database("meta")
    upgrade(other_url)
    shared = make_env(other_url, broker_url, PLANCHECK_QUEUE=cluster.env["PLANCHECK_QUEUE"])
    for folder in ("shared", "own"):
        (tmp_path / folder).mkdir()
    with make_cluster(shared, tmp_path / "shared") as other:
        refused = other.worker("w2")
        assert refused.popen.wait(60) != 0
        assert "belongs to another plancheck deployment" in refused.log()
        assert "PLANCHECK_QUEUE" in refused.log()
    assert first.is_alive()
    with make_cluster(make_env(other_url, broker_url), tmp_path / "own") as other:
        started = other.worker("w2")
        wait_for(lambda: " ready." in started.log(), 60, message="worker on a queue of its own ready")
