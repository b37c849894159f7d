"""Turning a claimed notification into the message a provider takes."""

from __future__ import annotations

from budstikke.channels.base import OutgoingEmail, OutgoingMessage, OutgoingSms
from budstikke.domain.statuses import Channel
from budstikke.store.records import ClaimedNotification


def build_message(claimed: ClaimedNotification) -> OutgoingMessage:
    if claimed.channel is Channel.SMS:
        return OutgoingSms(
            notification_id=claimed.id,
            recipient=claimed.recipient,
            sender=claimed.sender,
            body=claimed.body,
            expires_at=claimed.expires_at,
            priority=claimed.priority,
        )
    return OutgoingEmail(
        notification_id=claimed.id,
        recipient=claimed.recipient,
        sender=claimed.sender,
        subject=claimed.subject or "",
        body=claimed.body,
        content_type="Html" if claimed.content_type == "Html" else "Plain",
        expires_at=claimed.expires_at,
        priority=claimed.priority,
    )
