"""Chaos: real PostgreSQL, Redis, workers and beats; a steady stream of plans; one fault per test.

After each fault the test waits for quiet (every run terminal, no follow-up pending) and checks the
invariants with `check_invariants`: every run terminal, every DONE run with exactly one DONE attempt,
no result overwritten by a stale token, no claim executed twice, every follow-up applied once in
effect. Each test prints a summary row and appends it to the chaos report (`$CHAOS_REPORT`, or
`last-run.md` in pytest's base temp dir). Run with `pytest tests/chaos -s` to see the rows.

Settings: the fast intervals of tests/processes.plancheck_env (claim/reap/relay 0.5 s, lease 6 s,
heartbeat 0.5 s) and PLANCHECK_MAX_ATTEMPTS=5.
"""

from __future__ import annotations

import time

import psutil
import pytest
from sqlalchemy import text

from plancheck.domain import followups
from plancheck.store import catalog, runs
from tests.chaos.conftest import MAX_ATTEMPTS, PROJECT, Chaos
from tests.chaos.duplicating_app import publishing_twice
from tests.chaos.harness import (
    FAST_SQL,
    SLOW_SQL,
    InvariantReport,
    LockCycler,
    PlanStream,
    ScenarioResult,
    check_invariants,
    relay_failures,
    wait_quiet,
    write_report,
)
from tests.integration.helpers import hold_lock
from tests.processes import Process, queued_messages, wait_for

pytestmark = pytest.mark.chaos

RATE = 10.0  # plans per second
ISSUE_EVERY = 4  # every ISSUE_EVERY-th plan gets an issue, approved at once
QUIET_TIMEOUT = 120.0


def _running_on(chaos: Chaos, worker: str) -> list[int]:
    with chaos.engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT id FROM plan_check_run WHERE status = 'RUNNING' AND started_at IS NOT NULL "
                    "AND worker LIKE :w ORDER BY id"
                ),
                {"w": f"{worker}@%"},
            ).scalars()
        )


def _started_count(chaos: Chaos) -> int:
    with chaos.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM plan_check_run WHERE status = 'RUNNING' AND started_at IS NOT NULL")
            ).scalar_one()
        )


def _capacity_notes(report: InvariantReport) -> str:
    return (
        f"chunk executions {report.chunk_attempts}, chunk retries {report.lost_chunk_attempts}, "
        f"reaps: runs {report.reaps_in_logs}, chunks {report.chunk_reaps_in_logs}"
    )


def _conclude(
    chaos: Chaos,
    scenario: str,
    faults: str,
    fault_end: float,
    stream: PlanStream | None = None,
    lock: LockCycler | None = None,
    notes: str = "",
) -> tuple[InvariantReport, float]:
    """Let the stream finish, wait for quiet, check the invariants, write the summary row."""
    if stream is not None:
        stream.join()
    if lock is not None:
        lock.stop()
    not_quiet: AssertionError | None = None
    try:
        quiet = wait_quiet(chaos.engine, QUIET_TIMEOUT, since=fault_end, diagnose=lambda: relay_failures(chaos.logs()))
        # Duplicate copies of finished work may still wait in the queue: let them arrive (as no-ops).
        wait_for(lambda: queued_messages(chaos.broker_url, chaos.queue) == 0, 15, message="the queue drained")
    except AssertionError as exc:  # still write the row, then fail
        not_quiet, quiet = exc, float("nan")
        notes = f"NOT QUIET: {str(exc).splitlines()[0]}; {notes}".rstrip("; ")
    with_issue = stream.with_issue if stream is not None else ()
    report = check_invariants(chaos.engine, chaos.logs(), with_issue)
    details = [
        f"{dict(report.statuses)}",
        f"attempts {report.attempts}",
        f"LOST {report.lost_attempts}",
        f"duplicate deliveries ignored {report.ignored_deliveries}",
        f"max_attempts {MAX_ATTEMPTS}",
    ]
    if report.chunk_attempts or report.reaps_in_logs or report.chunk_reaps_in_logs:
        details.append(_capacity_notes(report))
    if stream is not None:
        details.append(f"issues {len(stream.with_issue)}, rollouts {report.rollouts}")
        if stream.errors:
            details.append(f"create errors {dict(stream.errors)}")
    if report.error_titles:
        details.append(f"ERROR results {dict(report.error_titles)}")
    if chaos.cluster.restarts:
        details.append(f"exited on their own and restarted by the supervisor: {', '.join(chaos.cluster.restarts)}")
    result = ScenarioResult(
        scenario,
        report.runs,
        faults,
        report.recovered,
        report.duplicates_executed + report.duplicate_starts_in_logs,
        quiet,
        "; ".join(filter(None, [notes, *details])),
    )
    write_report(chaos.report, result)
    if not_quiet is not None:
        raise not_quiet
    assert report.violations == [], report.violations
    assert report.duplicates_executed == 0
    assert report.duplicate_starts_in_logs == 0
    return report, quiet


