"""7. Profile: where one run's time goes inside a worker (no Celery), and what loading a plan costs.

The cheapest real run (one target, one-statement SQL) is executed in this process the way the run
task does it: `runner.execute(run_id, token, worker, settings)` for a claimed run (then the run its
finish claimed for the freed slot, if any), and `followups.relay` once per 0.25 s, as a worker's
debounced relay would. Claims count free worker slots, so a stand-in worker lends one slot
(worker_slots), as one pool process would. First without a profiler (wall ms per run), then under
cProfile: the cumulative time of plancheck's and the drivers' main functions per run. The
metadata-database statements per run (each named after its constant in plancheck's store) and the
commits come from SQLAlchemy events; pool pre-pings from cProfile call counts.

Further tables profile `Plancheck.create_plan`, the client side of dispatch-on-create (with slots
lent so that each call claims its run and publishes its message, as with idle workers), and time
`load_work` (every run's start) for one target, 200 explicit targets and a 200-database CEL group.
"""

from __future__ import annotations

import cProfile
import ctypes
import importlib
import pstats
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.sql.elements import TextClause

from bench.common import CHEAP_SQL, Deployment, Servers, deployment, emit, median, progress, table

# (label, file suffix, function name): cumulative time per run is summed over matching entries.
_PIECES = [
    ("runner.execute (whole run, in-process)", "plancheck/scheduler/runner.py", "execute"),
    ("  runs.start (+ attempt row)", "plancheck/store/runs.py", "start"),
    ("  load_work (plan, project, databases, sheet)", "plancheck/domain/targets.py", "load_work"),
    ("  runs.set_targets_total", "plancheck/store/runs.py", "set_targets_total"),
    ("  Lease enter + exit (heartbeat thread)", "plancheck/scheduler/lease.py", "__enter__|__exit__"),
    ("  check_target (target session + checks)", "plancheck/checks/check.py", "check_target"),
    ("    psycopg.connect to the target", "plancheck/checks/session.py", "_connect"),
    ("    idle connection taken (+ liveness SELECT)", "plancheck/checks/session.py", "_take_alive"),
    ("    read-only proof", "plancheck/checks/session.py", "verify_read_only"),
    ("    parse (once, shared by review and summary)", "plancheck/checks/advise.py", "parse"),
    ("    review (SQL review rules)", "plancheck/checks/advise.py", "review"),
    ("    summarize (summary report)", "plancheck/checks/summary.py", "summarize"),
    ("    rollback (connection kept idle)", "plancheck/checks/session.py", "_rolled_back"),
    ("  runs.add_results", "plancheck/store/runs.py", "add_results"),
    ("  runs.finish (+ outbox rows)", "plancheck/store/runs.py", "finish"),
    ("  claims.claim (for the freed slot, in finish)", "plancheck/store/claims.py", "claim"),
    ("  state_change log lines", "plancheck/core/logs.py", "state_change"),
    ("followups.relay (relay task body, once per 0.25 s)", "plancheck/store/followups.py", "relay"),
    ("all SQLAlchemy commits (metadata db)", "sqlalchemy/engine/base.py", "_commit_impl"),
    ("all pool pre-pings (metadata db)", "sqlalchemy/", "do_ping"),
    ("all pool checkouts (incl. pre-ping)", "sqlalchemy/pool/base.py", "_checkout"),
]


_CREATE_PIECES = [
    ("Plancheck.create_plan (whole call)", "plancheck/api/__init__.py", "create_plan"),
    ("  catalog.get_project", "plancheck/store/catalog.py", "get_project"),
    ("  _spec (validate targets: list the project's databases)", "plancheck/api/__init__.py", "_spec"),
    ("  catalog.put_sheet", "plancheck/store/catalog.py", "put_sheet"),
    ("  catalog.create_plan", "plancheck/store/catalog.py", "create_plan"),
    ("  runs.create", "plancheck/store/runs.py", "create"),
    ("  commit", "sqlalchemy/engine/base.py", "_commit_impl"),
    ("  _dispatch_claim (claim + publish the run message)", "plancheck/api/__init__.py", "_dispatch_claim"),
    ("    claims.claim", "plancheck/store/claims.py", "claim"),
    ("    run.apply_async", "celery/app/task.py", "apply_async"),
    ("    redis connect (new socket)", "redis/connection.py", "connect"),
]


