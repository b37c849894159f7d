"""Recipient helpers shared by the channels."""

from __future__ import annotations

from budstikke.domain.masking import mask_email, mask_phone
from budstikke.domain.statuses import Channel


def mask_recipient(channel: Channel, recipient: str) -> str:
    """Return the recipient as logs may show it."""
    return mask_phone(recipient) if channel is Channel.SMS else mask_email(recipient)
