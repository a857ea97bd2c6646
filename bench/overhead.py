"""1. Overhead: end-to-end plan check runs per second against raw Celery no-op tasks per second.

Both sides use the same broker (Redis db of the bench), the same Celery settings (bench.noop_app loads
celeryconfig.py), the same pool and concurrency, and real `celery worker` subprocesses, each side on
a queue of its own. Each side's work is waiting before its worker starts; the clock starts when the
worker logs "ready." and stops when the work is done:

* no-op: N `bench.noop` messages published up front; done = the Redis queue and the unacked hash
  are both empty (every message executed and acked);
* plancheck: N plans with an AVAILABLE run each (one target, one-statement SQL). Claims send work
  only to free worker slots, so nothing can be claimed before the worker records its slots: the
  worker's own start-up claim takes the first runs, every finishing run claims the next, and a
  beat runs too (as deployed). Done = N runs DONE in PostgreSQL.
* bookkeeping only: the plancheck backlog again, with workers of `bench.bookkeeping_app`, whose
  check returns one constant result without opening the target: what claim, start, load, fenced
  writes, finish and relay cost apart from the check.
* plancheck via the API: workers already running, one client thread calls `create_plan` N times
  as fast as it can (each claims and publishes at once); clock from the first call to the last DONE.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import redis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.common import (
    CHEAP_SQL,
    Servers,
    cluster,
    deployment,
    emit,
    percentile,
    plancheck_env,
    progress,
    table,
    wait_for,
    wait_ready,
)

_SUCCEEDED = re.compile(r"Task ([\w.]+)\[[^\]]+\] succeeded in ([0-9.e-]+)s")


# Claim -> start of every execution so far: how long a claimed slot waits for its message.
_HOPS = text("SELECT extract(epoch FROM started_at - claimed_at) * 1000 FROM plan_check_attempt")


def claim_to_start_ms(dep: Any) -> list[float]:
    with dep.engine().connect() as conn:
        return [float(ms) for ms in conn.execute(_HOPS).scalars()]


# What the metadata database's backends are doing, one sample: (state, wait event or 'on CPU', count).
_ACTIVITY = """
    SELECT state, coalesce(wait_event_type || ': ' || wait_event, 'on CPU'), count(*)
    FROM pg_stat_activity
    WHERE datname = %s AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')
    GROUP BY 1, 2
