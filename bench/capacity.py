"""8. Capacity: a saturated cluster drains its backlog without reaping or retrying anything.

Claims send work only to free worker slots, and a fanned-out run's chunks carry leases of their
own, so work that merely waits (an AVAILABLE chunk, a run behind busy workers) holds no lease that
could lapse. This benchmark loads a cluster the way the chaos suite's saturation scenario does and
measures it:

* 2 workers of 4 pool processes (8 slots) and one beat; PLANCHECK_LEASE_SECONDS=3, heartbeat
  0.5 s, claim and reap every 0.5 s, PLANCHECK_CHUNK_SIZE=1;
* slow targets: 8 target databases reached through bench/netdelay.py at 25 ms each way, checked
  with a script of 10 UPDATEs (one EXPLAIN each): about 2 s per target, almost all of it
  waiting on round trips, so 8 pool processes fit on 2 cores;
* a fanned-out plan = that script on the 8 slow targets: 8 chunks of one target each;
* small plans = one-statement SQL on one target on this machine, created by a client on a fixed
  open-loop schedule (4 plans/s).

On one cluster, after a warm-up plan, two phases:

1. idle: the small plans alone, for the baseline;
2. saturated: 12 fanned-out plans at once (96 chunks: the last wait far longer than the lease),
   then the same stream of small plans.

Everything is read from PostgreSQL (plan_check_run, plan_check_attempt: server clock), except the
reaps, read from the beat's and workers' "reaped" log lines. Drain = first create to the last run
terminal. Waited = created -> claimed for runs; for a chunk, the run's fan-out (its start) ->
claimed. Claim -> start = the message's trip: publish, queue, pick-up by a pool process, start
statement. Slot use = execution time of runs and chunks / (drain time x slots).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT

from bench.common import (
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
from bench.latency import offer_plans
from bench.netdelay import delayed_proxy

SLOW_SQL = "".join(f"UPDATE items SET price = price + 1 WHERE id = {i};\n" for i in range(1, 11))
ONE_WAY_MS = 25.0
WORKERS, SLOTS_EACH = 2, 4
STREAM_RATE = 4.0  # small plans per second
SETTINGS = {
    "PLANCHECK_LEASE_SECONDS": "3",
    "PLANCHECK_HEARTBEAT_SECONDS": "0.5",
    "PLANCHECK_CLAIM_INTERVAL": "0.5",
    "PLANCHECK_REAP_INTERVAL": "0.5",
    "PLANCHECK_CHUNK_SIZE": "1",
}

# Every execution of the plans' current runs; a chunk's wait starts at its run's own start (the fan-out).
_EXECUTIONS = text(
    """
    SELECT r.plan_id, r.status, a.chunk, a.outcome,
           extract(epoch FROM a.claimed_at - CASE WHEN a.chunk IS NULL THEN r.created_at ELSE own.started_at END)
               AS waited_s,
           extract(epoch FROM a.started_at - a.claimed_at) * 1000 AS hop_ms,
           extract(epoch FROM a.finished_at - a.started_at) AS run_s
    FROM plan_check_run r
    JOIN plan_check_attempt a ON a.run_id = r.id AND a.generation = r.generation
    LEFT JOIN plan_check_attempt own ON own.run_id = r.id AND own.generation = r.generation AND own.chunk IS NULL
                                        AND own.attempt = r.attempt
    WHERE r.plan_id = ANY(:ids)
    """
).bindparams(bindparam("ids", type_=ARRAY(BIGINT)))

_TERMINAL = text(
    "SELECT count(*) FROM plan_check_run WHERE plan_id = ANY(:ids) AND status IN ('DONE', 'FAILED', 'CANCELED')"
).bindparams(bindparam("ids", type_=ARRAY(BIGINT)))

_STATUSES = text("SELECT status, count(*) FROM plan_check_run WHERE plan_id = ANY(:ids) GROUP BY status").bindparams(
    bindparam("ids", type_=ARRAY(BIGINT))
)

_REAPED = re.compile(r"(?<!chunk )\breaped run_id=")
_CHUNK_REAPED = re.compile(r"\bchunk reaped run_id=")


@dataclass
class Phase:
    """One phase's plans and what became of them."""

    name: str
    fanned_out: list[int] = field(default_factory=list)
    small: list[int] = field(default_factory=list)
    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    executions: list[Any] = field(default_factory=list)
    reaped_runs: int = 0
    reaped_chunks: int = 0

    @property
    def plans(self) -> list[int]:
        return self.fanned_out + self.small


