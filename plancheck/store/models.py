"""SQLAlchemy models of the metadata database: the schema at Alembic head.

Migrations in alembic/versions are written by hand and are the authority on history; these
models describe the head revision, and a test checks the two agree.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from plancheck.core.states import (
    ApprovalStatus,
    AttemptOutcome,
    ChunkStatus,
    FollowUpKind,
    IssueStatus,
    Risk,
    RolloutTaskStatus,
    RunStatus,
    sql_list,
)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONB, list[Any]: JSONB}


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Project(Base):
    __tablename__ = "project"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)
    title: Mapped[str] = mapped_column(Text)
    archived: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    settings: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _created()


class Instance(Base):
    __tablename__ = "instance"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)
    engine: Mapped[str] = mapped_column(Text, server_default=text("'POSTGRES'"))
    url: Mapped[str] = mapped_column(Text)
    password_env: Mapped[str | None] = mapped_column(Text)
    environment: Mapped[str] = mapped_column(Text, server_default=text("'test'"))
    created_at: Mapped[datetime] = _created()
    __table_args__ = (CheckConstraint("engine = 'POSTGRES'", name="instance_engine_check"),)


class Database(Base):
    __tablename__ = "database"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("project.id", ondelete="SET NULL"))
    environment: Mapped[str] = mapped_column(Text)
    labels: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _created()
    __table_args__ = (UniqueConstraint("instance_id", "name"),)


class DatabaseGroup(Base):
    __tablename__ = "database_group"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(Text)
    expression: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    __table_args__ = (UniqueConstraint("project_id", "key"),)


class Sheet(Base):
    __tablename__ = "sheet"
    sha256: Mapped[str] = mapped_column(Text, primary_key=True)
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()


class Plan(Base):
    __tablename__ = "plan"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(Text)
    specs: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    created_at: Mapped[datetime] = _created()


class PlanCheckRun(Base):
    """One row per plan. No foreign key to plan: a deleted plan's run must still end FAILED."""

    __tablename__ = "plan_check_run"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    plan_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    status: Mapped[str] = mapped_column(Text)
    result: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    token: Mapped[uuid.UUID] = mapped_column(UUID, server_default=text("gen_random_uuid()"))
    attempt: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    generation: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    plan_version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    worker: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    targets_total: Mapped[int | None] = mapped_column(Integer)
    targets_done: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    fanned_out: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()
    __table_args__ = (
        CheckConstraint(
            f"status IN ({sql_list(RunStatus)})",
            name="plan_check_run_status_check",
        ),
        Index("plan_check_run_claimable_idx", "id", postgresql_where=text(f"status = '{RunStatus.AVAILABLE}'")),
        Index("plan_check_run_lease_idx", "lease_expires_at", postgresql_where=text(f"status = '{RunStatus.RUNNING}'")),
        Index(
            "plan_check_run_occupying_idx",
            "id",
            postgresql_where=text(f"status = '{RunStatus.RUNNING}' AND NOT fanned_out"),
        ),
    )


class PlanCheckAttempt(Base):
    """Every execution attempt: who ran which token of which generation, when, and how it ended."""

    __tablename__ = "plan_check_attempt"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("plan_check_run.id", ondelete="CASCADE"), index=True)
    generation: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    token: Mapped[uuid.UUID] = mapped_column(UUID, unique=True)
    worker: Mapped[str] = mapped_column(Text)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(Text)
    chunk: Mapped[int | None] = mapped_column(Integer)  # None: the run's own execution
    __table_args__ = (
        CheckConstraint(
            f"outcome IN ({sql_list(AttemptOutcome)})",
            name="plan_check_attempt_outcome_check",
        ),
    )


