"""Dev mode: embedded PostgreSQL and Redis plus `celery worker`, `celery beat` (and Flower) as children.

`dev_environment(data_dir)` starts everything and stops it all again, in reverse order, when the
`with` block ends (normally, on Ctrl-C or on SIGTERM turned into KeyboardInterrupt by `stop_signals`).
One data directory serves one dev environment at a time: an fcntl lock in it says who owns it, and
`dev.json` next to the lock tells other commands (`plancheck demo`) the URLs of the running one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

from plancheck.core.errors import NotFound, PlancheckError
from plancheck.devtools.processes import CeleryProcess, start_celery, start_module, stop_all

METADATA_DATABASE = "plancheck"
LOCK_FILE = "dev.lock"
STATE_FILE = "dev.json"
READY_TIMEOUT = 60.0
DEV_TOKEN = "dev"


class DevError(PlancheckError):
    """Dev mode could not start or a child process died."""


class AlreadyRunning(DevError):
    pass


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("plancheck"))


def database_url(server_url: str, database: str) -> str:
    """`server_url` (any database on the server) with another database name."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


# -- the environment ------------------------------------------------------------------------------
@dataclass
class DevEnvironment:
    data_dir: Path
    server_url: str
    database_url: str
    broker_url: str
    children: list[CeleryProcess] = field(default_factory=list)
    flower_url: str | None = None
    flower_password: str | None = None
    api_url: str | None = None
    api_token: str | None = None

    def child_env(self) -> dict[str, str]:
        """The environment of plancheck processes using this dev environment."""
        env = dict(os.environ)
        env.update(PLANCHECK_DATABASE_URL=self.database_url, PLANCHECK_BROKER_URL=self.broker_url, PYTHONUNBUFFERED="1")
        return env

    def exports(self) -> list[str]:
        """Shell lines that point another terminal's `plancheck` at this environment."""
        import shlex

        return [
            f"export PLANCHECK_DATABASE_URL={shlex.quote(self.database_url)}",
            f"export PLANCHECK_BROKER_URL={shlex.quote(self.broker_url)}",
        ]

    def state(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "data_dir": str(self.data_dir),
            "server_url": self.server_url,
            "database_url": self.database_url,
            "broker_url": self.broker_url,
            "children": {child.name: child.pid for child in self.children},
            "flower_url": self.flower_url,
            "api_url": self.api_url,
        }

    def dead_child(self) -> CeleryProcess | None:
        return next((child for child in self.children if not child.is_alive()), None)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until the worker logs that it is ready and the API answers (and every child still runs)."""
        deadline = time.monotonic() + timeout
        worker = next((child for child in self.children if child.name == "worker"), None)
        while worker is not None and " ready." not in worker.log():
            self._check_children()
            if time.monotonic() > deadline:
                raise DevError(f"the celery worker was not ready after {timeout:g}s; see {worker.log_path}")
            time.sleep(0.1)
        while self.api_url is not None and not _answers(f"{self.api_url}/healthz"):
            self._check_children()
            if time.monotonic() > deadline:
                raise DevError(f"the API server was not answering after {timeout:g}s; see {self.data_dir / 'logs'}")
            time.sleep(0.1)
        self._check_children()

    def run_forever(self, poll: float = 0.5) -> None:
        """Block until interrupted; a child that dies ends dev mode with an error."""
        while True:
            self._check_children()
            time.sleep(poll)

    def _check_children(self) -> None:
        child = self.dead_child()
        if child is not None:
            raise DevError(
                f"{child.name} (pid {child.pid}) exited with code {child.popen.returncode}; "
                f"see its log, {child.log_path}"
            )


def _answers(url: str) -> bool:
    import httpx

    try:
        httpx.get(url, timeout=2)
    except httpx.TransportError:
        return False
    return True


# -- ownership of the data directory --------------------------------------------------------------
def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold the data directory's lock (released when the process exits, however it exits)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise AlreadyRunning(
            f"plancheck dev is already running on {data_dir}; stop it first (Ctrl-C in its terminal)"
        ) from exc
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def running_environment(data_dir: Path, timeout: float = READY_TIMEOUT) -> dict[str, Any] | None:
    """The state of the dev environment running on `data_dir` (waiting while it starts), or None."""
    if not (data_dir / LOCK_FILE).exists():
        return None
    try:
        lock_data_dir(data_dir).close()
        return None
    except AlreadyRunning:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return dict(json.loads((data_dir / STATE_FILE).read_text()))
        time.sleep(0.2)
    raise DevError(f"plancheck dev on {data_dir} did not become ready within {timeout:g}s")


# -- embedded servers -----------------------------------------------------------------------------
def _prune_dead_handles(pg_dir: Path) -> None:
    """Forget pgserver handles of processes that died without cleanup, so stopping really stops."""
    handles = pg_dir / ".handle_pids.json"
    with contextlib.suppress(OSError, ValueError, TypeError):
        pids = json.loads(handles.read_text())
        handles.write_text(json.dumps([pid for pid in pids if _alive(int(pid))]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_orphan_redis(redis_dir: Path) -> None:
    """Stop a redis-server left on this data dir by a dev mode killed outright (we hold the lock).

    Redis rewrites its command line, but it runs in its `--dir`: its cwd identifies it.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if Path(os.readlink(entry / "cwd")) == redis_dir and "redis-server" in os.readlink(entry / "exe"):
                os.kill(int(entry.name), signal.SIGTERM)


