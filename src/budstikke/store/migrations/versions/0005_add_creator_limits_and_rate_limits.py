"""Add creator limits, rate buckets, recipient sends and the erasable index

Revision ID: 0005_limits
Revises: 0004_webhooks
Create Date: 2026-12-07 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import budstikke.store.types

revision = "0005_limits"
down_revision = "0004_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "creator_limits",
        sa.Column("creator", sa.String(length=100), nullable=False),
        sa.Column("rate_per_s", sa.Float(), nullable=True),
        sa.Column("burst", sa.Integer(), nullable=True),
        sa.Column("per_recipient_10min", sa.Integer(), nullable=True),
        sa.Column("per_recipient_day", sa.Integer(), nullable=True),
        sa.Column("sms_countries", sa.String(length=1000), nullable=True),
        sa.Column("sensitive_guard", sa.Boolean(), nullable=True),
        sa.Column("updated_at", budstikke.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("creator", name=op.f("pk_creator_limits")),
    )
    op.create_table(
        "rate_buckets",
        sa.Column("creator", sa.String(length=100), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("refilled_at_s", sa.Float(), nullable=False),
        sa.Column("last_granted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("creator", name=op.f("pk_rate_buckets")),
    )
    op.create_table(
        "recipient_sends",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("creator", sa.String(length=100), nullable=False),
        sa.Column("recipient_key", sa.String(length=320), nullable=False),
        sa.Column("created_at", budstikke.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recipient_sends")),
    )
    # Plain CREATE INDEX statements, never a batch copy of a table (see 0003).
    op.create_index(
        op.f("ix_recipient_sends_creator_recipient_key_created_at"),
        "recipient_sends",
        ["creator", "recipient_key", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_recipient_sends_created_at"), "recipient_sends", ["created_at"], unique=False
    )
    op.create_index(
        "ix_notifications_erasable",
        "notifications",
        ["updated_at"],
        unique=False,
        sqlite_where=sa.text("body IS NOT NULL"),
        postgresql_where=sa.text("body IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_erasable", table_name="notifications")
    op.drop_index(op.f("ix_recipient_sends_created_at"), table_name="recipient_sends")
    op.drop_index(
        op.f("ix_recipient_sends_creator_recipient_key_created_at"), table_name="recipient_sends"
    )
    op.drop_table("recipient_sends")
    op.drop_table("rate_buckets")
    op.drop_table("creator_limits")
