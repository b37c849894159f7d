"""Never reuse webhook sequence numbers on SQLite

A webhook event's sequenceNumber is the id of its delivery row, and the row
is deleted once the event is delivered. Without AUTOINCREMENT SQLite gives
a new row the largest id in the table plus one, so an emptied table handed
out numbers that receivers had seen already. The table is rebuilt with
AUTOINCREMENT, which never reuses an id. Numbers of rows deleted before this
revision can still come once more. PostgreSQL takes ids from a sequence
and needs no change.

Revision ID: 0010_webhook_autoincrement
Revises: 0009_key_fingerprints
Create Date: 2026-12-05 02:10:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0010_webhook_autoincrement"
down_revision = "0009_key_fingerprints"
branch_labels = None
depends_on = None


def rebuild_deliveries(*, autoincrement: bool) -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "webhook_deliveries",
        recreate="always",
        table_kwargs={"sqlite_autoincrement": autoincrement},
    ):
        pass


def upgrade() -> None:
    rebuild_deliveries(autoincrement=True)


def downgrade() -> None:
    rebuild_deliveries(autoincrement=False)
