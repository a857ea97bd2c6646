"""4. Fan-out: one plan against a group of target databases, fan-out off against on, 1/2/4 processes.

The targets are real databases on the bench's PostgreSQL server (each a copy of a small template
with an analyzed `items` table), registered in a project and selected by a CEL group
(`resource.database_name.startsWith(...)`). The plan is one-statement SQL against the group.

* off: PLANCHECK_CHUNK_SIZE = number of targets, so the run is one task checking every target in
  sequence;
* on: PLANCHECK_CHUNK_SIZE = targets / 10, so the run fans out into 10 chunk tasks.

Twice: with the targets reached directly (on this machine, where checking a target is CPU work
shared with PostgreSQL on the same cores), then with the same databases registered once more as
instance "remote", reached through `bench/netdelay.py`, a proxy adding 5 ms each way, as a target
in another region would (there a check mostly waits on round trips).

"Worker processes" = the prefork pool size of one `celery worker` (-c 1, 2, 4); a beat runs too.
Each configuration gets fresh worker processes, one untimed warm-up plan, then timed plans: wall
time from `create_plan` (client) to the run's terminal status seen by polling PostgreSQL every 10 ms.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bench.common import (
    CHEAP_SQL,
    REPO_ROOT,
    Proc,
    Servers,
    check_alive,
    cluster,
    deployment,
    emit,
    progress,
    table,
    wait_ready,
)
from bench.netdelay import delayed_proxy
from bench.overhead import task_times


def fan_out_landed() -> bool:
    """Whether plancheck's scheduler reads PLANCHECK_CHUNK_SIZE (the fan-out implementation)."""
    sources = (REPO_ROOT / "plancheck" / "scheduler").glob("*.py")
    return any(re.search(r"chunk_size", Path(path).read_text()) for path in sources)


def _timed_plan(api: object, project: str, group: str, targets: int, alive: Sequence[Proc] = (),
                timeout: float = 600) -> float:
    t0 = time.perf_counter()
    plan_id = api.create_plan(project, CHEAP_SQL, group=group)  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while True:
        checks = api.checks(plan_id)  # type: ignore[attr-defined]
        if checks.finished:
            break
        check_alive(alive)
        if time.monotonic() > deadline:
            raise RuntimeError(f"plan {plan_id} not finished after {timeout}s")
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    if checks.status != "DONE" or checks.targets_done != targets:
        raise RuntimeError(
            f"plan {plan_id}: {checks.status}, {checks.targets_done}/{targets} targets ({checks.reason})"
        )
    return elapsed


ONE_WAY_MS = 5.0  # the "remote" targets: 10 ms round trips, as to a database in another region


@dataclass
class Measured:
    seconds: dict[tuple[str, int], list[float]]
    tasks: dict[tuple[str, int], dict[str, list[float]]]