BROKERS = pytest.mark.parametrize(
    "chaos", [{"broker": "redis"}, {"broker": "rabbitmq"}], indirect=True, ids=["redis", "rabbitmq"]
)


@BROKERS
def test_kill_9_worker_mid_check(chaos: Chaos) -> None:
    chaos.start(workers=2, beats=2)
    lock = LockCycler(chaos.slow_urls)
    lock.start()
    stream = PlanStream(chaos.api, chaos.targets, issue_every=ISSUE_EVERY, rate=RATE, duration=8)
    stream.start()
    wait_for(lambda: len(_running_on(chaos, "w1")) >= 2, timeout=30, interval=0.05, message="w1 busy with checks")
    chaos.cluster.kill(chaos.cluster.alive("w1")[0])
    fault_end = time.monotonic()
    with chaos.engine.connect() as conn:  # the executions the kill cut off: still open, nobody else closes them yet
        victims = list(
            conn.execute(
                text("SELECT run_id FROM plan_check_attempt WHERE worker LIKE 'w1@%' AND outcome IS NULL")
            ).scalars()
        )
    assert victims
    chaos.cluster.worker("w3")  # a replacement, as a supervisor would start

    report, _ = _conclude(
        chaos,
        f"kill -9 a worker mid-check{chaos.on_broker}",
        f"1 worker killed with {len(victims)} checks running",
        fault_end,
        stream,
        lock,
    )
    assert report.statuses == {"DONE": report.runs}
    with chaos.engine.connect() as conn:
        for run_id in victims:
            outcomes = (
                conn.execute(
                    text("SELECT outcome FROM plan_check_attempt WHERE run_id = :r ORDER BY id"), {"r": run_id}
                )
                .scalars()
                .all()
            )
            assert outcomes[0] == "LOST" and outcomes[-1] == "DONE", (run_id, outcomes)
    assert report.recovered >= len(victims)


def test_kill_every_beat_then_start_one(chaos: Chaos) -> None:
    """Without beats, creating plans still dispatches claims; but a claim whose run messages were lost
    (claimed here directly, messages never sent) waits for a reaper: only a beat brings it back."""
    _, beats = chaos.start(workers=2, beats=2)
    lock = LockCycler(chaos.slow_urls)
    lock.start()
    stream = PlanStream(chaos.api, chaos.targets, issue_every=ISSUE_EVERY, rate=RATE, duration=6)
    stream.start()
    time.sleep(2)
    for beat in beats:
        chaos.cluster.kill(beat)
    fault_start = time.monotonic()
    with chaos.engine.begin() as conn:
        # 5 more runs, claimed at once (what the claim statement does to them), and their run
        # messages lost: nothing but a reaper can bring them back.
        project = catalog.get_project(conn, PROJECT)
        sheet = catalog.put_sheet(conn, FAST_SQL)
        spec = [{"targets": [chaos.targets.fast], "sheet": sheet}]
        orphans = [runs.create(conn, catalog.create_plan(conn, project.id, "orphan", spec), 1) for _ in range(5)]
        conn.execute(
            text(
                "UPDATE plan_check_run SET status = 'RUNNING', token = gen_random_uuid(), claimed_at = now(), "
                "lease_expires_at = now() + make_interval(secs => :lease) WHERE id = ANY(:ids)"
            ),
            {"ids": orphans, "lease": chaos.api.settings.lease_seconds},
        )
    time.sleep(chaos.api.settings.lease_seconds + 2)  # the orphans' leases expire: nobody reaps them
    with chaos.engine.connect() as conn:
        stuck = conn.execute(
            text(
                "SELECT count(*) FROM plan_check_run WHERE id = ANY(:ids) AND status = 'RUNNING' "
                "AND started_at IS NULL AND lease_expires_at < now()"
            ),
            {"ids": orphans},
        ).scalar_one()
    assert stuck == len(orphans), "no beat is alive, yet the orphaned claims were reaped"
    chaos.cluster.beat("b3")
    fault_end = time.monotonic()

    report, _ = _conclude(
        chaos,
        "kill every beat, then start one",
        f"2 beats killed for {fault_end - fault_start:.0f} s; 5 claims' run messages lost meanwhile",
        fault_end,
        stream,
        lock,
    )
    assert report.statuses == {"DONE": report.runs}
    logs = "\n".join(chaos.logs())
    for run_id in orphans:
        assert f"reaped run_id={run_id} " in logs
    with chaos.engine.connect() as conn:
        attempts = conn.execute(
            text("SELECT run_id, attempt, outcome FROM plan_check_attempt WHERE run_id = ANY(:ids) ORDER BY run_id"),
            {"ids": orphans},
        ).all()
    # A claim that never started is no attempt: each orphan ran once, as attempt 1.
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, "DONE")] * len(orphans)
    assert report.recovered >= len(orphans)


