"""Every statement that reads or changes a plan check run, its attempts and its outbox rows.

The state machine lives here, in SQL: each transition is one conditional UPDATE, so PostgreSQL,
not a process, decides who runs what. Worker writes are fenced by the run's token.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, JSONB, TEXT

FOLLOW_UP_KINDS = ("approval.find", "rollout.create")


@dataclass(frozen=True)
class Claimed:
    id: int
    plan_id: int
    token: uuid.UUID
    attempt: int


@dataclass(frozen=True)
class Started:
    id: int
    plan_id: int
    token: uuid.UUID
    attempt: int
    generation: int
    plan_version: int


@dataclass(frozen=True)
class Reaped:
    id: int
    plan_id: int
    status: str
    attempt: int


@dataclass(frozen=True)
class Cancelled:
    id: int
    plan_id: int


@dataclass(frozen=True)
class Progress:
    targets_done: int
    targets_total: int | None


@dataclass(frozen=True)
class RunView:
    id: int
    plan_id: int
    status: str
    result: dict[str, Any]
    attempt: int
    generation: int
    plan_version: int
    worker: str | None
    targets_total: int | None
    targets_done: int
    created_at: datetime
    claimed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class AttemptView:
    generation: int
    attempt: int
    worker: str
    claimed_at: datetime | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None


_LEASE = "now() + make_interval(secs => :lease)"

_CREATE = text(
    """
    INSERT INTO plan_check_run (plan_id, plan_version, status)
    VALUES (:plan_id, :plan_version, 'AVAILABLE')
    ON CONFLICT (plan_id) DO UPDATE SET
        status = 'AVAILABLE', token = gen_random_uuid(), result = '{}'::jsonb, attempt = 0,
        generation = plan_check_run.generation + 1, plan_version = EXCLUDED.plan_version,
        worker = NULL, lease_expires_at = NULL, claimed_at = NULL, started_at = NULL,
        finished_at = NULL, targets_total = NULL, targets_done = 0, updated_at = now()
    RETURNING id, generation
    """
)

_CLOSE_OPEN_ATTEMPTS = text(
    """
    UPDATE plan_check_attempt SET outcome = :outcome, finished_at = now()
    WHERE run_id = ANY(:run_ids) AND outcome IS NULL
    """
).bindparams(bindparam("run_ids", type_=ARRAY(BIGINT)))

# Backpressure: no more than `cap` runs may wait claimed but not started, so a run message never
# queues in the broker long enough for its lease to lapse while workers are busy.
# `id = ANY(ARRAY(...))` keeps the claimable rows' subquery a one-off InitPlan: with `id IN (...)` and
# 100,000 AVAILABLE rows the planner chose a join and a batch-1 claim took 20 ms instead of 1 ms
# (bench/history.py).
_CLAIM = text(
    f"""
    UPDATE plan_check_run SET
        status = 'RUNNING', token = gen_random_uuid(), worker = NULL,
        claimed_at = now(), started_at = NULL, lease_expires_at = {_LEASE}, updated_at = now()
    WHERE id = ANY(ARRAY(
        SELECT id FROM plan_check_run WHERE status = 'AVAILABLE'
        ORDER BY id
        LIMIT least(:batch, greatest(:cap - (
            SELECT count(*) FROM plan_check_run WHERE status = 'RUNNING' AND started_at IS NULL
        ), 0))
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING id, plan_id, token, attempt
    """
)

# The start and its attempt row are one statement: one round trip for the most frequent write.
_START = text(
    f"""
    WITH started AS (
        UPDATE plan_check_run SET
            started_at = now(), attempt = attempt + 1, worker = :worker, lease_expires_at = {_LEASE},
            updated_at = now()
        WHERE id = :id AND token = :token AND status = 'RUNNING' AND started_at IS NULL
        RETURNING id, plan_id, token, attempt, generation, plan_version, claimed_at, started_at
    ), attempt AS (
        INSERT INTO plan_check_attempt (run_id, generation, attempt, token, worker, claimed_at, started_at)
        SELECT id, generation, attempt, token, :worker, claimed_at, started_at FROM started
    )
    SELECT id, plan_id, token, attempt, generation, plan_version FROM started
    """
)

_HEARTBEAT = text(
    f"""
    UPDATE plan_check_run SET lease_expires_at = {_LEASE}
    WHERE id = :id AND token = :token AND status = 'RUNNING'
    RETURNING id
    """
)

_SET_TOTAL = text(
    f"""
    UPDATE plan_check_run SET targets_total = :total, lease_expires_at = {_LEASE}, updated_at = now()
    WHERE id = :id AND token = :token AND status = 'RUNNING'
    RETURNING id
    """
)

_ADD_RESULTS = text(
    f"""
    UPDATE plan_check_run SET
        result = jsonb_set(result, '{{results}}', coalesce(result -> 'results', '[]'::jsonb) || :results),
        targets_done = targets_done + :targets, lease_expires_at = {_LEASE}, updated_at = now()
    WHERE id = :id AND token = :token AND status = 'RUNNING'
    RETURNING targets_done, targets_total
    """
).bindparams(bindparam("results", type_=JSONB))

# Ending a run, closing its attempt and (on DONE) writing its follow-ups to the outbox are one
# statement: they happen together or not at all, in one round trip. When the token lost, the
# attempt is closed as SUPERSEDED and nothing else changes.
_FINISH = text(
    """
    WITH finished AS (
        UPDATE plan_check_run SET
            status = :status, result = result || :extra, finished_at = now(), lease_expires_at = NULL,
            updated_at = now()
        WHERE id = :id AND token = :token AND status = 'RUNNING'
        RETURNING id, plan_id, generation, plan_version
    ), closed AS (
        UPDATE plan_check_attempt
        SET outcome = CASE WHEN EXISTS (SELECT FROM finished) THEN :status ELSE 'SUPERSEDED' END, finished_at = now()
        WHERE token = :token AND outcome IS NULL
    ), follow_ups AS (
        INSERT INTO outbox (kind, plan_id, dedupe_key, payload)
        SELECT kind, f.plan_id, format('%s:run:%s:%s', kind, f.id, f.generation),
               jsonb_build_object('run_id', f.id, 'generation', f.generation, 'plan_version', f.plan_version)
        FROM finished f CROSS JOIN unnest(CAST(:kinds AS text[])) AS kind
        WHERE :status = 'DONE'
        ON CONFLICT (dedupe_key) DO NOTHING
    )
    SELECT plan_id FROM finished
    """
).bindparams(bindparam("extra", type_=JSONB), bindparam("kinds", type_=ARRAY(TEXT)))

_CANCEL = text(
    """
    UPDATE plan_check_run SET
        status = 'CANCELED', result = result || '{"reason": "canceled"}'::jsonb, finished_at = now(),
        lease_expires_at = NULL, updated_at = now()
    WHERE plan_id = ANY(:plan_ids) AND status IN ('AVAILABLE', 'RUNNING')
    RETURNING id, plan_id
    """
).bindparams(bindparam("plan_ids", type_=ARRAY(BIGINT)))

# Only started executions count as attempts: a claim whose message was lost or never reached a
# worker goes back to AVAILABLE as often as it takes.
_REAP = text(
    """
    UPDATE plan_check_run r SET
        status = CASE WHEN r.started_at IS NOT NULL AND r.attempt >= :max_attempts THEN 'FAILED' ELSE 'AVAILABLE' END,
        result = CASE WHEN r.started_at IS NOT NULL AND r.attempt >= :max_attempts
            THEN jsonb_build_object('results', '[]'::jsonb,
                                    'reason', format('abandoned after %s attempts', r.attempt))
            ELSE '{}'::jsonb END,
        finished_at = CASE WHEN r.started_at IS NOT NULL AND r.attempt >= :max_attempts THEN now() END,
        token = gen_random_uuid(), worker = NULL, started_at = NULL, lease_expires_at = NULL,
        targets_total = NULL, targets_done = 0, updated_at = now()
    WHERE r.id IN (
        SELECT id FROM plan_check_run WHERE status = 'RUNNING' AND lease_expires_at < now()
        ORDER BY lease_expires_at LIMIT :batch FOR UPDATE SKIP LOCKED
    )
    RETURNING r.id, r.plan_id, r.status, r.attempt
    """
)

_START_CHUNK = text(
    """
    INSERT INTO plan_check_chunk (token, chunk, run_id, worker)
    SELECT token, :chunk, id, :worker FROM plan_check_run
    WHERE id = :id AND token = :token AND status = 'RUNNING' AND started_at IS NOT NULL
    ON CONFLICT (token, chunk) DO NOTHING
    RETURNING run_id
    """
)

_RUNNING = text(
    """
    SELECT id, plan_id, token, attempt, generation, plan_version FROM plan_check_run
    WHERE id = :id AND token = :token AND status = 'RUNNING'
    """
)

_FINISH_CHUNK = text("UPDATE plan_check_chunk SET finished_at = now() WHERE token = :token AND chunk = :chunk")

_RUN_COLUMNS = (
    "id, plan_id, status, result, attempt, generation, plan_version, worker, targets_total, targets_done, "
    "created_at, claimed_at, started_at, finished_at"
)


def create(conn: Connection, plan_id: int, plan_version: int) -> int:
    """Create the plan's check run, or re-run it: always AVAILABLE, fresh token, empty result.

    The fresh token fences out whatever execution of the previous generation is still working.
    """
    run_id, generation = conn.execute(_CREATE, {"plan_id": plan_id, "plan_version": plan_version}).one()
    if generation > 1:
        conn.execute(_CLOSE_OPEN_ATTEMPTS, {"run_ids": [run_id], "outcome": "SUPERSEDED"})
    return int(run_id)


def claim(conn: Connection, batch: int, lease_seconds: float, cap: int | None = None) -> list[Claimed]:
    """Move up to `batch` of the oldest AVAILABLE runs to RUNNING, each with a new token and lease,
    while fewer than `cap` (default: `batch`) claimed runs wait to start; `attempt` counts the
    executions started before."""
    params = {"batch": batch, "cap": batch if cap is None else cap, "lease": lease_seconds}
    rows = conn.execute(_CLAIM, params).all()
    return [Claimed(row.id, row.plan_id, row.token, row.attempt) for row in rows]


def start(conn: Connection, run_id: int, token: uuid.UUID | str, worker: str, lease_seconds: float) -> Started | None:
    """Win the run for this delivery, or return None: only the first delivery of a claim's token starts."""
    row = conn.execute(
        _START, {"id": run_id, "token": str(token), "worker": worker, "lease": lease_seconds}
    ).one_or_none()
    if row is None:
        return None
    return Started(row.id, row.plan_id, row.token, row.attempt, row.generation, row.plan_version)


def start_chunk(conn: Connection, run_id: int, token: uuid.UUID | str, chunk: int, worker: str) -> Started | None:
    """Win one chunk of a fanned-out run: only its first delivery under the run's token executes."""
    params = {"id": run_id, "token": str(token), "chunk": chunk, "worker": worker}
    if conn.execute(_START_CHUNK, params).one_or_none() is None:
        return None
    row = conn.execute(_RUNNING, {"id": run_id, "token": str(token)}).one()
    return Started(row.id, row.plan_id, row.token, row.attempt, row.generation, row.plan_version)


def finish_chunk(conn: Connection, token: uuid.UUID | str, chunk: int) -> None:
    conn.execute(_FINISH_CHUNK, {"token": str(token), "chunk": chunk})


def heartbeat(conn: Connection, run_id: int, token: uuid.UUID | str, lease_seconds: float) -> bool:
    """Extend the lease of live work; False means the run was cancelled, re-run or reaped."""
    params = {"id": run_id, "token": str(token), "lease": lease_seconds}
    return conn.execute(_HEARTBEAT, params).one_or_none() is not None


def set_targets_total(conn: Connection, run_id: int, token: uuid.UUID | str, total: int, lease_seconds: float) -> bool:
    params = {"id": run_id, "token": str(token), "total": total, "lease": lease_seconds}
    return conn.execute(_SET_TOTAL, params).one_or_none() is not None


def add_results(
    conn: Connection,
    run_id: int,
    token: uuid.UUID | str,
    results: Sequence[dict[str, Any]],
    targets: int,
    lease_seconds: float,
) -> Progress | None:
    """Append one or more targets' results as they arrive (fenced); None when the token lost."""
    params = {"id": run_id, "token": str(token), "results": list(results), "targets": targets, "lease": lease_seconds}
    row = conn.execute(_ADD_RESULTS, params).one_or_none()
    return None if row is None else Progress(row.targets_done, row.targets_total)


def finish(
    conn: Connection, run_id: int, token: uuid.UUID | str, status: str, extra: dict[str, Any] | None = None
) -> bool:
    """End the run as DONE, FAILED or CANCELED if this token still holds it.

    On DONE the follow-ups are written to the outbox by the same statement, so they exist if and
    only if the DONE does.
    """
    if status not in ("DONE", "FAILED", "CANCELED"):
        raise ValueError(f"not a terminal status: {status}")
    params = {"id": run_id, "token": str(token), "status": status, "extra": extra or {}, "kinds": list(FOLLOW_UP_KINDS)}
    return conn.execute(_FINISH, params).one_or_none() is not None


def cancel(conn: Connection, plan_ids: Sequence[int]) -> list[Cancelled]:
    """Cancel the AVAILABLE or RUNNING runs of these plans; finished runs are never touched."""
    rows = conn.execute(_CANCEL, {"plan_ids": list(plan_ids)}).all()
    if rows:
        conn.execute(_CLOSE_OPEN_ATTEMPTS, {"run_ids": [row.id for row in rows], "outcome": "CANCELED"})
    return [Cancelled(row.id, row.plan_id) for row in rows]


def reap(conn: Connection, max_attempts: int, batch: int) -> list[Reaped]:
    """Return expired RUNNING runs to AVAILABLE, or end them FAILED once their attempts are spent."""
    rows = conn.execute(_REAP, {"max_attempts": max_attempts, "batch": batch}).all()
    if rows:
        conn.execute(_CLOSE_OPEN_ATTEMPTS, {"run_ids": [row.id for row in rows], "outcome": "LOST"})
    return [Reaped(row.id, row.plan_id, row.status, row.attempt) for row in rows]


def get(conn: Connection, plan_id: int) -> RunView | None:
    row = conn.execute(
        text(f"SELECT {_RUN_COLUMNS} FROM plan_check_run WHERE plan_id = :p"), {"p": plan_id}
    ).one_or_none()
    return None if row is None else RunView(**row._asdict())


def list_runs(conn: Connection, status: str | None = None, limit: int = 100) -> list[RunView]:
    rows = conn.execute(
        text(
            f"SELECT {_RUN_COLUMNS} FROM plan_check_run WHERE (CAST(:status AS text) IS NULL OR status = :status) "
            "ORDER BY id DESC LIMIT :limit"
        ),
        {"status": status, "limit": limit},
    ).all()
    return [RunView(**row._asdict()) for row in rows]


def attempts(conn: Connection, run_id: int) -> list[AttemptView]:
    rows = conn.execute(
        text(
            "SELECT generation, attempt, worker, claimed_at, started_at, finished_at, outcome "
            "FROM plan_check_attempt WHERE run_id = :r ORDER BY id"
        ),
        {"r": run_id},
    ).all()
    return [AttemptView(**row._asdict()) for row in rows]
