"""7. Profile: where one run's time goes inside a worker (no Celery), and what loading a plan costs.

The cheapest real run (one target, one-statement SQL) is executed in this process the way the run
task does it: `runner.execute(run_id, token, worker, settings)` for a claimed run (following the
run it hands on, if any), and `followups.relay` once per 0.25 s, as a worker's debounced relay
would. First without a profiler (wall ms per run), then under cProfile: the cumulative time of
plancheck's and the drivers' main functions per run. The counts of metadata-database statements,
transactions and pool pre-pings per run come from SQLAlchemy events and cProfile call counts.

The second table times `load_work` (which every run, and every chunk of a fanned-out run, calls in
its start transaction) for one target, 200 explicit targets and a 200-database CEL group; the
third profiles `Plancheck.create_plan`, the client side of dispatch-on-create.
"""

from __future__ import annotations

import cProfile
import pstats
import time
import types
from collections import deque
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, text

from bench.common import CHEAP_SQL, Deployment, Servers, deployment, emit, median, progress, table

# (label, file suffix, function name): cumulative time per run is summed over matching entries.
_PIECES = [
    ("runner.execute (whole run, in-process)", "plancheck/scheduler/runner.py", "execute"),
    ("  runs.start (+ attempt row)", "plancheck/store/runs.py", "start"),
    ("  load_work (plan, project, databases, sheet)", "plancheck/domain/targets.py", "load_work"),
    ("  runs.set_targets_total", "plancheck/store/runs.py", "set_targets_total"),
    ("  Lease enter + exit (heartbeat thread)", "plancheck/scheduler/lease.py", "__enter__|__exit__"),
    ("  check_target (target session + checks)", "plancheck/checks/__init__.py", "check_target"),
    ("    psycopg.connect to the target", "plancheck/checks/session.py", "_connect"),
    ("    idle connection taken (+ liveness SELECT)", "plancheck/checks/session.py", "_take_alive"),
    ("    read-only proof", "plancheck/checks/session.py", "verify_read_only"),
    ("    parse (once, shared by review and summary)", "plancheck/checks/advise.py", "parse"),
    ("    review (SQL review rules)", "plancheck/checks/advise.py", "review"),
    ("    summarize (summary report)", "plancheck/checks/summary.py", "summarize"),
    ("    rollback (connection kept idle)", "plancheck/checks/session.py", "_rolled_back"),
    ("  runs.add_results", "plancheck/store/runs.py", "add_results"),
    ("  runs.finish (+ outbox rows)", "plancheck/store/runs.py", "finish"),
    ("  runs.claim (hand-on claim in finish)", "plancheck/store/runs.py", "claim"),
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
    ("    runs.claim", "plancheck/store/runs.py", "claim"),
    ("    run.apply_async", "celery/app/task.py", "apply_async"),
    ("    redis connect (new socket)", "redis/connection.py", "connect"),
]


def _drive(dep: Deployment, count: int, settings: Any, profiler: cProfile.Profile | None) -> float:
    from plancheck.scheduler import runner
    from plancheck.scheduler.tasks import RELAY_DELAY
    from plancheck.store import followups, runs

    engine = dep.engine()
    dep.insert_backlog(count)
    queue: deque[Any] = deque()
    done = 0
    t0 = last_relay = time.perf_counter()
    if profiler:
        profiler.enable()
    while done < count:
        if not queue:
            with engine.begin() as conn:
                queue.extend(runs.claim(conn, 1, settings.lease_seconds))
            if not queue:
                raise RuntimeError("nothing to claim")
        item = queue.popleft()
        outcome = runner.execute(item.id, str(item.token), "bench@profile:1", settings)
        status = getattr(outcome, "status", outcome)
        if status != "DONE":
            raise RuntimeError(f"run {item.id} ended {status}")
        queue.extend(getattr(outcome, "handoff", None) or [])
        if time.perf_counter() - last_relay >= RELAY_DELAY:  # as a worker process's debounced relay
            with engine.begin() as conn:
                followups.relay(conn, settings.claim_batch)
            last_relay = time.perf_counter()
        done += 1
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - t0
    for item in queue:  # a handed-on run left over: give it back
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


def _counting(engine: Any) -> Callable[[], tuple[int, int]]:
    counts = {"statements": 0, "commits": 0}

    def on_execute(*_: Any) -> None:
        counts["statements"] += 1

    def on_commit(*_: Any) -> None:
        counts["commits"] += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)

    def read() -> tuple[int, int]:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)
        return counts["statements"], counts["commits"]

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
        started = types.SimpleNamespace(plan_id=plan_id, id=0, token=None, attempt=1, generation=1, plan_version=1)
        times = []
        items = 0
        with engine.connect() as conn:
            for i in range(repeats + 2):
                t0 = time.perf_counter()
                work = load_work(conn, started)  # type: ignore[arg-type]
                if i >= 2:
                    times.append((time.perf_counter() - t0) * 1000)
                items = len(work.items)
            conn.rollback()
        rows.append([label, items, median(times), median(times) / max(items, 1)])
    return rows


def _create_costs(dep: Deployment, count: int) -> tuple[list[list[object]], float, float]:
    """Profile `create_plan` (the API path; its claim messages go to the bench's Redis db, no worker)."""
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
    with deployment(servers, "prof") as dep:
        settings = load_settings(dep.env())
        progress(f"profile: {count} runs in-process, no profiler")
        _drive(dep, 20, settings, None)  # warm-up: imports, pools, caches
        read_counts = _counting(dep.engine())
        plain = _drive(dep, count, settings, None)
        statements, commits = read_counts()
        progress(f"profile: {count} runs in-process under cProfile")
        profiler = cProfile.Profile()
        profiled = _drive(dep, count, settings, profiler)
        stats = pstats.Stats(profiler)
        load_rows = _load_work_costs(dep, 10 if quick else 30)
        progress("profile: create_plan")
        create_rows, create_plain, create_profiled = _create_costs(dep, 50 if quick else 200)
        servers.flush_redis()

    per_run = profiled / count * 1000
    rows = []
    for label, suffix, names in _PIECES:
        seconds, calls = _cumulative(stats, suffix, names)
        rows.append([label, seconds / count * 1000, seconds / profiled * 100, calls / count])
    emit(table(
        "profile: one run of the cheapest check, in-process (runner.execute + relay), per run",
        ["piece (cumulative)", "ms/run", "% of wall", "calls/run"],
        rows,
        [f"{count} runs: {plain / count * 1000:.2f} ms/run without profiler, {per_run:.2f} ms/run under cProfile",
         f"metadata database: {statements / count:.1f} statements and {commits / count:.1f} commits per run "
         "(claim, execute, relay; without profiler)",
         "indented rows are inside the row above; the 'all ...' rows cut across everything"],
    ))
    emit(table(
        "profile: Plancheck.create_plan (dispatch on create), per call",
        ["piece (cumulative)", "ms/call", "% of wall", "calls/call"],
        create_rows,
        [f"{create_plain:.2f} ms/call without profiler, {create_profiled:.2f} ms/call under cProfile"],
    ))
    emit(table(
        "profile: load_work per call (every run's start, and every chunk of a fanned-out run)",
        ["plan", "targets", "ms", "ms/target"],
        load_rows,
        ["catalog rows only: these 200 databases are registered but never connected to"],
    ))
