"""Every statement of a fanned-out run's chunks: start, heartbeat, results, finish and reap.

A chunk is work of its own: it is claimed (see `claims`) with a token of its own, started once per
token, kept alive by heartbeats while it executes, and reaped alone when its lease lapses — the
run's other chunks and their results are untouched. Every write is fenced twice: by the chunk's
token and by its run still RUNNING under the token that fanned it out, so a cancel, re-run or
reap of the run stops its chunks too. A chunk's targets come from its row, never from a message.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, JSONB, UUID

from plancheck.core.states import AttemptOutcome, ChunkStatus, RunStatus
from plancheck.store.runs import Progress

_LEASE = "now() + make_interval(secs => :lease)"

# The run the chunk belongs to still holds the token that fanned it out.
_RUN_HOLDS = f"r.id = c.run_id AND r.status = '{RunStatus.RUNNING}' AND r.token = c.run_token"


@dataclass(frozen=True)
class StartedChunk:
    id: int
    run_id: int
    plan_id: int
    run_token: uuid.UUID
    token: uuid.UUID
    chunk: int
    attempt: int
    run_attempt: int
    generation: int
    targets: list[tuple[str, str]]  # (target name, sheet sha256)


@dataclass(frozen=True)
class ReapedChunk:
    id: int
    run_id: int
    chunk: int
    attempt: int
    abandoned: bool  # its attempts are spent: the run ended FAILED


_START = text(
    f"""
    WITH started AS (
        UPDATE plan_check_chunk c SET started_at = now(), attempt = c.attempt + 1, worker = :worker,
            lease_expires_at = {_LEASE}
        FROM plan_check_run r
        WHERE c.id = :id AND c.token = :token AND c.status = '{ChunkStatus.RUNNING}' AND c.started_at IS NULL
          AND {_RUN_HOLDS}
        RETURNING c.id, c.run_id, r.plan_id, c.run_token, c.token, c.chunk, c.attempt, r.attempt AS run_attempt,
                  r.generation, c.targets, c.claimed_at, c.started_at
    ), attempt AS (
        INSERT INTO plan_check_attempt (run_id, generation, attempt, chunk, token, worker, claimed_at, started_at)
        SELECT run_id, generation, attempt, chunk, token, :worker, claimed_at, started_at FROM started
    )
    SELECT id, run_id, plan_id, run_token, token, chunk, attempt, run_attempt, generation, targets FROM started
    """
)

_HEARTBEAT = text(
    f"""
    UPDATE plan_check_chunk c SET lease_expires_at = {_LEASE}
    FROM plan_check_run r
    WHERE c.id = :id AND c.token = :token AND c.status = '{ChunkStatus.RUNNING}' AND {_RUN_HOLDS}
    RETURNING c.id
    """
)

_ADD_RESULTS = text(
    f"""
    UPDATE plan_check_chunk c SET results = c.results || :results, targets_done = c.targets_done + :targets,
        lease_expires_at = {_LEASE}
    FROM plan_check_run r
    WHERE c.id = :id AND c.token = :token AND c.status = '{ChunkStatus.RUNNING}' AND {_RUN_HOLDS}
    RETURNING c.targets_done, jsonb_array_length(c.targets) AS targets_total
    """
).bindparams(bindparam("results", type_=JSONB))

# The chunk's results move into its run and the chunk row goes, in one statement; concurrent last
# chunks of one run queue on the run row, so exactly one of them sees the run complete.
_FINISH = text(
    f"""
    WITH finished AS (
        DELETE FROM plan_check_chunk c USING plan_check_run r
        WHERE c.id = :id AND c.token = :token AND c.status = '{ChunkStatus.RUNNING}' AND {_RUN_HOLDS}
        RETURNING c.run_id, c.run_token, c.results, c.targets_done
    ), merged AS (
        UPDATE plan_check_run r SET
            result = jsonb_set(r.result, '{{results}}', coalesce(r.result -> 'results', '[]'::jsonb) || f.results),
            targets_done = r.targets_done + f.targets_done, updated_at = now()
        FROM finished f
        WHERE r.id = f.run_id AND r.token = f.run_token AND r.status = '{RunStatus.RUNNING}'
        RETURNING r.targets_done, r.targets_total
    ), closed AS (
        UPDATE plan_check_attempt
        SET outcome = CASE WHEN EXISTS (SELECT FROM merged) THEN '{AttemptOutcome.DONE}'
                           ELSE '{AttemptOutcome.SUPERSEDED}' END,
            finished_at = now()
        WHERE token = :token AND outcome IS NULL
    )
    SELECT targets_done, targets_total FROM merged
    """
)

_EXPIRED = text(
    f"""
    SELECT c.id, c.run_id, c.run_token, c.chunk, c.token, c.attempt, c.started_at IS NOT NULL AS started
    FROM plan_check_chunk c
    WHERE c.status = '{ChunkStatus.RUNNING}' AND c.lease_expires_at < now()
    ORDER BY c.lease_expires_at LIMIT :batch
    FOR UPDATE SKIP LOCKED
    """
)

_RELEASE = text(
    f"""
    UPDATE plan_check_chunk SET status = '{ChunkStatus.AVAILABLE}', token = gen_random_uuid(), worker = NULL,
        claimed_at = NULL, started_at = NULL, lease_expires_at = NULL, results = '[]'::jsonb, targets_done = 0
    WHERE id = ANY(:ids)
    """
).bindparams(bindparam("ids", type_=ARRAY(BIGINT)))

_CLOSE_LOST = text(
    f"""
    UPDATE plan_check_attempt SET outcome = '{AttemptOutcome.LOST}', finished_at = now()
    WHERE token = ANY(:tokens) AND outcome IS NULL
    """
).bindparams(bindparam("tokens", type_=ARRAY(UUID)))

# A chunk whose attempts are spent fails its whole run (fenced by the token that fanned it out):
# the run's result would be incomplete.
_ABANDON = text(
    f"""
    WITH failed AS (
        UPDATE plan_check_run SET
            status = '{RunStatus.FAILED}', finished_at = now(), lease_expires_at = NULL, updated_at = now(),
            result = jsonb_build_object('results', coalesce(result -> 'results', '[]'::jsonb),
                                        'reason', format('chunk %s abandoned after %s attempts', :chunk, :attempt))
        WHERE id = :run_id AND token = :run_token AND status = '{RunStatus.RUNNING}'
        RETURNING id
    ), dropped AS (
        DELETE FROM plan_check_chunk WHERE run_id IN (SELECT id FROM failed)
    )
    UPDATE plan_check_attempt SET outcome = '{AttemptOutcome.FAILED}', finished_at = now()
    WHERE run_id IN (SELECT id FROM failed) AND outcome IS NULL
    """
)


def start(
    conn: Connection, chunk_id: int, token: uuid.UUID | str, worker: str, lease_seconds: float
) -> StartedChunk | None:
    """Win the chunk for this delivery, or None: a duplicate, stale or forged message starts nothing."""
    params = {"id": chunk_id, "token": str(token), "worker": worker, "lease": lease_seconds}
    row = conn.execute(_START, params).one_or_none()
    if row is None:
        return None
    targets = [(str(name), str(sheet)) for name, sheet in row.targets]
    return StartedChunk(
        row.id,
        row.run_id,
        row.plan_id,
        row.run_token,
        row.token,
        row.chunk,
        row.attempt,
        row.run_attempt,
        row.generation,
        targets,
    )


def heartbeat(conn: Connection, chunk_id: int, token: uuid.UUID | str, lease_seconds: float) -> bool:
    """Extend the chunk's lease; False means the chunk was reaped or its run cancelled, re-run or ended."""
    params = {"id": chunk_id, "token": str(token), "lease": lease_seconds}
    return conn.execute(_HEARTBEAT, params).one_or_none() is not None


