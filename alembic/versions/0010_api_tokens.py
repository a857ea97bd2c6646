"""API tokens of the HTTP server (hashed, scoped, optionally per project) and its session-signing key.

Revision ID: 0010_api_tokens
Revises: 0009_chunk_leases
"""

from alembic import op

revision = "0010_api_tokens"
down_revision = "0009_chunk_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE api_token (
            id bigserial PRIMARY KEY,
            name text NOT NULL,
            key_id text NOT NULL UNIQUE,
            secret_hash text NOT NULL,
            scope text NOT NULL CONSTRAINT api_token_scope_check CHECK (scope IN ('read', 'submit', 'admin')),
            project_id bigint REFERENCES project (id) ON DELETE CASCADE,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz,
            revoked_at timestamptz
        );
        CREATE UNIQUE INDEX api_token_active_name_idx ON api_token (name) WHERE revoked_at IS NULL;
        CREATE TABLE api_secret (
            id integer PRIMARY KEY CONSTRAINT api_secret_single_row_check CHECK (id = 1),
            secret text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE api_secret, api_token")