"""
SAMPLES = "(samples)"


@contextmanager
def sampled_activity(dep: Any, interval: float = 0.01) -> Iterator[Counter[str]]:
    """Sample the metadata database's busy backends (pg_stat_activity) every `interval` s while the
    block runs: per 'state / wait event', the backends seen, summed over samples (SAMPLES: how many)."""
    seen: Counter[str] = Counter()
    stop = threading.Event()
    database = make_url(dep.metadata_url).database

    def sample() -> None:
        with psycopg.connect(dep.servers.libpq(dep.metadata_url), autocommit=True) as conn:
            while not stop.wait(interval):
                for state, doing, count in conn.execute(_ACTIVITY, (database,)):
                    seen[f"{state} / {doing}"] += count
                seen[SAMPLES] += 1

    sampler = threading.Thread(target=sample, name="bench-activity", daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        stop.set()
        sampler.join(10)


def task_times(log: str) -> dict[str, list[float]]:
    """Execution time of every task the worker logged as succeeded, by task name."""
    times: dict[str, list[float]] = defaultdict(list)
    for name, seconds in _SUCCEEDED.findall(log):
        times[name].append(float(seconds))
    return times


def _noop(servers: Servers, count: int, concurrency: int, pool: str) -> tuple[float, dict[str, list[float]]]:
    from bench.noop_app import app, noop

    servers.flush_redis()
    client = redis.Redis.from_url(servers.redis_url)
    queue = f"pcb-noop-{uuid.uuid4().hex[:8]}"
    # Loading the queue is not timed; no task-sent events from this publisher (workers keep theirs).
    app.conf.task_send_sent_event = False
    with app.connection_for_write(servers.redis_url) as connection, app.producer_or_acquire() as producer:
        del connection
        for _ in range(count):
            noop.apply_async(producer=producer, queue=queue)
    queued = client.llen(queue)
    if queued != count:
        raise RuntimeError(f"expected {count} queued no-op messages, found {queued}")
    env = plancheck_env("postgresql://unused@127.0.0.1/unused", servers.redis_url, PLANCHECK_QUEUE=queue)
    with cluster(env, app="bench.noop_app") as running:
        worker = running.worker("noop", concurrency, pool)
        started = wait_ready([worker])
        finished = wait_for(
            lambda: client.llen(queue) == 0 and client.hlen("unacked") == 0,
            timeout=600,
            interval=0.005,
            what="no-op queue to drain",
            alive=[worker],
        )
        time.sleep(0.2)  # let the log catch up
        times = task_times(worker.log())
    servers.flush_redis()
    return finished - started, times


@dataclass
class Backlog:
    """A drained backlog: seconds from ready to all DONE, task times, statuses, the metadata
    database's sampled activity and every execution's claim -> start."""

    seconds: float
    times: dict[str, list[float]]
    counts: dict[str, int]
    activity: Counter[str]
    hops: list[float]


@contextmanager
def _backlog_cluster(
    servers: Servers, dep: Any, count: int, concurrency: int, pool: str, app: str
) -> Iterator[tuple[Any, Any, Backlog]]:
    """`count` AVAILABLE runs stored before a worker of `app` starts (its start-up claim takes the first
    ones); yields the cluster (still running), its worker and what the backlog measured."""
    dep.insert_backlog(count)
    servers.flush_redis()
    with cluster(dep.env(), app=app) as running:
        worker = running.worker("w1", concurrency, pool)
        running.beat()
        with sampled_activity(dep) as activity:
            started = wait_ready([worker])
            finished = wait_for(
                lambda: dep.count_status("DONE") >= count, timeout=900, what="runs DONE", alive=running.processes
            )
        counts = dep.status_counts()
        time.sleep(0.3)
        yield (
            running,
            worker,
            Backlog(finished - started, task_times(worker.log()), counts, activity, claim_to_start_ms(dep)),
        )


def _backlog(servers: Servers, dep: Any, count: int, concurrency: int, pool: str, app: str) -> Backlog:
    with _backlog_cluster(servers, dep, count, concurrency, pool, app) as (_, _, measured):
        pass
    servers.flush_redis()
    if measured.counts.get("DONE") != count:
        raise RuntimeError(f"not every run ended DONE: {measured.counts}")
    return measured


def run(servers: Servers, quick: bool) -> None:
    concurrency = len(os.sched_getaffinity(0))
    pool = "prefork"
    noop_count = 1000 if quick else 5000
    plan_count = 300 if quick else 1000
    api_count = 150 if quick else 200

    progress(f"overhead: {noop_count} celery no-ops (-P {pool} -c {concurrency})")
    noop_seconds, noop_times = _noop(servers, noop_count, concurrency, pool)
    noop_rate = noop_count / noop_seconds

    with deployment(servers, "ovh") as dep:
        progress(f"overhead: {plan_count} runs, check replaced by a constant (bench.bookkeeping_app)")
        bookkeeping = _backlog(servers, dep, plan_count, concurrency, pool, "bench.bookkeeping_app")
        bookkeeping_seconds, bookkeeping_times = bookkeeping.seconds, bookkeeping.times
        dep.reset_history()
        progress(f"overhead: {plan_count} plancheck runs from a backlog")
        with _backlog_cluster(servers, dep, plan_count, concurrency, pool, "plancheck") as (running, worker, backlog):
            backlog_seconds, times, counts = backlog.seconds, backlog.times, backlog.counts
            log = worker.log()
            api = dep.api()

            progress(f"overhead: {api_count} plans through Plancheck.create_plan")
            dep.reset_history()
            create_seconds: list[float] = []
            first = time.monotonic()
            for _ in range(api_count):
                t0 = time.perf_counter()
                api.create_plan(dep.project, CHEAP_SQL, targets=[dep.targets[0]])
                create_seconds.append(time.perf_counter() - t0)
            api_finished = wait_for(
                lambda: dep.count_status("DONE") >= api_count,
                timeout=900,
                what="API runs DONE",
                alive=running.processes,
            )
            api_seconds = api_finished - first
            api_counts = dep.status_counts()
            time.sleep(0.3)
            api_times = task_times(worker.log()[len(log) :])  # what was logged after the backlog phase
        servers.flush_redis()

    if counts.get("DONE") != plan_count or api_counts.get("DONE") != api_count:
        raise RuntimeError(f"not every run ended DONE: {counts} / {api_counts}")
    plan_rate = plan_count / backlog_seconds
    api_rate = api_count / api_seconds

    def tasks(times_: dict[str, list[float]]) -> int:
        return sum(len(v) for v in times_.values())

    rows = [
        [
            "celery no-op (bench.noop_app)",
            noop_count,
            tasks(noop_times),
            noop_seconds,
            noop_rate,
            tasks(noop_times) / noop_seconds,
            1.0,
        ],
        [
            "plancheck, backlog + 1 claim",
            plan_count,
            tasks(times),
            backlog_seconds,
            plan_rate,
            tasks(times) / backlog_seconds,
            plan_rate / noop_rate,
        ],
        [
            "plancheck, API create_plan loop",
            api_count,
            tasks(api_times),
            api_seconds,
            api_rate,
            tasks(api_times) / api_seconds,
            api_rate / noop_rate,
        ],
        [
            "bookkeeping only (check = constant)",
            plan_count,
            tasks(bookkeeping_times),
            bookkeeping_seconds,
            plan_count / bookkeeping_seconds,
            tasks(bookkeeping_times) / bookkeeping_seconds,
            plan_count / bookkeeping_seconds / noop_rate,
        ],
    ]
    emit(
        table(
            f"overhead: runs per second vs celery no-ops (-P {pool} -c {concurrency}, same broker and celeryconfig)",
            ["workload", "items", "tasks", "seconds", "items/s", "tasks/s", "ratio vs no-op"],
            rows,
            [
                f"goal: plancheck/no-op >= 0.8; measured {plan_rate / noop_rate:.2f} (backlog), "
                f"{api_rate / noop_rate:.2f} (API)",
                "tasks = celery tasks the worker logged as succeeded (plancheck: one run per run, "
                "one relay per 0.25 s per process; claim, reap and relay on schedule run inside beat)",
                f"API phase: create_plan p50 "
                f"{sorted(create_seconds)[len(create_seconds) // 2] * 1000:.1f} ms client-side, "
                "one client thread",
                "bookkeeping only: the backlog phase with bench.bookkeeping_app, whose runs never open the target "
                "(claim, start, load, fenced writes, finish, relay)",
            ],
        )
    )

    def per_task(times_: dict[str, list[float]]) -> list[list[object]]:
        out = []
        for name in sorted(times_):
            values = sorted(times_[name])
            if not values:
                continue
            out.append(
                [
                    name,
                    len(values),
                    sum(values) / len(values) * 1000,
                    values[len(values) // 2] * 1000,
                    values[int(len(values) * 0.99) - 1 if len(values) > 1 else 0] * 1000,
                    sum(values),
                ]
            )
        return out

    emit(
        table(
            "overhead: time inside each task (celery's 'succeeded in', pool child), backlog phase",
            ["task", "count", "mean ms", "p50 ms", "p99 ms", "total s"],
            per_task(noop_times) + per_task(times),
            [
                f"wall time of the backlog phase: {backlog_seconds:.1f} s on {concurrency} pool processes "
                f"= {backlog_seconds * concurrency:.1f} process-seconds, "
                f"{sum(map(sum, times.values())) / (backlog_seconds * concurrency) * 100:.0f} % of them inside tasks",
                f"claim -> start (plan_check_attempt), backlog: p50 {percentile(backlog.hops, 50):.1f} ms, "
                f"p99 {percentile(backlog.hops, 99):.1f} ms; bookkeeping only: "
                f"p50 {percentile(bookkeeping.hops, 50):.1f} ms "
                "(the finishing run claims its successor for its freed slot only: the rest of its task, the broker "
                "and the hand-over to the pool process come between one run and the next)",
            ],
        )
    )
    emit(
        table(
            "overhead: what the metadata database's busy backends were doing (pg_stat_activity every 10 ms)",
            ["state / wait event", "backlog: backends", "bookkeeping only: backends"],
            _activity_rows(backlog.activity, bookkeeping.activity),
            [
                "backends = how many of the database's backends were in that state, on average over "
                "the phase's samples "
                f"({backlog.activity[SAMPLES]:,} and {bookkeeping.activity[SAMPLES]:,}); idle backends are left out",
                "Lock: advisory = a claim waiting for another claimer's transaction to end (claims take one advisory "
                "lock, so that no two count the same free slot)",
            ],
        )
    )


def _activity_rows(*phases: Counter[str]) -> list[list[object]]:
    """Mean backends per sample in each state, busiest first, one column per phase."""
    states = sorted(
        {state for phase in phases for state in phase if state != SAMPLES},
        key=lambda state: -sum(phase[state] / max(phase[SAMPLES], 1) for phase in phases),
    )
    return [[state, *(phase[state] / max(phase[SAMPLES], 1) for phase in phases)] for state in states]
