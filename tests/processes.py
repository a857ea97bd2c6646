"""Real `celery worker` and `celery beat` processes for the integration and chaos tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kombu import Connection

from plancheck.devtools.processes import CeleryProcess, Cluster, isolated_env

REPO_ROOT = Path(__file__).resolve().parents[1]


def plancheck_env(database_url: str, broker_url: str, **overrides: str) -> dict[str, str]:
    """The environment a plancheck process gets: the test's URLs, fast maintenance intervals, and a
    queue of its own (each test's metadata database is another deployment on the shared broker)."""
    fast = {
        "PLANCHECK_QUEUE": f"plancheck-test-{uuid.uuid4().hex[:10]}",
        "PLANCHECK_CLAIM_INTERVAL": "0.5",
        "PLANCHECK_REAP_INTERVAL": "0.5",
        "PLANCHECK_RELAY_INTERVAL": "0.5",
        "PLANCHECK_LEASE_SECONDS": "6",
        "PLANCHECK_HEARTBEAT_SECONDS": "0.5",
    }
    return isolated_env(database_url, broker_url, **{**fast, **overrides})


Process = CeleryProcess
STOP_TIMEOUT = 20.0


@contextmanager
def cluster(env: dict[str, str], log_dir: Path) -> Iterator[Cluster]:
    running = Cluster(env, log_dir, stop_timeout=STOP_TIMEOUT)  # SIGTERM to main processes: warm shutdowns
    try:
        yield running
    finally:
        running.stop_all()


def queued_messages(broker_url: str, queue: str) -> int:
    """Messages waiting in `queue` (not reserved by a worker), on Redis or RabbitMQ alike. A queue the
    broker does not know has none (Redis forgets an empty list)."""
    with Connection(broker_url) as connection:
        try:
            return int(connection.default_channel.queue_declare(queue, passive=True).message_count)
        except connection.channel_errors:
            return 0


def delete_queue(broker_url: str, queue: str) -> None:
    """Remove a test's queue (and its exchange) from the broker: RabbitMQ keeps durable ones forever."""
    with Connection(broker_url) as connection:
        channel = connection.default_channel
        channel.queue_delete(queue)
        channel.exchange_delete(queue)


def wait_for(condition, timeout: float, interval: float = 0.1, message: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
