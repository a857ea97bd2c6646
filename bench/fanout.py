"""4. Fan-out: one plan against a group of target databases, fan-out off against on, 1/2/4 processes.

The targets are real databases on the bench's PostgreSQL server (each a copy of a small template
with an analyzed `items` table), registered in a project and selected by a CEL group
(`resource.database_name.startsWith(...)`). The plan is one-statement SQL against the group.

* off: PLANCHECK_CHUNK_SIZE = number of targets, so the run is one task checking every target in
  sequence;
* on: PLANCHECK_CHUNK_SIZE = targets / 10, so the run fans out into 10 chunks: rows of
  plan_check_chunk, claimed for free worker slots and executed as run_chunk tasks.

Twice: with the targets reached directly (on this machine, where checking a target is CPU work
shared with PostgreSQL on the same cores), then with the same databases registered once more as
instance "remote", reached through `bench/netdelay.py`, a proxy adding 5 ms each way, as a target
in another region would (there a check mostly waits on round trips).

"Worker processes" = the prefork pool size of one `celery worker` (-c 1, 2, 4); a beat runs too.
Each configuration gets fresh worker processes, one untimed warm-up plan, then timed plans: wall
time from `create_plan` (client) to the run's terminal status seen by polling PostgreSQL every 10 ms.
The chunks' executions (how many, how long, claim to start, retries) are read from
plan_check_attempt; the run task's own time from celery's "succeeded in" log lines.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from bench.common import (
    CHEAP_SQL,
    Proc,
    Servers,
    check_alive,
    cluster,
    deployment,
    emit,
    median,
    progress,
    table,
    wait_ready,
)
from bench.netdelay import delayed_proxy
from bench.overhead import task_times

# The executions of a plan's current run: the run's own (chunk NULL) and each chunk's, server clock.
_EXECUTIONS = text(
    """
    SELECT a.chunk, a.outcome,
           extract(epoch FROM a.finished_at - a.started_at) * 1000 AS run_ms,
           extract(epoch FROM a.started_at - a.claimed_at) * 1000 AS hop_ms
    FROM plan_check_attempt a JOIN plan_check_run r ON r.id = a.run_id AND a.generation = r.generation
    WHERE r.plan_id = :plan_id
    """
)


@dataclass
class Chunks:
    """A timed plan's chunk executions, from plan_check_attempt."""

    executions: int
    lost: int
    run_ms: list[float]
    hop_ms: list[float]


def _chunks(dep: Any, plan_id: int) -> Chunks:
    with dep.engine().connect() as conn:
        rows = [row for row in conn.execute(_EXECUTIONS, {"plan_id": plan_id}) if row.chunk is not None]
    return Chunks(
        len(rows),
        sum(row.outcome == "LOST" for row in rows),
        [float(row.run_ms) for row in rows if row.run_ms is not None],
        [float(row.hop_ms) for row in rows if row.hop_ms is not None],
    )


def _timed_plan(
    api: object, project: str, group: str, targets: int, alive: Sequence[Proc] = (), timeout: float = 600
) -> tuple[int, float]:
    """(plan id, seconds from create_plan to a terminal status); fails unless DONE with every target."""
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
    return plan_id, elapsed


ONE_WAY_MS = 5.0  # the "remote" targets: 10 ms round trips, as to a database in another region


@dataclass
class Measured:
    seconds: dict[tuple[str, int], list[float]]
    tasks: dict[tuple[str, int], dict[str, list[float]]]
    chunks: dict[tuple[str, int], Chunks]


