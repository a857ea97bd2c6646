"""Real `celery worker` and `celery beat` processes for the integration and chaos tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        """Signal the process as a supervisor would; SIGKILL takes its whole group (pool children too)."""
        if self.popen.poll() is None:
            if signum == signal.SIGKILL:
                os.killpg(self.popen.pid, signum)
            else:
                os.kill(self.popen.pid, signum)

    def stop(self, timeout: float = 20) -> None:
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait()


@dataclass
class Cluster:
    """Worker and beat processes started for one test; all stopped when the test ends."""

    env: dict[str, str]
    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    def _start(self, name: str, args: list[str], app: str = "plancheck") -> Process:
        log_path = self.log_dir / f"{name}.log"
        popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", app, *args],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process = Process(name, popen, log_path)
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
        for process in self.processes:
            process.signal(signal.SIGTERM)
        for process in self.processes:
            process.stop()


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
