"""Add key fingerprints

Every process that checks OTP codes must use the same key. A process that
generated its own key in its data folder approved no code made by the
others, and its checks used up the users' attempts. The fingerprint of the
key in use lets a process with another key stop at start.

Revision ID: 0009_key_fingerprints
Revises: 0008_otp_failures_index
Create Date: 2026-12-05 01:35:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import budstikke.store.types

revision = "0009_key_fingerprints"
down_revision = "0008_otp_failures_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_fingerprints",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", budstikke.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_key_fingerprints")),
    )


def downgrade() -> None:
    op.drop_table("key_fingerprints")
