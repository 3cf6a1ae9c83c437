"""The infrastructure a flow run was submitted to (Prefect's `infrastructure_pid`): a Docker container id or a
Kubernetes `namespace:job-name`, recorded by the worker that submitted it.

Revision ID: 0007_infrastructure_pid
Revises: 0006_concurrency_limits
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_infrastructure_pid"
down_revision = "0006_concurrency_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flow_run") as batch:
        batch.add_column(sa.Column("infrastructure_pid", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("flow_run") as batch:
        batch.drop_column("infrastructure_pid")
