"""Queries for regular orders: store one with its reminders, claim due ones, expand them.

A regular order and each of its reminders are rows of `orders` (type
Notification, each with its own shipment id) with their request details in
`regular_orders`. At its send time a worker claims the order under a lease
(Order_Registered -> Order_Processing), asks its condition endpoint, and
then either stores its notification (Order_Processed) or ends it
(Order_SendConditionNotMet). Every write after the claim checks the lease,
so two workers never expand the same order.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Integer, Select, String, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import ReturningUpdate

from budstikke.domain.daytime import is_daytime, next_daytime
from budstikke.domain.statuses import NEW_STATUS, Channel, OrderStatus, OrderType, Priority
from budstikke.store.database import Database
from budstikke.store.feed import append_feed_entry
from budstikke.store.notifications import NEW_STATUSES
from budstikke.store.orders import REPORT_GRACE_S
from budstikke.store.tables import notifications, orders, regular_orders
from budstikke.store.types import UtcDateTime
from budstikke.store.webhook_events import (
    NotificationChange,
    record_notification_events,
    record_order_callback,
)

# A regular message may be handed off until 48 hours after its send time.
REGULAR_EXPIRY_S = 48 * 3600


@dataclass(frozen=True, slots=True)
class NewScheduledMessage:
    """The main order or one reminder, ready to store; the sender is already resolved."""

    senders_reference: str | None
    send_time: datetime
    condition_endpoint: str | None
    channel: Channel
    recipient: str
    sender: str
    body: str
    daytime_only: bool = False
    subject: str | None = None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class ShipmentReference:
    shipment_id: UUID
    senders_reference: str | None


@dataclass(frozen=True, slots=True)
class RegularOrderReceipt:
    """The ids a regular order is answered with; `created` is False for a replay."""

    order_id: UUID
    shipment_id: UUID
    senders_reference: str | None
    reminders: tuple[ShipmentReference, ...]
    created: bool


@dataclass(frozen=True, slots=True)
class DueRegularOrder:
    """A regular order (or reminder) leased to one worker for processing."""

    order_id: UUID
    creator: str
    channel: Channel
    recipient: str
    sender: str
    subject: str | None
    body: str
    content_type: str | None
    daytime_only: bool
    requested_send_time: datetime
    condition_endpoint: str | None
    condition_attempts: int
    condition_first_attempt_at: datetime | None
    lease_owner: str


def reminder_key(main_order_id: UUID, index: int) -> str:
    """Return the idempotency key under which a reminder's order row is stored.

    Clients never see it. It starts with the main order's random id, which
    exists only once that order is stored, so no earlier request can take it.
    """
    return f"{main_order_id}/reminder/{index}"


async def create_regular_order(
    database: Database,
    *,
    creator: str,
    idempotency_id: str,
    main: NewScheduledMessage,
    reminders: Sequence[NewScheduledMessage],
    now: datetime,
    callback_url: str | None = None,
    admit: Callable[[AsyncConnection], Awaitable[None]] | None = None,
) -> RegularOrderReceipt:
    """Store an order with its reminders, or return the order stored under the same key.

    Everything is one transaction, and the unique (creator, idempotency_id)
    settles concurrent requests: the loser reads the winner's ids. `admit`
    runs in the transaction once the key is known to be new; it raises to
    reject the order (a rate limit), which rolls the inserts back.
    """
    try:
        async with database.write() as connection:
            existing = await find_regular_order_by_key(connection, creator, idempotency_id)
            if existing is not None:
                return existing
            receipt = await insert_regular_order(
                connection,
                creator=creator,
                idempotency_id=idempotency_id,
                main=main,
                reminders=reminders,
                now=now,
                callback_url=callback_url,
            )
            if admit is not None:
                await admit(connection)
            return receipt
    except IntegrityError:
        async with database.read() as connection:
            existing = await find_regular_order_by_key(connection, creator, idempotency_id)
        if existing is None:
            raise
        return existing


async def find_regular_order_by_key(
    connection: AsyncConnection, creator: str, idempotency_id: str
) -> RegularOrderReceipt | None:
    """Return the order stored under the key, of any type, with its reminders' shipments."""
    order = (
        await connection.execute(
            select(orders.c.id, orders.c.shipment_id, orders.c.senders_reference).where(
                orders.c.creator == creator, orders.c.idempotency_id == idempotency_id
            )
        )
    ).first()
    if order is None:
        return None
    rows = await connection.execute(
        select(orders.c.shipment_id, orders.c.senders_reference)
        .join(regular_orders, regular_orders.c.order_id == orders.c.id)
        .where(regular_orders.c.main_order_id == order.id, regular_orders.c.reminder_index > 0)
        .order_by(regular_orders.c.reminder_index)
    )
    return RegularOrderReceipt(
        order_id=order.id,
        shipment_id=order.shipment_id,
        senders_reference=order.senders_reference,
        reminders=tuple(ShipmentReference(row.shipment_id, row.senders_reference) for row in rows),
        created=False,
    )


