"""The run state machine in SQL, against real PostgreSQL: claims, fencing, cancel, reap, re-run."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, create_engine, text

from plancheck.store import claims, runs, workers
from plancheck.store.claims import ClaimedRun
from tests.integration.helpers import claim_directly

STALE = 60.0


@pytest.fixture
def engine(metadata_url: str) -> Iterator[Engine]:
    engine = create_engine(metadata_url, pool_size=10)
    yield engine
    engine.dispose()


def _slots(engine: Engine, slots: int, name: str = "w1@test") -> None:
    with engine.begin() as conn:
        workers.record(conn, name, slots)


def _new_runs(engine: Engine, count: int, first_plan: int = 1) -> list[int]:
    with engine.begin() as conn:
        return [runs.create(conn, plan_id, 1) for plan_id in range(first_plan, first_plan + count)]


def _claim(conn: Connection, batch: int, lease: float = 30) -> list[ClaimedRun]:
    return claims.claim(conn, batch, lease, STALE).runs


def _claim_one(engine: Engine, lease: float = 30) -> ClaimedRun:
    with engine.begin() as conn:
        (claimed,) = claim_directly(conn, 1, lease)
    return claimed


def _start(engine: Engine, claimed: ClaimedRun, worker: str = "w") -> runs.Started | None:
    with engine.begin() as conn:
        return runs.start(conn, claimed.id, claimed.token, worker, 30)


def _status(engine: Engine, plan_id: int) -> str:
    with engine.connect() as conn:
        run = runs.get(conn, plan_id)
    assert run is not None
    return run.status


def test_get_run(engine: Engine) -> None:
    _new_runs(engine, 3)
    _claim_one(engine)
    with engine.connect() as conn:
        first, second = runs.get(conn, 1), runs.get(conn, 2)
        assert runs.get(conn, 99) is None
    assert first is not None and first.status == "RUNNING"
    assert second is not None and (second.status, second.generation, second.attempt) == ("AVAILABLE", 1, 0)


def test_claim_takes_oldest_first_and_bounded(engine: Engine) -> None:
    ids = _new_runs(engine, 5)
    _slots(engine, 100)
    with engine.begin() as conn:
        first = _claim(conn, 2)
        second = _claim(conn, 10)
        third = _claim(conn, 10)
    assert [c.id for c in first] == ids[:2]
    assert sorted(c.id for c in second) == ids[2:]
    assert third == []
    assert all(c.attempt == 0 for c in first + second)


def test_claims_never_exceed_the_free_slots(engine: Engine) -> None:
    """A claimed run holds a slot from its claim to its end; nothing is claimed for a slot that is
    not free, so no run message waits behind busy workers."""
    _new_runs(engine, 10)
    with engine.begin() as conn:
        assert _claim(conn, 10) == []  # no live worker: nothing to send work to
    _slots(engine, 3, "w1@test")
    _slots(engine, 1, "w2@test")
    with engine.begin() as conn:
        first = _claim(conn, 10)
        assert [c.id for c in first] == [1, 2, 3, 4]
        assert _claim(conn, 10) == []
        started = runs.start(conn, first[0].id, first[0].token, "w", 30)
        assert started is not None and _claim(conn, 10) == []  # started work still holds its slot
        assert runs.finish(conn, started.id, started.token, "DONE")
        assert [c.id for c in _claim(conn, 10)] == [5]
        workers.forget(conn, "w1@test")
        assert _claim(conn, 10) == []  # 3 claimed runs now exceed the one live slot


def test_slots_of_a_silent_worker_stop_counting(engine: Engine) -> None:
    _new_runs(engine, 2)
    _slots(engine, 2)
    with engine.begin() as conn:
        conn.execute(text("UPDATE worker_slots SET last_seen = now() - interval '2 minutes'"))
        assert claims.claim(conn, 10, 30, stale_seconds=60).runs == []
        assert len(claims.claim(conn, 10, 30, stale_seconds=600).runs) == 2


def test_concurrent_claimers_never_share_a_row(engine: Engine) -> None:
    _new_runs(engine, 400)
    _slots(engine, 1000)
    claimed: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def claimer() -> None:
        barrier.wait()
        while True:
            with engine.begin() as conn:
                batch = _claim(conn, 7)
            if not batch:
                return
            with lock:
                claimed.extend(c.id for c in batch)

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 400
    assert max(Counter(claimed).values()) == 1


def test_concurrent_claimers_never_exceed_the_slots(engine: Engine) -> None:
    """Eight claimers at once against 10 free slots: the claim lock makes them count one after the
    other, so 10 runs are claimed in all, not 8 × 7."""
    _new_runs(engine, 100)
    _slots(engine, 10)
    barrier = threading.Barrier(8)
    totals: list[int] = []

    def claimer() -> None:
        barrier.wait()
        with engine.begin() as conn:
            totals.append(len(_claim(conn, 7)))

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(totals) == 10, totals
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM plan_check_run WHERE status = 'RUNNING'")).scalar_one() == 10


def test_only_the_first_delivery_starts(engine: Engine) -> None:
    _new_runs(engine, 1)
    claimed = _claim_one(engine)
    assert _start(engine, claimed, "first") is not None
    assert _start(engine, claimed, "duplicate") is None
    with engine.connect() as conn:
        assert [a.worker for a in runs.attempts(conn, claimed.id)] == ["first"]


def test_unknown_token_never_starts(engine: Engine) -> None:
    _new_runs(engine, 1)
    claimed = _claim_one(engine)
    with engine.begin() as conn:
        assert runs.start(conn, claimed.id, uuid.uuid4(), "w", 30) is None


def test_finish_is_fenced_and_writes_follow_ups_once(engine: Engine) -> None:
    _new_runs(engine, 1)
    started = _start(engine, _claim_one(engine))
    assert started is not None
    with engine.begin() as conn:
        assert runs.add_results(conn, started.id, started.token, [{"status": "SUCCESS"}], 1, 30) is not None
        assert runs.finish(conn, started.id, started.token, "DONE")
        assert not runs.finish(conn, started.id, started.token, "FAILED")
        kinds = conn.execute(text("SELECT kind FROM outbox ORDER BY kind")).scalars().all()
    assert kinds == ["approval.find", "rollout.create"]
    assert _status(engine, 1) == "DONE"


def test_rerun_fences_out_the_old_execution(engine: Engine) -> None:
    _new_runs(engine, 1)
    old = _start(engine, _claim_one(engine), "old")
    assert old is not None
    with engine.begin() as conn:
        runs.create(conn, 1, 1)
    new = _start(engine, _claim_one(engine), "new")
    assert new is not None
    with engine.begin() as conn:
        assert not runs.heartbeat(conn, old.id, old.token, 30)
        assert runs.add_results(conn, old.id, old.token, [{"status": "ERROR"}], 1, 30) is None
        assert not runs.finish(conn, old.id, old.token, "DONE")
        assert runs.add_results(conn, new.id, new.token, [{"status": "SUCCESS"}], 1, 30) is not None
        assert runs.finish(conn, new.id, new.token, "DONE")
        run = runs.get(conn, 1)
        outcomes = [(a.worker, a.outcome) for a in runs.attempts(conn, new.id)]
    assert run is not None and run.result["results"] == [{"status": "SUCCESS"}] and run.generation == 2
    assert outcomes == [("old", "SUPERSEDED"), ("new", "DONE")]


def test_cancel_available_and_running_but_never_done(engine: Engine) -> None:
    _new_runs(engine, 3)
    done = _start(engine, _claim_one(engine))
    running = _start(engine, _claim_one(engine))
    assert done is not None and running is not None
    with engine.begin() as conn:
        runs.finish(conn, done.id, done.token, "DONE")
        cancelled = runs.cancel(conn, [1, 2, 3])
        assert not runs.heartbeat(conn, running.id, running.token, 30)
    assert sorted(run.plan_id for run in cancelled) == [2, 3]
    assert [_status(engine, p) for p in (1, 2, 3)] == ["DONE", "CANCELED", "CANCELED"]


def test_reap_returns_expired_runs_then_fails_them(engine: Engine) -> None:
    _new_runs(engine, 1)
    for attempt in (1, 2):
        claimed = _claim_one(engine)
        with engine.begin() as conn:
            started = runs.start(conn, claimed.id, claimed.token, "w", 0)
        assert started is not None and started.attempt == attempt
        with engine.begin() as conn:
            (reaped,) = runs.reap(conn, max_attempts=2, batch=10)
        assert (reaped.status, reaped.attempt) == (("AVAILABLE", 1) if attempt == 1 else ("FAILED", 2))
    with engine.connect() as conn:
        run = runs.get(conn, 1)
        outcomes = [a.outcome for a in runs.attempts(conn, 1)]
    assert run is not None and run.result["reason"] == "abandoned after 2 attempts"
    assert outcomes == ["LOST", "LOST"]


def test_a_claim_that_never_started_is_not_an_attempt(engine: Engine) -> None:
    """A lost message costs no attempt: the run returns to AVAILABLE however often it happens."""
    _new_runs(engine, 1)
    for _ in range(5):
        _claim_one(engine, lease=0)
        with engine.begin() as conn:
            (reaped,) = runs.reap(conn, max_attempts=1, batch=10)
        assert (reaped.status, reaped.attempt) == ("AVAILABLE", 0)


def test_a_finishing_run_hands_its_slot_on(engine: Engine) -> None:
    """The transaction that ends a run claims work for the slot it frees, and no more."""
    _new_runs(engine, 5)
    _slots(engine, 2)
    with engine.begin() as conn:
        first, _second = _claim(conn, 10)
        started = runs.start(conn, first.id, first.token, "w", 30)
        assert started is not None
        assert runs.finish(conn, started.id, started.token, "DONE")
        assert [c.id for c in _claim(conn, 10)] == [3]


def test_live_lease_is_not_reaped(engine: Engine) -> None:
    _new_runs(engine, 1)
    _claim_one(engine, lease=60)
    with engine.begin() as conn:
        assert runs.reap(conn, max_attempts=3, batch=10) == []


def test_claim_uses_the_claimable_index_after_analyze(engine: Engine) -> None:
    """Even when statistics see many AVAILABLE rows and the oldest rows are finished or running,
    the claim walks the partial index of claimable rows."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO plan_check_run (plan_id, status) "
                "SELECT g, CASE WHEN g <= 20000 THEN 'DONE' WHEN g <= 25000 THEN 'RUNNING' ELSE 'AVAILABLE' END "
                "FROM generate_series(1, 60000) g"
            )
        )
        conn.execute(text("ANALYZE plan_check_run"))
        plan = "\n".join(
            conn.execute(
                text(
                    "EXPLAIN SELECT id FROM plan_check_run WHERE status = 'AVAILABLE' "
                    "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
                )
            ).scalars()
        )
    assert "plan_check_run_claimable_idx" in plan, plan
