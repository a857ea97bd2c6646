"""Worker slots and the deployment's identity (tables worker_slots and deployment).

Every `celery worker` records how many tasks it can run at once and refreshes that record while it
lives. Claims read the sum of live slots, so they never send more work than the cluster can start
at once: a claimed run's message never waits in the broker behind busy workers until its lease
lapses.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, text

_RECORD = text(
    """
    INSERT INTO worker_slots (name, slots) VALUES (:name, :slots)
    ON CONFLICT (name) DO UPDATE SET slots = EXCLUDED.slots, last_seen = now()
    """
)

_FORGET = text("DELETE FROM worker_slots WHERE name = :name")

# Workers silent for a day are gone for good (a restarted worker records itself again).
_FORGET_SILENT = text("DELETE FROM worker_slots WHERE last_seen < now() - interval '1 day'")

_LIVE_SLOTS = text(
    "SELECT coalesce(sum(slots), 0) FROM worker_slots WHERE last_seen > now() - make_interval(secs => :stale)"
)

_DEPLOYMENT = text("SELECT id FROM deployment")


def record(conn: Connection, name: str, slots: int) -> None:
    """Mark worker `name` alive now with `slots` pool slots."""
    conn.execute(_RECORD, {"name": name, "slots": slots})
    conn.execute(_FORGET_SILENT)


def forget(conn: Connection, name: str) -> None:
    """The worker stops taking work (warm shutdown): its slots no longer count."""
    conn.execute(_FORGET, {"name": name})


def live_slots(conn: Connection, stale_seconds: float) -> int:
    """Slots of workers seen within `stale_seconds`."""
    return int(conn.execute(_LIVE_SLOTS, {"stale": stale_seconds}).scalar_one())


def deployment_id(conn: Connection) -> uuid.UUID:
    """The id of this metadata database, created by its migration."""
    return uuid.UUID(str(conn.execute(_DEPLOYMENT).scalar_one()))
