"""Issues, rollouts and the outbox that carries a finished run's follow-ups.

Revision ID: 0004_followups
Revises: 0003_leases
"""

from alembic import op

revision = "0004_followups"
down_revision = "0003_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE issue (
            id bigserial PRIMARY KEY,
            plan_id bigint NOT NULL UNIQUE REFERENCES plan (id) ON DELETE CASCADE,
            status text NOT NULL DEFAULT 'OPEN' CONSTRAINT issue_status_check CHECK (status IN ('OPEN', 'DONE', 'CANCELED')),
            approval_status text NOT NULL DEFAULT 'PENDING'
                CONSTRAINT issue_approval_check CHECK (approval_status IN ('PENDING', 'APPROVED', 'REJECTED')),
            risk text CONSTRAINT issue_risk_check CHECK (risk IN ('LOW', 'MEDIUM', 'HIGH')),
            approvers jsonb NOT NULL DEFAULT '[]'::jsonb,
            approval_generation integer,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE rollout (
            id bigserial PRIMARY KEY,
            plan_id bigint NOT NULL REFERENCES plan (id) ON DELETE CASCADE,
            plan_version integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (plan_id, plan_version)
        );
        CREATE TABLE rollout_task (
            id bigserial PRIMARY KEY,
            rollout_id bigint NOT NULL REFERENCES rollout (id) ON DELETE CASCADE,
            target text NOT NULL,
            status text NOT NULL DEFAULT 'PENDING',
            UNIQUE (rollout_id, target)
        );
        CREATE TABLE outbox (
            id bigserial PRIMARY KEY,
            kind text NOT NULL CONSTRAINT outbox_kind_check CHECK (kind IN ('approval.find', 'rollout.create')),
            plan_id bigint NOT NULL,
            dedupe_key text NOT NULL UNIQUE,
            payload jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            delivered_at timestamptz
        );
        CREATE INDEX outbox_pending_idx ON outbox (id) WHERE delivered_at IS NULL;
        """  # noqa: E501
    )


def downgrade() -> None:
    op.execute("DROP TABLE outbox, rollout_task, rollout, issue")
