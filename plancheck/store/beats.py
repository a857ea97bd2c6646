"""Beat heartbeats: which `celery beat` processes ticked, and when (table beat_heartbeat).

Beat holds no state, so its liveness must be recorded where everyone can read it: PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

# A beat silent for this long is gone for good (a restart records itself under a new name).
FORGET_AFTER_SECONDS = 24 * 3600


@dataclass(frozen=True)
class BeatSeen:
    name: str
    started_at: datetime
    last_seen: datetime
    age_seconds: float


_RECORD = text(
    """
    INSERT INTO beat_heartbeat (name) VALUES (:name)
    ON CONFLICT (name) DO UPDATE SET last_seen = now()
    """
)

_FORGET = text("DELETE FROM beat_heartbeat WHERE last_seen < now() - make_interval(secs => :seconds)")

_SEEN = text(
    """
    SELECT name, started_at, last_seen, extract(epoch FROM now() - last_seen)::float8 AS age_seconds
    FROM beat_heartbeat ORDER BY last_seen DESC
    """
)


def record(conn: Connection, name: str) -> None:
    """Mark beat `name` alive now, and forget beats silent for a day."""
    conn.execute(_RECORD, {"name": name})
    conn.execute(_FORGET, {"seconds": FORGET_AFTER_SECONDS})


def seen(conn: Connection) -> list[BeatSeen]:
    """Every known beat, most recently seen first."""
    return [BeatSeen(**row._asdict()) for row in conn.execute(_SEEN)]
