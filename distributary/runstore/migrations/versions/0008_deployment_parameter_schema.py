"""Deployments keep the OpenAPI schema of their flow's parameters (`parameter_openapi_schema`, Prefect's
field), which clients read to cast and check the parameters of a run.

Revision ID: 0008_deployment_parameter_schema
Revises: 0007_infrastructure_pid
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_deployment_parameter_schema"
down_revision = "0007_infrastructure_pid"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployment") as batch:
        batch.add_column(sa.Column("parameter_openapi_schema", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployment") as batch:
        batch.drop_column("parameter_openapi_schema")
