"""Artifacts (every version of a keyed artifact is a row) and variables.

Revision ID: 0002_artifacts_variables
Revises: 0001_runs
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_artifacts_variables"
down_revision = "0001_runs"
branch_labels = None
depends_on = None

ID = sa.String(36)


def upgrade() -> None:
    op.create_table(
        "artifact", sa.Column("id", ID, primary_key=True), sa.Column("key", sa.String(255)),
        sa.Column("type", sa.String(32), nullable=False), sa.Column("description", sa.Text),
        sa.Column("data", sa.JSON), sa.Column("flow_run_id", ID), sa.Column("task_run_id", ID),
        sa.Column("created", sa.Float, nullable=False), sa.Column("updated", sa.Float, nullable=False))
    op.create_index("ix_artifact_key", "artifact", ["key"])
    op.create_index("ix_artifact_flow_run_id", "artifact", ["flow_run_id"])
    op.create_index("ix_artifact_created", "artifact", ["created"])
    op.create_table(
        "variable", sa.Column("id", ID, primary_key=True), sa.Column("name", sa.String(255), unique=True),
        sa.Column("value", sa.JSON), sa.Column("tags", sa.JSON), sa.Column("created", sa.Float, nullable=False),
        sa.Column("updated", sa.Float, nullable=False))


def downgrade() -> None:
    op.drop_table("variable")
    op.drop_table("artifact")
