"""Idempotency: one order per creator and idempotencyId, whatever the concurrency."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from budstikke.store.tables import notifications, orders
from tests.api.orders import EMAIL_PATH, LEGACY_PATH, SMS_PATH, email_order, sms_order
from tests.conftest import RunningApp


async def count_rows(app: RunningApp) -> tuple[int, int]:
    async with app.database.read() as connection:
        order_count = (await connection.execute(select(func.count()).select_from(orders))).scalar()
        notification_count = (
            await connection.execute(select(func.count()).select_from(notifications))
        ).scalar()
    return int(order_count or 0), int(notification_count or 0)


async def test_fifty_concurrent_duplicates_make_one_order(running_app: RunningApp) -> None:
    order = sms_order(idempotency_id="concurrent-1")
    responses = await asyncio.gather(
        *(
            running_app.client.post(SMS_PATH, headers=running_app.headers(), json=order)
            for _ in range(50)
        )
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 49 + [201]
    assert len({response.text for response in responses}) == 1
    assert await count_rows(running_app) == (1, 1)
    assert len(running_app.outbox_lines("sms")) == 1


async def test_replay_has_no_location_and_same_body(running_app: RunningApp) -> None:
    order = sms_order(idempotency_id="replay-1")
    first = await running_app.client.post(SMS_PATH, headers=running_app.headers(), json=order)
    second = await running_app.client.post(SMS_PATH, headers=running_app.headers(), json=order)

    assert first.status_code == 201
    assert "location" in first.headers
    assert second.status_code == 200
    assert "location" not in second.headers
    assert second.json() == first.json()


async def test_key_is_shared_by_all_instant_endpoints(running_app: RunningApp) -> None:
    sms = await running_app.client.post(
        SMS_PATH, headers=running_app.headers(), json=sms_order(idempotency_id="shared")
    )
    email = await running_app.client.post(
        EMAIL_PATH, headers=running_app.headers(), json=email_order(idempotency_id="shared")
    )
    legacy_body = sms_order(idempotency_id="shared")
    legacy = await running_app.client.post(
        LEGACY_PATH,
        headers=running_app.headers(),
        json={
            "idempotencyId": "shared",
            "recipient": {"recipientSms": legacy_body["recipientSms"]},
        },
    )

    assert sms.status_code == 201
    assert email.status_code == 200
    assert legacy.status_code == 200
    assert email.json() == sms.json() == legacy.json()
    assert running_app.outbox_lines("email") == []


async def test_same_key_for_two_creators_makes_two_orders(running_app: RunningApp) -> None:
    other_key = await running_app.new_key("other")
    order = sms_order(idempotency_id="same-key")
    mine = await running_app.client.post(SMS_PATH, headers=running_app.headers(), json=order)
    theirs = await running_app.client.post(
        SMS_PATH, headers=running_app.headers(other_key), json=order
    )

    assert mine.status_code == 201
    assert theirs.status_code == 201
    assert mine.json() != theirs.json()


async def test_other_creator_cannot_read_shipment(running_app: RunningApp) -> None:
    other_key = await running_app.new_key("xyz")
    created = await running_app.client.post(
        SMS_PATH, headers=running_app.headers(), json=sms_order()
    )
    location = created.headers["location"]

    mine = await running_app.client.get(location, headers=running_app.headers())
    theirs = await running_app.client.get(location, headers=running_app.headers(other_key))

    assert mine.status_code == 200
    assert theirs.status_code == 404
    assert theirs.json()["code"] == "NOT-00003"
