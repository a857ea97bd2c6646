"""Claims: AVAILABLE chunks and runs become RUNNING with a new token and a lease, up to the free slots.

A claim sends work only where a worker can start it at once: the free slots are the live workers'
slots (worker_slots) minus the runs and chunks already claimed or executing. So a claimed message
never waits in the broker behind busy workers until its lease lapses, and nothing healthy is reaped
for waiting. Claimers take a transaction-level advisory lock first, so concurrent claimers (beats,
finishing runs, plan creation) never count the same free slot twice.

Chunks come first: they continue runs that already started. Among each, the oldest go first, read
from a partial index that holds only claimable rows in id order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import Connection, text

from plancheck.core.states import ChunkStatus, RunStatus

# Any constant: it names the claim lock among the advisory locks of the metadata database.
_CLAIM_LOCK_KEY = 0x706C616E63686B  # "plancheck" in spirit

_LOCK = text("SELECT pg_advisory_xact_lock(:key)")

_LEASE = "now() + make_interval(secs => :lease)"

_FREE_SLOTS = f"""greatest(least(:batch,
        (SELECT coalesce(sum(slots), 0) FROM worker_slots WHERE last_seen > now() - make_interval(secs => :stale))
        - (SELECT count(*) FROM plan_check_run WHERE status = '{RunStatus.RUNNING}' AND NOT fanned_out)
        - (SELECT count(*) FROM plan_check_chunk WHERE status = '{ChunkStatus.RUNNING}')), 0)"""

# `id = ANY(ARRAY(...))` keeps the claimable rows' subquery a one-off InitPlan: with `id IN (...)` and
# 100,000 AVAILABLE rows the planner chose a join and a batch-1 claim took 20 ms instead of 1 ms
# (bench/history.py).
_CLAIM_CHUNKS = text(
    f"""
    UPDATE plan_check_chunk SET
        status = '{ChunkStatus.RUNNING}', token = gen_random_uuid(), worker = NULL, claimed_at = now(),
        started_at = NULL, lease_expires_at = {_LEASE}
    WHERE id = ANY(ARRAY(
        SELECT c.id FROM plan_check_chunk c
        WHERE c.status = '{ChunkStatus.AVAILABLE}'
          AND EXISTS (SELECT FROM plan_check_run r WHERE r.id = c.run_id AND r.status = '{RunStatus.RUNNING}'
                      AND r.token = c.run_token)
        ORDER BY c.id LIMIT {_FREE_SLOTS}
        FOR UPDATE OF c SKIP LOCKED
    ))
    RETURNING id, run_id, chunk, token
    """
)

_CLAIM_RUNS = text(
    f"""
    UPDATE plan_check_run SET
        status = '{RunStatus.RUNNING}', token = gen_random_uuid(), worker = NULL, fanned_out = false,
        claimed_at = now(), started_at = NULL, lease_expires_at = {_LEASE}, updated_at = now()
    WHERE id = ANY(ARRAY(
        SELECT id FROM plan_check_run WHERE status = '{RunStatus.AVAILABLE}'
        ORDER BY id LIMIT {_FREE_SLOTS}
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING id, plan_id, token, attempt
    """
)


@dataclass(frozen=True)
class ClaimedRun:
    id: int
    plan_id: int
    token: uuid.UUID
    attempt: int  # executions started before this claim


@dataclass(frozen=True)
class ClaimedChunk:
    id: int
    run_id: int
    chunk: int
    token: uuid.UUID


@dataclass(frozen=True)
class Claims:
    """What one claim took: each needs its message sent."""

    runs: list[ClaimedRun] = field(default_factory=list)
    chunks: list[ClaimedChunk] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.runs) + len(self.chunks)


def claim(conn: Connection, batch: int, lease_seconds: float, stale_seconds: float) -> Claims:
    """Claim up to `batch` chunks and runs, never more than the free slots of workers seen within
    `stale_seconds`; the caller commits, then sends one message per claimed piece."""
    conn.execute(_LOCK, {"key": _CLAIM_LOCK_KEY})
    params = {"batch": batch, "lease": lease_seconds, "stale": stale_seconds}
    chunks = [ClaimedChunk(row.id, row.run_id, row.chunk, row.token) for row in conn.execute(_CLAIM_CHUNKS, params)]
    remaining = {**params, "batch": batch - len(chunks)}
    runs = [ClaimedRun(row.id, row.plan_id, row.token, row.attempt) for row in conn.execute(_CLAIM_RUNS, remaining)]
    return Claims(runs, chunks)
