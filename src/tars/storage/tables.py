"""The relational schema. Alembic migrations under ``migrations/`` create it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tars.domain.durations import BUCKETS
from tars.storage.types import BigId, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class AgentRow(Base):
    __tablename__ = "agents"

    agent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(32))
    environment: Mapped[str] = mapped_column(String(64))
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TrainingRunRow(Base):
    __tablename__ = "training_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="train")
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.agent_id"))
    algorithm: Mapped[str] = mapped_column(String(32))
    environment: Mapped[str] = mapped_column(String(64))
    episodes: Mapped[int | None] = mapped_column(Integer)
    timesteps: Mapped[int | None] = mapped_column(Integer)
    timesteps_done: Mapped[int] = mapped_column(Integer, default=0)
    source_run_id: Mapped[str | None] = mapped_column(String(36))
    model_path: Mapped[str | None] = mapped_column(String(1024))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    evaluation_episodes: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16))
    episodes_done: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TrainingStepRow(Base):
    __tablename__ = "training_steps"
    __table_args__ = (UniqueConstraint("run_id", "episode"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("training_runs.id", ondelete="CASCADE"))
    episode: Mapped[int] = mapped_column(Integer)
    reward: Mapped[float] = mapped_column(Float)
    length: Mapped[int] = mapped_column(Integer)
    timesteps: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The logged values that were NaN or infinite at this episode, by name (JSON has no such numbers).
    non_finite: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EvaluationRow(Base):
    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("training_runs.id", ondelete="SET NULL"))
    environment: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(32))
    reward: Mapped[float] = mapped_column(Float)
    episode_length: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKeyRow(Base):
    """A request made with an Idempotency-Key, and the answer it got: a retry gets the same answer
    and stores nothing twice."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("principal", "scope", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    principal: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class InsightCheckpointRow(Base):
    """How far the insight engine has processed one agent's events (tars.domain.insight_feed)."""

    __tablename__ = "insight_checkpoints"

    agent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigInteger)
    last_evaluation_id: Mapped[int | None] = mapped_column(BigInteger)
    last_evaluation_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    evaluations_processed: Mapped[int] = mapped_column(BigInteger, default=0)
    runs: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    owner: Mapped[str | None] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        # A user's keys still in force, listed without scanning revoked ones (v1.0.1's index).
        Index(
            "idx_api_keys_user_active",
            "user_id",
            postgresql_where=text("active"),
            sqlite_where=text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(128))
    # The public part of the key ("tars_<12 hex>"): every request looks its key up by it.
    key_prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class AuthSessionRow(Base):
    """One login: the family of refresh tokens that rotate from it. Revoking it ends them all,
    and the access tokens issued under it."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    address: Mapped[str | None] = mapped_column(String(64))


class RefreshTokenRow(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the token's secret half; the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when the token was exchanged for the next one; a second use is a theft.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEventRow(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_action_created_at", "action", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # No foreign key: the record outlives the user it names.
    actor_user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    credential: Mapped[str | None] = mapped_column(String(16))
    credential_id: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(48))
    target: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class InsightRow(Base):
    """What the insight engine found about one subject (tars.domain.insights.Insight)."""

    __tablename__ = "insights"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    # No foreign keys: an insight outlives the agent or run it was about, as the audit log does.
    agent_id: Mapped[str] = mapped_column(String(64))
    environment: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(32))
    run_id: Mapped[str | None] = mapped_column(String(64))
    # The subject's four fields as one value (storage.insights.subject_key): what "one unresolved
    # insight per kind and subject" is held on, NULLs and all.
    subject_key: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    confidence: Mapped[float] = mapped_column(Float)
    impact: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[str] = mapped_column(Text)
    # {"action", "reason", "parameters"}
    recommendation: Mapped[dict[str, Any]] = mapped_column(JSON)
    resolution: Mapped[str | None] = mapped_column(Text)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dismissed_by: Mapped[str | None] = mapped_column(String(128))
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # Every change sets updated_at, and writes only if it is still what was read (StaleDataError if
    # not): on SQLite, which does not lock what a transaction reads, two writers that read the same
    # insight cannot both change it.
    __mapper_args__ = {"version_id_col": updated_at, "version_id_generator": False}  # noqa: RUF012 - SQLAlchemy reads it


# The v1.0.1 indexes and those the hot queries need (migration 0004 builds them concurrently).
Index(
    "idx_evaluations_agent_region_time",
    EvaluationRow.agent_id,
    EvaluationRow.region,
    EvaluationRow.created_at.desc(),
    EvaluationRow.id.desc(),
)
Index("idx_evaluations_time", EvaluationRow.created_at.desc(), EvaluationRow.id.desc())
Index("idx_evaluations_agent_time", EvaluationRow.agent_id, EvaluationRow.created_at.desc(), EvaluationRow.id.desc())
Index("idx_evaluations_run", EvaluationRow.run_id)
Index(
    "idx_training_steps_composite",
    TrainingStepRow.run_id,
    TrainingStepRow.episode,
    postgresql_include=["reward", "timesteps"],
)
Index(
    "idx_training_runs_agent_time",
    TrainingRunRow.agent_id,
    TrainingRunRow.created_at.desc(),
    TrainingRunRow.id.desc(),
)
Index("idx_training_runs_time", TrainingRunRow.created_at.desc(), TrainingRunRow.id.desc())
Index("idx_training_runs_status", TrainingRunRow.status)


# Evaluations summed per agent, environment, region and hour, kept up to date in the transaction
# that stores or deletes evaluations: summaries and charts read these, not the raw rows.
DURATION_COLUMNS = tuple(f"duration_bucket_{index:02d}" for index in range(BUCKETS))
evaluation_rollups = Table(
    "evaluation_rollups",
    Base.metadata,
    Column("agent_id", String(64), nullable=False),
    Column("environment", String(64), nullable=False),
    Column("region", String(32), nullable=False),
    Column("bucket", UTCDateTime(), nullable=False),
    Column("count", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
    Column("failed", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
    # Reward statistics of the completed evaluations.
    Column("reward_count", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
    Column("reward_sum", Float(), nullable=False),
    Column("reward_square_sum", Float(), nullable=False),
    Column("reward_min", Float(), nullable=True),
    Column("reward_max", Float(), nullable=True),
    Column("duration_count", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
    Column("duration_sum", Float(), nullable=False),
    *(Column(name, Integer(), nullable=False) for name in DURATION_COLUMNS),
    PrimaryKeyConstraint("agent_id", "environment", "region", "bucket", name="pk_evaluation_rollups"),
)
Index("idx_evaluation_rollups_bucket", evaluation_rollups.c.bucket)

# Insights (migration 0007). At most one unresolved insight per kind and subject: two engine
# replicas opening the same one at once meet here, and one of them updates the other's instead.
UNRESOLVED_INSIGHT = text("state <> 'resolved'")
Index(
    "idx_insights_unresolved_subject",
    InsightRow.kind,
    InsightRow.subject_key,
    unique=True,
    postgresql_where=UNRESOLVED_INSIGHT,
    sqlite_where=UNRESOLVED_INSIGHT,
)
# A subject's earlier insights of a kind: when the last one cleared (a replayed finding from before is stale).
Index("idx_insights_subject", InsightRow.kind, InsightRow.subject_key, InsightRow.resolved_at)
# The list, newest first (keyset on first_seen_at, id), and filtered by state, agent, kind or run.
Index("idx_insights_time", InsightRow.first_seen_at.desc(), InsightRow.id.desc())
Index("idx_insights_state_time", InsightRow.state, InsightRow.first_seen_at.desc(), InsightRow.id.desc())
Index("idx_insights_agent_time", InsightRow.agent_id, InsightRow.first_seen_at.desc(), InsightRow.id.desc())
Index("idx_insights_kind_time", InsightRow.kind, InsightRow.first_seen_at.desc(), InsightRow.id.desc())
Index("idx_insights_run", InsightRow.run_id)
