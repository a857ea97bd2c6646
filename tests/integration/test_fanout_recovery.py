"""Fan-out under a crash: a worker killed mid-chunk costs a retry of that chunk only, and the run
still ends with one complete result."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text

from plancheck.api import Plancheck
from tests.integration.helpers import hold_lock, make_target, register_target
from tests.processes import cluster, wait_for

SLOW_SQL = "UPDATE items SET price = price + 1 WHERE id = 1;\n" * 3


def _chunks_running_on(api: Plancheck, worker: str) -> bool:
    with api.engine.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT count(*) FROM plan_check_chunk WHERE started_at IS NOT NULL AND worker LIKE :w"),
                {"w": f"{worker}@%"},
            ).scalar_one()
        )


def test_worker_killed_mid_chunk_ends_with_one_complete_result(
    api: Plancheck, create_database: Callable[[str], str], plancheck_env: dict[str, str], tmp_path: Path
) -> None:
    targets = [register_target(api, *make_target(create_database, rows=50)) for _ in range(6)]
    for target in targets:
        api.set_database(target.target, labels={"fleet": "a"})
    api.create_group("shop", "fleet", '"fleet" in resource.labels')
    locks = [hold_lock(target.url) for target in targets]
    env = {**plancheck_env, "PLANCHECK_CHUNK_SIZE": "2", "PLANCHECK_MAX_ATTEMPTS": "3"}
    with cluster(env, tmp_path) as running:
        doomed = running.worker("w1")
        running.worker("w2")
        running.beat("b1")
        plan_id = api.create_plan("shop", SLOW_SQL, group="fleet")
        wait_for(lambda: _chunks_running_on(api, "w1"), 60, message="a chunk running on w1")
        doomed.signal(signal.SIGKILL)
        for lock in locks:
            lock.rollback()
            lock.close()
        wait_for(lambda: api.checks(plan_id).status == "DONE", 90, interval=0.5, message="run DONE after the crash")
    checks = api.checks(plan_id)
    summaries = sorted(r["target"] for r in checks.results if r["type"] == "STATEMENT_SUMMARY_REPORT")
    assert summaries == sorted(t.target for t in targets)
    assert (checks.targets_done, checks.targets_total) == (6, 6)
    run_attempts = [(a["attempt"], a["outcome"]) for a in checks.attempts if a["chunk"] is None]
    assert run_attempts == [(1, "DONE")]  # the run itself never lost its execution
    chunk_attempts: dict[int, list[str]] = {}
    for attempt in checks.attempts:
        if attempt["chunk"] is not None:
            chunk_attempts.setdefault(attempt["chunk"], []).append(attempt["outcome"])
    assert sorted(chunk_attempts) == [0, 1, 2]
    retried = {chunk: outcomes for chunk, outcomes in chunk_attempts.items() if outcomes != ["DONE"]}
    assert retried and all(outcomes == ["LOST", "DONE"] for outcomes in retried.values()), chunk_attempts
