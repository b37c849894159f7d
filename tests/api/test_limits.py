"""Rate limits, SMS countries and the sensitive content guard, through the HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from budstikke.config import Settings
from budstikke.domain.sms_countries import parse_sms_countries
from budstikke.store.creator_limits import LimitOverrides, write_overrides
from tests.api.orders import EMAIL_PATH, LEGACY_PATH, SMS_PATH, email_order, sms_order
from tests.api.regular import ORDERS_PATH, regular_order, sms_recipient
from tests.conftest import FakeClock, RunningApp, run_app

CARD = "4111 1111 1111 1111"
IDENTITY_NUMBER = "01019012480"


async def post(app: RunningApp, path: str, body: dict[str, Any]) -> httpx.Response:
    return await app.client.post(path, json=body, headers=app.headers())


def assert_rate_limited(response: httpx.Response, limit_text: str) -> int:
    """Check a 429 problem and return its Retry-After seconds."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "BSK-00001"
    assert body["status"] == 429
    assert limit_text in body["detail"]
    retry_after = int(response.headers["retry-after"])
    assert retry_after >= 1
    return retry_after


async def test_sixth_sms_to_recipient_rejected(settings: Settings) -> None:
    clock = FakeClock()
    async with run_app(settings, clock=clock) as app:
        for _ in range(5):
            assert (await post(app, SMS_PATH, sms_order())).status_code == 201

        rejected = await post(app, SMS_PATH, sms_order())
        other_number = await post(app, SMS_PATH, sms_order(phone="+4798888888"))

    retry_after = assert_rate_limited(rejected, "in the last 10 minutes")
    assert retry_after == 600
    assert "+4799999999" not in rejected.text
    assert other_number.status_code == 201


async def test_recipient_allowed_again_after_window(settings: Settings) -> None:
    clock = FakeClock()
    async with run_app(settings, clock=clock) as app:
        for _ in range(5):
            assert (await post(app, SMS_PATH, sms_order())).status_code == 201
            clock.advance(60)
        assert (await post(app, SMS_PATH, sms_order())).status_code == 429

        clock.advance(5 * 60 + 1)
        allowed = await post(app, SMS_PATH, sms_order())

    assert allowed.status_code == 201


async def test_day_limit_across_windows(settings: Settings) -> None:
    clock = FakeClock()
    async with run_app(settings, clock=clock) as app:
        for _ in range(20):
            assert (await post(app, SMS_PATH, sms_order())).status_code == 201
            clock.advance(121)

        rejected = await post(app, SMS_PATH, sms_order())

    assert_rate_limited(rejected, "in the last 24 hours")


async def test_replay_answers_200_when_limited(settings: Settings) -> None:
    async with run_app(settings) as app:
        first = sms_order(idempotency_id="login-1")
        assert (await post(app, SMS_PATH, first)).status_code == 201
        for _ in range(4):
            assert (await post(app, SMS_PATH, sms_order())).status_code == 201
        assert (await post(app, SMS_PATH, sms_order())).status_code == 429

        replay = await post(app, SMS_PATH, first)

    assert replay.status_code == 200


async def test_email_recipient_counted_without_case(settings: Settings) -> None:
    async with run_app(settings) as app:
        variants = ["ola@example.com", "Ola@example.com", "OLA@EXAMPLE.COM", "ola@Example.com"]
        for address in [*variants, "olA@example.com"]:
            response = await post(app, EMAIL_PATH, email_order(address=address))
            assert response.status_code == 201, response.text

        rejected = await post(app, EMAIL_PATH, email_order(address="oLa@eXample.com"))

    assert_rate_limited(rejected, "This recipient got 5 instant messages")


async def test_creator_bucket_rejects_burst(settings: Settings) -> None:
    clock = FakeClock()
    tight = settings.model_copy(update={"rate_limit_per_s": 0.5, "rate_limit_burst": 3})
    async with run_app(tight, clock=clock) as app:
        accepted = [
            (await post(app, SMS_PATH, sms_order(phone=f"+479000000{i}"))).status_code
            for i in range(3)
        ]
        rejected = await post(app, SMS_PATH, sms_order(phone="+4790000009"))
        other_creator_key = await app.new_key("digdir")
        other_creator = await app.client.post(
            SMS_PATH, json=sms_order(), headers=app.headers(other_creator_key)
        )
        clock.advance(2)
        refilled = await post(app, SMS_PATH, sms_order(phone="+4790000009"))

    assert accepted == [201, 201, 201]
    assert assert_rate_limited(rejected, "0.5 new orders per second") == 2
    assert other_creator.status_code == 201
    assert refilled.status_code == 201


async def test_limits_shared_by_two_apps(settings: Settings) -> None:
    """Two app instances on one database, as two processes would be, share every limit."""
    tight = settings.model_copy(update={"rate_limit_per_s": 0.01, "rate_limit_burst": 8})
    async with run_app(tight) as first, run_app(tight) as second:
        statuses = []
        for index in range(6):
            app = first if index % 2 else second
            statuses.append((await post(app, SMS_PATH, sms_order())).status_code)
        bucket = []
        for index in range(4):
            app = first if index % 2 else second
            order = sms_order(phone=f"+479100000{index}")
            bucket.append((await post(app, SMS_PATH, order)).status_code)

    # Five go to one number, and the sixth is over the recipient limit. That
    # one spent no token, so the bucket of 8 has 3 left for other numbers.
    assert statuses == [201] * 5 + [429]
    assert bucket == [201, 201, 201, 429]


