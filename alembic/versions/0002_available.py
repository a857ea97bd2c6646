"""Add AVAILABLE: runs wait to be claimed instead of being born RUNNING.

Every RUNNING row of the seed schema belonged to an in-process scheduler that no longer exists,
so it becomes AVAILABLE and is claimed again after the upgrade.

Revision ID: 0002_available
Revises: 0001_seed
"""

from alembic import op

revision = "0002_available"
down_revision = "0001_seed"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE plan_check_run DROP CONSTRAINT plan_check_run_status_check;
        ALTER TABLE plan_check_run ADD CONSTRAINT plan_check_run_status_check
            CHECK (status IN ('AVAILABLE', 'RUNNING', 'DONE', 'FAILED', 'CANCELED'));
        UPDATE plan_check_run SET status = 'AVAILABLE', updated_at = now() WHERE status = 'RUNNING';
        DROP INDEX plan_check_run_active_idx;
        CREATE INDEX plan_check_run_active_idx ON plan_check_run (status, id)
            WHERE status IN ('AVAILABLE', 'RUNNING');
        """
    )


def downgrade() -> None:
    op.execute(
        """
        UPDATE plan_check_run SET status = 'RUNNING', updated_at = now() WHERE status = 'AVAILABLE';
        ALTER TABLE plan_check_run DROP CONSTRAINT plan_check_run_status_check;
        ALTER TABLE plan_check_run ADD CONSTRAINT plan_check_run_status_check
            CHECK (status IN ('RUNNING', 'DONE', 'FAILED', 'CANCELED'));
        DROP INDEX plan_check_run_active_idx;
        CREATE INDEX plan_check_run_active_idx ON plan_check_run (status, id) WHERE status = 'RUNNING';
        """
    )
