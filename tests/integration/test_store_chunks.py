"""Chunks of a fanned-out run in SQL, against real PostgreSQL: their own claims, leases, fencing,
reaping and the merge that ends the run exactly once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

from plancheck.store import chunks, claims, runs, workers
from tests.integration.helpers import claim_directly

LEASE = 30.0
PIECES = [[("i/a", "s1"), ("i/b", "s1")], [("i/c", "s1")], [("i/d", "s2"), ("i/e", "s2")]]


@pytest.fixture
def engine(metadata_url: str) -> Iterator[Engine]:
    engine = create_engine(metadata_url, pool_size=10)
    yield engine
    engine.dispose()


def _fanned_out_run(engine: Engine, slots: int = 10) -> runs.Started:
    """Plan 1's run, started and fanned out into PIECES; a worker with `slots` slots is live."""
    with engine.begin() as conn:
        runs.create(conn, 1, 1)
        (claimed,) = claim_directly(conn, 1, LEASE)
        started = runs.start(conn, claimed.id, claimed.token, "fanner", LEASE)
        assert started is not None
        assert runs.fan_out(conn, started.id, started.token, PIECES)
        workers.record(conn, "w@test", slots)
    return started


def _claim_chunks(engine: Engine, batch: int = 10) -> list[claims.ClaimedChunk]:
    with engine.begin() as conn:
        return claims.claim(conn, batch, LEASE, 60).chunks


def _start(engine: Engine, piece: claims.ClaimedChunk, worker: str = "w", lease: float = LEASE) -> chunks.StartedChunk:
    with engine.begin() as conn:
        started = chunks.start(conn, piece.id, piece.token, worker, lease)
    assert started is not None
    return started


def _complete(engine: Engine, started: chunks.StartedChunk) -> runs.Progress | None:
    """Record every target of the chunk, then move its results into the run."""
    with engine.begin() as conn:
        for name, _ in started.targets:
            progress = chunks.add_results(conn, started.id, started.token, [{"target": name}], LEASE)
            assert progress is not None
        return chunks.finish(conn, started.id, started.token)


def _run(engine: Engine) -> runs.RunView:
    with engine.connect() as conn:
        run = runs.get(conn, 1)
    assert run is not None
    return run


def test_a_fanned_out_run_gives_up_its_lease_and_slot(engine: Engine) -> None:
    _fanned_out_run(engine)
    run = _run(engine)
    assert (run.status, run.fanned_out, run.targets_total) == ("RUNNING", True, 5)
    with engine.begin() as conn:
        lease = conn.execute(text("SELECT lease_expires_at FROM plan_check_run")).scalar_one()
        assert lease is None
        assert runs.reap(conn, max_attempts=1, batch=10) == []  # nothing to reap: its chunks have the leases


def test_chunks_are_claimed_first_within_the_free_slots(engine: Engine) -> None:
    _fanned_out_run(engine, slots=2)
    with engine.begin() as conn:
        runs.create(conn, 2, 1)  # a run waiting behind the chunks
    first = _claim_chunks(engine)
    assert [piece.chunk for piece in first] == [0, 1]
    assert _claim_chunks(engine) == []  # two slots, both taken by chunks


def test_chunk_targets_come_from_the_row_and_start_once(engine: Engine) -> None:
    _fanned_out_run(engine)
    piece = _claim_chunks(engine)[0]
    started = _start(engine, piece, "first")
    assert started.targets == [("i/a", "s1"), ("i/b", "s1")]
    with engine.begin() as conn:
        assert chunks.start(conn, piece.id, piece.token, "duplicate", LEASE) is None
        assert chunks.start(conn, piece.id, uuid.uuid4(), "forged", LEASE) is None
        attempts = runs.attempts(conn, started.run_id)
    assert [(a.chunk, a.worker, a.outcome) for a in attempts] == [(None, "fanner", None), (0, "first", None)]


def test_the_last_chunk_ends_the_run_once(engine: Engine) -> None:
    fanned = _fanned_out_run(engine)
    started = [_start(engine, piece) for piece in _claim_chunks(engine)]
    progress = [_complete(engine, piece) for piece in started[:2]]
    assert [(p.targets_done, p.complete) for p in progress if p] == [(2, False), (3, False)]
    last = _complete(engine, started[2])
    assert last is not None and last.complete
    with engine.begin() as conn:
        assert runs.finish(conn, fanned.id, fanned.token, "DONE")
        outcomes = [(a.chunk, a.outcome) for a in runs.attempts(conn, fanned.id)]
        left = conn.execute(text("SELECT count(*) FROM plan_check_chunk")).scalar_one()
    run = _run(engine)
    assert sorted(r["target"] for r in run.result["results"]) == ["i/a", "i/b", "i/c", "i/d", "i/e"]
    assert (run.status, run.targets_done) == ("DONE", 5)
    assert sorted(outcomes, key=str) == sorted([(None, "DONE"), (0, "DONE"), (1, "DONE"), (2, "DONE")], key=str)
    assert left == 0


def test_concurrent_last_chunks_see_the_run_complete_once(engine: Engine) -> None:
    _fanned_out_run(engine)
    started = [_start(engine, piece) for piece in _claim_chunks(engine)]
    with engine.begin() as conn:
        for piece in started:
            for name, _ in piece.targets:
                chunks.add_results(conn, piece.id, piece.token, [{"target": name}], LEASE)
    barrier = threading.Barrier(len(started))
    completions: list[bool] = []

    def finish(piece: chunks.StartedChunk) -> None:
        with engine.begin() as conn:
            barrier.wait()
            progress = chunks.finish(conn, piece.id, piece.token)
            completions.append(bool(progress and progress.complete))

    threads = [threading.Thread(target=finish, args=(piece,)) for piece in started]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(completions) == [False, False, True]
    assert _run(engine).targets_done == 5


