"""Index OTP failed checks by verification

The limit on wrong codes counts per creator and recipient. A failure row
reaches its recipient through its verification, and without this index
PostgreSQL scans every failure of the last hour, of every recipient, for
each check.

Revision ID: 0008_otp_failures_index
Revises: 0007_feed_commit_order
Create Date: 2026-12-05 01:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0008_otp_failures_index"
down_revision = "0007_feed_commit_order"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("otp_failed_checks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_otp_failed_checks_verification_id_failed_at"),
            ["verification_id", "failed_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("otp_failed_checks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_otp_failed_checks_verification_id_failed_at"))
