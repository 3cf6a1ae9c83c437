"""Deployments and their schedules; flow runs of a deployment (deployment_id, idempotency_key unique per flow,
auto_scheduled, work pool and job variables).

Revision ID: 0004_deployments
Revises: 0003_task_run_state_history
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_deployments"
down_revision = "0003_task_run_state_history"
branch_labels = None
depends_on = None

ID = sa.String(36)


def upgrade() -> None:
    op.create_table(
        "deployment", sa.Column("id", ID, primary_key=True), sa.Column("name", sa.String(255), nullable=False),
        sa.Column("flow_id", ID, nullable=False), sa.Column("flow_name", sa.String(255), nullable=False),
        sa.Column("entrypoint", sa.Text), sa.Column("path", sa.Text), sa.Column("description", sa.Text),
        sa.Column("version", sa.String(255)), sa.Column("parameters", sa.JSON), sa.Column("tags", sa.JSON),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("concurrency_limit", sa.Integer), sa.Column("collision_strategy", sa.String(16)),
        sa.Column("work_pool_name", sa.String(255)), sa.Column("work_queue_name", sa.String(255)),
        sa.Column("job_variables", sa.JSON), sa.Column("last_polled", sa.Float),
        sa.Column("created", sa.Float, nullable=False), sa.Column("updated", sa.Float, nullable=False),
        sa.UniqueConstraint("flow_name", "name", name="uq_deployment_flow_name_name"))
    op.create_table(
        "deployment_schedule", sa.Column("id", ID, primary_key=True),
        sa.Column("deployment_id", ID, nullable=False), sa.Column("schedule", sa.JSON, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()), sa.Column("parameters", sa.JSON),
        sa.Column("slug", sa.String(255)), sa.Column("created", sa.Float, nullable=False))
    op.create_index("ix_deployment_schedule_deployment_id", "deployment_schedule", ["deployment_id"])
    with op.batch_alter_table("flow_run") as batch:
        batch.add_column(sa.Column("deployment_id", ID, nullable=True))
        batch.add_column(sa.Column("idempotency_key", sa.String(255), nullable=True))
        batch.add_column(sa.Column("auto_scheduled", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("work_pool_name", sa.String(255), nullable=True))
        batch.add_column(sa.Column("job_variables", sa.JSON, nullable=True))
    op.create_index("ix_flow_run_deployment_id", "flow_run", ["deployment_id", "state_type", "expected_start_time"])
    # NULL keys never conflict (SQLite and PostgreSQL alike): only keyed runs are unique
    op.create_index("uq_flow_run_flow_id_idempotency_key", "flow_run", ["flow_id", "idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_flow_run_flow_id_idempotency_key", "flow_run")
    op.drop_index("ix_flow_run_deployment_id", "flow_run")
    with op.batch_alter_table("flow_run") as batch:
        for col in ("job_variables", "work_pool_name", "auto_scheduled", "idempotency_key", "deployment_id"):
            batch.drop_column(col)
    op.drop_table("deployment_schedule")
    op.drop_table("deployment")
