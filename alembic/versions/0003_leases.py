"""Leases, fencing tokens and the attempt record.

The claim index holds only AVAILABLE rows in id order: with RUNNING rows in it too, once ANALYZE
saw many AVAILABLE rows the planner preferred the primary key plus a status filter and walked
past every finished or running row at the head of the table. The reaper gets its own index on
the lease expiry of RUNNING rows.

Revision ID: 0003_leases
Revises: 0002_available
"""

from alembic import op

revision = "0003_leases"
down_revision = "0002_available"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE plan_check_run
            ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid(),
            ADD COLUMN attempt integer NOT NULL DEFAULT 0,
            ADD COLUMN generation integer NOT NULL DEFAULT 1,
            ADD COLUMN plan_version integer NOT NULL DEFAULT 1,
            ADD COLUMN worker text,
            ADD COLUMN lease_expires_at timestamptz,
            ADD COLUMN claimed_at timestamptz,
            ADD COLUMN started_at timestamptz,
            ADD COLUMN finished_at timestamptz,
            ADD COLUMN targets_total integer,
            ADD COLUMN targets_done integer NOT NULL DEFAULT 0;
        DROP INDEX plan_check_run_active_idx;
        CREATE INDEX plan_check_run_claimable_idx ON plan_check_run (id) WHERE status = 'AVAILABLE';
        CREATE INDEX plan_check_run_lease_idx ON plan_check_run (lease_expires_at) WHERE status = 'RUNNING';
        CREATE TABLE plan_check_attempt (
            id bigserial PRIMARY KEY,
            run_id bigint NOT NULL REFERENCES plan_check_run (id) ON DELETE CASCADE,
            generation integer NOT NULL,
            attempt integer NOT NULL,
            token uuid NOT NULL UNIQUE,
            worker text NOT NULL,
            claimed_at timestamptz,
            started_at timestamptz NOT NULL,
            finished_at timestamptz,
            outcome text CONSTRAINT plan_check_attempt_outcome_check
                CHECK (outcome IN ('DONE', 'FAILED', 'CANCELED', 'LOST', 'SUPERSEDED'))
        );
        CREATE INDEX ix_plan_check_attempt_run_id ON plan_check_attempt (run_id);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE plan_check_attempt;
        DROP INDEX plan_check_run_claimable_idx;
        DROP INDEX plan_check_run_lease_idx;
        CREATE INDEX plan_check_run_active_idx ON plan_check_run (status, id)
            WHERE status IN ('AVAILABLE', 'RUNNING');
        ALTER TABLE plan_check_run
            DROP COLUMN token, DROP COLUMN attempt, DROP COLUMN generation, DROP COLUMN plan_version,
            DROP COLUMN worker, DROP COLUMN lease_expires_at, DROP COLUMN claimed_at,
            DROP COLUMN started_at, DROP COLUMN finished_at, DROP COLUMN targets_total,
            DROP COLUMN targets_done;
        """
    )
