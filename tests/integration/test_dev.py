"""`plancheck dev` as a user runs it: start, use from another "terminal", Ctrl-C, start again."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from plancheck.devtools.embedded import free_port
from tests.processes import REPO_ROOT, wait_for

READY_LINE = "plancheck dev is ready"
START_TIMEOUT = 90.0
PLAN_SQL = "CREATE TABLE coupons (id bigint PRIMARY KEY, code text NOT NULL);\nSELECT 1;\n"


def user_env(**extra: str) -> dict[str, str]:
    """A shell without plancheck settings (dev mode needs none)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PLANCHECK_")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


@dataclass
class DevProcess:
    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not any(READY_LINE in line for line in self.lines):
            if self.popen.poll() is not None:
                time.sleep(0.2)  # let the reader catch the last lines
                raise AssertionError(f"plancheck dev exited with {self.popen.returncode}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"plancheck dev not ready after {timeout}s:\n{self.output}")
            time.sleep(0.1)

    def exports(self) -> dict[str, str]:
        """The environment the printed `export …` lines set."""
        env = {}
        for line in self.lines:
            if line.startswith("export "):
                key, _, value = shlex.split(line)[1].partition("=")
                env[key] = value
        assert set(env) == {"PLANCHECK_DATABASE_URL", "PLANCHECK_BROKER_URL"}, self.output
        return env

    def server_url(self) -> str:
        match = next(re.search(r"^PostgreSQL: (\S+)", line) for line in self.lines if line.startswith("PostgreSQL: "))
        assert match is not None
        return match.group(1)

    def child_pids(self) -> dict[str, int]:
        line = next(line for line in self.lines if line.startswith("processes: "))
        return {name: int(pid) for name, pid in re.findall(r"(\w+) pid (\d+)", line)}

    def stop(self, signum: int, group: bool) -> int:
        if group:  # what a terminal's Ctrl-C does: the signal goes to the whole foreground group
            os.killpg(self.popen.pid, signum)
        else:
            self.popen.send_signal(signum)
        return self.popen.wait(60)


@pytest.fixture
def start_dev(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    started: list[DevProcess] = []

    def start(data_dir: Path, *args: str) -> DevProcess:
        popen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plancheck.cli.main",
                "dev",
                "--data-dir",
                str(data_dir),
                "--api-port",
                str(free_port()),
                *args,
            ],
            cwd=tmp_path,  # not the repository: dev mode must find celeryconfig itself
            env=user_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        process = DevProcess(popen)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.popen.poll() is None:
            os.killpg(process.popen.pid, signal.SIGTERM)
            try:
                process.popen.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.popen.pid, signal.SIGKILL)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plancheck.cli.main", *args],
        env=user_env(**env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def cli_json(env: dict[str, str], *args: str) -> object:
    done = cli(env, *args, "--json")
    assert done.returncode in (0, 1), f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def processes_using(data_dir: Path) -> list[str]:
    """Live processes whose command line or environment mentions the data dir (Linux /proc)."""
    marker = str(data_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().split(") ", 1)[1].startswith("Z"):
                continue  # a zombie has exited
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in cmdline or marker in environ:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {command}")
    return found


def assert_all_stopped(process: DevProcess, data_dir: Path) -> None:
    for name, pid in process.child_pids().items():
        assert not Path(f"/proc/{pid}").exists(), f"{name} (pid {pid}) is still running"
    wait_for(lambda: not processes_using(data_dir), timeout=15, message="no process left on the data dir")


def check_plan(env: dict[str, str], server_url: str, sql: Path) -> int:
    """Register the embedded server's own `postgres` database and check a plan against it."""
    assert cli(env, "project", "create", "devproj").returncode == 0
    assert cli(env, "instance", "add", "embedded", "--url", server_url).returncode == 0
    assert cli(env, "instance", "sync", "embedded", "--project", "devproj").returncode == 0
    created = cli_json(env, "plan", "create", "devproj", "--sql", str(sql), "--target", "embedded/postgres")
    plan_id = int(created["plan_id"])  # type: ignore[index]
    checks = cli_json(env, "plan", "checks", str(plan_id), "--wait", "--timeout", "90")
    assert checks["status"] == "DONE", checks  # type: ignore[index]
    return plan_id


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="process checks read /proc")
def test_dev_lifecycle(start_dev, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "data"
    sql = tmp_path / "plan.sql"
    sql.write_text(PLAN_SQL)

    first = start_dev(data_dir)
    first.wait_ready()
    env = first.exports()
    assert set(first.child_pids()) == {"worker", "beat", "api"}

    # a second dev mode on the same data dir refuses to start, and harms nothing
    second = subprocess.run(
        [sys.executable, "-m", "plancheck.cli.main", "dev", "--data-dir", str(data_dir)],
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode != 0
    assert "already running" in second.stderr and "Traceback" not in second.stderr

    plan_id = check_plan(env, first.server_url(), sql)
    before = cli_json(env, "plan", "checks", str(plan_id))

    # Ctrl-C: everything stops, nothing is left behind
    assert first.stop(signal.SIGINT, group=True) == 0, first.output
    assert "stopped" in first.output
    assert_all_stopped(first, data_dir)

    # the data dir is reusable: same metadata, the plan and its results are still there
    again = start_dev(data_dir)
    again.wait_ready()
    assert again.exports()["PLANCHECK_DATABASE_URL"] == env["PLANCHECK_DATABASE_URL"]
    after = cli_json(again.exports(), "plan", "checks", str(plan_id))
    assert after["status"] == "DONE" and after["results"] == before["results"]  # type: ignore[index]
    assert again.stop(signal.SIGTERM, group=False) == 0, again.output
    assert_all_stopped(again, data_dir)


def _get(url: str, user: str | None = None, password: str | None = None) -> int:
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="process checks read /proc")
def test_dev_with_flower_requires_the_printed_password(  # type: ignore[no-untyped-def]
    start_dev, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    dev = start_dev(data_dir, "--flower", "--flower-port", str(port))
    dev.wait_ready()
    match = re.search(rf"Flower: http://127\.0\.0\.1:{port} user admin password (\S+)", dev.output)
    assert match, dev.output
    password = match.group(1)
    url = f"http://127.0.0.1:{port}/"

    def answers() -> bool:
        try:
            return _get(url) in (200, 401)
        except OSError:
            return False

    wait_for(answers, timeout=30, interval=0.2, message="flower answering")
    assert _get(url) == 401
    assert _get(url, "admin", "wrong") == 401
    assert _get(url, "admin", password) == 200
    flower_pid = dev.child_pids()["flower"]
    assert password.encode() not in Path(f"/proc/{flower_pid}/cmdline").read_bytes()  # not visible in `ps`
    assert dev.stop(signal.SIGINT, group=True) == 0
    assert_all_stopped(dev, data_dir)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="process checks read /proc")
def test_dev_serves_the_api_with_the_token_it_prints(start_dev, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`plancheck dev` starts the API server and prints its URL and a submit token; a restart revokes
    that token and prints a new one."""
    data_dir = tmp_path / "data"

    def served(dev: DevProcess) -> tuple[str, str]:
        dev.wait_ready()
        url = re.search(r"^API and results page: (http://127\.0\.0\.1:\d+)/", dev.output, re.M)
        token = re.search(r"^API token \(scope submit[^)]*\): (pct_\S+)$", dev.output, re.M)
        assert url and token, dev.output
        assert token.group(1) not in (data_dir / "dev.json").read_text()
        return url.group(1), token.group(1)

    first = start_dev(data_dir)
    url, token = served(first)
    assert _get(f"{url}/healthz") == 200
    assert _get(f"{url}/api/v1/projects") == 401
    request = urllib.request.Request(f"{url}/api/v1/projects", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read()) == {"projects": []}
    assert first.stop(signal.SIGTERM, group=False) == 0, first.output
    assert_all_stopped(first, data_dir)

    again = start_dev(data_dir)
    new_url, new_token = served(again)
    assert new_token != token
    stale = urllib.request.Request(f"{new_url}/api/v1/projects", headers={"Authorization": f"Bearer {token}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(stale, timeout=10)
    assert refused.value.code == 401
    assert again.stop(signal.SIGTERM, group=False) == 0, again.output
