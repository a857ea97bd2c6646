"""Fixtures shared by integration tests beyond the servers of tests/conftest.py: a server that demands
passwords, and a real `plancheck api serve` process with tokens to call it with."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from plancheck.api import Plancheck
from plancheck.devtools.embedded import free_port
from tests.processes import REPO_ROOT

START_TIMEOUT = 30.0


@pytest.fixture(scope="session")
def password_server() -> Iterator[str]:
    """A private embedded server that demands passwords (the shared test server may trust everyone).

    Returns its socket directory: `postgres` is trusted there, every other role must give its password
    (scram-sha-256). Its directory is not under pytest's basetemp, which concurrent pytest runs of the
    same user prune.
    """
    import pgserver

    home = Path(tempfile.mkdtemp(prefix="plancheck-pgauth-"))
    server = pgserver.get_server(str(home / "data"), cleanup_mode="delete")
    Path(server.pgdata, "pg_hba.conf").write_text("local all postgres trust\nlocal all all scram-sha-256\n")
    server.psql("SELECT pg_reload_conf();")
    yield str(make_url(server.get_uri()).query["host"])
    server.cleanup()
    shutil.rmtree(home, ignore_errors=True)


@dataclass
class ApiServer:
    """`plancheck api serve` in a subprocess, logging to a file."""

    url: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, token: str | None = None, **options: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **options)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start_api_server(env: dict[str, str], log_dir: Path) -> ApiServer:
    port = free_port()
    log_path = log_dir / f"api-{port}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "plancheck.cli.main", "api", "serve", "--port", str(port)],
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ApiServer(f"http://127.0.0.1:{port}", popen, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if popen.poll() is not None:
            raise AssertionError(f"plancheck api serve exited with {popen.returncode}:\n{server.log()}")
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"{server.url}/healthz", timeout=5)
            return server
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"plancheck api serve not answering after {START_TIMEOUT}s:\n{server.log()}")
        time.sleep(0.1)


@pytest.fixture
def api_server(plancheck_env: dict[str, str], tmp_path: Path) -> Iterator[ApiServer]:
    server = start_api_server(plancheck_env, tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_token(api: Plancheck) -> Callable[..., str]:
    """Factory: `make_token("submit", project="shop")` returns a new token's text (named SCOPE-N by default)."""
    made = iter(range(1, 10_000))

    def make(scope: str, project: str | None = None, expires: str | None = None, name: str | None = None) -> str:
        return api.create_token(name or f"{scope}-{next(made)}", scope, project, expires).token

    return make