def test_flushall_and_restart_redis(chaos: Chaos) -> None:
    chaos.start(workers=2, beats=2)
    lock = LockCycler(chaos.slow_urls)
    lock.start()
    stream = PlanStream(chaos.api, chaos.targets, issue_every=ISSUE_EVERY, rate=RATE, duration=8)
    stream.start()
    wait_for(lambda: _started_count(chaos) >= 3, timeout=30, interval=0.05, message="checks running")
    lost = chaos.redis.flushall(chaos.queue)
    old, new = chaos.redis.restart(down_seconds=1.0)
    assert old != new
    fault_end = time.monotonic()

    report, _ = _conclude(
        chaos,
        "FLUSHALL Redis + restart",
        f"1 flush ({lost} queued/unacked messages lost), 1 restart (1 s down)",
        fault_end,
        stream,
        lock,
    )
    assert report.statuses == {"DONE": report.runs}


def test_restart_postgres_while_workers_busy(chaos: Chaos) -> None:
    chaos.start(workers=2, beats=2)
    lock = LockCycler(chaos.slow_urls)
    lock.start()
    stream = PlanStream(chaos.api, chaos.targets, issue_every=ISSUE_EVERY, rate=RATE, duration=8)
    stream.start()
    wait_for(lambda: _started_count(chaos) >= 3, timeout=30, interval=0.05, message="workers busy")
    busy = _started_count(chaos)
    old_pid, new_pid = chaos.pg.restart(down_seconds=2.0)
    fault_end = time.monotonic()
    assert old_pid != new_pid, "PostgreSQL did not really restart"

    report, _ = _conclude(
        chaos,
        "restart PostgreSQL",
        f"1 restart (2 s down, {busy} checks running)",
        fault_end,
        stream,
        lock,
        notes=f"postmaster {old_pid} -> {new_pid}",
    )
    assert set(report.statuses) <= {"DONE", "FAILED"}
    assert report.statuses.get("FAILED", 0) == 0, "a PostgreSQL restart failed runs for good"


# Chunk size 1: the stream's two-target plans fan out, so chunk messages are delivered twice too.
@pytest.mark.parametrize(
    "chaos",
    [{"broker": "redis", "PLANCHECK_CHUNK_SIZE": "1"}, {"broker": "rabbitmq", "PLANCHECK_CHUNK_SIZE": "1"}],
    indirect=True,
    ids=["redis", "rabbitmq"],
)
def test_every_run_message_delivered_twice(chaos: Chaos) -> None:
    chaos.cluster.app = "tests.chaos.duplicating_app"  # claims in beats, hand-ons in workers
    chaos.start(workers=2, beats=2)
    lock = LockCycler(chaos.slow_urls)
    lock.start()
    with publishing_twice(chaos.api.settings.broker_url):  # dispatch on create, in this process
        stream = PlanStream(chaos.api, chaos.targets, issue_every=ISSUE_EVERY, rate=RATE, duration=6)
        stream.start()
        fault_end = time.monotonic() + 6  # the fault lasts as long as the stream
        report, _ = _conclude(
            chaos,
            f"every run message delivered twice{chaos.on_broker}",
            "every run message published twice",
            fault_end,
            stream,
            lock,
        )
    assert report.statuses == {"DONE": report.runs}
    # Each claim's message arrived twice: one copy started, the other was a logged no-op (a claim
    # reaped before it started would add two more no-ops, hence >=). The last copy may still be on
    # its way through a worker when the queue is empty.
    executions = report.attempts + report.chunk_attempts
    assert report.chunk_attempts > 0, "no plan fanned out: chunk messages were not duplicated"
    wait_for(
        lambda: check_invariants(chaos.engine, chaos.logs()).ignored_deliveries >= executions,
        10,
        message=f"{executions} duplicate deliveries ignored",
    )


