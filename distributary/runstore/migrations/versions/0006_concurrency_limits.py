"""Global concurrency limits and rate limits (Prefect's v2 limits; tag-based task limits are the ones named
`tag:NAME`), and the leases of the slots they hand out.

Revision ID: 0006_concurrency_limits
Revises: 0005_work_pools
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_concurrency_limits"
down_revision = "0005_work_pools"
branch_labels = None
depends_on = None

ID = sa.String(36)


def upgrade() -> None:
    op.create_table(
        "concurrency_limit", sa.Column("id", ID, primary_key=True), sa.Column("name", sa.String(255), unique=True),
        sa.Column("limit", sa.Integer, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("active_slots", sa.Float, nullable=False, server_default="0"),
        sa.Column("slots_ts", sa.Float, nullable=False, server_default="0"),
        sa.Column("denied_slots", sa.Integer, nullable=False, server_default="0"),
        sa.Column("slot_decay_per_second", sa.Float, nullable=False, server_default="0"),
        sa.Column("avg_slot_occupancy_seconds", sa.Float, nullable=False, server_default="2"),
        sa.Column("created", sa.Float, nullable=False), sa.Column("updated", sa.Float, nullable=False))
    op.create_table(
        "concurrency_lease", sa.Column("id", ID, primary_key=True), sa.Column("limit_id", ID, primary_key=True),
        sa.Column("slots", sa.Integer, nullable=False), sa.Column("holder", sa.JSON),
        sa.Column("expires", sa.Float, nullable=False), sa.Column("created", sa.Float, nullable=False))
    op.create_index("ix_concurrency_lease_limit", "concurrency_lease", ["limit_id", "expires"])


def downgrade() -> None:
    op.drop_index("ix_concurrency_lease_limit", "concurrency_lease")
    op.drop_table("concurrency_lease")
    op.drop_table("concurrency_limit")