def add_results(
    conn: Connection, chunk_id: int, token: uuid.UUID | str, results: Sequence[dict[str, Any]], lease_seconds: float
) -> Progress | None:
    """Store one target's results in the chunk (fenced); None when the chunk or its run lost the token."""
    params = {"id": chunk_id, "token": str(token), "results": list(results), "targets": 1, "lease": lease_seconds}
    row = conn.execute(_ADD_RESULTS, params).one_or_none()
    return None if row is None else Progress(row.targets_done, row.targets_total)


def finish(conn: Connection, chunk_id: int, token: uuid.UUID | str) -> Progress | None:
    """Move the chunk's results into its run; the run's progress, or None when the token lost."""
    row = conn.execute(_FINISH, {"id": chunk_id, "token": str(token)}).one_or_none()
    return None if row is None else Progress(row.targets_done, row.targets_total)


def reap(conn: Connection, max_attempts: int, batch: int) -> list[ReapedChunk]:
    """Chunks whose lease expired go back to AVAILABLE (their partial results dropped), alone; a
    chunk that has used all its attempts ends its run FAILED."""
    expired = conn.execute(_EXPIRED, {"batch": batch}).all()
    if not expired:
        return []
    conn.execute(_CLOSE_LOST, {"tokens": [row.token for row in expired]})
    spent = [row for row in expired if row.started and row.attempt >= max_attempts]
    conn.execute(_RELEASE, {"ids": [row.id for row in expired if row not in spent]})
    for row in spent:
        params = {"run_id": row.run_id, "run_token": row.run_token, "chunk": row.chunk, "attempt": row.attempt}
        conn.execute(_ABANDON, params)
    return [ReapedChunk(row.id, row.run_id, row.chunk, row.attempt, row in spent) for row in expired]
