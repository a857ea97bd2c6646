"""2. Latency: create -> started at a steady offered load, dispatch-on-create against beat-only claiming.

One worker (prefork, -c nproc) and one beat run throughout. A client thread creates plans on a fixed
schedule (open loop: the k-th plan is due at start + k/rate, whatever the previous call took), one
target and one-statement SQL each. Three phases, one after the other, each waiting for its runs to
finish before the next:

* dispatch: `Plancheck.create_plan`, which stores the run, then claims and publishes the run message
  at once (beat 2 s);
* dispatch, light load: the same at 5 runs/s, for half as long: the path's latency without queueing;
* beat-only 2 s (half as long): the same API call with the dispatch switched off, claims come from beat only
  (PLANCHECK_CLAIM_INTERVAL=2, plancheck's default);
* beat-only 0.5 s: the same with a beat restarted at PLANCHECK_CLAIM_INTERVAL=0.5.

created = plan_check_run.created_at (the create transaction's now(), i.e. its start, server clock);
started = plan_check_attempt.started_at (the worker's start transaction's now(), same server clock).
The breakdown uses plan_check_run.claimed_at (claim transaction's now()). Who claimed each run comes
from the "claimed" log lines: beat's (its scheduled claim), the worker's (a finishing run claims
work for the slot it frees), the rest by the creating API call.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT

from bench.common import (
    CHEAP_SQL,
    Deployment,
    Proc,
    Servers,
    cluster,
    deployment,
    emit,
    percentile,
    progress,
    table,
    wait_for,
    wait_ready,
)
from bench.overhead import task_times

_TIMINGS = text(
    """
    SELECT extract(epoch FROM a.started_at - r.created_at) * 1000 AS start_ms,
           extract(epoch FROM r.claimed_at - r.created_at) * 1000 AS claim_ms,
           extract(epoch FROM a.started_at - r.claimed_at) * 1000 AS hop_ms,
           extract(epoch FROM r.finished_at - a.started_at) * 1000 AS check_ms,
           r.status
    FROM plan_check_run r JOIN plan_check_attempt a ON a.token = r.token
    WHERE r.plan_id = ANY(:ids)
    """
).bindparams(bindparam("ids", type_=ARRAY(BIGINT)))


def offer_plans(api: Any, dep: Deployment, rate: float, seconds: float) -> tuple[list[int], list[float], float]:
    """Create plans at `rate` per second for `seconds`; returns plan ids, client call times, achieved rate."""
    count = int(rate * seconds)
    ids: list[int] = []
    calls: list[float] = []
    start = time.monotonic()
    for k in range(count):
        due = start + k / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t0 = time.perf_counter()
        ids.append(api.create_plan(dep.project, CHEAP_SQL, targets=[dep.targets[0]]))
        calls.append(time.perf_counter() - t0)
    elapsed = time.monotonic() - start
    return ids, calls, count / max(elapsed, 1e-9)


def _measure(dep: Deployment, ids: list[int], alive: Sequence[Proc] = ()) -> dict[str, list[float]]:
    done = lambda: dep.count_status("DONE") + dep.count_status("FAILED") >= _finished_before[0] + len(ids)  # noqa: E731
    wait_for(done, timeout=120, interval=0.1, what="latency runs to finish", alive=alive)
    _finished_before[0] += len(ids)
    with dep.engine().connect() as conn:
        rows = conn.execute(_TIMINGS, {"ids": ids}).all()
    if len(rows) != len(ids) or any(row.status != "DONE" for row in rows):
        raise RuntimeError(f"expected {len(ids)} DONE runs with one attempt each, got {len(rows)}")
    return {
        "start": [float(r.start_ms) for r in rows],
        "claim": [float(r.claim_ms) for r in rows],
        "hop": [float(r.hop_ms) for r in rows],
        "check": [float(r.check_ms) for r in rows],
    }


_finished_before = [0]

_CLAIMED = re.compile(r"\bclaimed run_id=")


class _BeatOnly:
    """The API with its dispatch switched off: the run is stored AVAILABLE and waits for beat's claim."""

    def __init__(self, api: Any) -> None:
        self._api = api
        api._dispatch_claim = lambda: None

    def create_plan(self, *args: Any, **kwargs: Any) -> int:
        return self._api.create_plan(*args, **kwargs)


