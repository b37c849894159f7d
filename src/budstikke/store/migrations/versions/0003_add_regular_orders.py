"""Add regular orders and the daytime flag of notifications

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import budstikke.store.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "regular_orders",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("main_order_id", sa.Uuid(), nullable=False),
        sa.Column("reminder_index", sa.SmallInteger(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(length=8), nullable=True),
        sa.Column("daytime_only", sa.Boolean(), nullable=False),
        sa.Column(
            "requested_send_time", budstikke.store.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("condition_endpoint", sa.Text(), nullable=True),
        sa.Column("process_after", budstikke.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column(
            "lease_expires_at", budstikke.store.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("condition_attempts", sa.Integer(), nullable=False),
        sa.Column(
            "condition_first_attempt_at",
            budstikke.store.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("condition_note", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["main_order_id"],
            ["orders.id"],
            name=op.f("fk_regular_orders_main_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_regular_orders_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_regular_orders")),
    )
    with op.batch_alter_table("regular_orders", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_regular_orders_main_order_id"), ["main_order_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_regular_orders_process_after"), ["process_after"], unique=False
        )

    # A plain ADD COLUMN, never a batch copy of the table: on SQLite a copy
    # drops the old table, and with foreign keys on that deletes every
    # provider_parts row through ON DELETE CASCADE.
    op.add_column(
        "notifications",
        sa.Column("daytime_only", sa.Boolean(), server_default=sa.false(), nullable=False),
    )


def downgrade() -> None:
    # SQLite 3.35 and later drop a column in place, without the copy described above.
    op.drop_column("notifications", "daytime_only")
    with op.batch_alter_table("regular_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_regular_orders_process_after"))
        batch_op.drop_index(batch_op.f("ix_regular_orders_main_order_id"))
    op.drop_table("regular_orders")
