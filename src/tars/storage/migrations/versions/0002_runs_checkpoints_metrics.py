"""Training at production quality: run kinds, timestep budgets, checkpoints, cancellation, metrics.

Revision ID: 0002_training
Revises: 0001_v1_0_0
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tars.storage.types import UTCDateTime

revision = "0002_training"
down_revision = "0001_v1_0_0"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="train"))
        batch.add_column(sa.Column("timesteps", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("timesteps_done", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("source_run_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("model_path", sa.String(1024), nullable=True))
        batch.add_column(sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.alter_column("episodes", existing_type=sa.Integer(), nullable=True)
    with op.batch_alter_table("training_steps") as batch:
        batch.add_column(sa.Column("metrics", sa.JSON(), nullable=True))
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("updated_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("updated_at")
    with op.batch_alter_table("training_steps") as batch:
        batch.drop_column("metrics")
    op.execute("DELETE FROM training_runs WHERE episodes IS NULL")
    with op.batch_alter_table("training_runs") as batch:
        batch.alter_column("episodes", existing_type=sa.Integer(), nullable=False)
        for column in ("cancel_requested", "model_path", "source_run_id", "timesteps_done", "timesteps", "kind"):
            batch.drop_column(column)