def run(servers: Servers, quick: bool) -> None:
    targets = 40 if quick else 200
    worker_counts = [1, 2, 4]
    landed = fan_out_landed()
    modes = [("off", targets), ("on", max(1, targets // 10))] if landed else [("off", targets)]
    prefix = f"pcb_fan_{int(time.time()) % 100000}_"
    progress(f"fanout: creating {targets} target databases")
    t0 = time.monotonic()
    with deployment(servers, "fan", targets=targets, target_prefix=prefix) as dep:
        setup_seconds = time.monotonic() - t0
        api = dep.api()
        api.create_group(dep.project, "local",
                         f'resource.instance_id == "local" && resource.database_name.startsWith("{prefix}")')
        measured = {"local": _measure(servers, dep, api, "local", targets, worker_counts, modes)}
        if landed:
            with delayed_proxy(_upstream(servers, dep), ONE_WAY_MS) as port:
                _register_remote(servers, dep, port)
                api.create_group(dep.project, "remote", 'resource.instance_id == "remote"')
                measured["remote"] = _measure(servers, dep, api, "remote", targets, worker_counts, modes)
        servers.flush_redis()
        teardown_start = time.monotonic()
    teardown_seconds = time.monotonic() - teardown_start
    setup = (f"{targets} target databases (created in {setup_seconds:.0f} s, dropped in {teardown_seconds:.0f} s); "
             "one timed plan per cell after one warm-up plan")
    for network, result in measured.items():
        where = ("on this machine" if network == "local"
                 else f"behind a proxy adding {ONE_WAY_MS:.0f} ms each way (10 ms round trips)")
        _emit(result, f"{targets} targets {where}", targets, worker_counts, modes, landed, setup)


def _measure(
    servers: Servers, dep: Any, api: Any, group: str, targets: int, worker_counts: Sequence[int],
    modes: Sequence[tuple[str, int]],
) -> Measured:
    measured = Measured({}, {})
    for workers in worker_counts:
        for mode, chunk in modes:
            progress(f"fanout: {group} targets, {mode}, -c {workers}")
            servers.flush_redis()
            with cluster(dep.env(PLANCHECK_CHUNK_SIZE=str(chunk))) as running:
                worker = running.worker("w1", workers)
                running.beat()
                wait_ready([worker])
                # warm-up: pool processes connect, import
                _timed_plan(api, dep.project, group, targets, running.processes)
                time.sleep(0.3)
                offset = len(worker.log())
                measured.seconds[(mode, workers)] = [_timed_plan(api, dep.project, group, targets, running.processes)]
                time.sleep(0.3)
                measured.tasks[(mode, workers)] = task_times(worker.log()[offset:])
    return measured


def _upstream(servers: Servers, dep: Any) -> tuple[str, int] | str:
    """Where the target server listens: (host, port), or the Unix socket path of an embedded server."""
    url = make_url(servers.url_for(dep.targets[0].split("/", 1)[1]))
    host = str(url.query.get("host") or url.host or "127.0.0.1")
    port = url.port or 5432
    return f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)


def _register_remote(servers: Servers, dep: Any, port: int) -> None:
    """The same target databases once more, as instance "remote", reached through the proxy."""
    from plancheck.store import catalog

    url = make_url(servers.url_for(dep.targets[0].split("/", 1)[1])).set(host="127.0.0.1", port=port, query={})
    names = [target.split("/", 1)[1] for target in dep.targets]
    with dep.engine().begin() as conn:
        instance_id = catalog.add_instance(conn, "remote", url.render_as_string(hide_password=False), None, "test")
        catalog.register_databases(conn, instance_id, names, "test", dep.project_id)


def _emit(
    measured: Measured, what: str, targets: int, worker_counts: Sequence[int], modes: Sequence[tuple[str, int]],
    landed: bool, setup: str,
) -> None:
    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    results, tasks = measured.seconds, measured.tasks
    rows = []
    base_on = mean(results[("on", 1)]) if landed else None
    for workers in worker_counts:
        off = mean(results[("off", workers)])
        row: list[object] = [workers, off, targets / off]
        if landed:
            on = mean(results[("on", workers)])
            row += [on, targets / on, off / on, base_on / on, base_on / on / workers]  # type: ignore[operator]
        rows.append(row)
    headers = ["processes", "off s", "off targets/s"]
    if landed:
        headers += ["on s", "on targets/s", "on vs off", "on vs on@1", "per process"]
    notes = [
        setup,
        f"off: PLANCHECK_CHUNK_SIZE={targets} (one task); "
        + (f"on: PLANCHECK_CHUNK_SIZE={modes[1][1]} ({-(-targets // modes[1][1])} chunk tasks)" if landed else
           "on: NOT MEASURED: fan-out has not landed (no chunk_size in plancheck/scheduler/*.py)"),
        "per process = (on@1 / on@N) / N: 1.0 is linear scaling",
    ]
    emit(table(f"fan-out: one plan, {what}, wall time create -> DONE", headers, rows, notes))
    detail = []
    for workers in worker_counts:
        for mode, _ in modes:
            times = tasks[(mode, workers)]
            runs_ = times.get("plancheck.run", [])
            chunks = times.get("plancheck.run_chunk", [])
            detail.append([mode, workers, ", ".join(f"{v:.2f}" for v in results[(mode, workers)]),
                           len(runs_), sum(runs_) / len(runs_) * 1000 if runs_ else 0.0,
                           len(chunks), sum(chunks) / len(chunks) * 1000 if chunks else 0.0,
                           (sum(runs_) + sum(chunks)) / targets * 1000])
    emit(table(f"fan-out: {what}: timed plans and the tasks they ran (celery's 'succeeded in')",
               ["mode", "processes", "seconds", "run tasks", "run ms", "chunk tasks", "chunk ms", "task ms/target"],
               detail,
               ["task ms/target = time inside run + run_chunk tasks / targets (process time, summed over processes)"]))