def _prepare(dep: Deployment, count: int) -> None:
    """A backlog of `count` runs, and the lent slot seen now (live for a lease: longer than any drive)."""
    dep.insert_backlog(count)
    dep.refresh_lent_slots(1)


def _drive(dep: Deployment, count: int, settings: Any, profiler: cProfile.Profile | None = None) -> float:
    """Execute `count` backlog runs (see `_prepare`) in-process on one lent slot; returns the wall seconds."""
    from plancheck.scheduler import runner
    from plancheck.scheduler.tasks import RELAY_DELAY
    from plancheck.store import followups

    engine = dep.engine()
    queue: deque[Any] = deque()
    done = 0
    t0 = last_relay = time.perf_counter()
    if profiler:
        profiler.enable()
    while done < count:
        if not queue:
            queue.extend(runner.claim_work(engine, settings).runs)
            if not queue:
                raise RuntimeError("nothing to claim")
        item = queue.popleft()
        outcome = runner.execute(item.id, str(item.token), "bench@profile:1", settings)
        if outcome.run_status != "DONE":
            raise RuntimeError(f"run {item.id} ended {outcome.run_status} ({outcome.delivery})")
        queue.extend(outcome.claimed.runs)
        if time.perf_counter() - last_relay >= RELAY_DELAY:  # as a worker process's debounced relay
            with engine.begin() as conn:
                followups.relay(conn, settings.claim_batch)
            last_relay = time.perf_counter()
        done += 1
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - t0
    for item in queue:  # a claimed run left over: give it back
        with engine.begin() as conn:
            conn.execute(text("UPDATE plan_check_run SET status = 'AVAILABLE' WHERE id = :i"), {"i": item.id})
    return elapsed


def _cumulative(stats: pstats.Stats, suffix: str, names: str) -> tuple[float, int]:
    wanted = set(names.split("|"))
    total, calls = 0.0, 0
    for (filename, _, funcname), (_, ncalls, _, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        if funcname in wanted and suffix in filename.replace("\\", "/"):
            total += cumtime
            calls += ncalls
    return total, calls


class _Disarm(Exception):
    """Delivered to this thread once, so that the interpreter clears its async-exception signal."""


@contextmanager
def _idle_withdrawal_skipped() -> Iterator[None]:
    """Bench only (NOT plancheck's code): the lease's withdrawal of an interrupt that was never sent.

    When an interruptible block ends, plancheck's lease withdraws any interrupt still pending with
    PyThreadState_SetAsyncExc(thread, NULL). On CPython 3.11 that call signals the eval loop even
    when nothing is pending, and nothing clears the signal again: every later function call and loop
    turn of the process takes the slow path, and under a profiler (sys.setprofile, as cProfile) the
    next function call loops forever. In these runs no lease is lost, so nothing is ever pending:
    skipping the withdrawal changes nothing else. The signal left by earlier runs is cleared first by
    delivering one exception to this thread and catching it.
    """
    from plancheck.scheduler import lease

    withdraw_or_raise = lease._raise_in_thread

    def raise_only(thread_id: int, exception: type[BaseException] | None) -> None:
        if exception is not None:
            withdraw_or_raise(thread_id, exception)

    lease._raise_in_thread = raise_only
    try:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), ctypes.py_object(_Disarm))
        for _ in range(100):  # delivered at the next check of the eval loop
            pass
    except _Disarm:
        pass
    try:
        yield
    finally:
        lease._raise_in_thread = withdraw_or_raise


# Modules whose statement constants name the statements of the statement list.
_STORE_MODULES = ("runs", "claims", "chunks", "followups", "workers", "catalog")