async def test_rejection_counted_in_metrics(settings: Settings) -> None:
    async with run_app(settings) as app:
        for _ in range(6):
            await post(app, SMS_PATH, sms_order())
        metrics = await app.client.get("/metrics")

    assert 'budstikke_rate_limit_rejections_total{limit="recipient"} 1.0' in metrics.text
    assert 'budstikke_rate_limit_rejections_total{limit="creator"} 0.0' in metrics.text


async def test_sms_abroad_rejected(running_app: RunningApp) -> None:
    response = await post(running_app, SMS_PATH, sms_order(phone="+46701234567"))

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == ["recipientSms.phoneNumber"]
    assert "+46 (SE)" in errors["recipientSms.phoneNumber"][0]
    assert running_app.outbox_lines("sms") == []


async def test_sms_abroad_rejected_on_legacy_path(running_app: RunningApp) -> None:
    order = sms_order(phone="+12025550123")
    legacy = {
        "idempotencyId": order["idempotencyId"],
        "recipient": {"recipientSms": order["recipientSms"]},
    }

    response = await post(running_app, LEGACY_PATH, legacy)

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["recipient.recipientSms.phoneNumber"]


async def test_operator_allows_another_country(settings: Settings) -> None:
    async with run_app(settings) as app:
        await write_overrides(
            app.database,
            "ttd",
            LimitOverrides(sms_countries=parse_sms_countries("47,46")),
            datetime.now(UTC),
        )
        sweden = await post(app, SMS_PATH, sms_order(phone="+46701234567"))
        usa = await post(app, SMS_PATH, sms_order(phone="+12025550123"))

    assert sweden.status_code == 201
    assert usa.status_code == 400


async def test_regular_sms_abroad_rejected(running_app: RunningApp) -> None:
    body = regular_order(
        sms_recipient(phone="+46701234567"),
        reminders=[{"delayDays": 1, "recipient": sms_recipient(phone="+4799999999")}],
    )
    reminder_abroad = regular_order(
        sms_recipient(), reminders=[{"delayDays": 1, "recipient": sms_recipient("+46701234567")}]
    )

    main = await post(running_app, ORDERS_PATH, body)
    reminder = await post(running_app, ORDERS_PATH, reminder_abroad)

    assert main.status_code == 400
    assert list(main.json()["errors"]) == ["recipient.recipientSms.phoneNumber"]
    assert reminder.status_code == 400
    assert list(reminder.json()["errors"]) == ["reminders[0].recipient.recipientSms.phoneNumber"]


async def test_regular_orders_spend_creator_tokens(settings: Settings) -> None:
    tight = settings.model_copy(update={"rate_limit_per_s": 0.01, "rate_limit_burst": 2})
    async with run_app(tight) as app:
        statuses = [(await post(app, ORDERS_PATH, regular_order())).status_code for _ in range(3)]
        metrics = await app.client.get("/metrics")

    assert statuses == [201, 201, 429]
    assert 'budstikke_rate_limit_rejections_total{limit="creator"} 1.0' in metrics.text


async def test_sms_with_card_number_rejected(running_app: RunningApp) -> None:
    response = await post(running_app, SMS_PATH, sms_order(body=f"Paid with {CARD}."))

    assert response.status_code == 400
    [message] = response.json()["errors"]["recipientSms.smsSettings.body"]
    assert "payment_card_number" in message
    assert CARD not in response.text


async def test_email_with_identity_number_rejected(running_app: RunningApp) -> None:
    order = email_order(subject=f"Case for {IDENTITY_NUMBER}")

    response = await post(running_app, EMAIL_PATH, order)

    assert response.status_code == 400
    [message] = response.json()["errors"]["recipientEmail.emailSettings.subject"]
    assert "national_identity_number" in message
    assert IDENTITY_NUMBER not in response.text


async def test_guard_off_for_one_creator(settings: Settings) -> None:
    async with run_app(settings) as app:
        await write_overrides(
            app.database, "ttd", LimitOverrides(sensitive_guard=False), datetime.now(UTC)
        )
        other_key = await app.new_key("digdir")
        allowed = await post(app, SMS_PATH, sms_order(body=f"fnr {IDENTITY_NUMBER}"))
        other = await app.client.post(
            SMS_PATH, json=sms_order(body=f"fnr {IDENTITY_NUMBER}"), headers=app.headers(other_key)
        )

    assert allowed.status_code == 201
    assert other.status_code == 400


async def test_otp_code_passes_guard(running_app: RunningApp) -> None:
    response = await post(
        running_app, SMS_PATH, sms_order(body="Your code is 4829130751. It expires soon.")
    )

    assert response.status_code == 201
