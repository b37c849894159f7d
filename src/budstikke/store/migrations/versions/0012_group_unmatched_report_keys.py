"""Group the rows of one unmatched delivery report, and index their age

A delivery report that arrives before its hand-off is recorded is kept with
one row per lookup key of its message id. When the hand-off was recorded,
each row the part's keys found was applied as a report of its own, so a
report kept under two matching keys was applied twice, and rows under keys
the part did not share stayed in the table. The rows of one report now
carry the same report_id, so the report is applied once and all its rows
are removed. Rows kept before this migration have no report_id and are
taken one by one as before.

Reports that no hand-off ever claims (receipts for messages another
system sent through the same SMSC account) are now deleted after a day;
the index on received_at finds them.

Revision ID: 0012_unmatched_report_ids
Revises: 0011_erasure_indexes
Create Date: 2026-12-05 12:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_unmatched_report_ids"
down_revision = "0011_erasure_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("unmatched_reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("report_id", sa.Uuid(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_unmatched_reports_report_id"), ["report_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_unmatched_reports_received_at"), ["received_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("unmatched_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_unmatched_reports_received_at"))
        batch_op.drop_index(batch_op.f("ix_unmatched_reports_report_id"))
        batch_op.drop_column("report_id")
