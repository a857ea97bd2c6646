"""Index the claimed-but-unstarted runs that the claim's backpressure counts on every claim.

Revision ID: 0008_unstarted_index
Revises: 0007_outbox_backoff
"""

from alembic import op

revision = "0008_unstarted_index"
down_revision = "0007_outbox_backoff"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX plan_check_run_unstarted_idx ON plan_check_run (id) "
        "WHERE status = 'RUNNING' AND started_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX plan_check_run_unstarted_idx")
