"""Personal data retention: erasing message bodies of final notifications, purging old orders.

A body (and an email subject) is erased once its notification is final
and the retention period has passed. The shipment status, recipient and
timestamps stay, so the shipment and the status feed still show them. The
purge removes whole orders with everything that belongs to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import Select, and_, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from budstikke.domain.statuses import NotificationStatus, OrderStatus, Priority
from budstikke.store.database import Database
from budstikke.store.tables import (
    notifications,
    orders,
    provider_ref_keys,
    regular_orders,
    unmatched_reports,
)

FINAL_NOTIFICATION_STATUSES = [status.value for status in NotificationStatus if status.is_final]
FINAL_ORDER_STATUSES = [status.value for status in OrderStatus if status.is_final]
# Rows changed per transaction, so that a large backlog never holds the
# write lock for long; the next pass goes on where this one stopped.
ERASE_BATCH = 500
PURGE_BATCH = 200
# A delivery report waits in unmatched_reports for the hand-off record of
# its message, which comes within seconds, or within a lease after a
# database outage. One still unmatched after a day is a repeat of a receipt
# already applied, or for a message this service did not send, such as
# another system's on the same SMSC account.
UNMATCHED_REPORT_RETENTION = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class ErasedBodies:
    notifications: int
    regular_orders: int


@dataclass(frozen=True, slots=True)
class PurgeResult:
    orders: int
    notifications: int
    # Orders created before the cutoff that are not final yet, and so were kept.
    not_final: int


async def erase_final_bodies(
    database: Database,
    *,
    now: datetime,
    instant_retention: timedelta,
    regular_retention: timedelta,
    batch: int = ERASE_BATCH,
) -> ErasedBodies:
    """Erase up to `batch` bodies of each kind whose retention after the final status has ended.

    A notification's final time is its `updated_at`, which no later report
    changes. Regular orders also keep the requested text in
    `regular_orders`, which is erased once the order is final.
    """
    async with database.write() as connection:
        erased = 0
        for priority, retention in (
            (Priority.INSTANT, instant_retention),
            (Priority.REGULAR, regular_retention),
        ):
            erased += await erase_notification_bodies(
                connection, priority=priority, before=now - retention, batch=batch
            )
        requests = await erase_regular_order_texts(
            connection, before=now - regular_retention, batch=batch
        )
    return ErasedBodies(notifications=erased, regular_orders=requests)


async def erase_notification_bodies(
    connection: AsyncConnection, *, priority: Priority, before: datetime, batch: int
) -> int:
    candidates = (
        select(notifications.c.id)
        .where(
            notifications.c.body.is_not(None),
            notifications.c.updated_at <= before,
            notifications.c.priority == int(priority),
            notifications.c.status.in_(FINAL_NOTIFICATION_STATUSES),
        )
        .limit(batch)
    )
    if connection.dialect.name == "postgresql":
        # Another worker erasing at the same time takes other rows.
        candidates = candidates.with_for_update(skip_locked=True)
    result = await connection.execute(
        update(notifications)
        .where(notifications.c.id.in_(candidates.scalar_subquery()))
        .values(body=None, subject=None)
    )
    return int(result.rowcount)


async def erase_regular_order_texts(
    connection: AsyncConnection, *, before: datetime, batch: int
) -> int:
    # `regular_orders.body` is NOT NULL, so an erased text is the empty string.
    final_orders = select(orders.c.id).where(
        orders.c.status.in_(FINAL_ORDER_STATUSES), orders.c.updated_at <= before
    )
    candidates = (
        select(regular_orders.c.order_id)
        .where(regular_orders.c.body != "", regular_orders.c.order_id.in_(final_orders))
        .limit(batch)
    )
    result = await connection.execute(
        update(regular_orders)
        .where(regular_orders.c.order_id.in_(candidates.scalar_subquery()))
        .values(body="", subject=None)
    )
    return int(result.rowcount)


async def prune_unmatched_reports(
    database: Database, *, now: datetime, batch: int = ERASE_BATCH
) -> int:
    """Delete up to `batch` rows of reports unmatched for UNMATCHED_REPORT_RETENTION.

    A report has a row per lookup key, so the count is of rows, not reports.
    """
    oldest = (
        select(unmatched_reports.c.id)
        .where(unmatched_reports.c.received_at <= now - UNMATCHED_REPORT_RETENTION)
        .order_by(unmatched_reports.c.received_at)
        .limit(batch)
    )
    async with database.write() as connection:
        result = await connection.execute(
            delete(unmatched_reports).where(unmatched_reports.c.id.in_(oldest.scalar_subquery()))
        )
    return int(result.rowcount)


def purgeable_orders(cutoff: datetime) -> Select[tuple[UUID]]:
    """Select final orders created before `cutoff` that no unfinished reminder points to.

    Deleting a main order deletes its reminders' request rows by cascade,
    so a main order waits until every reminder is final too.
    """
    reminder = orders.alias("reminder")
    unfinished_reminder = exists().where(
        regular_orders.c.main_order_id == orders.c.id,
        regular_orders.c.order_id == reminder.c.id,
        reminder.c.status.not_in(FINAL_ORDER_STATUSES),
    )
    return select(orders.c.id).where(
        orders.c.created_at < cutoff,
        orders.c.status.in_(FINAL_ORDER_STATUSES),
        ~unfinished_reminder,
    )


async def count_purgeable(database: Database, cutoff: datetime) -> PurgeResult:
    """Count what `purge_orders` would remove, without removing anything."""
    purgeable = purgeable_orders(cutoff).subquery()
    async with database.read() as connection:
        order_count = (
            await connection.execute(select(func.count()).select_from(purgeable))
        ).scalar_one()
        notification_count = (
            await connection.execute(
                select(func.count()).where(notifications.c.order_id.in_(select(purgeable.c.id)))
            )
        ).scalar_one()
        not_final = await count_old_unfinished(connection, cutoff)
    return PurgeResult(orders=order_count, notifications=notification_count, not_final=not_final)


async def purge_orders(
    database: Database, cutoff: datetime, *, batch: int = PURGE_BATCH
) -> PurgeResult:
    """Delete final orders created before `cutoff`, in batches, with all their rows.

    Notifications, delivery parts, feed entries, webhook deliveries and
    regular order details go by ON DELETE CASCADE; the message id keys of
    delivery reports, which have no foreign key, are deleted first.
    """
    order_total = notification_total = 0
    while True:
        async with database.write() as connection:
            order_ids = list(
                (await connection.execute(purgeable_orders(cutoff).limit(batch))).scalars()
            )
            if not order_ids:
                not_final = await count_old_unfinished(connection, cutoff)
                break
            notification_ids = select(notifications.c.id).where(
                notifications.c.order_id.in_(order_ids)
            )
            await connection.execute(
                delete(provider_ref_keys).where(
                    provider_ref_keys.c.notification_id.in_(notification_ids)
                )
            )
            notification_total += (
                await connection.execute(
                    select(func.count()).where(notifications.c.order_id.in_(order_ids))
                )
            ).scalar_one()
            deleted = await connection.execute(delete(orders).where(orders.c.id.in_(order_ids)))
            order_total += int(deleted.rowcount)
    return PurgeResult(orders=order_total, notifications=notification_total, not_final=not_final)


async def count_old_unfinished(connection: AsyncConnection, cutoff: datetime) -> int:
    result = await connection.execute(
        select(func.count()).where(
            and_(orders.c.created_at < cutoff, orders.c.status.not_in(FINAL_ORDER_STATUSES))
        )
    )
    return int(result.scalar_one())
