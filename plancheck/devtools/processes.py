"""`celery` subprocesses, each in a process group of its own and logging to a file.

Dev mode, the integration and chaos tests and the benchmarks all run `celery worker` and
`celery beat` this way (the tests and benchmarks as a `Cluster`). The own group (a new session)
keeps a terminal's Ctrl-C away from the children, so the parent decides how they stop, and lets
SIGKILL reach a worker's pool processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

STOP_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1


@dataclass
class CeleryProcess:
    """A celery process started by `start_celery`.

    `signal_group` says where signals other than SIGKILL go. False: to the main process only,
    which then shuts its pool down itself (celery's warm shutdown). True: to the whole group, pool
    processes included. SIGKILL always goes to the whole group: a killed main process cannot stop
    its pool.
    """

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    signal_group: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        """Send `signum` unless the process has exited (see `signal_group` for where)."""
        if self.is_alive():
            _send(self.pid, signum, group=self.signal_group or signum == signal.SIGKILL)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (celery's warm shutdown), then SIGKILL the group after `timeout` seconds."""
        self.signal(signal.SIGTERM)
        self.wait_or_kill(timeout)

    def wait_or_kill(self, timeout: float) -> None:
        """Up to `timeout` seconds to exit, then SIGKILL whatever is left of the group."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)
        # Even after a clean exit: a killed or crashed main process can leave pool processes behind.
        _send(self.pid, signal.SIGKILL, group=True)
        self.popen.wait()


def _send(pid: int, signum: int, group: bool) -> None:
    """Signal `pid` or its process group; one that has just exited is no error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        (os.killpg if group else os.kill)(pid, signum)


def start_celery(
    name: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    log_dir: Path,
    app: str = "plancheck",
    signal_group: bool = False,
    append_log: bool = False,
    die_with_parent: bool = False,
) -> CeleryProcess:
    """`python -m celery -A APP ARGS`, stdout and stderr to `log_dir/NAME.log` (see `start_module`)."""
    return start_module(
        name,
        ["celery", "-A", app, *args],
        env=env,
        log_dir=log_dir,
        signal_group=signal_group,
        append_log=append_log,
        die_with_parent=die_with_parent,
    )


def start_module(
    name: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    log_dir: Path,
    signal_group: bool = False,
    append_log: bool = False,
    die_with_parent: bool = False,
) -> CeleryProcess:
    """`python -m ARGS` (celery, or plancheck's own CLI), stdout and stderr to `log_dir/NAME.log`.

    It runs from the repository root, where `celeryconfig` imports. `append_log` keeps what
    earlier runs logged (dev mode's data directory outlives a run). `die_with_parent`: see
    `_die_with_parent`.
    """
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab" if append_log else "wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent() if die_with_parent else None,
        )
    return CeleryProcess(name, popen, log_path, signal_group)


def _die_with_parent() -> Callable[[], object] | None:
    """A pre-exec hook: the child gets SIGTERM if its parent dies without stopping it (Linux).

    prctl is looked up here, in the parent: the hook runs between fork and exec, where only
    async-signal-safe work belongs (no imports). Linux sends the signal when the *thread* that
    started the child ends, so only a long-lived thread (dev mode's main thread) should ask.
    """
    if sys.platform != "linux":
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_all(processes: Sequence[CeleryProcess], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM every process at once, so their warm shutdowns overlap; SIGKILL after `timeout`.

    The `timeout` is for all of them together, not for each in turn.
    """
    for process in processes:
        process.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in reversed(processes):
        process.wait_or_kill(max(0.0, deadline - time.monotonic()))


def isolated_env(database_url: str, broker_url: str, **overrides: str) -> dict[str, str]:
    """This process's environment without its PLANCHECK_* settings, pointed at these URLs: a child
    runs with plancheck's defaults except for `overrides`, whatever the caller's shell exported."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PLANCHECK_")}
    env.update(PLANCHECK_DATABASE_URL=database_url, PLANCHECK_BROKER_URL=broker_url, PYTHONUNBUFFERED="1")
    env.update(overrides)
    return env


@dataclass
class Cluster:
    """Workers and beats started one by one and stopped together (`signal_group`: see CeleryProcess)."""

    env: dict[str, str]
    log_dir: Path
    app: str = "plancheck"
    signal_group: bool = False
    stop_timeout: float = STOP_TIMEOUT
    processes: list[CeleryProcess] = field(default_factory=list)

    def _start(self, name: str, args: list[str], app: str | None = None) -> CeleryProcess:
        process = start_celery(
            name, args, env=self.env, log_dir=self.log_dir, app=app or self.app, signal_group=self.signal_group
        )
        self.processes.append(process)
        return process

    def worker(self, name: str, concurrency: int = 2, pool: str = "prefork", app: str | None = None) -> CeleryProcess:
        args = [
            "worker",
            "-n",
            f"{name}@%h",
            "-c",
            str(concurrency),
            "-P",
            pool,
            "-l",
            "INFO",
            "--without-mingle",
            "--without-gossip",
        ]
        return self._start(name, args, app)

    def beat(self, name: str = "beat") -> CeleryProcess:
        return self._start(name, ["beat", "-l", "INFO"])

    def stop_all(self) -> None:
        """SIGTERM every process at once, then wait for all of them (see `stop_all`)."""
        stop_all(self.processes, self.stop_timeout)
