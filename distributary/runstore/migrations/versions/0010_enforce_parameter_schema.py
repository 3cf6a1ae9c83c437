"""Deployments say whether runs' parameters must validate against their `parameter_openapi_schema`
(`enforce_parameter_schema`, Prefect's field; true by default, as in Prefect 3).

Revision ID: 0010_enforce_parameter_schema
Revises: 0009_work_queues
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_enforce_parameter_schema"
down_revision = "0009_work_queues"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployment") as batch:
        batch.add_column(sa.Column("enforce_parameter_schema", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("deployment") as batch:
        batch.drop_column("enforce_parameter_schema")
