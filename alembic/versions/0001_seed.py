"""Seed schema: catalog, plans and plan_check_run with RUNNING as the first status.

This is the schema the project started from: a check run was created directly as RUNNING and
picked up by an in-process scheduler. The next revision introduces AVAILABLE.

Revision ID: 0001_seed
Revises:
"""

from alembic import op

revision = "0001_seed"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE project (
            id bigserial PRIMARY KEY,
            key text NOT NULL UNIQUE,
            title text NOT NULL,
            archived boolean NOT NULL DEFAULT false,
            settings jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE instance (
            id bigserial PRIMARY KEY,
            key text NOT NULL UNIQUE,
            engine text NOT NULL DEFAULT 'POSTGRES' CONSTRAINT instance_engine_check CHECK (engine = 'POSTGRES'),
            url text NOT NULL,
            password_env text,
            environment text NOT NULL DEFAULT 'test',
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE database (
            id bigserial PRIMARY KEY,
            instance_id bigint NOT NULL REFERENCES instance (id) ON DELETE CASCADE,
            name text NOT NULL,
            project_id bigint REFERENCES project (id) ON DELETE SET NULL,
            environment text NOT NULL,
            labels jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (instance_id, name)
        );
        CREATE TABLE database_group (
            id bigserial PRIMARY KEY,
            project_id bigint NOT NULL REFERENCES project (id) ON DELETE CASCADE,
            key text NOT NULL,
            expression text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (project_id, key)
        );
        CREATE TABLE sheet (
            sha256 text PRIMARY KEY,
            content text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE plan (
            id bigserial PRIMARY KEY,
            project_id bigint NOT NULL REFERENCES project (id) ON DELETE CASCADE,
            title text NOT NULL,
            specs jsonb NOT NULL DEFAULT '[]'::jsonb,
            version integer NOT NULL DEFAULT 1,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE plan_check_run (
            id bigserial PRIMARY KEY,
            plan_id bigint NOT NULL UNIQUE,
            status text NOT NULL
                CONSTRAINT plan_check_run_status_check CHECK (status IN ('RUNNING', 'DONE', 'FAILED', 'CANCELED')),
            result jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX plan_check_run_active_idx ON plan_check_run (status, id) WHERE status = 'RUNNING';
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE plan_check_run, plan, sheet, database_group, database, instance, project")
