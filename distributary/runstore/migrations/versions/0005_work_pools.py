"""Work pools (with a base job template), the workers polling them (heartbeats), and the worker running each
flow run.

Revision ID: 0005_work_pools
Revises: 0004_deployments
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_work_pools"
down_revision = "0004_deployments"
branch_labels = None
depends_on = None

ID = sa.String(36)


def upgrade() -> None:
    op.create_table(
        "work_pool", sa.Column("id", ID, primary_key=True), sa.Column("name", sa.String(255), unique=True),
        sa.Column("type", sa.String(64), nullable=False), sa.Column("description", sa.Text),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("concurrency_limit", sa.Integer), sa.Column("base_job_template", sa.JSON),
        sa.Column("created", sa.Float, nullable=False), sa.Column("updated", sa.Float, nullable=False))
    op.create_table(
        "worker", sa.Column("id", ID, primary_key=True), sa.Column("name", sa.String(255), nullable=False),
        sa.Column("work_pool_name", sa.String(255), nullable=False),
        sa.Column("last_heartbeat", sa.Float, nullable=False), sa.Column("created", sa.Float, nullable=False),
        sa.UniqueConstraint("work_pool_name", "name", name="uq_worker_pool_name"))
    with op.batch_alter_table("flow_run") as batch:
        batch.add_column(sa.Column("worker_name", sa.String(255), nullable=True))
    op.create_index("ix_flow_run_work_pool", "flow_run", ["work_pool_name", "state_type", "expected_start_time"])


def downgrade() -> None:
    op.drop_index("ix_flow_run_work_pool", "flow_run")
    with op.batch_alter_table("flow_run") as batch:
        batch.drop_column("worker_name")
    op.drop_table("worker")
    op.drop_table("work_pool")
