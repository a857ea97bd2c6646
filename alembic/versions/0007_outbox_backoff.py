"""Outbox retries with back-off: a follow-up that keeps failing waits, and never blocks the rest.

Revision ID: 0007_outbox_backoff
Revises: 0006_chunks
"""

from alembic import op

revision = "0007_outbox_backoff"
down_revision = "0006_chunks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE outbox
            ADD COLUMN failures integer NOT NULL DEFAULT 0,
            ADD COLUMN last_error text,
            ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now();
        DROP INDEX outbox_pending_idx;
        CREATE INDEX outbox_pending_idx ON outbox (next_attempt_at, id) WHERE delivered_at IS NULL;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX outbox_pending_idx;
        ALTER TABLE outbox DROP COLUMN failures, DROP COLUMN last_error, DROP COLUMN next_attempt_at;
        CREATE INDEX outbox_pending_idx ON outbox (id) WHERE delivered_at IS NULL;
        """
    )