BACKLOG = 1000


def test_three_beats_claim_a_backlog_of_1000(chaos: Chaos) -> None:
    with chaos.engine.begin() as conn:
        project = catalog.get_project(conn, PROJECT)
        sheet = catalog.put_sheet(conn, FAST_SQL)
        plan_ids = []
        for _ in range(BACKLOG):
            plan_id = catalog.create_plan(
                conn, project.id, "backlog", [{"targets": [chaos.targets.fast], "sheet": sheet}]
            )
            runs.create(conn, plan_id, 1)
            plan_ids.append(plan_id)
        with_issue = plan_ids[::10]
        for plan_id in with_issue:
            followups.approve_issue(conn, followups.create_issue(conn, plan_id).id)
    started = time.monotonic()
    chaos.cluster.worker("w1")
    chaos.cluster.worker("w2")
    for name in ("b1", "b2", "b3"):
        chaos.cluster.beat(name)
    not_quiet: AssertionError | None = None
    try:
        quiet = wait_quiet(chaos.engine, 240, since=started, diagnose=lambda: relay_failures(chaos.logs()))
    except AssertionError as exc:  # still write the row, then fail
        not_quiet, quiet = exc, float("nan")
    report = check_invariants(chaos.engine, chaos.logs(), with_issue)
    with chaos.engine.connect() as conn:
        claims_per_run = conn.execute(text("SELECT max(attempt), min(attempt) FROM plan_check_run")).one()
        per_worker = dict(
            conn.execute(text("SELECT split_part(worker, '@', 1), count(*) FROM plan_check_attempt GROUP BY 1")).all()
        )
    write_report(
        chaos.report,
        ScenarioResult(
            "3 beats claim a backlog of 1,000",
            report.runs,
            "3 beats (+2 workers) started at once on 1,000 AVAILABLE runs",
            report.recovered,
            report.duplicates_executed + report.duplicate_starts_in_logs,
            quiet,
            f"{dict(report.statuses)}; executions per run min/max {claims_per_run[1]}/{claims_per_run[0]}; "
            f"attempts per worker {per_worker}; rollouts {report.rollouts}/{len(with_issue)} issues; "
            "time measured from process start"
            + (f"; NOT QUIET: {str(not_quiet).splitlines()[0]}" if not_quiet else ""),
        ),
    )
    if not_quiet is not None:
        raise not_quiet
    assert report.violations == [], report.violations
    assert report.statuses == {"DONE": BACKLOG}
    assert report.duplicates_executed == 0 and report.duplicate_starts_in_logs == 0
    assert tuple(claims_per_run) == (1, 1), "a run was executed more than once"
    assert report.attempts == BACKLOG
    assert set(per_worker) == {"w1", "w2"}


# --------------------------------------------------------------------------------------------------
# At capacity: every slot busy, fanned-out plans whose chunks queue longer than the lease
# --------------------------------------------------------------------------------------------------
SATURATION = {"PLANCHECK_LEASE_SECONDS": "3", "PLANCHECK_CHUNK_SIZE": "1"}
FANNED_OUT_PLANS = 6


def _fan_out_plans(chaos: Chaos, count: int = FANNED_OUT_PLANS) -> list[int]:
    """`count` plans of SLOW_SQL on every slow target: with a chunk size of 1, one chunk per target."""
    return [chaos.api.create_plan(PROJECT, SLOW_SQL, targets=list(chaos.targets.fanout)) for _ in range(count)]


