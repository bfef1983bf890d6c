"""Evaluation rollups: per agent, environment, region and hour, for summaries and charts at scale;
filled from the evaluations already stored.

Revision ID: 0006_evaluation_rollups
Revises: 0005_idempotency
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

from tars.domain.durations import BUCKETS
from tars.storage import rollups
from tars.storage.types import UTCDateTime

revision = "0006_evaluation_rollups"
down_revision = "0005_idempotency"
branch_labels = None
depends_on = None

COUNT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "evaluation_rollups",
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("bucket", UTCDateTime(), nullable=False),
        sa.Column("count", COUNT, nullable=False),
        sa.Column("failed", COUNT, nullable=False),
        sa.Column("reward_count", COUNT, nullable=False),
        sa.Column("reward_sum", sa.Float(), nullable=False),
        sa.Column("reward_square_sum", sa.Float(), nullable=False),
        sa.Column("reward_min", sa.Float(), nullable=True),
        sa.Column("reward_max", sa.Float(), nullable=True),
        sa.Column("duration_count", COUNT, nullable=False),
        sa.Column("duration_sum", sa.Float(), nullable=False),
        *(sa.Column(f"duration_bucket_{index:02d}", sa.Integer(), nullable=False) for index in range(BUCKETS)),
        sa.PrimaryKeyConstraint("agent_id", "environment", "region", "bucket", name="pk_evaluation_rollups"),
    )
    op.create_index("idx_evaluation_rollups_bucket", "evaluation_rollups", ["bucket"])
    rollups.rebuild(Session(bind=op.get_bind()))


def downgrade() -> None:
    op.drop_table("evaluation_rollups")
