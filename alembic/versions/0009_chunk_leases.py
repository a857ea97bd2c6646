"""Chunks as work of their own (lease, token, attempts), worker slots, and the deployment's identity.

A fanned-out run no longer holds a lease while its chunks wait: each chunk is claimed, started,
heartbeated and reaped on its own, and its targets live in PostgreSQL, not in messages. Workers
record their pool slots, so claims never send more work than there are free slots. The deployment
id names this metadata database on a broker shared by mistake.

Fanned-out runs of the old shape cannot be resumed (their chunk assignments were in messages):
they go back to AVAILABLE with a fresh token, their open attempts closed as LOST.

Revision ID: 0009_chunk_leases
Revises: 0008_unstarted_index
"""

from alembic import op

revision = "0009_chunk_leases"
down_revision = "0008_unstarted_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        WITH fanned AS (
            UPDATE plan_check_run SET status = 'AVAILABLE', token = gen_random_uuid(), result = '{}'::jsonb,
                worker = NULL, lease_expires_at = NULL, claimed_at = NULL, started_at = NULL,
                targets_total = NULL, targets_done = 0, updated_at = now()
            WHERE status = 'RUNNING' AND id IN (SELECT run_id FROM plan_check_chunk)
            RETURNING id
        )
        UPDATE plan_check_attempt SET outcome = 'LOST', finished_at = now()
        WHERE outcome IS NULL AND run_id IN (SELECT id FROM fanned);

        DROP TABLE plan_check_chunk;
        DROP INDEX plan_check_run_unstarted_idx;

        ALTER TABLE plan_check_run ADD COLUMN fanned_out boolean NOT NULL DEFAULT false;
        -- Runs that hold (or are about to hold) a worker slot: claimed or executing, not fanned out.
        CREATE INDEX plan_check_run_occupying_idx ON plan_check_run (id)
            WHERE status = 'RUNNING' AND NOT fanned_out;

        CREATE TABLE plan_check_chunk (
            id bigserial PRIMARY KEY,
            run_id bigint NOT NULL REFERENCES plan_check_run (id) ON DELETE CASCADE,
            run_token uuid NOT NULL,
            chunk integer NOT NULL,
            targets jsonb NOT NULL,
            status text NOT NULL DEFAULT 'AVAILABLE'
                CONSTRAINT plan_check_chunk_status_check CHECK (status IN ('AVAILABLE', 'RUNNING')),
            token uuid NOT NULL DEFAULT gen_random_uuid(),
            attempt integer NOT NULL DEFAULT 0,
            worker text,
            claimed_at timestamptz,
            started_at timestamptz,
            lease_expires_at timestamptz,
            results jsonb NOT NULL DEFAULT '[]'::jsonb,
            targets_done integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT plan_check_chunk_run_token_chunk_key UNIQUE (run_token, chunk)
        );
        CREATE INDEX ix_plan_check_chunk_run_id ON plan_check_chunk (run_id);
        CREATE INDEX plan_check_chunk_claimable_idx ON plan_check_chunk (id) WHERE status = 'AVAILABLE';
        CREATE INDEX plan_check_chunk_lease_idx ON plan_check_chunk (lease_expires_at) WHERE status = 'RUNNING';

        ALTER TABLE plan_check_attempt ADD COLUMN chunk integer;

        CREATE TABLE worker_slots (
            name text PRIMARY KEY,
            slots integer NOT NULL CONSTRAINT worker_slots_slots_check CHECK (slots > 0),
            started_at timestamptz NOT NULL DEFAULT now(),
            last_seen timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE deployment (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            singleton boolean NOT NULL DEFAULT true CONSTRAINT deployment_singleton_key UNIQUE
                CONSTRAINT deployment_singleton_check CHECK (singleton),
            created_at timestamptz NOT NULL DEFAULT now()
        );
        INSERT INTO deployment DEFAULT VALUES;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE deployment;
        DROP TABLE worker_slots;
        ALTER TABLE plan_check_attempt DROP COLUMN chunk;
        DROP TABLE plan_check_chunk;
        DROP INDEX plan_check_run_occupying_idx;
        ALTER TABLE plan_check_run DROP COLUMN fanned_out;
        CREATE INDEX plan_check_run_unstarted_idx ON plan_check_run (id)
            WHERE status = 'RUNNING' AND started_at IS NULL;
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