def _open_attempts_on(chaos: Chaos, worker: str) -> list[tuple[int, int | None]]:
    """(run id, chunk) of the executions running on `worker` right now. A run the worker fanned out
    keeps its attempt open until its last chunk ends, but runs nothing there: it is left out."""
    with chaos.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.run_id, a.chunk FROM plan_check_attempt a JOIN plan_check_run r ON r.id = a.run_id "
                "WHERE a.worker LIKE :w AND a.outcome IS NULL AND NOT (a.chunk IS NULL AND r.fanned_out)"
            ),
            {"w": f"{worker}@%"},
        ).all()
    return [(row.run_id, row.chunk) for row in rows]


@pytest.mark.parametrize("chaos", [SATURATION], indirect=True)
def test_saturation_without_faults_never_reaps(chaos: Chaos) -> None:
    """Lease 3 s, chunk size 1, 4 slots: 48 chunks of about a second each queue far longer than the
    lease behind each other and a stream of small plans. Nothing is wrong, so nothing may be reaped
    or retried: every run and every chunk executes exactly once."""
    chaos.start(workers=2, beats=2)
    lock = LockCycler(chaos.fanout_urls)
    lock.start()
    _fan_out_plans(chaos)
    stream = PlanStream(chaos.api, chaos.targets, rate=3.0, duration=8, slow_every=1000, issue_every=ISSUE_EVERY)
    stream.start()
    report, _ = _conclude(
        chaos,
        "saturation, no fault",
        "none: 6 fanned-out plans × 8 chunks + small plans, lease 3 s, 4 slots",
        time.monotonic(),
        stream,
        lock,
    )
    assert report.statuses == {"DONE": report.runs}
    assert report.chunk_attempts == FANNED_OUT_PLANS * len(chaos.targets.fanout)
    assert (report.lost_attempts, report.lost_chunk_attempts) == (0, 0), _capacity_notes(report)
    assert (report.reaps_in_logs, report.chunk_reaps_in_logs) == (0, 0), _capacity_notes(report)
    assert report.attempts == report.runs  # one execution per run


@pytest.mark.parametrize("chaos", [SATURATION], indirect=True)
def test_saturation_kill_9_mid_chunk_retries_that_workers_chunks_only(chaos: Chaos) -> None:
    chaos.start(workers=2, beats=2)
    lock = LockCycler(chaos.fanout_urls)
    lock.start()
    _fan_out_plans(chaos)
    stream = PlanStream(chaos.api, chaos.targets, rate=3.0, duration=6, slow_every=1000, issue_every=ISSUE_EVERY)
    stream.start()
    wait_for(
        lambda: any(chunk is not None for _, chunk in _open_attempts_on(chaos, "w1")),
        timeout=30,
        interval=0.05,
        message="w1 running a chunk",
    )
    victims = _open_attempts_on(chaos, "w1")
    chaos.cluster.kill(chaos.cluster.alive("w1")[0])
    killed = time.monotonic()
    chaos.cluster.worker("w3")
    wait_for(lambda: _retried(chaos, victims), timeout=60, interval=0.1, message="w1's executions done elsewhere")
    recovered_in = time.monotonic() - killed
    report, _ = _conclude(
        chaos,
        "saturation + kill -9 mid-chunk",
        f"1 worker killed running {_describe(victims)}",
        killed,
        stream,
        lock,
        notes=f"w1's executions done elsewhere {recovered_in:.1f} s after the kill",
    )
    assert report.statuses == {"DONE": report.runs}
    with chaos.engine.connect() as conn:
        lost = conn.execute(text("SELECT run_id, chunk, worker FROM plan_check_attempt WHERE outcome = 'LOST'")).all()
    assert sorted((row.run_id, row.chunk) for row in lost) == sorted(victims)  # w1's executions, nothing else
    assert all(row.worker.startswith("w1@") for row in lost)


def _retried(chaos: Chaos, victims: list[tuple[int, int | None]]) -> bool:
    """Every execution in `victims` was lost and has since been done again by another worker."""
    with chaos.engine.connect() as conn:
        done = {
            (row.run_id, row.chunk)
            for row in conn.execute(
                text("SELECT run_id, chunk FROM plan_check_attempt WHERE outcome = 'DONE' AND worker NOT LIKE 'w1@%'")
            )
        }
    return all(victim in done for victim in victims)


