"""Queries for orders: create with idempotency, read as shipments."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from budstikke.domain.statuses import (
    NEW_STATUS,
    SENDING_STATUS,
    Channel,
    NotificationStatus,
    OrderStatus,
    OrderType,
)
from budstikke.store.database import Database
from budstikke.store.events import QUEUED_CHANNEL, notify
from budstikke.store.prepared import PreparedStatement
from budstikke.store.records import (
    ClaimedNotification,
    NewNotification,
    OrderReceipt,
    RecipientStatus,
    Shipment,
)
from budstikke.store.tables import notifications, orders
from budstikke.store.webhook_events import record_notification_event, record_order_callback

# A handed-off message waits this long past its TTL for a final report.
REPORT_GRACE_S = 300

# The hot path's statements are built once: building a Core statement and its
# cache key costs about twice as much as executing it on SQLite. The inserts
# of a new order are prepared, so that on SQLite they also skip SQLAlchemy's
# execution machinery (store/prepared.py).
INSERT_NOTIFICATION = PreparedStatement(insert(notifications))
ORDER_BY_KEY = select(orders.c.id, orders.c.shipment_id, orders.c.senders_reference).where(
    orders.c.creator == bindparam("key_creator"),
    orders.c.idempotency_id == bindparam("key_idempotency_id"),
)
NOTIFICATION_IDS_OF_ORDER = (
    select(notifications.c.id)
    .where(notifications.c.order_id == bindparam("key_order_id"))
    .order_by(notifications.c.created_at)
)
# An order whose (creator, idempotency_id) exists inserts nothing and returns
# no row, so a replay costs no failed statement; the unique constraint still
# settles concurrent requests, and IntegrityError stays handled for safety.
INSERT_ORDER = {
    dialect: PreparedStatement(
        dialect_insert(orders)
        .on_conflict_do_nothing(index_elements=[orders.c.creator, orders.c.idempotency_id])
        .returning(orders.c.id)
    )
    for dialect, dialect_insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert))
}


ORDER_BY_SHIPMENT = select(orders).where(
    orders.c.creator == bindparam("shipment_creator"),
    orders.c.shipment_id == bindparam("shipment_id"),
)
ORDER_BY_ID = select(orders).where(
    orders.c.creator == bindparam("shipment_creator"),
    orders.c.id == bindparam("shipment_order_id"),
)
SHIPMENT_RECIPIENTS = (
    select(
        notifications.c.channel,
        notifications.c.recipient,
        notifications.c.status,
        notifications.c.updated_at,
    )
    .where(notifications.c.order_id == bindparam("shipment_order_id"))
    .order_by(notifications.c.created_at, notifications.c.id)
)


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's claim on a notification, taken in the transaction that stores it."""

    worker_id: str
    until: datetime


async def create_instant_order(
    database: Database,
    *,
    creator: str,
    idempotency_id: str,
    senders_reference: str | None,
    notification: NewNotification,
    now: datetime,
    notify_workers: bool = False,
    lease: Lease | None = None,
    callback_url: str | None = None,
    admit: Callable[[AsyncConnection], Awaitable[None]] | None = None,
) -> OrderReceipt:
    """Store an order with its notification, or return the order stored under the same key.

    The insert, the lookup of an existing order and the unique constraint on
    (creator, idempotency_id) share one transaction, so concurrent requests
    with one key store one order: a loser of the race reads the winner's ids.
    With a `lease` the notification is stored already claimed (`*_Sending`)
    and the receipt carries it, which saves the claim's own transaction.
    `admit` runs in the same transaction once the key is known to be new; it
    raises to reject the order (a rate limit), which rolls the inserts back.
    """
    try:
        async with database.write(urgent=True) as connection:
            return await store_instant_order(
                connection,
                creator=creator,
                idempotency_id=idempotency_id,
                senders_reference=senders_reference,
                notification=notification,
                now=now,
                notify_workers=notify_workers,
                lease=lease,
                callback_url=callback_url,
                admit=admit,
            )
    except IntegrityError:
        async with database.read() as connection:
            existing = await find_order_by_key(connection, creator, idempotency_id)
        if existing is None:
            raise
        return existing


async def store_instant_order(
    connection: AsyncConnection,
    *,
    creator: str,
    idempotency_id: str,
    senders_reference: str | None,
    notification: NewNotification,
    now: datetime,
    notify_workers: bool = False,
    lease: Lease | None = None,
    callback_url: str | None = None,
    admit: Callable[[AsyncConnection], Awaitable[None]] | None = None,
) -> OrderReceipt:
    """Store an order in the connection's transaction, as `create_instant_order` describes."""
    dialect = connection.dialect.name
    receipt = await insert_order(
        connection,
        dialect=dialect,
        creator=creator,
        idempotency_id=idempotency_id,
        senders_reference=senders_reference,
        notification=notification,
        now=now,
        lease=lease,
        callback_url=callback_url,
    )
    if receipt is None:
        existing = await find_order_by_key(connection, creator, idempotency_id)
        if existing is None:
            raise RuntimeError("an order conflicted on its key but cannot be read")
        return existing
    if admit is not None:
        await admit(connection)
    if notify_workers and dialect == "postgresql":
        await notify(connection, QUEUED_CHANNEL)
    return receipt