def _create_fanned_out(api: Any, dep: Deployment, targets: Sequence[str], count: int) -> list[int]:
    return [api.create_plan(dep.project, SLOW_SQL, targets=list(targets)) for _ in range(count)]


def _run_phase(
    phase: Phase,
    api: Any,
    dep: Deployment,
    slow: Sequence[str],
    fanned_out: int,
    stream_seconds: float,
    processes: Sequence[Proc],
) -> None:
    """Create the phase's plans (fanned-out ones first, then the stream) and wait until all are terminal."""
    progress(f"capacity: {phase.name}: {fanned_out} fanned-out plans, small plans for {stream_seconds:.0f} s")
    offsets = {proc.name: len(proc.log()) for proc in processes}
    started = time.monotonic()
    phase.fanned_out = _create_fanned_out(api, dep, slow, fanned_out)
    phase.small, _, _ = offer_plans(api, dep, STREAM_RATE, stream_seconds)
    engine = dep.engine()

    def terminal() -> bool:
        with engine.connect() as conn:
            return int(conn.execute(_TERMINAL, {"ids": phase.plans}).scalar_one()) == len(phase.plans)

    phase.seconds = (
        wait_for(terminal, timeout=600, interval=0.05, what=f"{phase.name} plans to end", alive=processes) - started
    )
    time.sleep(0.5)  # the last log lines
    logged = "".join(proc.log()[offsets.get(proc.name, 0) :] for proc in processes)
    phase.reaped_runs = len(_REAPED.findall(logged))
    phase.reaped_chunks = len(_CHUNK_REAPED.findall(logged))
    with engine.connect() as conn:
        phase.statuses = {row[0]: int(row[1]) for row in conn.execute(_STATUSES, {"ids": phase.plans})}
        phase.executions = list(conn.execute(_EXECUTIONS, {"ids": phase.plans}))


def run(servers: Servers, quick: bool) -> None:
    fanned_out = 6 if quick else 12
    stream_seconds = 5.0 if quick else 10.0
    slots = WORKERS * SLOTS_EACH
    with deployment(servers, "cap", targets=8) as dep, delayed_proxy(dep.upstream(), ONE_WAY_MS) as port:
        slow = dep.register_behind_proxy("remote", port)
        servers.flush_redis()
        with cluster(dep.env(**SETTINGS)) as running:
            workers = [running.worker(f"w{i + 1}", SLOTS_EACH) for i in range(WORKERS)]
            running.beat()
            wait_ready(workers)
            dep.wait_for_slots(slots, running.processes)
            api = dep.api()
            _run_phase(Phase("warm-up"), api, dep, slow, 1, 1.0, running.processes)
            idle = Phase("idle: small plans alone")
            _run_phase(idle, api, dep, slow, 0, stream_seconds, running.processes)
            saturated = Phase("saturated: fanned-out + small plans")
            _run_phase(saturated, api, dep, slow, fanned_out, stream_seconds, running.processes)
        servers.flush_redis()
    _emit([idle, saturated], slots, stream_seconds)


FANNED_OUT_RUN = "fanned-out runs (own execution)"


def _kind(row: Any, phase: Phase) -> str:
    if row.chunk is not None:
        return "chunks"
    return FANNED_OUT_RUN if row.plan_id in phase.fanned_out else "small runs"


