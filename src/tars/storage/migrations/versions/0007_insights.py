"""Insights: what the insight engine found, one unresolved record per kind and subject.

A new, empty table: its indexes are built with it, in the migration's transaction, blocking nothing.

Revision ID: 0007_insights
Revises: 0006_evaluation_rollups
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tars.storage.types import BigId, UTCDateTime

revision = "0007_insights"
down_revision = "0006_evaluation_rollups"
branch_labels = None
depends_on = None

UNRESOLVED = sa.text("state <> 'resolved'")
NEWEST_FIRST = (sa.text("first_seen_at DESC"), sa.text("id DESC"))


def upgrade() -> None:
    op.create_table(
        "insights",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("environment", sa.String(64), nullable=True),
        sa.Column("region", sa.String(32), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("subject_key", sa.Text(), nullable=False),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("impact", sa.Float(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("recommendation", sa.JSON(), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
        sa.Column("dismissed_by", sa.String(128), nullable=True),
        sa.Column("dismissed_at", UTCDateTime(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_insights"),
    )
    op.create_index(
        "idx_insights_unresolved_subject",
        "insights",
        ["kind", "subject_key"],
        unique=True,
        postgresql_where=UNRESOLVED,
        sqlite_where=UNRESOLVED,
    )
    op.create_index("idx_insights_subject", "insights", ["kind", "subject_key", "resolved_at"])
    op.create_index("idx_insights_time", "insights", list(NEWEST_FIRST))
    op.create_index("idx_insights_state_time", "insights", [sa.text("state"), *NEWEST_FIRST])
    op.create_index("idx_insights_agent_time", "insights", [sa.text("agent_id"), *NEWEST_FIRST])
    op.create_index("idx_insights_kind_time", "insights", [sa.text("kind"), *NEWEST_FIRST])
    op.create_index("idx_insights_run", "insights", ["run_id"])


def downgrade() -> None:
    op.drop_table("insights")