def test_progress_includes_unfinished_chunks(engine: Engine) -> None:
    _fanned_out_run(engine)
    piece = _start(engine, _claim_chunks(engine)[0])
    with engine.begin() as conn:
        chunks.add_results(conn, piece.id, piece.token, [{"target": "i/a"}], LEASE)
    run = _run(engine)
    assert run.targets_done == 1 and run.result["results"] == [{"target": "i/a"}]


def test_a_reaped_chunk_is_retried_alone(engine: Engine) -> None:
    """A worker dies mid-chunk: that chunk returns to AVAILABLE without its partial results; the
    other chunks, finished or running, keep theirs, and the retry is an attempt of the chunk only."""
    fanned = _fanned_out_run(engine)
    dying, healthy, running = (
        _start(engine, p, lease=lease) for p, lease in zip(_claim_chunks(engine), (0, 30, 30), strict=False)
    )
    assert _complete(engine, healthy) is not None
    with engine.begin() as conn:
        chunks.add_results(conn, dying.id, dying.token, [{"target": "i/a"}], 0)
        chunks.add_results(conn, running.id, running.token, [{"target": "i/d"}], LEASE)
    with engine.begin() as conn:
        (reaped,) = chunks.reap(conn, max_attempts=3, batch=10)
        assert not chunks.heartbeat(conn, dying.id, dying.token, LEASE)  # the dead worker's token is gone
        assert chunks.heartbeat(conn, running.id, running.token, LEASE)
    assert (reaped.chunk, reaped.abandoned) == (0, False)
    assert sorted(r["target"] for r in _run(engine).result["results"]) == ["i/c", "i/d"]
    retry = _start(engine, _claim_chunks(engine)[0], "retry")
    assert (retry.chunk, retry.attempt) == (0, 2)
    with engine.connect() as conn:
        attempts = [(a.chunk, a.attempt, a.outcome) for a in runs.attempts(conn, fanned.id)]
    assert (None, 1, None) in attempts and (0, 1, "LOST") in attempts and (0, 2, None) in attempts


def test_a_chunk_out_of_attempts_fails_its_run(engine: Engine) -> None:
    fanned = _fanned_out_run(engine)
    pieces = _claim_chunks(engine)
    _start(engine, pieces[0], lease=0)
    other = _start(engine, pieces[1])
    with engine.begin() as conn:
        (reaped,) = chunks.reap(conn, max_attempts=1, batch=10)
        assert reaped.abandoned
        assert not chunks.heartbeat(conn, other.id, other.token, LEASE)
        outcomes = {(a.chunk, a.outcome) for a in runs.attempts(conn, fanned.id)}
    run = _run(engine)
    assert (run.status, run.result["reason"]) == ("FAILED", "chunk 0 abandoned after 1 attempts")
    assert outcomes == {(None, "FAILED"), (0, "LOST"), (1, "FAILED")}


def test_cancel_and_rerun_stop_the_chunks(engine: Engine) -> None:
    _fanned_out_run(engine)
    piece = _start(engine, _claim_chunks(engine)[0])
    with engine.begin() as conn:
        runs.cancel(conn, [1])
        assert not chunks.heartbeat(conn, piece.id, piece.token, LEASE)
        assert chunks.add_results(conn, piece.id, piece.token, [{"target": "i/a"}], LEASE) is None
        assert chunks.finish(conn, piece.id, piece.token) is None
        assert conn.execute(text("SELECT count(*) FROM plan_check_chunk")).scalar_one() == 0
    fanned = _fanned_out_run(engine)
    piece = _start(engine, _claim_chunks(engine)[0])
    with engine.begin() as conn:
        runs.create(conn, 1, 1)  # re-run: a new token for the run
        assert not chunks.heartbeat(conn, piece.id, piece.token, LEASE)
        assert chunks.finish(conn, piece.id, piece.token) is None
        outcomes = {(a.chunk, a.outcome) for a in runs.attempts(conn, fanned.id) if a.generation == fanned.generation}
    assert _run(engine).status == "AVAILABLE"
    assert outcomes == {(None, "SUPERSEDED"), (0, "SUPERSEDED")}


def test_chunk_claim_uses_its_claimable_index(engine: Engine) -> None:
    with engine.begin() as conn:
        run_id = runs.create(conn, 1, 1)
        conn.execute(
            text(
                "INSERT INTO plan_check_chunk (run_id, run_token, chunk, targets, status) "
                "SELECT :r, gen_random_uuid(), g, '[]', CASE WHEN g < 30000 THEN 'RUNNING' ELSE 'AVAILABLE' END "
                "FROM generate_series(1, 40000) g"
            ),
            {"r": run_id},
        )
        conn.execute(text("ANALYZE plan_check_chunk"))
        plan = "\n".join(
            conn.execute(
                text(
                    "EXPLAIN SELECT id FROM plan_check_chunk WHERE status = 'AVAILABLE' ORDER BY id LIMIT 1 "
                    "FOR UPDATE SKIP LOCKED"
                )
            ).scalars()
        )
    assert "plan_check_chunk_claimable_idx" in plan, plan
