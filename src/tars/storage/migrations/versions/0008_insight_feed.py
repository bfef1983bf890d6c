"""The insight engine's feed: a checkpoint per agent, and training episodes' non-finite values by name.

Revision ID: 0008_insight_feed
Revises: 0007_insights
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tars.storage.types import UTCDateTime

revision = "0008_insight_feed"
down_revision = "0007_insights"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "insight_checkpoints",
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False),
        sa.Column("last_evaluation_id", sa.BigInteger(), nullable=True),
        sa.Column("last_evaluation_at", UTCDateTime(), nullable=True),
        sa.Column("evaluations_processed", sa.BigInteger(), nullable=False),
        sa.Column("runs", sa.JSON(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", name="pk_insight_checkpoints"),
    )
    # A nullable column without a default: no table rewrite, no long lock on PostgreSQL.
    with op.batch_alter_table("training_steps") as batch:
        batch.add_column(sa.Column("non_finite", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("training_steps") as batch:
        batch.drop_column("non_finite")
    op.drop_table("insight_checkpoints")