class PlanCheckChunk(Base):
    """A piece of a fanned-out run: its targets, and a lease and token of its own.

    Only AVAILABLE and RUNNING chunks exist: a finished chunk's results move into its run's row
    and the chunk row goes; its executions stay in plan_check_attempt (with `chunk` set).
    """

    __tablename__ = "plan_check_chunk"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("plan_check_run.id", ondelete="CASCADE"), index=True)
    run_token: Mapped[uuid.UUID] = mapped_column(UUID)
    chunk: Mapped[int] = mapped_column(Integer)
    targets: Mapped[list[Any]] = mapped_column()
    status: Mapped[str] = mapped_column(Text, server_default=text(f"'{ChunkStatus.AVAILABLE}'"))
    token: Mapped[uuid.UUID] = mapped_column(UUID, server_default=text("gen_random_uuid()"))
    attempt: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    worker: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    results: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    targets_done: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        UniqueConstraint("run_token", "chunk", name="plan_check_chunk_run_token_chunk_key"),
        CheckConstraint(f"status IN ({sql_list(ChunkStatus)})", name="plan_check_chunk_status_check"),
        Index("plan_check_chunk_claimable_idx", "id", postgresql_where=text(f"status = '{ChunkStatus.AVAILABLE}'")),
        Index(
            "plan_check_chunk_lease_idx", "lease_expires_at", postgresql_where=text(f"status = '{ChunkStatus.RUNNING}'")
        ),
    )


class WorkerSlots(Base):
    """A live worker and its pool slots: claims never send more work than there are free slots."""

    __tablename__ = "worker_slots"
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    slots: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = _created()
    last_seen: Mapped[datetime] = _created()
    __table_args__ = (CheckConstraint("slots > 0", name="worker_slots_slots_check"),)


class Deployment(Base):
    """The one row naming this metadata database, so two deployments sharing a broker are told apart."""

    __tablename__ = "deployment"
    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=text("gen_random_uuid()"))
    singleton: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        UniqueConstraint("singleton", name="deployment_singleton_key"),
        CheckConstraint("singleton", name="deployment_singleton_check"),
    )


class BeatHeartbeat(Base):
    """A `celery beat` process and when it last ticked: beat keeps no state, so its liveness is kept here."""

    __tablename__ = "beat_heartbeat"
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    started_at: Mapped[datetime] = _created()
    last_seen: Mapped[datetime] = _created()


class Issue(Base):
    __tablename__ = "issue"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plan.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(Text, server_default=text(f"'{IssueStatus.OPEN}'"))
    approval_status: Mapped[str] = mapped_column(Text, server_default=text(f"'{ApprovalStatus.PENDING}'"))
    risk: Mapped[str | None] = mapped_column(Text)
    approvers: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    approval_generation: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created()
    __table_args__ = (
        CheckConstraint(f"status IN ({sql_list(IssueStatus)})", name="issue_status_check"),
        CheckConstraint(f"approval_status IN ({sql_list(ApprovalStatus)})", name="issue_approval_check"),
        CheckConstraint(f"risk IN ({sql_list(Risk)})", name="issue_risk_check"),
    )


class Rollout(Base):
    __tablename__ = "rollout"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plan.id", ondelete="CASCADE"))
    plan_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created()
    __table_args__ = (UniqueConstraint("plan_id", "plan_version"),)


class RolloutTask(Base):
    __tablename__ = "rollout_task"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollout.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default=text(f"'{RolloutTaskStatus.PENDING}'"))
    __table_args__ = (UniqueConstraint("rollout_id", "target"),)


class Outbox(Base):
    """Follow-ups written in the transaction that ends a run DONE; the relay applies each once."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    plan_id: Mapped[int] = mapped_column(BigInteger)
    dedupe_key: Mapped[str] = mapped_column(Text, unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _created()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failures: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = _created()
    __table_args__ = (
        CheckConstraint(f"kind IN ({sql_list(FollowUpKind)})", name="outbox_kind_check"),
        Index("outbox_pending_idx", "next_attempt_at", "id", postgresql_where=text("delivered_at IS NULL")),
    )


class ApiToken(Base):
    """A bearer token of the HTTP API: only the SHA-256 of the token is kept, found by its public key id."""

    __tablename__ = "api_token"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(Text, unique=True)
    secret_hash: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        CheckConstraint("scope IN ('read', 'submit', 'admin')", name="api_token_scope_check"),
        Index("api_token_active_name_idx", "name", unique=True, postgresql_where=text("revoked_at IS NULL")),
    )


class ApiSecret(Base):
    """The key that signs the results page's session cookies, shared by every API server process."""

    __tablename__ = "api_secret"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    __table_args__ = (CheckConstraint("id = 1", name="api_secret_single_row_check"),)
