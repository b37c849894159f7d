"""Plain records that the store returns and takes, free of SQLAlchemy types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from budstikke.domain.statuses import Channel, NotificationStatus, OrderStatus, OrderType, Priority


@dataclass(frozen=True, slots=True)
class NewNotification:
    """A notification to store with a new order."""

    channel: Channel
    recipient: str
    sender: str
    body: str
    ttl_s: int
    subject: str | None = None
    content_type: str | None = None
    priority: Priority = Priority.INSTANT


@dataclass(frozen=True, slots=True)
class OrderReceipt:
    """The ids an order request is answered with; `created` is False for a replay."""

    order_id: UUID
    shipment_id: UUID
    notification_ids: tuple[UUID, ...]
    senders_reference: str | None
    created: bool
    # The notification as claimed when the order was stored under a lease.
    claimed: ClaimedNotification | None = None


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    channel: Channel
    destination: str
    status: NotificationStatus
    last_update: datetime


@dataclass(frozen=True, slots=True)
class Shipment:
    shipment_id: UUID
    order_id: UUID
    senders_reference: str | None
    order_type: OrderType
    status: OrderStatus
    last_update: datetime
    recipients: tuple[RecipientStatus, ...]


@dataclass(frozen=True, slots=True)
class ClaimedNotification:
    """A notification leased to one worker for a hand-off attempt."""

    id: UUID
    order_id: UUID
    creator: str
    channel: Channel
    priority: Priority
    recipient: str
    sender: str
    subject: str | None
    body: str
    content_type: str | None
    created_at: datetime
    expires_at: datetime
    attempts: int  # including this one
    lease_owner: str


@dataclass(frozen=True, slots=True)
class FeedEntry:
    seq: int
    entry_json: str