async def find_order_by_key(
    connection: AsyncConnection, creator: str, idempotency_id: str
) -> OrderReceipt | None:
    row = (
        await connection.execute(
            ORDER_BY_KEY, {"key_creator": creator, "key_idempotency_id": idempotency_id}
        )
    ).first()
    if row is None:
        return None
    notification_ids = (
        await connection.execute(NOTIFICATION_IDS_OF_ORDER, {"key_order_id": row.id})
    ).scalars()
    return OrderReceipt(
        order_id=row.id,
        shipment_id=row.shipment_id,
        notification_ids=tuple(notification_ids),
        senders_reference=row.senders_reference,
        created=False,
    )


async def insert_order(
    connection: AsyncConnection,
    *,
    dialect: str,
    creator: str,
    idempotency_id: str,
    senders_reference: str | None,
    notification: NewNotification,
    now: datetime,
    lease: Lease | None = None,
    callback_url: str | None = None,
) -> OrderReceipt | None:
    """Insert an order and its notification; None when the creator's key is taken."""
    order_id, shipment_id, notification_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    expires_at = now + timedelta(seconds=notification.ttl_s)
    inserted = await INSERT_ORDER[dialect].execute(
        connection,
        {
            "id": order_id,
            "shipment_id": shipment_id,
            "creator": creator,
            "idempotency_id": idempotency_id,
            "senders_reference": senders_reference,
            "order_type": OrderType.INSTANT.value,
            "status": OrderStatus.PROCESSED.value,
            "created_at": now,
            "updated_at": now,
        },
    )
    if not inserted:
        return None
    status = (
        NEW_STATUS[notification.channel] if lease is None else SENDING_STATUS[notification.channel]
    )
    await INSERT_NOTIFICATION.execute(
        connection,
        {
            "id": notification_id,
            "order_id": order_id,
            "creator": creator,
            "channel": notification.channel.value,
            "priority": int(notification.priority),
            "status": status.value,
            "recipient": notification.recipient,
            "sender": notification.sender,
            "subject": notification.subject,
            "body": notification.body,
            "content_type": notification.content_type,
            "created_at": now,
            "updated_at": now,
            "expires_at": expires_at,
            "report_deadline_at": expires_at + timedelta(seconds=REPORT_GRACE_S),
            "due_at": now,
            "attempts": 0 if lease is None else 1,
            "outcome_unknown_count": 0,
            "part_count": 0,
            "lease_owner": None if lease is None else lease.worker_id,
            "lease_expires_at": None if lease is None else lease.until,
            "last_error": None,
            "error_code": None,
            "handed_off_at": None,
            "daytime_only": False,
        },
    )
    if callback_url is not None:
        await record_order_callback(
            connection, creator=creator, order_id=order_id, url=callback_url
        )
    await record_notification_event(
        connection,
        creator=creator,
        order_id=order_id,
        channel=notification.channel,
        recipient=notification.recipient,
        status=status,
        now=now,
    )
    claimed = None
    if lease is not None:
        claimed = ClaimedNotification(
            id=notification_id,
            order_id=order_id,
            creator=creator,
            channel=notification.channel,
            priority=notification.priority,
            recipient=notification.recipient,
            sender=notification.sender,
            subject=notification.subject,
            body=notification.body,
            content_type=notification.content_type,
            created_at=now,
            expires_at=expires_at,
            attempts=1,
            lease_owner=lease.worker_id,
        )
    return OrderReceipt(
        order_id=order_id,
        shipment_id=shipment_id,
        notification_ids=(notification_id,),
        senders_reference=senders_reference,
        created=True,
        claimed=claimed,
    )


async def get_shipment(database: Database, creator: str, shipment_id: UUID) -> Shipment | None:
    """Return the creator's shipment, or None when it is missing or another creator's."""
    async with database.read() as connection:
        return await load_shipment(connection, creator=creator, shipment_id=shipment_id)


async def load_shipment(
    connection: AsyncConnection,
    *,
    creator: str,
    shipment_id: UUID | None = None,
    order_id: UUID | None = None,
) -> Shipment | None:
    if shipment_id is not None and order_id is None:
        found = await connection.execute(
            ORDER_BY_SHIPMENT, {"shipment_creator": creator, "shipment_id": shipment_id}
        )
    elif order_id is not None and shipment_id is None:
        found = await connection.execute(
            ORDER_BY_ID, {"shipment_creator": creator, "shipment_order_id": order_id}
        )
    else:
        query = select(orders).where(orders.c.creator == creator)
        if shipment_id is not None:
            query = query.where(orders.c.shipment_id == shipment_id)
        if order_id is not None:
            query = query.where(orders.c.id == order_id)
        found = await connection.execute(query)
    order = found.first()
    if order is None:
        return None
    rows = await connection.execute(SHIPMENT_RECIPIENTS, {"shipment_order_id": order.id})
    recipients = tuple(
        RecipientStatus(
            channel=Channel(row.channel),
            destination=row.recipient,
            status=NotificationStatus(row.status),
            last_update=row.updated_at,
        )
        for row in rows
    )
    last_update = max([order.updated_at, *(r.last_update for r in recipients)])
    return Shipment(
        shipment_id=order.shipment_id,
        order_id=order.id,
        senders_reference=order.senders_reference,
        order_type=OrderType(order.order_type),
        status=OrderStatus(order.status),
        last_update=last_update,
        recipients=recipients,
    )