async def insert_regular_order(
    connection: AsyncConnection,
    *,
    creator: str,
    idempotency_id: str,
    main: NewScheduledMessage,
    reminders: Sequence[NewScheduledMessage],
    now: datetime,
    callback_url: str | None = None,
) -> RegularOrderReceipt:
    main_order_id = uuid.uuid4()
    shipments: list[ShipmentReference] = []
    for index, message in enumerate([main, *reminders]):
        order_id = main_order_id if index == 0 else uuid.uuid4()
        shipment = ShipmentReference(uuid.uuid4(), message.senders_reference)
        shipments.append(shipment)
        await connection.execute(
            insert(orders).values(
                id=order_id,
                shipment_id=shipment.shipment_id,
                creator=creator,
                idempotency_id=idempotency_id if index == 0 else reminder_key(main_order_id, index),
                senders_reference=message.senders_reference,
                order_type=OrderType.NOTIFICATION.value,
                status=OrderStatus.REGISTERED.value,
                created_at=now,
                updated_at=now,
            )
        )
        await connection.execute(
            insert(regular_orders).values(
                order_id=order_id,
                main_order_id=main_order_id,
                reminder_index=index,
                channel=message.channel.value,
                recipient=message.recipient,
                sender=message.sender,
                subject=message.subject,
                body=message.body,
                content_type=message.content_type,
                daytime_only=message.daytime_only,
                requested_send_time=message.send_time,
                condition_endpoint=message.condition_endpoint,
                process_after=message.send_time,
                condition_attempts=0,
            )
        )
        if callback_url is not None:
            await record_order_callback(
                connection, creator=creator, order_id=order_id, url=callback_url
            )
    return RegularOrderReceipt(
        order_id=main_order_id,
        shipment_id=shipments[0].shipment_id,
        senders_reference=main.senders_reference,
        reminders=tuple(shipments[1:]),
        created=True,
    )


def send_window(order: DueRegularOrder, now: datetime) -> tuple[datetime, datetime]:
    """Return when the order's notification becomes due and when it expires.

    A message is due at its requested time, or now when processing ran late;
    a Daytime SMS outside 09:00-17:00 Oslo time moves to the next 09:00.
    It expires 48 hours after the time it becomes due.
    """
    due_at = max(order.requested_send_time, now)
    if order.daytime_only:
        due_at = next_daytime(due_at)
    return due_at, due_at + timedelta(seconds=REGULAR_EXPIRY_S)


# The statements of every pass of the regular order processor are built
# once, because building them took about 0.4 and 0.7 ms of CPU on the event
# loop for each pass, five times a second even when nothing is due.


@functools.cache
def count_claimable_statement(*, daytime: bool) -> Select[int]:
    """Build the count of claimable regular notifications, with now and count_limit bound."""
    now = bindparam("now", type_=UtcDateTime())
    claimable = and_(
        notifications.c.status.in_(NEW_STATUSES),
        notifications.c.priority == int(Priority.REGULAR),
        notifications.c.due_at <= now,
        notifications.c.expires_at > now,
    )
    if not daytime:
        claimable = and_(claimable, notifications.c.daytime_only.is_(False))
    limit = bindparam("count_limit", type_=Integer())
    rows = select(notifications.c.id).where(claimable).limit(limit).subquery()
    return select(func.count()).select_from(rows)


@functools.cache
def claim_orders_statement(*, skip_locked: bool) -> ReturningUpdate[Any]:
    """Build the UPDATE that leases due orders, with their parameters bound.

    The parameters are now, claim_limit, worker_id and lease_until.
    """
    now = bindparam("now", type_=UtcDateTime())
    due = and_(
        regular_orders.c.process_after <= now,
        or_(
            regular_orders.c.lease_expires_at.is_(None),
            regular_orders.c.lease_expires_at < now,
        ),
    )
    candidates = (
        select(regular_orders.c.order_id)
        .where(due)
        .order_by(regular_orders.c.process_after)
        .limit(bindparam("claim_limit", type_=Integer()))
    )
    if skip_locked:
        candidates = candidates.with_for_update(skip_locked=True)
    # A materialized CTE runs the LIMIT once. As `IN (subquery)` PostgreSQL
    # may run it again for each row, and SKIP LOCKED then claims every row.
    picked = candidates.cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
    return (
        update(regular_orders)
        .where(regular_orders.c.order_id.in_(select(picked.c.order_id)), due)
        .values(
            lease_owner=bindparam("worker_id", type_=String()),
            lease_expires_at=bindparam("lease_until", type_=UtcDateTime()),
        )
        .returning(*regular_orders.c)
    )


