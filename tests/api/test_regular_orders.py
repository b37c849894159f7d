"""Regular orders over the API: validation, replay, statuses, send times and reminders."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from budstikke.config import Settings
from tests.api.regular import (
    ORDERS_PATH,
    advance,
    email_recipient,
    place,
    regular_order,
    shipment,
    sms_recipient,
)
from tests.conftest import FakeClock, RunningApp, run_app, wait_for


async def final_status(app: RunningApp, shipment_id: str, status: str) -> None:
    async def reached() -> bool:
        return (await shipment(app, shipment_id))["status"] == status

    await wait_for(reached)


async def test_sms_order_is_sent_now(running_app: RunningApp) -> None:
    response = await running_app.client.post(
        ORDERS_PATH,
        json=regular_order(sendersReference="case-9"),
        headers=running_app.headers(),
    )

    assert response.status_code == 201
    body = response.json()
    shipment_id = body["notification"]["shipmentId"]
    assert body["notification"]["sendersReference"] == "case-9"
    assert "reminders" not in body["notification"]
    assert body["notificationOrderId"] != shipment_id
    assert response.headers["location"].endswith(f"/shipment/{shipment_id}")
    await final_status(running_app, shipment_id, "Order_Completed")
    shown = await shipment(running_app, shipment_id)
    assert shown["type"] == "Notification"
    assert shown["recipients"][0]["status"] == "SMS_Delivered"
    assert running_app.outbox_lines("sms")[0]["recipient"] == "+4799999999"


async def test_replay_returns_same_ids(running_app: RunningApp) -> None:
    body = regular_order(
        email_recipient(),
        reminders=[{"delayDays": 2, "sendersReference": "r1", "recipient": sms_recipient()}],
    )
    first = await running_app.client.post(ORDERS_PATH, json=body, headers=running_app.headers())
    again = await running_app.client.post(ORDERS_PATH, json=body, headers=running_app.headers())

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    reminders = first.json()["notification"]["reminders"]
    assert [item["sendersReference"] for item in reminders] == ["r1"]


async def test_key_of_instant_order_replays(running_app: RunningApp) -> None:
    instant = {
        "idempotencyId": "shared-key",
        "recipientSms": {
            "phoneNumber": "+4799999999",
            "timeToLiveInSeconds": 300,
            "smsSettings": {"body": "Code 1234"},
        },
    }
    placed = await running_app.client.post(
        f"{ORDERS_PATH}/instant/sms", json=instant, headers=running_app.headers()
    )
    replay = await running_app.client.post(
        ORDERS_PATH, json=regular_order(idempotency_id="shared-key"), headers=running_app.headers()
    )

    assert replay.status_code == 200
    assert (
        replay.json()["notification"]["shipmentId"] == placed.json()["notification"]["shipmentId"]
    )


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        (
            regular_order({"recipientPerson": {"nationalIdentityNumber": "16069412345"}}),
            "recipient.recipientPerson",
            "phone numbers and email addresses",
        ),
        (
            regular_order({"recipientOrganization": {"orgNumber": "991825827"}}),
            "recipient.recipientOrganization",
            "phone numbers and email addresses",
        ),
        (
            regular_order({"recipientExternalIdentity": {"externalIdentity": "urn:x"}}),
            "recipient.recipientExternalIdentity",
            "phone numbers and email addresses",
        ),
        (
            regular_order({**sms_recipient(), **email_recipient()}),
            "recipient",
            "exactly one",
        ),
        (regular_order({}), "recipient", "exactly one"),
        (
            regular_order(requestedSendTime="2030-01-01T10:00:00"),
            "requestedSendTime",
            "time-zone offset",
        ),
        (
            regular_order(requestedSendTime="2020-01-01T10:00:00Z"),
            "requestedSendTime",
            "past",
        ),
        (regular_order(requestedSendTime="tomorrow"), "requestedSendTime", "RFC 3339"),
        (
            regular_order(requestedSendTime="9999-12-31T23:59:59+00:00"),
            "requestedSendTime",
            "at most 365 days ahead",
        ),
        (
            regular_order(requestedSendTime="9999-12-31T23:59:59-14:00"),
            "requestedSendTime",
            "at most 365 days ahead",
        ),
        (
            regular_order(
                requestedSendTime="9999-12-01T00:00:00+00:00",
                reminders=[{"delayDays": 365, "recipient": sms_recipient()}],
            ),
            "requestedSendTime",
            "at most 365 days ahead",
        ),
        (
            regular_order(
                reminders=[
                    {"requestedSendTime": "9999-12-31T23:59:59-14:00", "recipient": sms_recipient()}
                ]
            ),
            "reminders[0].requestedSendTime",
            "at most 365 days ahead",
        ),
        (
            regular_order(conditionEndpoint="ftp://example.com/x"),
            "conditionEndpoint",
            "http",
        ),
        (
            regular_order(conditionEndpoint="http://127.0.0.1:9/x"),
            "conditionEndpoint",
            "BUDSTIKKE_CONDITION_ALLOWED_NETWORKS",
        ),
        (
            regular_order(conditionEndpoint="http://2130706433:9/x"),
            "conditionEndpoint",
            "a loopback address",
        ),
        (
            regular_order(conditionEndpoint="http://0xa.1/x"),
            "conditionEndpoint",
            "a private address",
        ),
        (
            regular_order(conditionEndpoint="http://localhost:9/x"),
            "conditionEndpoint",
            "a loopback address",
        ),
        (
            regular_order(conditionEndpoint="http://[64:ff9b::a00:1]/x"),
            "conditionEndpoint",
            "embedded 10.0.0.1",
        ),
        (
            regular_order(conditionEndpoint="https://[2002:a00:1::1]/x"),
            "conditionEndpoint",
            "embedded 10.0.0.1",
        ),
        (
            regular_order(conditionEndpoint="http://[::ffff:169.254.169.254]/x"),
            "conditionEndpoint",
            "a cloud metadata address",
        ),
        (
            regular_order(conditionEndpoint="http://168.63.129.16/x"),
            "conditionEndpoint",
            "a cloud metadata address",
        ),
        (
            regular_order(
                reminders=[
                    {
                        "delayDays": 1,
                        "conditionEndpoint": "http://[64:ff9b::a9fe:a9fe]/x",
                        "recipient": sms_recipient(),
                    }
                ]
            ),
            "reminders[0].conditionEndpoint",
            "a cloud metadata address",
        ),
        (
            regular_order(sms_recipient(policy="Nighttime")),
            "recipient.recipientSms.smsSettings.sendingTimePolicy",
            "Anytime or Daytime",
        ),
        (
            regular_order(sms_recipient(phone="+4721000000")),
            "recipient.recipientSms.phoneNumber",
            "fixed-line",
        ),
        (
            regular_order(
                {
                    "recipientEmail": {
                        "emailAddress": "ola@example.com",
                        "emailSettings": {
                            "subject": "s",
                            "body": "b",
                            "sendingTimePolicy": "Daytime",
                        },
                    }
                }
            ),
            "recipient.recipientEmail.emailSettings.sendingTimePolicy",
            "SMS only",
        ),
        (
            regular_order(reminders=[{"recipient": sms_recipient()}]),
            "reminders[0]",
            "exactly one of delayDays or requestedSendTime",
        ),
        (
            regular_order(reminders=[{"delayDays": 0, "recipient": sms_recipient()}]),
            "reminders[0].delayDays",
            "between 1 and 365",
        ),
        (
            regular_order(reminders=[{"delayDays": 1, "recipient": {"recipientPerson": {}}}]),
            "reminders[0].recipient.recipientPerson",
            "phone numbers and email addresses",
        ),
        (regular_order(reminders={"delayDays": 1}), "reminders", "array"),
    ],
)
async def test_invalid_order_names_field(
    running_app: RunningApp, body: dict[str, Any], path: str, words: str
) -> None:
    response = await running_app.client.post(ORDERS_PATH, json=body, headers=running_app.headers())

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert path in errors, errors
    assert words in " ".join(errors[path])


def iso_8601_forms_outside_rfc_3339(moment: datetime) -> list[str]:
    """Return one send time in ISO 8601 forms that Python 3.11 reads but RFC 3339 excludes."""
    year, week, weekday = moment.isocalendar()
    day = moment.strftime("%Y-%m-%d")
    return [
        f"{year}-W{week:02d}-{weekday}T10:00:00Z",
        f"{moment.year}-{moment.timetuple().tm_yday:03d}T10:00:00Z",
        f"{day}T10:00:00+01:00:30",
        f"{day}T10:00Z",
        f"{day} 10:00:00Z",
        f"{moment.strftime('%Y%m%d')}T100000Z",
        f"{day}T10:00:00+0100",
        f"{day}T10:00:00+01",
        f" {day}T10:00:00Z",
    ]


async def test_send_time_must_be_rfc_3339(running_app: RunningApp) -> None:
    moment = datetime.now(UTC) + timedelta(days=2)
    rejected = {}
    for text in iso_8601_forms_outside_rfc_3339(moment):
        order = regular_order(requestedSendTime=text)
        reminder = {"requestedSendTime": text, "recipient": sms_recipient()}
        order_with_reminder = regular_order(reminders=[reminder])
        for body, path in (
            (order, "requestedSendTime"),
            (order_with_reminder, "reminders[0].requestedSendTime"),
        ):
            response = await running_app.client.post(
                ORDERS_PATH, json=body, headers=running_app.headers()
            )
            rejected[(text, path)] = (response.status_code, response.json().get("errors", {}))
    accepted = await running_app.client.post(
        ORDERS_PATH,
        json=regular_order(requestedSendTime=moment.strftime("%Y-%m-%dt10:00:00.25z")),
        headers=running_app.headers(),
    )

    for (text, path), (status, errors) in rejected.items():
        assert status == 400, text
        assert list(errors) == [path], text
        assert "RFC 3339" in errors[path][0]
        assert repr(text) in errors[path][0]
        assert "2026-12-06T10:00:00+01:00" in errors[path][0]
    assert accepted.status_code == 201


async def test_statuses_move_from_registered_to_completed(settings: Settings) -> None:
    clock = FakeClock(datetime.now(UTC))
    async with run_app(settings, clock=clock) as app:
        send_time = clock.now + timedelta(hours=1)
        placed = await place(app, regular_order(requestedSendTime=send_time.isoformat()))
        shipment_id = placed["notification"]["shipmentId"]

        registered = await shipment(app, shipment_id)
        assert registered["status"] == "Order_Registered"
        assert registered["recipients"] == []

        advance(app, clock, 3600)
        await final_status(app, shipment_id, "Order_Completed")
        assert (await shipment(app, shipment_id))["recipients"][0]["status"] == "SMS_Delivered"


async def test_reminder_is_its_own_shipment(settings: Settings) -> None:
    clock = FakeClock(datetime.now(UTC))
    async with run_app(settings, clock=clock) as app:
        at = (clock.now + timedelta(days=3)).isoformat()
        placed = await place(
            app,
            regular_order(
                reminders=[
                    {"delayDays": 1, "sendersReference": "day-1", "recipient": email_recipient()},
                    {"requestedSendTime": at, "recipient": sms_recipient("+4798765432")},
                ]
            ),
        )
        main_id = placed["notification"]["shipmentId"]
        first_id, second_id = (item["shipmentId"] for item in placed["notification"]["reminders"])
        await final_status(app, main_id, "Order_Completed")

        for reminder_id in (first_id, second_id):
            waiting = await shipment(app, reminder_id)
            assert waiting["type"] == "Notification"
            assert waiting["status"] == "Order_Registered"
        assert (await shipment(app, first_id))["sendersReference"] == "day-1"

        advance(app, clock, 24 * 3600)
        await final_status(app, first_id, "Order_Completed")
        assert (await shipment(app, first_id))["recipients"][0]["type"] == "Email"
        assert (await shipment(app, second_id))["status"] == "Order_Registered"

        advance(app, clock, 2 * 24 * 3600)
        await final_status(app, second_id, "Order_Completed")
        assert (await shipment(app, second_id))["recipients"][0]["destination"] == "+4798765432"


async def test_feed_lists_completed_regular_order(running_app: RunningApp) -> None:
    placed = await place(running_app, regular_order())
    shipment_id = placed["notification"]["shipmentId"]
    await final_status(running_app, shipment_id, "Order_Completed")

    feed = await running_app.client.get(
        f"{ORDERS_PATH.rsplit('/', 1)[0]}/shipment/feed", headers=running_app.headers()
    )
    entries = [entry for entry in feed.json() if entry["shipmentId"] == shipment_id]
    assert len(entries) == 1
    assert entries[0]["shipmentType"] == "Notification"


async def test_latest_send_times_are_stored(running_app: RunningApp) -> None:
    # The main message just inside the 365-day horizon, and a reminder 365 days after it.
    send_time = datetime.now(UTC) + timedelta(days=364, hours=23)
    body = regular_order(
        requestedSendTime=send_time.isoformat(),
        reminders=[{"delayDays": 365, "recipient": sms_recipient()}],
    )

    placed = await place(running_app, body)
    main = await shipment(running_app, placed["notification"]["shipmentId"])
    reminder_id = placed["notification"]["reminders"][0]["shipmentId"]
    reminder = await shipment(running_app, reminder_id)

    assert main["status"] == "Order_Registered"
    assert reminder["status"] == "Order_Registered"
    assert running_app.outbox_lines("sms") == []


async def test_reminder_before_order_rejected(running_app: RunningApp) -> None:
    order_time = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    reminder_time = order_time - timedelta(days=1)
    body = regular_order(
        requestedSendTime=order_time.isoformat(),
        reminders=[
            {"delayDays": 1, "recipient": sms_recipient()},
            {"requestedSendTime": reminder_time.isoformat(), "recipient": sms_recipient()},
        ],
    )

    response = await running_app.client.post(ORDERS_PATH, json=body, headers=running_app.headers())

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == ["reminders[1].requestedSendTime"]
    message = " ".join(errors["reminders[1].requestedSendTime"])
    assert "reminders[1]" in message
    assert reminder_time.isoformat().replace("+00:00", "Z") in message
    assert order_time.isoformat().replace("+00:00", "Z") in message
    assert "delayDays" in message


async def test_due_order_waits_for_instant_order(settings: Settings) -> None:
    async with run_app(settings) as app:
        instant_first = app.app.state.services.dispatcher.instant_first
        # Far longer than the test, so only the end of the instant order ends the wait.
        instant_first.max_wait_s = 60
        # Stored before the instant order starts, because storing a regular
        # order waits for instant orders too.
        due_at = datetime.now(UTC) + timedelta(seconds=1)
        placed = await place(app, regular_order(requestedSendTime=due_at.isoformat()))
        shipment_id = placed["notification"]["shipmentId"]
        with instant_first.placing():
            await asyncio.sleep(1.5)
            app.app.state.services.regular_processor.wake()
            await asyncio.sleep(0.5)

            assert (await shipment(app, shipment_id))["status"] == "Order_Registered"

        await final_status(app, shipment_id, "Order_Completed")