def run(servers: Servers, quick: bool) -> None:
    targets = 40 if quick else 200
    worker_counts = [1, 2, 4]
    modes = [("off", targets), ("on", max(1, targets // 10))]
    prefix = f"pcb_fan_{int(time.time()) % 100000}_"
    progress(f"fanout: creating {targets} target databases")
    t0 = time.monotonic()
    with deployment(servers, "fan", targets=targets, target_prefix=prefix) as dep:
        setup_seconds = time.monotonic() - t0
        api = dep.api()
        api.create_group(
            dep.project, "local", f'resource.instance_id == "local" && resource.database_name.startsWith("{prefix}")'
        )
        measured = {"local": _measure(servers, dep, api, "local", targets, worker_counts, modes)}
        with delayed_proxy(dep.upstream(), ONE_WAY_MS) as port:
            dep.register_behind_proxy("remote", port)
            api.create_group(dep.project, "remote", 'resource.instance_id == "remote"')
            measured["remote"] = _measure(servers, dep, api, "remote", targets, worker_counts, modes)
        servers.flush_redis()
        teardown_start = time.monotonic()
    teardown_seconds = time.monotonic() - teardown_start
    setup = (
        f"{targets} target databases (created in {setup_seconds:.0f} s, dropped in {teardown_seconds:.0f} s); "
        "one timed plan per cell after one warm-up plan"
    )
    for network, result in measured.items():
        where = (
            "on this machine"
            if network == "local"
            else f"behind a proxy adding {ONE_WAY_MS:.0f} ms each way (10 ms round trips)"
        )
        _emit(result, f"{targets} targets {where}", targets, worker_counts, modes, setup)


def _measure(
    servers: Servers,
    dep: Any,
    api: Any,
    group: str,
    targets: int,
    worker_counts: Sequence[int],
    modes: Sequence[tuple[str, int]],
) -> Measured:
    measured = Measured({}, {}, {})
    for workers in worker_counts:
        for mode, chunk in modes:
            progress(f"fanout: {group} targets, {mode}, -c {workers}")
            servers.flush_redis()
            with cluster(dep.env(PLANCHECK_CHUNK_SIZE=str(chunk))) as running:
                worker = running.worker("w1", workers)
                running.beat()
                wait_ready([worker])
                dep.wait_for_slots(workers, running.processes)
                # warm-up: pool processes connect, import
                _timed_plan(api, dep.project, group, targets, running.processes)
                time.sleep(0.3)
                offset = len(worker.log())
                plan_id, seconds = _timed_plan(api, dep.project, group, targets, running.processes)
                measured.seconds[(mode, workers)] = [seconds]
                time.sleep(0.3)
                measured.tasks[(mode, workers)] = task_times(worker.log()[offset:])
                measured.chunks[(mode, workers)] = _chunks(dep, plan_id)
    return measured


def _emit(
    measured: Measured,
    what: str,
    targets: int,
    worker_counts: Sequence[int],
    modes: Sequence[tuple[str, int]],
    setup: str,
) -> None:
    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    results, tasks = measured.seconds, measured.tasks
    rows = []
    base_on = mean(results[("on", 1)])
    for workers in worker_counts:
        off = mean(results[("off", workers)])
        on = mean(results[("on", workers)])
        rows.append([workers, off, targets / off, on, targets / on, off / on, base_on / on, base_on / on / workers])
    notes = [
        setup,
        f"off: PLANCHECK_CHUNK_SIZE={targets} (one task); "
        f"on: PLANCHECK_CHUNK_SIZE={modes[1][1]} ({-(-targets // modes[1][1])} chunks)",
        "per process = (on@1 / on@N) / N: 1.0 is linear scaling",
    ]
    emit(
        table(
            f"fan-out: one plan, {what}, wall time create -> DONE",
            ["processes", "off s", "off targets/s", "on s", "on targets/s", "on vs off", "on vs on@1", "per process"],
            rows,
            notes,
        )
    )
    detail = []
    for workers in worker_counts:
        for mode, _ in modes:
            runs_ = tasks[(mode, workers)].get("plancheck.run", [])
            chunks = measured.chunks[(mode, workers)]
            detail.append(
                [
                    mode,
                    workers,
                    ", ".join(f"{v:.2f}" for v in results[(mode, workers)]),
                    len(runs_),
                    mean(runs_) * 1000,
                    chunks.executions,
                    mean(chunks.run_ms),
                    median(chunks.hop_ms) if chunks.hop_ms else 0.0,
                    chunks.lost,
                    (sum(runs_) * 1000 + sum(chunks.run_ms)) / targets,
                ]
            )
    emit(
        table(
            f"fan-out: {what}: the timed plans' executions",
            [
                "mode",
                "processes",
                "seconds",
                "run tasks",
                "run ms",
                "chunks run",
                "chunk ms",
                "chunk claim->start p50",
                "chunks retried",
                "ms/target",
            ],
            detail,
            [
                "run tasks, run ms: the plancheck.run task (celery's 'succeeded in'); it checks every target (off) "
                "or stores the chunks (on)",
                "chunks run, chunk ms, claim->start, retried: chunk executions in plan_check_attempt (server clock); "
                "retried = LOST",
                "ms/target = (run task time + chunk execution time) / targets, summed over processes",
            ],
        )
    )