class RegularOrderStore:
    """The writes that move a regular order from Order_Registered to its notification."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def count_claimable_notifications(self, *, now: datetime, limit: int) -> int:
        """Count regular notifications that workers could claim now, counting to `limit` at most."""
        statement = count_claimable_statement(daytime=is_daytime(now))
        async with self.database.read() as connection:
            result = await connection.execute(statement, {"now": now, "count_limit": limit})
            return int(result.scalar_one())

    async def claim_due(
        self, *, worker_id: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[DueRegularOrder]:
        """Lease up to `limit` orders whose send time (or condition retry) has come.

        An order leased by a worker that died is claimed again once its lease ends.
        """
        statement = claim_orders_statement(skip_locked=not self.database.is_sqlite)
        parameters = {
            "now": now,
            "claim_limit": limit,
            "worker_id": worker_id,
            "lease_until": lease_until,
        }
        async with self.database.write() as connection:
            rows = (await connection.execute(statement, parameters)).all()
            if not rows:
                return []
            ids = [row.order_id for row in rows]
            await connection.execute(
                update(orders)
                .where(orders.c.id.in_(ids), orders.c.status == OrderStatus.REGISTERED.value)
                .values(status=OrderStatus.PROCESSING.value, updated_at=now)
            )
            owners = await connection.execute(
                select(orders.c.id, orders.c.creator).where(orders.c.id.in_(ids))
            )
            creators = {row.id: row.creator for row in owners}
        claimed = [to_due_order(row, creators[row.order_id]) for row in rows]
        claimed.sort(key=lambda order: order.requested_send_time)
        return claimed

    async def schedule_condition_retry(
        self,
        order: DueRegularOrder,
        *,
        retry_at: datetime,
        first_attempt_at: datetime,
        now: datetime,
    ) -> bool:
        """Release the order until `retry_at`, after its condition endpoint gave no clear answer."""
        async with self.database.write() as connection:
            result = await connection.execute(
                update(regular_orders)
                .where(
                    regular_orders.c.order_id == order.order_id,
                    regular_orders.c.lease_owner == order.lease_owner,
                )
                .values(
                    process_after=retry_at,
                    lease_owner=None,
                    lease_expires_at=None,
                    condition_attempts=order.condition_attempts,
                    condition_first_attempt_at=first_attempt_at,
                )
            )
            await touch_order(connection, order.order_id, now)
        return result.rowcount == 1

    async def release_orders(self, items: Sequence[tuple[DueRegularOrder, datetime]]) -> int:
        """Release leased orders until the time beside each, without counting a condition attempt.

        Returns how many were released; an order whose lease was lost is skipped.
        """
        if not items:
            return 0
        released = 0
        async with self.database.write() as connection:
            for order, process_after in items:
                result = await connection.execute(
                    update(regular_orders)
                    .where(
                        regular_orders.c.order_id == order.order_id,
                        regular_orders.c.lease_owner == order.lease_owner,
                    )
                    .values(process_after=process_after, lease_owner=None, lease_expires_at=None)
                )
                released += result.rowcount
        return released

    async def store_notifications(
        self, items: Sequence[tuple[DueRegularOrder, str | None]], *, now: datetime
    ) -> list[UUID]:
        """Store the notification of each leased order and mark the order Order_Processed.

        The string beside each order is why it is sent without a clear answer
        from its condition endpoint, or None. Orders whose lease was lost are
        skipped. Returns the ids of the notifications stored.
        """
        if not items:
            return []
        async with self.database.write() as connection:
            finished = await finish_processing_all(connection, items)
            stored = [
                notification_values(order, now)
                for order, _note in items
                if order.order_id in finished
            ]
            if stored:
                await connection.execute(insert(notifications), stored)
                await connection.execute(
                    update(orders)
                    .where(orders.c.id.in_([values["order_id"] for values in stored]))
                    .values(status=OrderStatus.PROCESSED.value, updated_at=now)
                )
                await record_notification_events(
                    connection,
                    [
                        NotificationChange(
                            order.creator,
                            order.order_id,
                            order.channel,
                            order.recipient,
                            NEW_STATUS[order.channel],
                        )
                        for order, _note in items
                        if order.order_id in finished
                    ],
                    now=now,
                )
        return [values["id"] for values in stored]

    async def end_condition_not_met(self, order: DueRegularOrder, *, now: datetime) -> bool:
        """End the order as Order_SendConditionNotMet with its feed entry; nothing is sent."""
        async with self.database.write() as connection:
            if not await finish_processing(connection, order, note=None):
                return False
            await connection.execute(
                update(orders)
                .where(orders.c.id == order.order_id)
                .values(status=OrderStatus.SEND_CONDITION_NOT_MET.value, updated_at=now)
            )
            await append_feed_entry(
                connection, creator=order.creator, order_id=order.order_id, now=now
            )
        return True


async def finish_processing_all(
    connection: AsyncConnection, items: Sequence[tuple[DueRegularOrder, str | None]]
) -> set[UUID]:
    """Mark the orders this worker still leases as processed, and return their ids.

    Orders with a condition endpoint are updated one by one, to store their
    note and their count of condition requests.
    """
    finished: set[UUID] = set()
    for order, note in items:
        if not has_condition_outcome(order, note):
            continue
        if await finish_processing(connection, order, note=note):
            finished.add(order.order_id)
    plain: dict[str, list[UUID]] = {}
    for order, note in items:
        if not has_condition_outcome(order, note):
            plain.setdefault(order.lease_owner, []).append(order.order_id)
    for lease_owner, ids in plain.items():
        rows = await connection.execute(
            update(regular_orders)
            .where(
                regular_orders.c.order_id.in_(ids),
                regular_orders.c.lease_owner == lease_owner,
                regular_orders.c.process_after.is_not(None),
            )
            .values(process_after=None, lease_owner=None, lease_expires_at=None)
            .returning(regular_orders.c.order_id)
        )
        finished.update(row.order_id for row in rows)
    return finished


def has_condition_outcome(order: DueRegularOrder, note: str | None) -> bool:
    return note is not None or order.condition_endpoint is not None


async def finish_processing(
    connection: AsyncConnection, order: DueRegularOrder, *, note: str | None
) -> bool:
    result = await connection.execute(
        update(regular_orders)
        .where(
            regular_orders.c.order_id == order.order_id,
            regular_orders.c.lease_owner == order.lease_owner,
            regular_orders.c.process_after.is_not(None),
        )
        .values(
            process_after=None,
            lease_owner=None,
            lease_expires_at=None,
            condition_note=note,
            condition_attempts=order.condition_attempts,
        )
    )
    return result.rowcount == 1


async def touch_order(connection: AsyncConnection, order_id: UUID, now: datetime) -> None:
    await connection.execute(update(orders).where(orders.c.id == order_id).values(updated_at=now))


def notification_values(order: DueRegularOrder, now: datetime) -> dict[str, Any]:
    due_at, expires_at = send_window(order, now)
    return {
        "id": uuid.uuid4(),
        "order_id": order.order_id,
        "creator": order.creator,
        "channel": order.channel.value,
        "priority": int(Priority.REGULAR),
        "status": NEW_STATUS[order.channel].value,
        "recipient": order.recipient,
        "sender": order.sender,
        "subject": order.subject,
        "body": order.body,
        "content_type": order.content_type,
        "created_at": now,
        "updated_at": now,
        "expires_at": expires_at,
        "report_deadline_at": expires_at + timedelta(seconds=REPORT_GRACE_S),
        "due_at": due_at,
        "attempts": 0,
        "outcome_unknown_count": 0,
        "part_count": 0,
        "daytime_only": order.daytime_only,
    }


def to_due_order(row: Any, creator: str) -> DueRegularOrder:
    return DueRegularOrder(
        order_id=row.order_id,
        creator=creator,
        channel=Channel(row.channel),
        recipient=row.recipient,
        sender=row.sender,
        subject=row.subject,
        body=row.body,
        content_type=row.content_type,
        daytime_only=row.daytime_only,
        requested_send_time=row.requested_send_time,
        condition_endpoint=row.condition_endpoint,
        condition_attempts=row.condition_attempts,
        condition_first_attempt_at=row.condition_first_attempt_at,
        lease_owner=row.lease_owner,
    )
