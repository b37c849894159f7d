"""OTP end to end over SMPP: the code is read where a phone would get it, from the test SMSC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from budstikke.channels.smpp.dev_smsc import DevSmsc, DevSmscOptions
from budstikke.config import Settings
from budstikke.domain.sms_text import DATA_CODING_GSM7, decode_gsm_septets, decode_ucs2
from budstikke.store.notifications import NotificationStore
from budstikke.store.tables import notifications
from tests.api.otp_support import FrozenClock, check, code_in, create, otp_app, resend, status
from tests.conftest import RunningApp

SYSTEM_ID = "budstikke"
PASSWORD = "secret"


@pytest.fixture
async def smsc() -> AsyncIterator[DevSmsc]:
    options = DevSmscOptions(
        port=0, system_id=SYSTEM_ID, password=PASSWORD, receipt_delay_s=0.05, seed=1
    )
    async with DevSmsc(options) as server:
        yield server


@pytest.fixture
def smpp_settings(settings: Settings, smsc: DevSmsc) -> Settings:
    url = f"smpp://{SYSTEM_ID}:{PASSWORD}@127.0.0.1:{smsc.port}?reconnect_initial_s=0.05"
    return settings.model_copy(update={"sms_url": url})


@pytest.fixture
def clock() -> FrozenClock:
    # The SMPP provider measures the TTL left on the real clock, so this one starts at now.
    return FrozenClock(datetime.now(UTC))


@pytest.fixture
async def app(smpp_settings: Settings, clock: FrozenClock) -> AsyncIterator[RunningApp]:
    async with otp_app(smpp_settings, clock) as running:
        await wait_until(
            lambda: running.app.state.services.dispatcher.providers["sms"].is_ready()[0]
        )
        yield running


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


async def text_received(smsc: DevSmsc, count: int) -> str:
    """Wait for the `count`-th message the SMSC accepted; return its text as a phone shows it."""
    await wait_until(lambda: len(smsc.accepted) >= count)
    submit = list(smsc.accepted.values())[count - 1].submit
    if submit.data_coding == DATA_CODING_GSM7:
        return decode_gsm_septets(submit.short_message)
    return decode_ucs2(submit.short_message)


async def shipment_status(app: RunningApp, shipment_id: str) -> str:
    response = await app.client.get(
        f"/notifications/api/v1/future/shipment/{shipment_id}", headers=app.headers()
    )
    return str(response.json()["recipients"][0]["status"])


async def test_login_flow_through_the_smsc(app: RunningApp, smsc: DevSmsc) -> None:
    # The login page requests a code for the user's phone.
    created = await create(app, idempotency_id="login-ola-1", language="en", sender="Kommune")
    assert created.status_code == 201
    verification_id = created.json()["verificationId"]
    shipment_id = created.json()["shipmentId"]

    # The phone gets one GSM-7 SMS in one segment, from the sender, with the code.
    text = await text_received(smsc, 1)
    submit = next(iter(smsc.accepted.values())).submit
    assert submit.destination_addr == "4799999999"
    assert submit.source_addr == "Kommune"
    assert submit.esm_class == 0
    assert text.endswith("It is valid for 5 minutes. Do not share it with anyone.")
    code = code_in(text)
    assert smsc.violations == []

    # The user mistypes once, then types the code; a replay of it is not approved.
    typo = await check(app, verification_id, code[::-1] if code[::-1] != code else "0" * 6)
    login = await check(app, verification_id, code)
    replay = await check(app, verification_id, code)

    assert typo.json() == {"status": "pending", "remainingAttempts": 4}
    assert login.json() == {"status": "approved", "remainingAttempts": 3}
    assert replay.json()["status"] == "expired"
    assert (await status(app, verification_id)).json()["status"] == "approved"
    await wait_until_status(app, shipment_id, "SMS_Delivered")


async def test_resend_through_the_smsc(app: RunningApp, smsc: DevSmsc, clock: FrozenClock) -> None:
    created = await create(app, idempotency_id="login-ola-2")
    verification_id = created.json()["verificationId"]
    first_code = code_in(await text_received(smsc, 1))

    clock.advance(30)
    resent = await resend(app, verification_id)
    second_code = code_in(await text_received(smsc, 2))

    assert resent.status_code == 200
    assert resent.json()["shipmentId"] != created.json()["shipmentId"]
    if first_code != second_code:
        old = await check(app, verification_id, first_code)
        assert old.json() == {"status": "pending", "remainingAttempts": 4}
    assert (await check(app, verification_id, second_code)).json()["status"] == "approved"


async def wait_until_status(app: RunningApp, shipment_id: str, expected: str) -> None:
    async with asyncio.timeout(5):
        while await shipment_status(app, shipment_id) != expected:
            await asyncio.sleep(0.02)


# Neither the delivery TTL nor the network's expiry moves the verification's expiry.


async def test_missing_report_keeps_otp_expiry(
    app: RunningApp, smsc: DevSmsc, clock: FrozenClock
) -> None:
    smsc.options.send_receipts = False
    created = await create(app, idempotency_id="no-report", timeToLiveInSeconds=60)
    body = created.json()
    await text_received(smsc, 1)
    await wait_until_status(app, body["shipmentId"], "SMS_Accepted")

    store = NotificationStore(app.database)
    assert await store.expire_overdue(clock() + timedelta(seconds=359)) == []
    ended = await store.expire_overdue(clock() + timedelta(seconds=360))

    assert len(ended) == 1
    assert await shipment_status(app, body["shipmentId"]) == "SMS_Failed_TTL"
    shown = (await status(app, body["verificationId"])).json()
    assert shown["expiresAt"] == body["expiresAt"]
    assert shown["status"] == "pending"


async def test_expired_report_keeps_otp_expiry(app: RunningApp, smsc: DevSmsc) -> None:
    smsc.options.outcomes = {"EXPIRED": 1.0}
    created = await create(app, idempotency_id="expired-report")
    body = created.json()

    await wait_until_status(app, body["shipmentId"], "SMS_Failed_Expired")

    shown = (await status(app, body["verificationId"])).json()
    assert shown["expiresAt"] == body["expiresAt"]
    assert shown["status"] == "pending"


async def test_code_body_is_erased_once_approved(app: RunningApp, smsc: DevSmsc) -> None:
    created = await create(app, idempotency_id="erase")
    code = code_in(await text_received(smsc, 1))
    await wait_until_status(app, created.json()["shipmentId"], "SMS_Delivered")

    await check(app, created.json()["verificationId"], code)

    async with app.database.read() as connection:
        bodies = (await connection.execute(select(notifications.c.body))).scalars().all()
    assert bodies == [None]