def _statement_names() -> dict[int, str]:
    """id(statement) -> 'module._NAME' for every text() constant of plancheck's store."""
    names = {}
    for module_name in _STORE_MODULES:
        module = importlib.import_module(f"plancheck.store.{module_name}")
        for name, value in vars(module).items():
            if isinstance(value, TextClause):
                names[id(value)] = f"{module_name}.{name}"
    return names


def _statement_label(sql: str) -> str:
    """A built statement (SQLAlchemy's expression language, e.g. load_work's reads) named by its verb
    and tables."""
    words = re.sub(r"\s+", " ", sql).strip()
    verb = words.split(" ", 1)[0].upper()
    tables = re.findall(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+(\w+)", words, flags=re.IGNORECASE)
    return f"{verb} {', '.join(dict.fromkeys(tables))} (built)"


def _counting(engine: Any) -> Callable[[], tuple[Counter[str], int]]:
    """Count the statements and commits on `engine` until the returned reader is called; statements
    are named after their store constant (the cheap part is done per statement, the naming at the end)."""
    names = _statement_names()
    executed: Counter[str] = Counter()
    commits = [0]

    def on_execute(conn: Any, cursor: Any, sql: str, parameters: Any, context: Any, executemany: bool) -> None:
        clause = getattr(context.compiled, "statement", None)
        executed[names.get(id(clause)) or sql] += 1

    def on_commit(*_: Any) -> None:
        commits[0] += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)

    def read() -> tuple[Counter[str], int]:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)
        statements: Counter[str] = Counter()
        known = set(names.values())
        for key, calls in executed.items():
            statements[key if key in known else _statement_label(key)] += calls
        return statements, commits[0]

    return read


def _load_work_costs(dep: Deployment, repeats: int) -> list[list[object]]:
    """Median ms of load_work for plans of 1 target, 200 explicit targets and a 200-database group."""
    from plancheck.domain.targets import load_work
    from plancheck.store import catalog

    engine = dep.engine()
    names = [f"pcb_fake_{i:04d}" for i in range(200)]  # catalog rows only: load_work never connects
    with engine.begin() as conn:
        instance_id = conn.execute(text("SELECT id FROM instance WHERE key = :k"), {"k": dep.instance}).scalar_one()
        catalog.register_databases(conn, instance_id, names, "test", dep.project_id)
        catalog.create_group(conn, dep.project_id, "fake", 'resource.database_name.startsWith("pcb_fake_")')
        sha = catalog.put_sheet(conn, CHEAP_SQL)
        shapes = {
            "1 target": [{"targets": [dep.targets[0]], "sheet": sha}],
            "200 explicit targets": [{"targets": [f"{dep.instance}/{n}" for n in names], "sheet": sha}],
            "group of 200 (CEL)": [{"group": "fake", "sheet": sha}],
        }
        plans = {label: catalog.create_plan(conn, dep.project_id, label, specs) for label, specs in shapes.items()}
    rows: list[list[object]] = []
    for label, plan_id in plans.items():
        times = []
        items = 0
        with engine.connect() as conn:
            for i in range(repeats + 2):
                t0 = time.perf_counter()
                work = load_work(conn, plan_id)
                if i >= 2:
                    times.append((time.perf_counter() - t0) * 1000)
                items = len(work.items)
            conn.rollback()
        rows.append([label, items, median(times), median(times) / max(items, 1)])
    return rows


def _create_costs(dep: Deployment, count: int) -> tuple[list[list[object]], float, float]:
    """Profile `create_plan` (the API path; its run messages go to the deployment's queue, which no
    worker reads). The lent slots outnumber the calls, so each call claims its run as with idle workers."""
    dep.refresh_lent_slots(10_000)
    api = dep.api()
    for _ in range(5):
        api.create_plan(dep.project, CHEAP_SQL, targets=[dep.targets[0]])
    t0 = time.perf_counter()
    for _ in range(count):
        api.create_plan(dep.project, CHEAP_SQL, targets=[dep.targets[0]])
    plain = (time.perf_counter() - t0) / count * 1000
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    for _ in range(count):
        api.create_plan(dep.project, CHEAP_SQL, targets=[dep.targets[0]])
    profiler.disable()
    profiled = (time.perf_counter() - t0) / count * 1000
    stats = pstats.Stats(profiler)
    rows: list[list[object]] = []
    for label, suffix, names in _CREATE_PIECES:
        seconds, calls = _cumulative(stats, suffix, names)
        rows.append([label, seconds / count * 1000, seconds * 1000 / count / profiled * 100, calls / count])
    return rows, plain, profiled


