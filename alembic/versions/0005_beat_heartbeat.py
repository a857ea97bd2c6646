"""Beat heartbeats: each `celery beat` records when it last ticked, for `plancheck status` and metrics.

Beats keep no state and any number may run, so "is a beat alive?" can only be answered by a record
outside them; one row per beat process, pruned once it has been silent for a day.

Revision ID: 0005_beat_heartbeat
Revises: 0004_followups
"""

from alembic import op

revision = "0005_beat_heartbeat"
down_revision = "0004_followups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE beat_heartbeat (
            name text PRIMARY KEY,
            started_at timestamptz NOT NULL DEFAULT now(),
            last_seen timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE beat_heartbeat")
