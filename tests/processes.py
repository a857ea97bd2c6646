"""Real `celery worker` and `celery beat` processes for the integration and chaos tests."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from plancheck.processes import CeleryProcess, start_celery, stop_all

REPO_ROOT = Path(__file__).resolve().parents[1]


def plancheck_env(database_url: str, broker_url: str, **overrides: str) -> dict[str, str]:
    """The environment a plancheck process gets: the test's URLs and fast maintenance intervals."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PLANCHECK_")}
    env.update(
        PLANCHECK_DATABASE_URL=database_url,
        PLANCHECK_BROKER_URL=broker_url,
        PLANCHECK_CLAIM_INTERVAL="0.5",
        PLANCHECK_REAP_INTERVAL="0.5",
        PLANCHECK_RELAY_INTERVAL="0.5",
        PLANCHECK_LEASE_SECONDS="6",
        PLANCHECK_HEARTBEAT_SECONDS="0.5",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


Process = CeleryProcess
STOP_TIMEOUT = 20.0


@dataclass
class Cluster:
    """Worker and beat processes started for one test; all stopped when the test ends."""

    env: dict[str, str]
    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    def _start(self, name: str, args: list[str], app: str = "plancheck") -> Process:
        # SIGTERM to the main process only: the tests rely on celery's warm shutdown.
        process = start_celery(name, args, env=self.env, log_dir=self.log_dir, app=app, signal_group=False)
        self.processes.append(process)
        return process

    def worker(self, name: str, concurrency: int = 2, pool: str = "prefork", app: str = "plancheck") -> Process:
        return self._start(
            name,
            ["worker", "-n", f"{name}@%h", "-c", str(concurrency), "-P", pool, "-l", "INFO", "--without-mingle",
             "--without-gossip"],
            app,
        )

    def beat(self, name: str) -> Process:
        return self._start(name, ["beat", "-l", "INFO"])

    def stop_all(self) -> None:
        """SIGTERM every process at once (a warm shutdown each), then wait for all of them."""
        stop_all(self.processes, STOP_TIMEOUT)


@contextmanager
def cluster(env: dict[str, str], log_dir: Path) -> Iterator[Cluster]:
    running = Cluster(env, log_dir)
    try:
        yield running
    finally:
        running.stop_all()


def wait_for(condition, timeout: float, interval: float = 0.1, message: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