def run(servers: Servers, quick: bool) -> None:
    from plancheck.core.settings import load_settings

    count = 100 if quick else 200
    rounds = 3
    with deployment(servers, "prof") as dep, dep.lent_slots(1):
        settings = load_settings(dep.env())
        progress(f"profile: {count} runs in-process, no profiler, {rounds} rounds")
        _prepare(dep, 20)
        _drive(dep, 20, settings)  # warm-up: imports, pools, caches
        _prepare(dep, count)
        read_counts = _counting(dep.engine())
        deployed = [_drive(dep, count, settings)]
        statements, commits = read_counts()
        skipped: list[float] = []
        for i in range(rounds):  # alternating, so that load from elsewhere hits both alike
            if i:
                _prepare(dep, count)
                deployed.append(_drive(dep, count, settings))
            _prepare(dep, count)
            with _idle_withdrawal_skipped():
                skipped.append(_drive(dep, count, settings))
        _prepare(dep, count)
        with _idle_withdrawal_skipped():  # cProfile needs it on CPython 3.11 (see the function)
            progress(f"profile: {count} runs in-process under cProfile")
            profiler = cProfile.Profile()
            profiled = _drive(dep, count, settings, profiler)
            stats = pstats.Stats(profiler)
            load_rows = _load_work_costs(dep, 10 if quick else 30)
            progress("profile: create_plan")
            create_rows, create_plain, create_profiled = _create_costs(dep, 50 if quick else 200)
        servers.flush_redis()

    plain = min(deployed)
    per_run = profiled / count * 1000
    rows = []
    for label, suffix, names in _PIECES:
        seconds, calls = _cumulative(stats, suffix, names)
        rows.append([label, seconds / count * 1000, seconds / profiled * 100, calls / count])
    emit(
        table(
            "profile: one run of the cheapest check, in-process (runner.execute + relay), per run",
            ["piece (cumulative)", "ms/run", "% of wall", "calls/run"],
            rows,
            [
                f"{count} runs: {plain / count * 1000:.2f} ms/run without profiler as deployed, "
                f"{min(skipped) / count * 1000:.2f} ms/run with the lease's idle withdrawal skipped (bench only, "
                f"ratio {min(skipped) / plain:.2f}; best of {rounds} alternating rounds each), "
                f"{per_run:.2f} ms/run under cProfile (withdrawal skipped: on CPython 3.11 cProfile hangs without)",
                f"metadata database: {sum(statements.values()) / count:.1f} statements and "
                f"{commits / count:.1f} commits "
                "per run (claim, execute, relay; without profiler; the statements are listed below)",
                "indented rows are inside the row above; the 'all ...' rows cut across everything",
            ],
        )
    )
    emit(
        table(
            "profile: metadata-database statements per run, in the order first executed (same runs, no profiler)",
            ["statement", "per run"],
            [[label, calls / count] for label, calls in statements.items()],
            [
                "module._NAME = the statement constant in plancheck/store/MODULE.py; (built) = built with SQLAlchemy's "
                "expression language, named by its verb and tables",
                "relay statements appear per run as the fraction of runs a relay followed",
            ],
        )
    )
    emit(
        table(
            "profile: Plancheck.create_plan (dispatch on create), per call",
            ["piece (cumulative)", "ms/call", "% of wall", "calls/call"],
            create_rows,
            [f"{create_plain:.2f} ms/call without profiler, {create_profiled:.2f} ms/call under cProfile"],
        )
    )
    emit(
        table(
            "profile: load_work per call (every run's start, and every chunk of a fanned-out run)",
            ["plan", "targets", "ms", "ms/target"],
            load_rows,
            ["catalog rows only: these 200 databases are registered but never connected to"],
        )
    )
