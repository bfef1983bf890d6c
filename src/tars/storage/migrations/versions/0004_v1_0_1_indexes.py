"""v1.0.1: the indexes behind API p95 < 100 ms (TARS-1004), and those the hot queries need since.

Built with CREATE INDEX CONCURRENTLY on PostgreSQL, so evaluations keep being written while they
build (see tars.storage.online_index); plainly on SQLite.

Revision ID: 0004_v1_0_1_indexes
Revises: 0003_security
Create Date: 2026-11-27
"""

from __future__ import annotations

from tars.storage.online_index import IndexSpec, create_indexes, drop_indexes

revision = "0004_v1_0_1_indexes"
down_revision = "0003_security"
branch_labels = None
depends_on = None

INDEXES = (
    # The playbook's three.
    IndexSpec("idx_evaluations_agent_region_time", "evaluations", ("agent_id", "region", "created_at DESC", "id DESC")),
    IndexSpec("idx_training_steps_composite", "training_steps", ("run_id", "episode"), include=("reward", "timesteps")),
    IndexSpec("idx_api_keys_user_active", "api_keys", ("user_id",), where="active"),
    # The latest evaluations (the dashboard), and one agent's across regions, newest first.
    IndexSpec("idx_evaluations_time", "evaluations", ("created_at DESC", "id DESC")),
    IndexSpec("idx_evaluations_agent_time", "evaluations", ("agent_id", "created_at DESC", "id DESC")),
    # A run's evaluations (its summary), and the foreign key's ON DELETE SET NULL.
    IndexSpec("idx_evaluations_run", "evaluations", ("run_id",)),
    IndexSpec("idx_training_runs_agent_time", "training_runs", ("agent_id", "created_at DESC", "id DESC")),
    IndexSpec("idx_training_runs_time", "training_runs", ("created_at DESC", "id DESC")),
    IndexSpec("idx_training_runs_status", "training_runs", ("status",)),
)


def upgrade() -> None:
    create_indexes(*INDEXES)


def downgrade() -> None:
    drop_indexes(*INDEXES)