def _emit(phases: list[Phase], slots: int, stream_seconds: float) -> None:
    lease = float(SETTINGS["PLANCHECK_LEASE_SECONDS"])
    rows = []
    for phase in phases:
        chunks = [row for row in phase.executions if row.chunk is not None]
        busy = sum(
            float(row.run_s)
            for row in phase.executions
            if _kind(row, phase) != FANNED_OUT_RUN and row.run_s is not None
        )
        lost_runs = sum(row.outcome == "LOST" and row.chunk is None for row in phase.executions)
        lost_chunks = sum(row.outcome == "LOST" for row in chunks)
        not_done = sum(count for status, count in phase.statuses.items() if status != "DONE")
        rows.append(
            [
                phase.name,
                len(phase.fanned_out),
                len(phase.small),
                len(chunks),
                phase.seconds,
                busy / (phase.seconds * slots) * 100,
                not_done,
                phase.reaped_runs + lost_runs,
                phase.reaped_chunks + lost_chunks,
            ]
        )
    saturated = phases[-1]
    longest = {
        kind: max(
            (float(row.waited_s) for row in saturated.executions if (row.chunk is not None) == chunk), default=0.0
        )
        for kind, chunk in (("run", False), ("chunk", True))
    }
    clean = all(row[6] == row[7] == row[8] == 0 for row in rows)
    emit(
        table(
            f"capacity: a saturated backlog, {WORKERS} workers x {SLOTS_EACH} slots, lease {lease:g} s, chunk size 1",
            [
                "phase",
                "fanned-out plans",
                "small plans",
                "chunks",
                "drain s",
                "slot use %",
                "runs not DONE",
                "runs reaped",
                "chunks retried",
            ],
            rows,
            [
                f"fanned-out plan: {len(SLOW_SQL.splitlines())} UPDATEs on 8 targets behind a proxy adding "
                f"{ONE_WAY_MS:g} ms each way (8 chunks); small plans: one statement on a local target, "
                f"{STREAM_RATE:g}/s for {stream_seconds:g} s",
                f"longest wait for a slot: {longest['run']:.1f} s for a run ({longest['run'] / lease:.1f}x the lease), "
                f"{longest['chunk']:.1f} s for a chunk ({longest['chunk'] / lease:.1f}x): waiting work holds no lease",
                "runs reaped / chunks retried = 'reaped' log lines of beat and workers + LOST executions in "
                "plan_check_attempt; both must be 0 without faults: " + ("0 in every phase" if clean else "NOT 0"),
                "slot use % = execution time of small runs and chunks / (drain s x slots)",
            ],
        )
    )
    detail = []
    for phase in phases:
        kinds: dict[str, list[Any]] = {}
        for row in phase.executions:
            kinds.setdefault(_kind(row, phase), []).append(row)
        for kind in ("small runs", FANNED_OUT_RUN, "chunks"):
            found = kinds.get(kind, [])
            if not found:
                continue
            waited = [float(row.waited_s) for row in found]
            hops = [float(row.hop_ms) for row in found]
            ran = [float(row.run_s) * 1000 for row in found if row.run_s is not None]
            detail.append(
                [
                    phase.name,
                    kind,
                    len(found),
                    percentile(waited, 50),
                    percentile(waited, 95),
                    max(waited),
                    percentile(hops, 50),
                    percentile(hops, 95),
                    percentile(hops, 99),
                    max(hops),
                    percentile(ran, 50) if kind != FANNED_OUT_RUN else "-",
                ]
            )
    small = {
        phase.name: [float(row.hop_ms) for row in phase.executions if _kind(row, phase) == "small runs"]
        for phase in phases
    }
    idle_hop, saturated_hop = (percentile(values, 50) for values in small.values())
    emit(
        table(
            "capacity: waiting for a slot, and claim -> start, per kind of execution",
            [
                "phase",
                "executions of",
                "n",
                "waited p50 s",
                "p95 s",
                "max s",
                "claim->start p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "execution p50 ms",
            ],
            detail,
            [
                "waited = created -> claimed (runs) or the run's fan-out -> claimed (chunks): time in PostgreSQL "
                "waiting for a free slot, which holds no lease",
                "claim->start = the run or chunk message: publish, queue, pick-up by a pool process, start transaction",
                f"small runs' claim->start p50, saturated / idle: {saturated_hop / idle_hop:.2f} "
                f"({saturated_hop:.1f} / {idle_hop:.1f} ms)",
                "a fanned-out run's own execution only stores its chunks; it stays open until the last chunk ends",
            ],
        )
    )
