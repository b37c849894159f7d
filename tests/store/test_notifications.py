"""The notification store on SQLite and PostgreSQL: claims, leases, expiry and reports."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from budstikke.dispatch.instant_first import InstantFirst
from budstikke.domain.statuses import Channel, NotificationStatus, OrderStatus, Priority
from budstikke.store.database import Database
from budstikke.store.feed import read_feed
from budstikke.store.migrate import upgrade_to_head
from budstikke.store.notifications import NotificationStore
from budstikke.store.orders import create_instant_order, get_shipment
from budstikke.store.outcomes import PartReference, combine_part_statuses
from budstikke.store.records import NewNotification, OrderReceipt
from budstikke.store.tables import notifications

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


async def new_order(
    database: Database,
    key: str,
    *,
    ttl_s: int = 300,
    priority: Priority = Priority.INSTANT,
    now: datetime = NOW,
) -> OrderReceipt:
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
            ttl_s=ttl_s,
            priority=priority,
        ),
        now=now,
    )


async def status_of(database: Database, receipt: OrderReceipt) -> tuple[str, str]:
    shipment = await get_shipment(database, "ttd", receipt.shipment_id)
    assert shipment is not None
    return shipment.status.value, shipment.recipients[0].status.value


async def test_claim_due_takes_instant_before_older_regular(database: Database) -> None:
    store = NotificationStore(database)
    regular = await new_order(database, "regular", priority=Priority.REGULAR, now=NOW)
    instant = await new_order(database, "instant", now=NOW + timedelta(seconds=5))

    later = NOW + timedelta(seconds=10)
    first = await store.claim_due(worker_id="w1", now=later, lease_until=later + LEASE, limit=1)
    second = await store.claim_due(worker_id="w1", now=later, lease_until=later + LEASE, limit=1)

    assert [item.id for item in first] == list(instant.notification_ids)
    assert [item.id for item in second] == list(regular.notification_ids)


async def test_claim_due_orders_new_and_reclaimed_together(database: Database) -> None:
    store = NotificationStore(database)
    reclaimed = await new_order(database, "reclaimed", now=NOW)
    await store.claim(
        reclaimed.notification_ids[0], worker_id="dead", now=NOW, lease_until=NOW + LEASE
    )
    regular = await new_order(database, "regular", priority=Priority.REGULAR, now=NOW)
    instant = await new_order(database, "instant", now=NOW + timedelta(seconds=30))

    later = NOW + LEASE + timedelta(seconds=1)
    first = await store.claim_due(worker_id="w2", now=later, lease_until=later + LEASE, limit=2)
    second = await store.claim_due(worker_id="w2", now=later, lease_until=later + LEASE, limit=2)

    assert [item.id for item in first] == [
        reclaimed.notification_ids[0],
        instant.notification_ids[0],
    ]
    assert [item.id for item in second] == list(regular.notification_ids)


async def test_notification_is_claimed_once(database: Database) -> None:
    store = NotificationStore(database)
    receipt = await new_order(database, "once")
    notification_id = receipt.notification_ids[0]

    first = await store.claim(notification_id, worker_id="w1", now=NOW, lease_until=NOW + LEASE)
    second = await store.claim(notification_id, worker_id="w2", now=NOW, lease_until=NOW + LEASE)
    due = await store.claim_due(worker_id="w2", now=NOW, lease_until=NOW + LEASE, limit=10)

    assert first is not None
    assert first.attempts == 1
    assert second is None
    assert due == []


async def test_expired_lease_is_reclaimed_and_counted(database: Database) -> None:
    store = NotificationStore(database)
    receipt = await new_order(database, "lease")
    notification_id = receipt.notification_ids[0]
    await store.claim(notification_id, worker_id="dead", now=NOW, lease_until=NOW + LEASE)

    later = NOW + LEASE + timedelta(seconds=1)
    reclaimed = await store.claim_due(
        worker_id="w2", now=later, lease_until=later + LEASE, limit=10
    )

    assert [item.id for item in reclaimed] == [notification_id]
    assert reclaimed[0].attempts == 2
    async with database.read() as connection:
        count = (
            await connection.execute(
                select(notifications.c.outcome_unknown_count).where(
                    notifications.c.id == notification_id
                )
            )
        ).scalar_one()
    assert count == 1


async def test_result_of_lost_lease_is_not_recorded(database: Database) -> None:
    store = NotificationStore(database)
    receipt = await new_order(database, "lost")
    claimed = await store.claim(
        receipt.notification_ids[0], worker_id="slow", now=NOW, lease_until=NOW + LEASE
    )
    assert claimed is not None
    later = NOW + LEASE + timedelta(seconds=1)
    await store.claim_due(worker_id="fast", now=later, lease_until=later + LEASE, limit=10)

    recorded = await store.record_hand_off(
        claimed, status=NotificationStatus.SMS_ACCEPTED, parts=[], now=later
    )

    assert recorded is False


async def test_unsent_notification_expires_at_ttl(database: Database) -> None:
    store = NotificationStore(database)
    receipt = await new_order(database, "expire", ttl_s=60)

    before = await store.expire_overdue(NOW + timedelta(seconds=59))
    at_ttl = await store.expire_overdue(NOW + timedelta(seconds=60))
    claim_after = await store.claim(
        receipt.notification_ids[0],
        worker_id="w",
        now=NOW + timedelta(seconds=61),
        lease_until=NOW + timedelta(seconds=121),
    )

    assert before == []
    assert at_ttl == list(receipt.notification_ids)
    assert claim_after is None
    assert await status_of(database, receipt) == ("Order_Completed", "SMS_Failed_TTL")


async def test_accepted_without_report_ends_ttl_after_grace(database: Database) -> None:
    store = NotificationStore(database)
    receipt = await new_order(database, "no-report", ttl_s=60)
    claimed = await store.claim(
        receipt.notification_ids[0], worker_id="w", now=NOW, lease_until=NOW + LEASE
    )
    assert claimed is not None
    await store.record_hand_off(
        claimed,
        status=NotificationStatus.SMS_ACCEPTED,
        parts=[PartReference("abc", ("ABC",))],
        now=NOW,
    )

    assert await store.expire_overdue(NOW + timedelta(seconds=359)) == []
    assert await status_of(database, receipt) == ("Order_Processed", "SMS_Accepted")
    assert await store.expire_overdue(NOW + timedelta(seconds=360)) == list(
        receipt.notification_ids
    )
    assert await status_of(database, receipt) == ("Order_Completed", "SMS_Failed_TTL")

    late = await store.apply_report(
        ["ABC"],
        status=NotificationStatus.SMS_DELIVERED,
        error_code=None,
        now=NOW + timedelta(seconds=400),
    )
    assert late == receipt.notification_ids[0]
    assert await status_of(database, receipt) == ("Order_Completed", "SMS_Failed_TTL")
    entries = await read_feed(database, creator="ttd", after_seq=0, page_size=10, descending=False)
    assert len(entries) == 1
    assert json.loads(entries[0].entry_json)["recipients"][0]["status"] == "SMS_Failed_TTL"


async def accepted_in_parts(
    database: Database, key: str, refs: list[str]
) -> tuple[NotificationStore, OrderReceipt]:
    store = NotificationStore(database)
    receipt = await new_order(database, key)
    claimed = await store.claim(
        receipt.notification_ids[0], worker_id="w", now=NOW, lease_until=NOW + LEASE
    )
    assert claimed is not None
    parts = [PartReference(ref, (ref.upper(),)) for ref in refs]
    await store.record_hand_off(
        claimed, status=NotificationStatus.SMS_ACCEPTED, parts=parts, now=NOW
    )
    return store, receipt


async def test_message_is_delivered_when_every_part_is(database: Database) -> None:
    store, receipt = await accepted_in_parts(database, "parts", ["p1", "p2"])

    await store.apply_report(
        ["P1"], status=NotificationStatus.SMS_DELIVERED, error_code=None, now=NOW
    )
    assert await status_of(database, receipt) == ("Order_Processed", "SMS_Accepted")
    await store.apply_report(
        ["P2"], status=NotificationStatus.SMS_DELIVERED, error_code=None, now=NOW
    )
    assert await status_of(database, receipt) == ("Order_Completed", "SMS_Delivered")


async def test_failed_part_fails_the_message(database: Database) -> None:
    store, receipt = await accepted_in_parts(database, "part-fail", ["q1", "q2"])

    await store.apply_report(
        ["Q1"], status=NotificationStatus.SMS_DELIVERED, error_code=None, now=NOW
    )
    await store.apply_report(
        ["Q2"], status=NotificationStatus.SMS_FAILED_UNDELIVERED, error_code="001", now=NOW
    )

    assert await status_of(database, receipt) == ("Order_Completed", "SMS_Failed_Undelivered")


async def test_non_final_report_changes_nothing(database: Database) -> None:
    store, receipt = await accepted_in_parts(database, "enroute", ["r1"])

    await store.apply_report(["R1"], status=None, error_code=None, now=NOW)

    assert await status_of(database, receipt) == ("Order_Processed", "SMS_Accepted")


async def test_report_before_hand_off_record_is_applied(database: Database) -> None:
    store = NotificationStore(database)
    receipt = await new_order(database, "early")
    claimed = await store.claim(
        receipt.notification_ids[0], worker_id="w", now=NOW, lease_until=NOW + LEASE
    )
    assert claimed is not None

    matched = await store.apply_report(
        ["EARLY1"], status=NotificationStatus.SMS_DELIVERED, error_code=None, now=NOW
    )
    await store.record_hand_off(
        claimed,
        status=NotificationStatus.SMS_ACCEPTED,
        parts=[PartReference("early1", ("EARLY1",))],
        now=NOW,
    )

    assert matched is None
    assert await status_of(database, receipt) == ("Order_Completed", "SMS_Delivered")


async def test_order_completes_once(database: Database) -> None:
    store = NotificationStore(database)
    receipt = await new_order(database, "outbox")
    claimed = await store.claim(
        receipt.notification_ids[0], worker_id="w", now=NOW, lease_until=NOW + LEASE
    )
    assert claimed is not None
    await store.record_hand_off(claimed, status=NotificationStatus.SMS_DELIVERED, parts=[], now=NOW)
    await store.expire_overdue(NOW + timedelta(hours=1))

    entries = await read_feed(database, creator="ttd", after_seq=0, page_size=10, descending=False)
    other = await read_feed(database, creator="xyz", after_seq=0, page_size=10, descending=False)
    assert len(entries) == 1
    assert other == []
    assert json.loads(entries[0].entry_json)["status"] == OrderStatus.COMPLETED.value


def test_combine_part_statuses() -> None:
    delivered = NotificationStatus.SMS_DELIVERED
    expired = NotificationStatus.SMS_FAILED_EXPIRED
    assert combine_part_statuses(Channel.SMS, []) is None
    assert combine_part_statuses(Channel.SMS, [delivered, None]) is None
    assert combine_part_statuses(Channel.SMS, [delivered, delivered]) is delivered
    assert combine_part_statuses(Channel.SMS, [delivered, expired]) is expired


async def test_reused_message_id_goes_to_waiting_message(database: Database) -> None:
    old_store, old = await accepted_in_parts(database, "old", ["dup1"])
    await old_store.apply_report(
        ["DUP1"], status=NotificationStatus.SMS_DELIVERED, error_code=None, now=NOW
    )
    store = NotificationStore(database)
    later = NOW + timedelta(seconds=5)
    new = await new_order(database, "new", now=later)
    claimed = await store.claim(
        new.notification_ids[0], worker_id="w", now=later, lease_until=later + LEASE
    )
    assert claimed is not None
    await store.record_hand_off(
        claimed,
        status=NotificationStatus.SMS_ACCEPTED,
        parts=[PartReference("dup1", ("DUP1",))],
        now=later,
    )

    matched = await store.apply_report(
        ["DUP1"], status=NotificationStatus.SMS_DELIVERED, error_code=None, now=later
    )

    assert matched == new.notification_ids[0]
    assert await status_of(database, new) == ("Order_Completed", "SMS_Delivered")
    assert await status_of(database, old) == ("Order_Completed", "SMS_Delivered")


async def test_instant_failure_writes_are_urgent(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await upgrade_to_head(database)
    store = NotificationStore(database)
    database.instant_first = instant_first = InstantFirst(max_wait_s=60)
    receipt = await new_order(database, "a")
    notification_id = receipt.notification_ids[0]

    # The order is in flight while it is leased and while its hand-off
    # fails, so these transactions would wait 60 s if they were not urgent.
    with instant_first.placing():
        claimed = await asyncio.wait_for(
            store.claim(notification_id, worker_id="w", now=NOW, lease_until=NOW + LEASE),
            timeout=5,
        )
        assert claimed is not None
        await asyncio.wait_for(
            store.reschedule(claimed, due_at=NOW, error="busy", outcome_unknown=False, now=NOW),
            timeout=5,
        )
        claimed = await asyncio.wait_for(
            store.claim(notification_id, worker_id="w", now=NOW, lease_until=NOW + LEASE),
            timeout=5,
        )
        assert claimed is not None
        failed = await asyncio.wait_for(
            store.fail(claimed, status=NotificationStatus.SMS_FAILED, error="no", now=NOW),
            timeout=5,
        )
    await database.dispose()

    assert failed is True
