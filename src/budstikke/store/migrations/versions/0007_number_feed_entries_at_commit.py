"""Number feed entries at commit on PostgreSQL

A feed entry's sequence number must become visible in sequence order: a
reader that resumes after entry 11 would never see an entry 10 that commits
later. Before this revision every writer took an advisory lock right before
its insert and held it until its commit. A writer whose process was busy
(its event loop running other tasks, or waiting for a pooled connection)
then sat idle in its transaction with the lock, and every other writer of a
final status queued behind it with a pooled connection of its own, until the
pool ran out.

The deferred constraint trigger below moves the lock into COMMIT. Each
inserted row keeps the number it got at insert only while its transaction
runs. At commit the trigger takes the lock and renumbers the row from the
same sequence, so numbers are handed out in commit order and the lock is
held only while the server commits, never while the client works. SQLite
has a single writer and needs neither.

Revision ID: 0007_feed_commit_order
Revises: 0006_otp
Create Date: 2026-12-05 01:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0007_feed_commit_order"
down_revision = "0006_otp"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    # 108256335953922 is budstikke.store.feed.FEED_LOCK (0x6275_6473_0002).
    op.execute(
        """
        CREATE FUNCTION number_feed_entry_at_commit() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock(108256335953922);
            UPDATE feed_entries
               SET seq = nextval(pg_get_serial_sequence('feed_entries', 'seq'))
             WHERE seq = NEW.seq;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE CONSTRAINT TRIGGER number_feed_entry_at_commit
        AFTER INSERT ON feed_entries
        DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION number_feed_entry_at_commit()
        """
    )


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER number_feed_entry_at_commit ON feed_entries")
    op.execute("DROP FUNCTION number_feed_entry_at_commit()")