def _describe(executions: list[tuple[int, int | None]]) -> str:
    chunks = sum(chunk is not None for _, chunk in executions)
    return f"{chunks} chunks and {len(executions) - chunks} runs"


def test_every_slot_blocked_kill_9_recovers_within_lease_and_two_claim_intervals(chaos: Chaos) -> None:
    """Every slot of both workers is busy with a long check (8 locked targets, about 8 s); w2 is
    killed. Maintenance runs in beat, not in a slot, so w2's runs are AVAILABLE again within the lease
    plus two claim intervals although w1 has no free slot, and run once w1 (or a replacement) is free."""
    chaos.start(workers=2, beats=2)
    locks = [hold_lock(url) for url in chaos.fanout_urls]
    try:
        plan_ids = _fan_out_plans(chaos, count=6)  # chunk size 20 (default): whole runs, 4 take the slots
        wait_for(
            lambda: len(_open_attempts_on(chaos, "w1")) == 2 and len(_open_attempts_on(chaos, "w2")) == 2,
            timeout=30,
            interval=0.05,
            message="every slot busy",
        )
        victims = sorted(run_id for run_id, _ in _open_attempts_on(chaos, "w2"))
        chaos.cluster.kill(chaos.cluster.alive("w2")[0])
        with chaos.engine.connect() as conn:
            killed_at = conn.execute(text("SELECT now()")).scalar_one()
        killed = time.monotonic()
        wait_for(
            lambda: len(_lost_at(chaos, victims)) == len(victims),
            timeout=30,
            interval=0.05,
            message="w2's runs given back",
        )
        recovered_in = max((at - killed_at).total_seconds() for at in _lost_at(chaos, victims).values())
    finally:
        for lock in locks:
            lock.rollback()
            lock.close()
    settings = chaos.api.settings
    bound = settings.lease_seconds + 2 * settings.claim_interval
    chaos.cluster.worker("w3")
    report, _ = _conclude(
        chaos,
        "every slot blocked + kill -9 of another worker",
        f"1 worker killed with {len(victims)} runs, the other's slots all busy",
        killed,
        notes=f"w2's runs AVAILABLE again {recovered_in:.1f} s after the kill "
        f"(lease {settings.lease_seconds:g} s + 2 × claim interval = {bound:g} s)",
    )
    assert report.statuses == {"DONE": report.runs} and report.runs == len(plan_ids)
    assert recovered_in <= bound, recovered_in


def _lost_at(chaos: Chaos, run_ids: list[int]) -> dict[int, object]:
    """When the reaper closed each run's lost execution (database time)."""
    with chaos.engine.connect() as conn:
        return dict(
            conn.execute(
                text(
                    "SELECT run_id, finished_at FROM plan_check_attempt WHERE run_id = ANY(:ids) AND outcome = 'LOST'"
                ),
                {"ids": run_ids},
            ).all()
        )


def test_redis_restarts_under_load_keep_every_worker(chaos: Chaos) -> None:
    """Three Redis restarts while checks run and plans stream in: every worker process (main and pool)
    survives, reconnects, and nothing is lost or executed twice."""
    workers, _ = chaos.start(workers=2, beats=2)
    pools = {worker.name: _pool(worker) for worker in workers}
    lock = LockCycler(chaos.slow_urls)
    lock.start()
    stream = PlanStream(chaos.api, chaos.targets, issue_every=ISSUE_EVERY, rate=RATE, duration=10)
    stream.start()
    wait_for(lambda: _started_count(chaos) >= 3, timeout=30, interval=0.05, message="checks running")
    for _ in range(3):
        chaos.redis.restart(down_seconds=1.0)
        time.sleep(1.5)
    fault_end = time.monotonic()
    report, _ = _conclude(
        chaos, "Redis restarted 3 times under load", "3 restarts, 1 s down each", fault_end, stream, lock
    )
    assert report.statuses == {"DONE": report.runs}
    assert chaos.cluster.restarts == [], "a worker or beat exited"
    assert all(worker.is_alive() for worker in workers)
    assert {worker.name: _pool(worker) for worker in workers} == pools, "a pool process died"
    assert not any("Unrecoverable error" in log for log in chaos.logs())


def _pool(worker: Process) -> list[int]:
    """Pids of a worker's pool processes."""
    return sorted(child.pid for child in psutil.Process(worker.pid).children())
