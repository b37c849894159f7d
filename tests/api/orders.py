"""Request bodies for instant orders, for tests."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import API

SMS_PATH = f"{API}/orders/instant/sms"
EMAIL_PATH = f"{API}/orders/instant/email"
LEGACY_PATH = f"{API}/orders/instant"


def sms_order(
    *,
    phone: str = "+4799999999",
    body: str = "Your code is 482913.",
    sender: str | None = None,
    ttl_s: Any = 300,
    idempotency_id: str | None = None,
) -> dict[str, Any]:
    settings: dict[str, Any] = {"body": body}
    if sender is not None:
        settings["sender"] = sender
    return {
        "idempotencyId": idempotency_id or str(uuid.uuid4()),
        "recipientSms": {
            "phoneNumber": phone,
            "timeToLiveInSeconds": ttl_s,
            "smsSettings": settings,
        },
    }


def email_order(
    *,
    address: str = "ola.nordmann@example.com",
    subject: str = "Your code",
    body: str = "Your code is 482913.",
    ttl_s: Any = None,
    idempotency_id: str | None = None,
) -> dict[str, Any]:
    recipient: dict[str, Any] = {
        "emailAddress": address,
        "emailSettings": {"subject": subject, "body": body},
    }
    if ttl_s is not None:
        recipient["timeToLiveInSeconds"] = ttl_s
    return {"idempotencyId": idempotency_id or str(uuid.uuid4()), "recipientEmail": recipient}
