"""Every statement of the outbox: follow-ups written with a DONE run, taken by the relay, backed off.

The run's finishing statement (`runs.finish`) writes the rows; what a follow-up does is decided
above the store (`plancheck.domain.followups`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, BIGINT


@dataclass(frozen=True)
class FollowUp:
    id: int
    kind: str
    plan_id: int
    payload: dict[str, Any]


# Due follow-ups, oldest first; a relay holds them until its transaction ends, others skip them.
_PENDING = text(
    """
    SELECT id, kind, plan_id, payload FROM outbox
    WHERE delivered_at IS NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id LIMIT :batch FOR UPDATE SKIP LOCKED
    """
)

# A failing follow-up waits 2, 4, 8 … seconds, at most 5 minutes, so it never blocks the others.
_BACK_OFF = text(
    """
    UPDATE outbox SET failures = failures + 1, last_error = :error,
        next_attempt_at = now() + make_interval(secs => least(power(2, failures + 1), 300))
    WHERE id = :id
    """
)

_MARK_DELIVERED = text("UPDATE outbox SET delivered_at = now() WHERE id = ANY(:ids)").bindparams(
    bindparam("ids", type_=ARRAY(BIGINT))
)

_PLANS_WITH_ISSUE = text("SELECT plan_id FROM issue WHERE plan_id = ANY(:plan_ids)").bindparams(
    bindparam("plan_ids", type_=ARRAY(BIGINT))
)

MAX_ERROR_LENGTH = 2000


def take_due(conn: Connection, batch: int) -> list[FollowUp]:
    """Up to `batch` due follow-ups, locked for this transaction."""
    return [FollowUp(row.id, row.kind, row.plan_id, row.payload) for row in conn.execute(_PENDING, {"batch": batch})]


def plans_with_issue(conn: Connection, plan_ids: Sequence[int]) -> set[int]:
    return set(conn.execute(_PLANS_WITH_ISSUE, {"plan_ids": sorted(set(plan_ids))}).scalars())


def mark_delivered(conn: Connection, ids: Sequence[int]) -> None:
    if ids:
        conn.execute(_MARK_DELIVERED, {"ids": list(ids)})


def back_off(conn: Connection, follow_up_id: int, error: str) -> None:
    """Count a failure and push the follow-up's next attempt out; `error` is stored (already redacted)."""
    conn.execute(_BACK_OFF, {"id": follow_up_id, "error": error[:MAX_ERROR_LENGTH]})
