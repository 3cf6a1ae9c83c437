"""Flows, flow runs, task runs, their state histories and logs.

Revision ID: 0001_runs
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_runs"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(36)


def _state_columns() -> list[sa.Column]:
    return [sa.Column("state_type", sa.String(16)), sa.Column("state_name", sa.String(64)),
            sa.Column("state_message", sa.Text), sa.Column("state_ts", sa.Float),
            sa.Column("result_ref", sa.JSON)]


def upgrade() -> None:
    op.create_table("flow", sa.Column("id", ID, primary_key=True), sa.Column("name", sa.String(255), unique=True),
                    sa.Column("created", sa.Float, nullable=False))
    op.create_table(
        "flow_run", sa.Column("id", ID, primary_key=True), sa.Column("name", sa.String(255), nullable=False),
        sa.Column("flow_id", ID, nullable=False), sa.Column("flow_name", sa.String(255), nullable=False),
        sa.Column("flow_version", sa.String(255)),
        sa.Column("parameters", sa.JSON), sa.Column("tags", sa.JSON), sa.Column("parent_task_run_id", ID),
        sa.Column("parent_flow_run_id", ID), sa.Column("run_count", sa.Integer, nullable=False),
        sa.Column("expected_start_time", sa.Float), sa.Column("start_time", sa.Float),
        sa.Column("end_time", sa.Float), sa.Column("total_run_time", sa.Float, nullable=False),
        *_state_columns(), sa.Column("created", sa.Float, nullable=False))
    op.create_index("ix_flow_run_name", "flow_run", ["name"])
    op.create_index("ix_flow_run_flow_id", "flow_run", ["flow_id"])
    op.create_index("ix_flow_run_flow_name", "flow_run", ["flow_name"])
    op.create_index("ix_flow_run_start_time", "flow_run", ["start_time"])
    op.create_index("ix_flow_run_state_type", "flow_run", ["state_type"])
    op.create_table(
        "task_run", sa.Column("id", ID, primary_key=True), sa.Column("name", sa.String(255), nullable=False),
        sa.Column("task_key", sa.String(255), nullable=False), sa.Column("dynamic_key", sa.String(64), nullable=False),
        sa.Column("cache_key", sa.String(255)), sa.Column("flow_run_id", ID), sa.Column("task_inputs", sa.JSON),
        sa.Column("tags", sa.JSON), sa.Column("run_count", sa.Integer, nullable=False),
        sa.Column("start_time", sa.Float), sa.Column("end_time", sa.Float),
        sa.Column("total_run_time", sa.Float, nullable=False), *_state_columns(),
        sa.Column("created", sa.Float, nullable=False))
    op.create_index("ix_task_run_flow_run_id", "task_run", ["flow_run_id"])
    op.create_table(
        "run_state", sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", ID, nullable=False), sa.Column("type", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=False), sa.Column("message", sa.Text),
        sa.Column("timestamp", sa.Float, nullable=False), sa.Column("result_ref", sa.JSON))
    op.create_index("ix_run_state_run_id", "run_state", ["run_id"])
    op.create_table(
        "log", sa.Column("id", sa.Integer, primary_key=True, autoincrement=True), sa.Column("flow_run_id", ID),
        sa.Column("task_run_id", ID), sa.Column("name", sa.String(255), nullable=False),
        sa.Column("level", sa.Integer, nullable=False), sa.Column("message", sa.Text, nullable=False),
        sa.Column("timestamp", sa.Float, nullable=False))
    op.create_index("ix_log_flow_run_id", "log", ["flow_run_id"])
    op.create_index("ix_log_task_run_id", "log", ["task_run_id"])
    op.create_index("ix_log_timestamp", "log", ["timestamp"])


def downgrade() -> None:
    for t in ("log", "run_state", "task_run", "flow_run", "flow"):
        op.drop_table(t)
