"""Orders stored under a lease: claimed in their own transaction, safe from other workers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from budstikke.domain.statuses import Channel, NotificationStatus
from budstikke.store.database import Database
from budstikke.store.notifications import NotificationStore
from budstikke.store.orders import Lease, create_instant_order
from budstikke.store.records import NewNotification, OrderReceipt
from budstikke.store.tables import notifications

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
LEASE_S = 60


async def leased_order(database: Database, key: str, lease: Lease | None) -> OrderReceipt:
    return await create_instant_order(
        database,
        creator="ttd",
        idempotency_id=key,
        senders_reference=None,
        notification=NewNotification(
            channel=Channel.SMS,
            recipient="+4799999999",
            sender="Kommune",
            body="Kode 1234",
            ttl_s=300,
        ),
        now=NOW,
        lease=lease,
    )


async def stored_row(database: Database, receipt: OrderReceipt) -> dict[str, object]:
    async with database.read() as connection:
        row = (
            await connection.execute(
                select(notifications).where(notifications.c.id == receipt.notification_ids[0])
            )
        ).one()
    return dict(row._mapping)


async def test_leased_order_is_stored_sending(database: Database) -> None:
    lease = Lease("w1", NOW + timedelta(seconds=LEASE_S))
    receipt = await leased_order(database, "leased-1", lease)
    row = await stored_row(database, receipt)

    assert receipt.created
    assert receipt.claimed is not None
    assert receipt.claimed.id == receipt.notification_ids[0]
    assert receipt.claimed.lease_owner == "w1"
    assert receipt.claimed.attempts == 1
    assert row["status"] == NotificationStatus.SMS_SENDING.value
    assert row["lease_owner"] == "w1"
    assert row["lease_expires_at"] == lease.until
    assert row["attempts"] == 1


async def test_leased_order_is_not_claimed_again(database: Database) -> None:
    store = NotificationStore(database)
    receipt = await leased_order(database, "leased-2", Lease("w1", NOW + timedelta(seconds=60)))

    by_id = await store.claim(
        receipt.notification_ids[0], worker_id="w2", now=NOW, lease_until=NOW + timedelta(60)
    )
    due = await store.claim_due(
        worker_id="w2", now=NOW + timedelta(seconds=1), lease_until=NOW + timedelta(60), limit=10
    )

    assert by_id is None
    assert due == []


async def test_replayed_leased_order_carries_no_claim(database: Database) -> None:
    lease = Lease("w1", NOW + timedelta(seconds=LEASE_S))
    first = await leased_order(database, "leased-3", lease)
    replay = await leased_order(database, "leased-3", lease)

    assert first.created
    assert not replay.created
    assert replay.claimed is None
    assert replay.order_id == first.order_id
    assert replay.notification_ids == first.notification_ids


async def test_unleased_order_is_stored_new(database: Database) -> None:
    receipt = await leased_order(database, "plain-1", None)
    row = await stored_row(database, receipt)

    assert receipt.claimed is None
    assert row["status"] == NotificationStatus.SMS_NEW.value
    assert row["lease_owner"] is None
    assert row["attempts"] == 0
