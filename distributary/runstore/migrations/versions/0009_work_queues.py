"""Work queues: each pool's runs wait in its queues (priority, pause, concurrency limit); every pool has a
`default` queue (`work_pool.default_queue_id`), and flow runs record their queue.

Existing pools get their `default` queue here; deployments of a pool without a queue name and the runs of pools
are put in it, so workers keep claiming them.

Revision ID: 0009_work_queues
Revises: 0008_deployment_parameter_schema
"""
from __future__ import annotations

import time
import uuid

import sqlalchemy as sa
from alembic import op

revision = "0009_work_queues"
down_revision = "0008_deployment_parameter_schema"
branch_labels = None
depends_on = None

ID = sa.String(36)


def upgrade() -> None:
    op.create_table(
        "work_queue", sa.Column("id", ID, primary_key=True), sa.Column("name", sa.String(255), nullable=False),
        sa.Column("work_pool_id", ID, nullable=False), sa.Column("description", sa.Text),
        sa.Column("priority", sa.Integer, nullable=False, server_default="1"),
        sa.Column("concurrency_limit", sa.Integer),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("last_polled", sa.Float), sa.Column("created", sa.Float, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
        sa.UniqueConstraint("work_pool_id", "name", name="uq_work_queue_pool_name"))
    with op.batch_alter_table("work_pool") as batch:
        batch.add_column(sa.Column("default_queue_id", ID, nullable=True))
    with op.batch_alter_table("flow_run") as batch:
        batch.add_column(sa.Column("work_queue_name", sa.String(255), nullable=True))
        batch.add_column(sa.Column("work_queue_id", ID, nullable=True))
    op.create_index("ix_flow_run_work_queue", "flow_run", ["work_queue_id", "state_type", "expected_start_time"])

    conn = op.get_bind()
    now = time.time()
    pools = list(conn.execute(sa.text("SELECT id, name FROM work_pool")))
    for pool in pools:
        qid = str(uuid.uuid4())
        conn.execute(sa.text(
            "INSERT INTO work_queue (id, name, work_pool_id, description, priority, paused, created, updated) "
            "VALUES (:id, 'default', :pool, 'The work pool''s default queue.', 1, :f, :t, :t)"),
            {"id": qid, "pool": pool.id, "t": now, "f": False})
        conn.execute(sa.text("UPDATE work_pool SET default_queue_id = :q WHERE id = :p"), {"q": qid, "p": pool.id})
        conn.execute(sa.text("UPDATE flow_run SET work_queue_name = 'default', work_queue_id = :q "
                             "WHERE work_pool_name = :name"), {"q": qid, "name": pool.name})
    conn.execute(sa.text("UPDATE deployment SET work_queue_name = 'default' "
                         "WHERE work_pool_name IS NOT NULL AND work_queue_name IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_flow_run_work_queue", "flow_run")
    with op.batch_alter_table("flow_run") as batch:
        batch.drop_column("work_queue_id")
        batch.drop_column("work_queue_name")
    with op.batch_alter_table("work_pool") as batch:
        batch.drop_column("default_queue_id")
    op.drop_table("work_queue")
