"""Chunks of fanned-out runs: a large plan's targets are checked in parallel by any workers.

Revision ID: 0006_chunks
Revises: 0005_beat_heartbeat
"""

from alembic import op

revision = "0006_chunks"
down_revision = "0005_beat_heartbeat"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE plan_check_chunk (
            token uuid NOT NULL,
            chunk integer NOT NULL,
            run_id bigint NOT NULL REFERENCES plan_check_run (id) ON DELETE CASCADE,
            worker text NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            PRIMARY KEY (token, chunk)
        );
        CREATE INDEX ix_plan_check_chunk_run_id ON plan_check_chunk (run_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE plan_check_chunk")
