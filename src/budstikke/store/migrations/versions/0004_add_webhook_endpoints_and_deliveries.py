"""Add webhook endpoints, webhook deliveries and order callbacks

Revision ID: 0004_webhooks
Revises: 0003
Create Date: 2026-12-04 23:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import budstikke.store.types

revision = "0004_webhooks"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("creator", sa.String(length=100), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("previous_secret", sa.String(length=100), nullable=True),
        sa.Column(
            "previous_secret_expires_at",
            budstikke.store.types.UtcDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_at", budstikke.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.String(length=200), nullable=True),
        sa.Column("failing_since", budstikke.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("paused_until", budstikke.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column(
            "last_success_at", budstikke.store.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("created_at", budstikke.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", budstikke.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
        sa.UniqueConstraint("creator", "url", name=op.f("uq_webhook_endpoints_creator_url")),
    )
    op.create_table(
        "order_callbacks",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_callbacks_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_order_callbacks")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("message_id", sa.String(length=40), nullable=False),
        sa.Column("creator", sa.String(length=100), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("is_callback", sa.Boolean(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", budstikke.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "next_attempt_at", budstikke.store.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "first_attempt_at", budstikke.store.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("failed_at", budstikke.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column(
            "lease_expires_at", budstikke.store.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_webhook_deliveries_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_endpoint_id_state"),
            ["endpoint_id", "state"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_order_id_id"), ["order_id", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_state_next_attempt_at"),
            ["state", "next_attempt_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_state_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_order_id_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_endpoint_id_state"))

    op.drop_table("webhook_deliveries")
    op.drop_table("order_callbacks")
    op.drop_table("webhook_endpoints")
