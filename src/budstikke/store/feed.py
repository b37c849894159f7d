"""The status feed: one entry per order that reached a final status, read by sequence number."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from budstikke.domain.statuses import (
    RECIPIENT_TYPE,
    Channel,
    NotificationStatus,
    OrderStatus,
    OrderType,
)
from budstikke.store.database import Database
from budstikke.store.orders import load_shipment
from budstikke.store.prepared import PreparedStatement
from budstikke.store.records import FeedEntry, RecipientStatus, Shipment
from budstikke.store.tables import feed_entries, notifications, orders
from budstikke.store.webhook_events import record_order_event

FEED_PAGE_MAX = 500

# Run for every completed order, so built once (see store/orders.py). The
# recipients come in the order the shipment API lists them.
ORDERS_RECIPIENTS = PreparedStatement(
    select(
        notifications.c.order_id,
        notifications.c.channel,
        notifications.c.recipient,
        notifications.c.status,
        notifications.c.updated_at,
    )
    .where(notifications.c.order_id.in_(bindparam("final_order_ids", expanding=True)))
    .order_by(notifications.c.created_at, notifications.c.id)
)
COMPLETE_ORDERS = PreparedStatement(
    update(orders)
    .where(
        orders.c.id.in_(bindparam("final_order_ids", expanding=True)),
        orders.c.status != OrderStatus.COMPLETED.value,
    )
    .values(status=OrderStatus.COMPLETED.value, updated_at=bindparam("final_now"))
    .returning(
        orders.c.id,
        orders.c.creator,
        orders.c.shipment_id,
        orders.c.senders_reference,
        orders.c.order_type,
        orders.c.status,
        orders.c.updated_at,
    )
)
INSERT_FEED_ENTRY = PreparedStatement(
    insert(feed_entries), columns=("creator", "order_id", "created_at", "entry")
)
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

    Returns whether this call completed the order.
    """
    return bool(await complete_orders_if_final(connection, [order_id], now))


async def complete_orders_if_final(
    connection: AsyncConnection, order_ids: Sequence[UUID], now: datetime
) -> list[UUID]:
    """Complete each order whose notifications are all final, and write the feed entries.

    Returns the ids of the orders this call completed. The conditional update
    makes a second caller for the same order a no-op, so the feed gets one
    entry per order. The shipments are built from the rows read and updated
    here, so nothing is read twice.
    """
    if not order_ids:
        return []
    unique_ids = sorted(set(order_ids), key=lambda order_id: order_id.bytes)
    rows = await ORDERS_RECIPIENTS.execute(connection, {"final_order_ids": unique_ids})
    recipients: dict[UUID, list[RecipientStatus]] = {}
    for row in rows:
        recipients.setdefault(row.order_id, []).append(
            RecipientStatus(
                channel=Channel(row.channel),
                destination=row.recipient,
                status=NotificationStatus(row.status),
                last_update=row.updated_at,
            )
        )
    final_ids = [
        order_id
        for order_id in unique_ids
        if order_id in recipients
        and all(recipient.status.is_final for recipient in recipients[order_id])
    ]
    if not final_ids:
        return []
    completed = await COMPLETE_ORDERS.execute(
        connection, {"final_order_ids": final_ids, "final_now": now}
    )
    shipments = [
        (order.creator, shipment_of(order, tuple(recipients[order.id]))) for order in completed
    ]
    await write_feed_entries(connection, shipments, now)
    return [order.id for order in completed]


def shipment_of(order: Any, recipients: tuple[RecipientStatus, ...]) -> Shipment:
    """Build the shipment of an order row and its recipients, as load_shipment does."""
    return Shipment(
        shipment_id=order.shipment_id,
        order_id=order.id,
        senders_reference=order.senders_reference,
        order_type=OrderType(order.order_type),
        status=OrderStatus(order.status),
        last_update=max([order.updated_at, *(item.last_update for item in recipients)]),
        recipients=recipients,
    )


async def append_feed_entry(
    connection: AsyncConnection, *, creator: str, order_id: UUID, now: datetime
) -> None:
    """Write the feed entry of an order that has just reached its final status."""
    shipment = await load_shipment(connection, creator=creator, order_id=order_id)
    assert shipment is not None
    await write_feed_entries(connection, [(creator, shipment)], now)


async def write_feed_entries(
    connection: AsyncConnection, shipments: Sequence[tuple[str, Shipment]], now: datetime
) -> None:
    """Write the webhook event and the feed entry of each (creator, shipment) just completed."""
    if not shipments:
        return
    entries = []
    for creator, shipment in shipments:
        await record_order_event(connection, creator=creator, shipment=shipment, now=now)
        entry = render_shipment(shipment)
        entry["shipmentType"] = entry["type"]
        entries.append(
            {
                "creator": creator,
                "order_id": shipment.order_id,
                "created_at": now,
                "entry": json.dumps(entry, ensure_ascii=False, separators=(",", ":")),
            }
        )
    # On PostgreSQL a deferred trigger renumbers these rows at commit, under
    # FEED_LOCK, so entries become visible in sequence order without a lock
    # held while this transaction goes on. SQLite has a single writer.
    await INSERT_FEED_ENTRY.execute_many(connection, entries)


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
