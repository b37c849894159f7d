"""The status feed: one entry per order that reached a final status, read by sequence number."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from budstikke.domain.statuses import RECIPIENT_TYPE, NotificationStatus, OrderStatus
from budstikke.store.database import Database
from budstikke.store.orders import load_shipment
from budstikke.store.records import FeedEntry, Shipment
from budstikke.store.tables import feed_entries, notifications, orders
from budstikke.store.webhook_events import record_order_event

FEED_PAGE_MAX = 500

# Run once per completed order, so built once (see store/orders.py).
ORDER_STATUSES = select(notifications.c.status).where(
    notifications.c.order_id == bindparam("final_order_id")
)
COMPLETE_ORDER = (
    update(orders)
    .where(
        orders.c.id == bindparam("final_order_id"),
        orders.c.status != OrderStatus.COMPLETED.value,
    )
    .values(status=OrderStatus.COMPLETED.value, updated_at=bindparam("final_now"))
    .returning(orders.c.creator)
)
INSERT_FEED_ENTRY = insert(feed_entries)
# Advisory lock id that the commit-time trigger on feed_entries takes on
# PostgreSQL (migration 0007_feed_commit_order), to number entries in commit order.
FEED_LOCK = 0x6275_6473_0002


def format_time(value: datetime) -> str:
    """Format a time as RFC 3339 in UTC with milliseconds and a Z."""
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def render_shipment(shipment: Shipment) -> dict[str, Any]:
    """Return the shipment as the API shows it."""
    body: dict[str, Any] = {"shipmentId": str(shipment.shipment_id)}
    if shipment.senders_reference is not None:
        body["sendersReference"] = shipment.senders_reference
    body["type"] = shipment.order_type.value
    body["status"] = shipment.status.value
    body["lastUpdate"] = format_time(shipment.last_update)
    body["recipients"] = [
        {
            "type": RECIPIENT_TYPE[recipient.channel],
            "destination": recipient.destination,
            "status": recipient.status.value,
            "lastUpdate": format_time(recipient.last_update),
        }
        for recipient in shipment.recipients
    ]
    return body


async def complete_order_if_final(
    connection: AsyncConnection, order_id: UUID, now: datetime
) -> bool:
    """Mark the order completed and write its feed entry once all its notifications are final.

    Returns whether this call completed the order. The conditional update makes
    a second caller for the same order a no-op, so the feed gets one entry.
    """
    statuses = (await connection.execute(ORDER_STATUSES, {"final_order_id": order_id})).scalars()
    if not all(NotificationStatus(status).is_final for status in statuses):
        return False
    result = await connection.execute(
        COMPLETE_ORDER, {"final_order_id": order_id, "final_now": now}
    )
    creator = result.scalar_one_or_none()
    if creator is None:
        return False
    await append_feed_entry(connection, creator=creator, order_id=order_id, now=now)
    return True


async def append_feed_entry(
    connection: AsyncConnection, *, creator: str, order_id: UUID, now: datetime
) -> None:
    """Write the feed entry of an order that has just reached its final status."""
    shipment = await load_shipment(connection, creator=creator, order_id=order_id)
    assert shipment is not None
    await record_order_event(connection, creator=creator, shipment=shipment, now=now)
    entry = render_shipment(shipment)
    entry["shipmentType"] = entry["type"]
    # On PostgreSQL a deferred trigger renumbers this row at commit, under
    # FEED_LOCK, so entries become visible in sequence order without a lock
    # held while this transaction goes on. SQLite has a single writer.
    await connection.execute(
        INSERT_FEED_ENTRY,
        {
            "creator": creator,
            "order_id": order_id,
            "created_at": now,
            "entry": json.dumps(entry, ensure_ascii=False, separators=(",", ":")),
        },
    )


async def read_feed(
    database: Database, *, creator: str, after_seq: int, page_size: int, descending: bool
) -> list[FeedEntry]:
    """Return the creator's entries after `after_seq`, or before it when descending.

    With `descending` and `after_seq` 0 the newest entries come first.
    """
    page_size = max(1, min(FEED_PAGE_MAX, page_size))
    query = select(feed_entries.c.seq, feed_entries.c.entry).where(
        feed_entries.c.creator == creator
    )
    if descending:
        if after_seq > 0:
            query = query.where(feed_entries.c.seq < after_seq)
        query = query.order_by(feed_entries.c.seq.desc())
    else:
        query = query.where(feed_entries.c.seq > after_seq).order_by(feed_entries.c.seq)
    async with database.read() as connection:
        rows = await connection.execute(query.limit(page_size))
        return [FeedEntry(seq=row.seq, entry_json=row.entry) for row in rows]
