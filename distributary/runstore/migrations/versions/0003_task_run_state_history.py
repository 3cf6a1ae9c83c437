"""A task run's state history as one JSON column of its row (a .map() of 10^5 tasks writes 10^5 rows, not 4x10^5);
flow runs keep one `run_state` row per state. Task runs recorded before this revision keep their `run_state` rows
(read as before).

Revision ID: 0003_task_run_state_history
Revises: 0002_artifacts_variables
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_task_run_state_history"
down_revision = "0002_artifacts_variables"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("task_run", sa.Column("state_history", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_run") as batch:
        batch.drop_column("state_history")