def start_postgres(pg_dir: Path) -> tuple[str, Callable[[], None]]:
    """The embedded server's URL (its `postgres` database) and a function that stops it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pgserver warns when XDG_RUNTIME_DIR is unset
        import pgserver

        from plancheck.devtools.embedded import start_postgres as start

        pg_dir.mkdir(parents=True, exist_ok=True)
        _prune_dead_handles(pg_dir)
        url = start(pg_dir, cleanup=False)
        server = pgserver.get_server(pg_dir, cleanup_mode="stop")

    def stop() -> None:
        with contextlib.suppress(Exception):
            server.cleanup()

    return url, stop


def ensure_database(server_url: str, name: str) -> str:
    """Create database `name` on the server if missing; returns its URL."""
    from sqlalchemy import create_engine, text

    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return database_url(server_url, name)


# -- orchestration --------------------------------------------------------------------------------
@contextmanager
def stop_signals() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise KeyboardInterrupt, so both stop dev mode cleanly.

    SIGINT is set explicitly: a shell starts background jobs with it ignored, and Python then
    leaves it ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, signal.default_int_handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def _shielded() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM while stopping, so a second Ctrl-C cannot leave processes behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop_all(stack: ExitStack) -> None:
    with _shielded():
        stack.close()


@contextmanager
def dev_environment(
    data_dir: Path,
    *,
    flower: bool = False,
    flower_port: int = 5555,
    api_port: int | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> Iterator[DevEnvironment]:
    """Start PostgreSQL, Redis, the metadata schema, a worker and a beat (and Flower, and the API server
    on 127.0.0.1:`api_port` with a fresh token); stop them after."""
    from plancheck.api import Plancheck
    from plancheck.core.settings import load_settings
    from plancheck.devtools.embedded import start_redis

    data_dir = data_dir.expanduser().resolve()
    stack = ExitStack()
    stack.callback(lock_data_dir(data_dir).close)
    try:
        say(f"starting PostgreSQL in {data_dir / 'pg'}")
        server_url, stop_postgres = start_postgres(data_dir / "pg")
        stack.callback(stop_postgres)
        metadata_url = ensure_database(server_url, METADATA_DATABASE)
        _stop_orphan_redis(data_dir / "redis")
        say("starting Redis")
        redis = start_redis(data_dir / "redis")
        stack.callback(redis.stop)
        env = DevEnvironment(data_dir, server_url, metadata_url, redis.url)
        child_env = env.child_env()
        say("migrating the metadata database")
        api = Plancheck(load_settings(child_env))
        api.upgrade_database()
        if api_port is not None:
            env.api_url, env.api_token = f"http://127.0.0.1:{api_port}", _dev_token(api)
        log_dir = data_dir / "logs"
        log_dir.mkdir(exist_ok=True)
        _start_children(env, child_env, log_dir, stack, flower, flower_port)
        state_file = data_dir / STATE_FILE
        stack.callback(state_file.unlink, missing_ok=True)
        state_file.write_text(json.dumps(env.state()))
        yield env
    finally:
        say("stopping the dev environment")
        _stop_all(stack)


def _start_children(
    env: DevEnvironment, child_env: dict[str, str], log_dir: Path, stack: ExitStack, flower: bool, flower_port: int
) -> None:
    specs = [
        ("worker", ["worker", "-n", "plancheck-dev@%h", "-c", "2", "-l", "INFO"], child_env),
        ("beat", ["beat", "-l", "INFO"], child_env),
    ]
    if flower:
        env.flower_password = secrets.token_urlsafe(12)
        env.flower_url = f"http://127.0.0.1:{flower_port}"
        # The password goes through the environment, not argv, so `ps` does not show it.
        # Flower reads every FLOWER_* variable as an option and refuses unknown ones: pass only ours.
        flower_env = {key: value for key, value in child_env.items() if not key.startswith("FLOWER_")}
        flower_env["FLOWER_BASIC_AUTH"] = f"admin:{env.flower_password}"
        specs.append(("flower", ["flower", "--address=127.0.0.1", f"--port={flower_port}"], flower_env))
    stack.callback(stop_all, env.children)
    for name, args, process_env in specs:
        # The logs outlive a run, like the data directory. The main thread starts the children and
        # lives as long as dev mode, so they can die with it.
        env.children.append(
            start_celery(name, args, env=process_env, log_dir=log_dir, append_log=True, die_with_parent=True)
        )
    if env.api_url is not None:
        port = str(urlsplit(env.api_url).port)
        api_args = ["plancheck.cli.main", "api", "serve", "--host", "127.0.0.1", "--port", port]
        env.children.append(
            start_module("api", api_args, env=child_env, log_dir=log_dir, append_log=True, die_with_parent=True)
        )


def _dev_token(api: Any) -> str:
    """A fresh submit-scoped API token named `dev` for this run; the previous run's is revoked.

    Submit scope does everything the API and the results page offer (submit includes read).
    """
    with contextlib.suppress(NotFound):
        api.revoke_token(DEV_TOKEN)
    return str(api.create_token(DEV_TOKEN, "submit").token)
