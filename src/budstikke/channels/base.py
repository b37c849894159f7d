"""The small interface every provider implements, and the messages it receives."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol
from uuid import UUID

from budstikke.domain.statuses import Channel, NotificationStatus, Priority


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    notification_id: UUID
    recipient: str  # E.164, e.g. +4799999999
    sender: str  # alphanumeric (at most 11 GSM characters) or a number of up to 15 digits
    body: str
    expires_at: datetime  # UTC; the provider must not accept it after this
    # Regular messages may not take the share of capacity kept for instant ones.
    priority: Priority = Priority.INSTANT

    channel: Literal[Channel.SMS] = field(default=Channel.SMS, init=False)


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    notification_id: UUID
    recipient: str
    sender: str
    subject: str
    body: str
    content_type: Literal["Plain", "Html"]
    expires_at: datetime  # UTC
    priority: Priority = Priority.INSTANT

    channel: Literal[Channel.EMAIL] = field(default=Channel.EMAIL, init=False)


OutgoingMessage = OutgoingSms | OutgoingEmail


@dataclass(frozen=True, slots=True)
class HandOffReceipt:
    """What a provider returns when it accepted a message.

    `status` is `SMS_Accepted` / `Email_Succeeded` when a delivery report may
    follow, or a final status when the provider is the final destination
    (the file outbox). `provider_refs` holds one message id per part, in part
    order; it is empty when the provider gives none.
    """

    status: NotificationStatus
    provider_refs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A provider's later word on one part of a message it accepted.

    `status` is None for a state that is not final (ACCEPTD, ENROUTE).
    """

    provider_ref: str
    status: NotificationStatus | None
    error_code: str | None = None
    done_at: datetime | None = None


ReportSink = Callable[[DeliveryReport], Awaitable[None]]


class Provider(Protocol):
    """Something that takes messages of one channel.

    `hand_off` returns a receipt or raises `budstikke.errors.HandOffError`;
    any other exception is a bug and is treated as a transient failure.
    Delivery reports go to the sink given to `start`.
    """

    channel: Channel

    async def start(self, report_sink: ReportSink) -> None: ...

    async def stop(self) -> None: ...

    async def hand_off(self, message: OutgoingMessage) -> HandOffReceipt: ...

    def is_ready(self) -> tuple[bool, str]:
        """Return whether the provider can take messages now, and why not if it cannot."""
        ...

    def reference_keys(self, provider_ref: str) -> tuple[str, ...]:
        """Return the lookup keys under which a message id is matched to its reports."""
        ...