def run(servers: Servers, quick: bool) -> None:
    rate = 20.0
    seconds = 6.0 if quick else 20.0
    light = 5.0
    concurrency = len(os.sched_getaffinity(0))
    _finished_before[0] = 0
    results: list[tuple[str, dict[str, list[float]], list[float], float]] = []
    busy: list[list[object]] = []
    with deployment(servers, "lat") as dep:
        servers.flush_redis()
        with cluster(dep.env(PLANCHECK_CLAIM_INTERVAL="2")) as running:
            worker = running.worker("w1", concurrency)
            beat = running.beat("beat-2s")
            wait_ready([worker])
            dep.wait_for_slots(concurrency, running.processes)
            api = dep.api()
            beat_only = _BeatOnly(dep.api())

            def phase(name: str, client: Any, phase_rate: float, phase_seconds: float) -> None:
                progress(f"latency: {name}, {phase_rate:.0f}/s for {phase_seconds:.0f} s")
                offsets = {proc.name: len(proc.log()) for proc in running.processes}
                t0 = time.monotonic()
                ids, calls, achieved = offer_plans(client, dep, phase_rate, phase_seconds)
                results.append((name, _measure(dep, ids, running.processes), calls, achieved))
                elapsed = time.monotonic() - t0
                time.sleep(0.3)
                logged = {proc.name: proc.log()[offsets.get(proc.name, 0) :] for proc in running.processes}
                tasks = task_times(logged[worker.name])
                by_worker = len(_CLAIMED.findall(logged[worker.name]))
                by_beat = sum(len(_CLAIMED.findall(text_)) for proc, text_ in logged.items() if proc != worker.name)
                row: list[object] = [name, len(ids) - by_worker - by_beat, by_beat, by_worker]
                for task in ("plancheck.run", "plancheck.relay"):
                    values = tasks.get(task, [])
                    row += [len(values), sum(values) / len(values) * 1000 if values else 0.0]
                total = sum(sum(values) for values in tasks.values())
                row.append(total / elapsed / concurrency * 100)
                busy.append(row)

            progress("latency: warm-up (40 plans)")
            ids, _, _ = offer_plans(api, dep, rate, 2.0)
            _measure(dep, ids)
            phase("dispatch on create (beat 2 s)", api, rate, seconds)
            phase(f"dispatch on create, {light:.0f} runs/s", api, light, seconds / 2)
            phase("beat only, claim interval 2 s", beat_only, rate, seconds / 2)
            beat.stop()
            running.processes.remove(beat)
            running.env = dep.env(PLANCHECK_CLAIM_INTERVAL="0.5")
            running.beat("beat-0.5s")
            time.sleep(1.0)
            phase("beat only, claim interval 0.5 s", beat_only, rate, seconds / 2)
        servers.flush_redis()

    rows = []
    for name, timings, calls, achieved in results:
        start = timings["start"]
        rows.append(
            [
                name,
                len(start),
                achieved,
                percentile(start, 50),
                percentile(start, 95),
                percentile(start, 99),
                max(start),
                percentile([c * 1000 for c in calls], 50),
            ]
        )
    dispatch = results[0][1]["start"]
    met = percentile(dispatch, 50) < 10 and percentile(dispatch, 99) < 30
    emit(
        table(
            f"latency: created -> started, ms (offered {rate:.0f} runs/s unless named, "
            f"worker -P prefork -c {concurrency}, one beat)",
            ["variant", "runs", "runs/s", "p50", "p95", "p99", "max", "create call p50"],
            rows,
            [
                "created = plan_check_run.created_at (create transaction start), started = "
                "plan_check_attempt.started_at",
                "runs/s = the rate the client achieved (open loop); "
                "a p50 of seconds means the cluster fell behind the offered load",
                f"goal with dispatch at {rate:.0f}/s: p50 < 10 ms and p99 < 30 ms: {'met' if met else 'NOT met'}",
            ],
        )
    )
    rows = []
    for name, timings, _, _ in results:
        rows.append(
            [
                name,
                percentile(timings["claim"], 50),
                percentile(timings["claim"], 99),
                percentile(timings["hop"], 50),
                percentile(timings["hop"], 99),
                percentile(timings["check"], 50),
                percentile(timings["check"], 99),
            ]
        )
    emit(
        table(
            "latency breakdown, ms: created -> claimed -> started -> finished",
            ["variant", "claim p50", "claim p99", "claim->start p50", "p99", "start->finish p50", "p99"],
            rows,
            [
                "claim = claimed_at - created_at (the create transaction's own duration, then the claim: "
                "by the API on dispatch, by beat or a finishing run otherwise)",
                "claim->start = the run message: publish, queue, pick-up by a pool process, start transaction",
            ],
        )
    )
    emit(
        table(
            "latency: who claimed each phase's runs, the tasks it ran (celery's 'succeeded in'), how busy the pool was",
            [
                "variant",
                "by API",
                "by beat",
                "by a finishing run",
                "runs",
                "run ms",
                "relays",
                "relay ms",
                "pool busy %",
            ],
            busy,
            [
                "by beat / by a finishing run: 'claimed' log lines of beat and of the worker; by "
                "API = the phase's runs "
                "less those",
                "pool busy % = time inside tasks / (phase wall time x pool processes), from the "
                "phase's first create until "
                "its last run finished; near 100 % the queue grows",
            ],
        )
    )
