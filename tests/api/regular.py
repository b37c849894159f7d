"""Request bodies for regular orders, and helpers to move their clock, for tests."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import API, FakeClock, RunningApp

ORDERS_PATH = f"{API}/orders"


def sms_recipient(
    phone: str = "+4799999999",
    body: str = "Reminder: your appointment is tomorrow.",
    policy: str | None = "Anytime",
) -> dict[str, Any]:
    settings: dict[str, Any] = {"body": body}
    if policy is not None:
        settings["sendingTimePolicy"] = policy
    return {"recipientSms": {"phoneNumber": phone, "smsSettings": settings}}


def email_recipient(address: str = "ola.nordmann@example.com") -> dict[str, Any]:
    return {
        "recipientEmail": {
            "emailAddress": address,
            "emailSettings": {"subject": "Your case", "body": "Your case was updated."},
        }
    }


def regular_order(
    recipient: dict[str, Any] | None = None, *, idempotency_id: str | None = None, **fields: Any
) -> dict[str, Any]:
    return {
        "idempotencyId": idempotency_id or str(uuid.uuid4()),
        "recipient": recipient if recipient is not None else sms_recipient(),
        **fields,
    }


async def place(app: RunningApp, body: dict[str, Any]) -> dict[str, Any]:
    response = await app.client.post(ORDERS_PATH, json=body, headers=app.headers())
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def shipment(app: RunningApp, shipment_id: str) -> dict[str, Any]:
    response = await app.client.get(f"{API}/shipment/{shipment_id}", headers=app.headers())
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def advance(app: RunningApp, clock: FakeClock, seconds: float) -> None:
    """Move the clock and wake the loops that would otherwise wait for their next poll."""
    clock.advance(seconds)
    services = app.app.state.services
    services.regular_processor.wake()
    services.dispatcher.wake()
