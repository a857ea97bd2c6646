"""Every statement that reads or changes a plan check run, its attempts and its outbox rows.

The state machine lives here, in SQL: each transition is one conditional UPDATE, so PostgreSQL,
not a process, decides who runs what. Worker writes are fenced by the run's token. Claims are in
`claims`, the chunks of fanned-out runs in `chunks`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT, JSONB, TEXT

from plancheck.core.states import FINAL_STATUSES, UNFINISHED_STATUSES, AttemptOutcome, FollowUpKind, RunStatus, sql_list


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

    @property
    def complete(self) -> bool:
        return self.targets_done == self.targets_total


@dataclass(frozen=True)
class RunView:
    """A run as readers see it: a fanned-out run's results and progress include its unfinished chunks'."""

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
    fanned_out: bool
    created_at: datetime
    claimed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class AttemptView:
    generation: int
    attempt: int
    chunk: int | None  # None: the run's own execution; a number: one chunk of a fanned-out run
    worker: str
    claimed_at: datetime | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None


_LEASE = "now() + make_interval(secs => :lease)"

_CREATE = text(
    f"""
    INSERT INTO plan_check_run (plan_id, plan_version, status)
    VALUES (:plan_id, :plan_version, '{RunStatus.AVAILABLE}')
    ON CONFLICT (plan_id) DO UPDATE SET
        status = '{RunStatus.AVAILABLE}', token = gen_random_uuid(), result = '{{}}'::jsonb, attempt = 0,
        generation = plan_check_run.generation + 1, plan_version = EXCLUDED.plan_version,
        worker = NULL, lease_expires_at = NULL, claimed_at = NULL, started_at = NULL, fanned_out = false,
        finished_at = NULL, targets_total = NULL, targets_done = 0, updated_at = now()
    RETURNING id, generation
    """
)

# A run that leaves its token behind (re-run, cancel, reap) closes the executions still open and
# drops the chunks of that token: their workers' fenced writes and heartbeats match nothing now.
_CLOSE_OPEN_ATTEMPTS = text(
    """
    WITH dropped AS (DELETE FROM plan_check_chunk WHERE run_id = ANY(:run_ids))
    UPDATE plan_check_attempt SET outcome = :outcome, finished_at = now()
    WHERE run_id = ANY(:run_ids) AND outcome IS NULL
    """
).bindparams(bindparam("run_ids", type_=ARRAY(BIGINT)))

# The start and its attempt row are one statement: one round trip for the most frequent write.
_START = text(
    f"""
    WITH started AS (
        UPDATE plan_check_run SET
            started_at = now(), attempt = attempt + 1, worker = :worker, lease_expires_at = {_LEASE},
            updated_at = now()
        WHERE id = :id AND token = :token AND status = '{RunStatus.RUNNING}' AND started_at IS NULL
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
    WHERE id = :id AND token = :token AND status = '{RunStatus.RUNNING}' AND NOT fanned_out
    RETURNING id
    """
)

_SET_TOTAL = text(
    f"""
    UPDATE plan_check_run SET targets_total = :total, lease_expires_at = {_LEASE}, updated_at = now()
    WHERE id = :id AND token = :token AND status = '{RunStatus.RUNNING}'
    RETURNING id
    """
)

# Fanning out hands the run's liveness to its chunks: the run gives up its lease (no reaper looks at
# it while its chunks wait or run) and its slot, and every chunk becomes claimable work of its own.
_FAN_OUT = text(
    f"""
    WITH run AS (
        UPDATE plan_check_run SET fanned_out = true, lease_expires_at = NULL, targets_total = :total,
            updated_at = now()
        WHERE id = :id AND token = :token AND status = '{RunStatus.RUNNING}' AND NOT fanned_out
        RETURNING id, token
    )
    INSERT INTO plan_check_chunk (run_id, run_token, chunk, targets)
    SELECT run.id, run.token, piece.ordinality - 1, piece.value
    FROM run CROSS JOIN jsonb_array_elements(:chunks) WITH ORDINALITY AS piece
    RETURNING id
    """
).bindparams(bindparam("chunks", type_=JSONB))

_ADD_RESULTS = text(
    f"""
    UPDATE plan_check_run SET
        result = jsonb_set(result, '{{results}}', coalesce(result -> 'results', '[]'::jsonb) || :results),
        targets_done = targets_done + :targets, lease_expires_at = {_LEASE}, updated_at = now()
    WHERE id = :id AND token = :token AND status = '{RunStatus.RUNNING}' AND NOT fanned_out
    RETURNING targets_done, targets_total
    """
).bindparams(bindparam("results", type_=JSONB))

# Ending a run, closing its attempts and (on DONE) writing its follow-ups to the outbox are one
# statement: they happen together or not at all, in one round trip. When the token lost, the
# attempt is closed as SUPERSEDED and nothing else changes.
_FINISH = text(
    f"""
    WITH finished AS (
        UPDATE plan_check_run SET
            status = :status, result = result || :extra, finished_at = now(), lease_expires_at = NULL,
            updated_at = now()
        WHERE id = :id AND token = :token AND status = '{RunStatus.RUNNING}'
        RETURNING id, plan_id, generation, plan_version
    ), closed AS (
        UPDATE plan_check_attempt
        SET outcome = CASE WHEN EXISTS (SELECT FROM finished) THEN :status ELSE '{AttemptOutcome.SUPERSEDED}' END,
            finished_at = now()
        WHERE token = :token AND outcome IS NULL
    ), dropped AS (
        DELETE FROM plan_check_chunk WHERE run_token = :token
    ), follow_ups AS (
        INSERT INTO outbox (kind, plan_id, dedupe_key, payload)
        SELECT kind, f.plan_id, format('%s:run:%s:%s', kind, f.id, f.generation),
               jsonb_build_object('run_id', f.id, 'generation', f.generation, 'plan_version', f.plan_version)
        FROM finished f CROSS JOIN unnest(CAST(:kinds AS text[])) AS kind
        WHERE :status = '{RunStatus.DONE}'
        ON CONFLICT (dedupe_key) DO NOTHING
    )
    SELECT plan_id FROM finished
    """
).bindparams(bindparam("extra", type_=JSONB), bindparam("kinds", type_=ARRAY(TEXT)))

_CANCEL = text(
    f"""
    UPDATE plan_check_run SET
        status = '{RunStatus.CANCELED}', result = result || '{{"reason": "canceled"}}'::jsonb, finished_at = now(),
        lease_expires_at = NULL, updated_at = now()
    WHERE plan_id = ANY(:plan_ids) AND status IN ({sql_list(UNFINISHED_STATUSES)})
    RETURNING id, plan_id
    """
).bindparams(bindparam("plan_ids", type_=ARRAY(BIGINT)))

# Only started executions count as attempts: a claim whose message was lost or never reached a
# worker goes back to AVAILABLE as often as it takes. A fanned-out run has no lease (its chunks
# have theirs), so it is never reaped here.
_REAP = text(
    f"""
    UPDATE plan_check_run r SET
        status = CASE WHEN r.started_at IS NOT NULL AND r.attempt >= :max_attempts THEN '{RunStatus.FAILED}'
                      ELSE '{RunStatus.AVAILABLE}' END,
        result = CASE WHEN r.started_at IS NOT NULL AND r.attempt >= :max_attempts
            THEN jsonb_build_object('results', '[]'::jsonb,
                                    'reason', format('abandoned after %s attempts', r.attempt))
            ELSE '{{}}'::jsonb END,
        finished_at = CASE WHEN r.started_at IS NOT NULL AND r.attempt >= :max_attempts THEN now() END,
        token = gen_random_uuid(), worker = NULL, started_at = NULL, lease_expires_at = NULL,
        targets_total = NULL, targets_done = 0, updated_at = now()
    WHERE r.id IN (
        SELECT id FROM plan_check_run WHERE status = '{RunStatus.RUNNING}' AND lease_expires_at < now()
        ORDER BY lease_expires_at LIMIT :batch FOR UPDATE SKIP LOCKED
    )
    RETURNING r.id, r.plan_id, r.status, r.attempt
    """
)

_GET = text(
    """
    SELECT id, plan_id, status, result, attempt, generation, plan_version, worker, targets_total, targets_done,
           fanned_out, created_at, claimed_at, started_at, finished_at, token
    FROM plan_check_run WHERE plan_id = :plan_id
    """
)

# The partial results of a fanned-out run's unfinished chunks (a finished chunk's are in the run row).
_CHUNKS_IN_FLIGHT = text(
    """
    SELECT coalesce(jsonb_agg(result ORDER BY chunk), '[]'::jsonb) AS results, coalesce(sum(done), 0) AS done
    FROM (SELECT chunk, targets_done AS done, jsonb_array_elements(results) AS result
          FROM plan_check_chunk WHERE run_id = :run_id AND run_token = :token) AS piece
    """
)

_ATTEMPTS = text(
    """
    SELECT generation, attempt, chunk, worker, claimed_at, started_at, finished_at, outcome
    FROM plan_check_attempt WHERE run_id = :run_id ORDER BY id
    """
)


def create(conn: Connection, plan_id: int, plan_version: int) -> int:
    """Create the plan's check run, or re-run it: always AVAILABLE, fresh token, empty result.

    The fresh token fences out whatever execution of the previous generation is still working.
    """
    run_id, generation = conn.execute(_CREATE, {"plan_id": plan_id, "plan_version": plan_version}).one()
    if generation > 1:
        conn.execute(_CLOSE_OPEN_ATTEMPTS, {"run_ids": [run_id], "outcome": AttemptOutcome.SUPERSEDED})
    return int(run_id)


def start(conn: Connection, run_id: int, token: uuid.UUID | str, worker: str, lease_seconds: float) -> Started | None:
    """Win the run for this delivery, or return None: only the first delivery of a claim's token starts."""
    row = conn.execute(
        _START, {"id": run_id, "token": str(token), "worker": worker, "lease": lease_seconds}
    ).one_or_none()
    if row is None:
        return None
    return Started(row.id, row.plan_id, row.token, row.attempt, row.generation, row.plan_version)


def heartbeat(conn: Connection, run_id: int, token: uuid.UUID | str, lease_seconds: float) -> bool:
    """Extend the lease of live work; False means the run was cancelled, re-run or reaped."""
    params = {"id": run_id, "token": str(token), "lease": lease_seconds}
    return conn.execute(_HEARTBEAT, params).one_or_none() is not None


def set_targets_total(conn: Connection, run_id: int, token: uuid.UUID | str, total: int, lease_seconds: float) -> bool:
    params = {"id": run_id, "token": str(token), "total": total, "lease": lease_seconds}
    return conn.execute(_SET_TOTAL, params).one_or_none() is not None


def fan_out(conn: Connection, run_id: int, token: uuid.UUID | str, chunks: Sequence[Sequence[tuple[str, str]]]) -> bool:
    """Split the run into chunks of (target, sheet) pairs, stored here and claimable at once; the run
    keeps its token but no lease. False when the token lost."""
    total = sum(len(chunk) for chunk in chunks)
    pieces = [[list(pair) for pair in chunk] for chunk in chunks]
    rows = conn.execute(_FAN_OUT, {"id": run_id, "token": str(token), "total": total, "chunks": pieces}).all()
    return len(rows) == len(chunks) > 0


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
    if status not in FINAL_STATUSES:
        raise ValueError(f"not a terminal status: {status}")
    params = {"id": run_id, "token": str(token), "status": status, "extra": extra or {}, "kinds": list(FollowUpKind)}
    return conn.execute(_FINISH, params).one_or_none() is not None


def cancel(conn: Connection, plan_ids: Sequence[int]) -> list[Cancelled]:
    """Cancel the AVAILABLE or RUNNING runs of these plans; finished runs are never touched."""
    rows = conn.execute(_CANCEL, {"plan_ids": list(plan_ids)}).all()
    if rows:
        conn.execute(_CLOSE_OPEN_ATTEMPTS, {"run_ids": [row.id for row in rows], "outcome": AttemptOutcome.CANCELED})
    return [Cancelled(row.id, row.plan_id) for row in rows]


def reap(conn: Connection, max_attempts: int, batch: int) -> list[Reaped]:
    """Return expired RUNNING runs to AVAILABLE, or end them FAILED once their attempts are spent."""
    rows = conn.execute(_REAP, {"max_attempts": max_attempts, "batch": batch}).all()
    if rows:
        conn.execute(_CLOSE_OPEN_ATTEMPTS, {"run_ids": [row.id for row in rows], "outcome": AttemptOutcome.LOST})
    return [Reaped(row.id, row.plan_id, row.status, row.attempt) for row in rows]


def get(conn: Connection, plan_id: int) -> RunView | None:
    row = conn.execute(_GET, {"plan_id": plan_id}).one_or_none()
    if row is None:
        return None
    fields = row._asdict()
    token = fields.pop("token")
    if row.fanned_out and row.status == RunStatus.RUNNING:
        in_flight = conn.execute(_CHUNKS_IN_FLIGHT, {"run_id": row.id, "token": token}).one()
        results = [*row.result.get("results", []), *in_flight.results]
        fields["result"] = {**row.result, "results": results}
        fields["targets_done"] = row.targets_done + int(in_flight.done)
    return RunView(**fields)


def attempts(conn: Connection, run_id: int) -> list[AttemptView]:
    return [AttemptView(**row._asdict()) for row in conn.execute(_ATTEMPTS, {"run_id": run_id})]
