"""Webhook events: written to the outbox in the same transaction as the status change.

Every status change of a notification and every order completion calls
`record_notification_event` or `record_order_event` with the transaction's
connection, so an event exists exactly when its change was committed, and a
process that dies after the commit loses nothing. One row is written per
enabled endpoint of the creator and for the order's callback URL; the
delivery loop in the workers sends them.

A creator without endpoints costs one cached look-up per change. The cache
lives ENDPOINT_CACHE_S per process, so an endpoint registered by another
process gets events from at most that long after its registration.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Engine, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from budstikke.domain.request_fields import RequestValidationError
from budstikke.domain.statuses import RECIPIENT_TYPE, Channel, NotificationStatus
from budstikke.domain.webhook_signing import new_message_id
from budstikke.domain.webhook_urls import InvalidWebhookUrlError, is_under, parse_webhook_url
from budstikke.store.records import ClaimedNotification, Shipment
from budstikke.store.tables import (
    order_callbacks,
    orders,
    webhook_deliveries,
    webhook_endpoints,
)

ENDPOINT_CACHE_S = 1.0
NOTIFICATION_EVENT = "notification.status_changed"
ORDER_EVENT = "order.status_changed"
# Set on a connection that wrote events, so the delivery loop of this
# process is woken when that transaction commits.
PENDING_EVENTS_KEY = "budstikke_webhook_events"

# Per engine, per creator: (monotonic expiry, whether the creator has an enabled endpoint).
_creator_cache: weakref.WeakKeyDictionary[Engine, dict[str, tuple[float, bool]]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True, slots=True)
class NotificationChange:
    """One notification's new status, as the event for it needs it."""

    creator: str
    order_id: UUID
    channel: Channel
    recipient: str
    status: NotificationStatus


def change_of(claimed: ClaimedNotification, status: NotificationStatus) -> NotificationChange:
    """Return the change of a claimed notification to `status`."""
    return NotificationChange(
        claimed.creator, claimed.order_id, claimed.channel, claimed.recipient, status
    )


def forget_creator(engine: AsyncEngine, creator: str) -> None:
    """Drop the cached look-up of a creator, after its endpoints changed in this process."""
    _creator_cache.get(engine.sync_engine, {}).pop(creator, None)


async def creator_has_endpoints(connection: AsyncConnection, creator: str) -> bool:
    """Tell whether the creator has an enabled endpoint, from a cache of ENDPOINT_CACHE_S."""
    engine = connection.engine.sync_engine
    cached = _creator_cache.setdefault(engine, {})
    moment = time.monotonic()
    entry = cached.get(creator)
    if entry is not None and entry[0] > moment:
        return entry[1]
    found = (
        await connection.execute(
            select(webhook_endpoints.c.id)
            .where(webhook_endpoints.c.creator == creator, webhook_endpoints.c.enabled.is_(True))
            .limit(1)
        )
    ).first() is not None
    cached[creator] = (moment + ENDPOINT_CACHE_S, found)
    return found


async def record_notification_event(
    connection: AsyncConnection,
    *,
    creator: str,
    order_id: UUID,
    channel: Channel,
    recipient: str,
    status: NotificationStatus,
    now: datetime,
) -> None:
    """Write the event of one notification's status change for the creator's webhooks."""
    change = NotificationChange(creator, order_id, channel, recipient, status)
    await record_notification_events(connection, [change], now=now)


async def record_notification_events(
    connection: AsyncConnection, changes: Sequence[NotificationChange], *, now: datetime
) -> None:
    """Write the events of several status changes made in one transaction.

    Orders are locked in order of their id, so that two transactions that
    changed notifications of the same orders cannot wait for each other.
    """
    for change in sorted(changes, key=lambda item: item.order_id.bytes):
        if not await creator_has_endpoints(connection, change.creator):
            continue
        event = {
            "type": NOTIFICATION_EVENT,
            "status": change.status.value,
            "recipient": {
                "type": RECIPIENT_TYPE[change.channel],
                "destination": change.recipient,
            },
        }
        await insert_event(connection, change.creator, change.order_id, event, now)


async def record_order_event(
    connection: AsyncConnection, *, creator: str, shipment: Shipment, now: datetime
) -> None:
    """Write the event of an order that reached a final status, for the creator's webhooks.

    `recipient` is the order's recipient when it has one notification, and
    null when it has several.
    """
    if not await creator_has_endpoints(connection, creator):
        return
    recipient = None
    if len(shipment.recipients) == 1:
        only = shipment.recipients[0]
        recipient = {"type": RECIPIENT_TYPE[only.channel], "destination": only.destination}
    event = {"type": ORDER_EVENT, "status": shipment.status.value, "recipient": recipient}
    await insert_event(connection, creator, shipment.order_id, event, now)


