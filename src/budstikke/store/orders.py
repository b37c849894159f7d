"""Queries for orders: create with idempotency, read as shipments."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from budstikke.domain.statuses import (
    NEW_STATUS,
    Channel,
    NotificationStatus,
    OrderStatus,
    OrderType,
)
from budstikke.store.database import Database
from budstikke.store.events import QUEUED_CHANNEL, notify
from budstikke.store.records import NewNotification, OrderReceipt, RecipientStatus, Shipment
from budstikke.store.tables import notifications, orders

# A handed-off message waits this long past its TTL for a final report.
REPORT_GRACE_S = 300


async def create_instant_order(
    database: Database,
    *,
    creator: str,
    idempotency_id: str,
    senders_reference: str | None,
    notification: NewNotification,
    now: datetime,
    notify_workers: bool = False,
) -> OrderReceipt:
    """Store an order with its notification, or return the order stored under the same key.

    The lookup, the inserts and the unique constraint on (creator,
    idempotency_id) share one transaction, so concurrent requests with one key
    store one order: a loser of the race reads the winner's ids.
    """
    try:
        async with database.write() as connection:
            existing = await find_order_by_key(connection, creator, idempotency_id)
            if existing is not None:
                return existing
            receipt = await insert_order(
                connection,
                creator=creator,
                idempotency_id=idempotency_id,
                senders_reference=senders_reference,
                notification=notification,
                now=now,
            )
            if notify_workers and not database.is_sqlite:
                await notify(connection, QUEUED_CHANNEL)
            return receipt
    except IntegrityError:
        async with database.read() as connection:
            existing = await find_order_by_key(connection, creator, idempotency_id)
        if existing is None:
            raise
        return existing


async def find_order_by_key(
    connection: AsyncConnection, creator: str, idempotency_id: str
) -> OrderReceipt | None:
    row = (
        await connection.execute(
            select(orders.c.id, orders.c.shipment_id, orders.c.senders_reference).where(
                orders.c.creator == creator, orders.c.idempotency_id == idempotency_id
            )
        )
    ).first()
    if row is None:
        return None
    notification_ids = (
        await connection.execute(
            select(notifications.c.id)
            .where(notifications.c.order_id == row.id)
            .order_by(notifications.c.created_at)
        )
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
    creator: str,
    idempotency_id: str,
    senders_reference: str | None,
    notification: NewNotification,
    now: datetime,
) -> OrderReceipt:
    order_id, shipment_id, notification_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    expires_at = now + timedelta(seconds=notification.ttl_s)
    await connection.execute(
        insert(orders).values(
            id=order_id,
            shipment_id=shipment_id,
            creator=creator,
            idempotency_id=idempotency_id,
            senders_reference=senders_reference,
            order_type=OrderType.INSTANT.value,
            status=OrderStatus.PROCESSED.value,
            created_at=now,
            updated_at=now,
        )
    )
    await connection.execute(
        insert(notifications).values(
            id=notification_id,
            order_id=order_id,
            creator=creator,
            channel=notification.channel.value,
            priority=int(notification.priority),
            status=NEW_STATUS[notification.channel].value,
            recipient=notification.recipient,
            sender=notification.sender,
            subject=notification.subject,
            body=notification.body,
            content_type=notification.content_type,
            created_at=now,
            updated_at=now,
            expires_at=expires_at,
            report_deadline_at=expires_at + timedelta(seconds=REPORT_GRACE_S),
            due_at=now,
            attempts=0,
            outcome_unknown_count=0,
            part_count=0,
        )
    )
    return OrderReceipt(
        order_id=order_id,
        shipment_id=shipment_id,
        notification_ids=(notification_id,),
        senders_reference=senders_reference,
        created=True,
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
    query = select(orders).where(orders.c.creator == creator)
    if shipment_id is not None:
        query = query.where(orders.c.shipment_id == shipment_id)
    if order_id is not None:
        query = query.where(orders.c.id == order_id)
    order = (await connection.execute(query)).first()
    if order is None:
        return None
    rows = await connection.execute(
        select(
            notifications.c.channel,
            notifications.c.recipient,
            notifications.c.status,
            notifications.c.updated_at,
        )
        .where(notifications.c.order_id == order.id)
        .order_by(notifications.c.created_at, notifications.c.id)
    )
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