async def record_order_callback(
    connection: AsyncConnection, *, creator: str, order_id: UUID, url: str
) -> None:
    """Store a new order's callback URL; its events then go there besides the endpoints.

    The URL must lie under one of the creator's registered endpoint URLs,
    whose secret signs the callbacks; with several, the longest path wins.
    Raises RequestValidationError under `callbackUrl` when none covers it.
    """
    try:
        callback = parse_webhook_url(url, allow_http=True)
    except InvalidWebhookUrlError as error:
        raise RequestValidationError(
            {"callbackUrl": [f"callbackUrl is invalid: {error}."]}
        ) from None
    rows = await connection.execute(
        select(webhook_endpoints.c.id, webhook_endpoints.c.url).where(
            webhook_endpoints.c.creator == creator
        )
    )
    best: tuple[int, UUID] | None = None
    for row in rows:
        try:
            registered = parse_webhook_url(row.url, allow_http=True)
        except InvalidWebhookUrlError:
            continue
        if is_under(callback, registered) and (best is None or len(registered.path) > best[0]):
            best = (len(registered.path), row.id)
    if best is None:
        raise RequestValidationError(
            {
                "callbackUrl": [
                    "callbackUrl must lie under one of your registered webhook endpoint URLs "
                    "(same scheme, host and port, and a path at or below the endpoint's path); "
                    "register one with POST /notifications/api/v1/future/webhooks."
                ]
            }
        )
    await connection.execute(
        insert(order_callbacks).values(order_id=order_id, endpoint_id=best[1], url=url)
    )


async def insert_event(
    connection: AsyncConnection,
    creator: str,
    order_id: UUID,
    event: dict[str, Any],
    now: datetime,
) -> None:
    """Insert one delivery row per target of the event: every enabled endpoint and the callback.

    The order row is locked first (FOR UPDATE on PostgreSQL; SQLite has one
    writer), so the events of one shipment get their ids in commit order and
    the delivery loop, which sends them by id, sends them in that order.
    """
    order_query = (
        select(
            orders.c.shipment_id,
            orders.c.senders_reference,
            order_callbacks.c.endpoint_id.label("callback_endpoint_id"),
            order_callbacks.c.url.label("callback_url"),
        )
        .select_from(orders.outerjoin(order_callbacks, order_callbacks.c.order_id == orders.c.id))
        .where(orders.c.id == order_id)
    )
    if connection.dialect.name == "postgresql":
        order_query = order_query.with_for_update(of=orders)
    order = (await connection.execute(order_query)).first()
    if order is None:
        return
    endpoints = (
        await connection.execute(
            select(webhook_endpoints.c.id, webhook_endpoints.c.url).where(
                webhook_endpoints.c.creator == creator, webhook_endpoints.c.enabled.is_(True)
            )
        )
    ).all()
    targets = [(endpoint.id, endpoint.url, False) for endpoint in endpoints]
    enabled_ids = {endpoint.id for endpoint in endpoints}
    if order.callback_url is not None and order.callback_endpoint_id in enabled_ids:
        targets.append((order.callback_endpoint_id, order.callback_url, True))
    if not targets:
        return
    payload = render_payload(event, order.shipment_id, order.senders_reference, now)
    await connection.execute(
        insert(webhook_deliveries),
        [
            {
                "message_id": new_message_id(),
                "creator": creator,
                "endpoint_id": endpoint_id,
                "url": url,
                "is_callback": is_callback,
                "order_id": order_id,
                "event_type": event["type"],
                "payload": payload,
                "state": "pending",
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
            for endpoint_id, url, is_callback in targets
        ],
    )
    connection.info[PENDING_EVENTS_KEY] = True


def render_payload(
    event: dict[str, Any], shipment_id: UUID, senders_reference: str | None, now: datetime
) -> str:
    """Return the event's JSON body without sequenceNumber, which the sender appends last.

    Fields come in the order type, shipmentId, sendersReference (left out
    when the order has none), status, recipient, lastUpdate.
    """
    body: dict[str, Any] = {"type": event["type"], "shipmentId": str(shipment_id)}
    if senders_reference is not None:
        body["sendersReference"] = senders_reference
    body["status"] = event["status"]
    body["recipient"] = event["recipient"]
    # The same format as lastUpdate in the shipment API.
    body["lastUpdate"] = (
        now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def with_sequence_number(payload: str, sequence_number: int) -> bytes:
    """Return the body that is sent and signed: the payload with sequenceNumber last."""
    return f'{payload[:-1]},"sequenceNumber":{sequence_number}}}'.encode()
