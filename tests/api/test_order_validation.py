"""Validation of instant orders: numbers, senders, TTL, segments and idempotency keys."""

from __future__ import annotations

import pytest

from tests.api.orders import EMAIL_PATH, SMS_PATH, email_order, sms_order
from tests.conftest import RunningApp


async def post_sms(app: RunningApp, **fields: object) -> tuple[int, dict[str, object]]:
    response = await app.client.post(SMS_PATH, headers=app.headers(), json=sms_order(**fields))  # type: ignore[arg-type]
    return response.status_code, response.json()


@pytest.mark.parametrize(
    "raw",
    ["+4799999999", "004799999999", "+47 999 99 999", "00 47 999 99 999", "0047-99999999"],
)
async def test_number_forms_are_stored_as_e164(running_app: RunningApp, raw: str) -> None:
    status, body = await post_sms(running_app, phone=raw)
    assert status == 201
    location = f"/notifications/api/v1/future/shipment/{body['notification']['shipmentId']}"  # type: ignore[index]
    shipment = (await running_app.client.get(location, headers=running_app.headers())).json()
    assert shipment["recipients"][0]["destination"] == "+4799999999"
    assert running_app.outbox_lines("sms")[-1]["recipient"] == "+4799999999"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("99999999", "no country prefix"),
        ("+4750099999", "no Norwegian range starts with 50"),
        ("+4702000", "five-digit service number"),
        ("+4704000", "five-digit service number"),
        ("+4709000", "five-digit service number"),
        ("+4722999999", "Oslo fixed line"),
    ],
)
async def test_numbers_that_cannot_get_sms_are_rejected(
    running_app: RunningApp, raw: str, reason: str
) -> None:
    status, body = await post_sms(running_app, phone=raw)
    assert status == 400, reason
    assert list(body["errors"]) == ["recipientSms.phoneNumber"]  # type: ignore[call-overload]
    assert raw in body["errors"]["recipientSms.phoneNumber"][0]  # type: ignore[index]


async def test_fixed_line_error_says_why(running_app: RunningApp) -> None:
    _status, body = await post_sms(running_app, phone="+4722999999")
    assert "fixed-line" in body["errors"]["recipientSms.phoneNumber"][0]  # type: ignore[index]


@pytest.mark.parametrize(
    ("sender", "status"),
    [
        ("Kommune", 201),
        ("MinKommune24", 400),
        ("Bank&Co", 201),
        ("123456", 201),
        ("4799999999", 201),
    ],
)
async def test_sender_rules(running_app: RunningApp, sender: str, status: int) -> None:
    got, body = await post_sms(running_app, sender=sender)
    assert got == status
    if status == 400:
        assert list(body["errors"]) == ["recipientSms.smsSettings.sender"]  # type: ignore[call-overload]
    else:
        assert running_app.outbox_lines("sms")[-1]["sender"] == sender


@pytest.mark.parametrize(("ttl_s", "status"), [(59, 400), (60, 201), (172800, 201), (172801, 400)])
async def test_ttl_limits(running_app: RunningApp, ttl_s: int, status: int) -> None:
    got, body = await post_sms(running_app, ttl_s=ttl_s)
    assert got == status
    if status == 400:
        message = body["errors"]["recipientSms.timeToLiveInSeconds"][0]  # type: ignore[index]
        assert str(ttl_s) in message
        assert "60" in message and "172800" in message


@pytest.mark.parametrize(
    ("ttl_s", "status"), [("300", 201), (30.5, 400), (300.5, 400), (True, 400)]
)
async def test_ttl_numeric_string_accepted_fractions_not(
    running_app: RunningApp, ttl_s: object, status: int
) -> None:
    got, _body = await post_sms(running_app, ttl_s=ttl_s)
    assert got == status


async def test_email_ttl_limits(running_app: RunningApp) -> None:
    for ttl_s, status in ((59, 400), (60, 201), (172801, 400)):
        response = await running_app.client.post(
            EMAIL_PATH, headers=running_app.headers(), json=email_order(ttl_s=ttl_s)
        )
        assert response.status_code == status, ttl_s


async def test_seventeen_segments_over_default_limit(running_app: RunningApp) -> None:
    status, body = await post_sms(running_app, body="x" * 2449)
    assert status == 400
    message = body["errors"]["recipientSms.smsSettings.body"][0]  # type: ignore[index]
    assert "17" in message and "16" in message


async def test_norwegian_text_is_one_segment(running_app: RunningApp) -> None:
    text = (
        "Engangskode: 482913. Gjelder i 5 min. Ikke del koden med noen, ikke engang med oss. "
        "Spørsmål? Ring 99999999. Hilsen Bø kommune, økonomi, Åsgård."
    )
    status, _body = await post_sms(running_app, body=text, sender="Kommune")
    assert status == 201
    assert running_app.outbox_lines("sms")[-1]["body"] == text


@pytest.mark.parametrize("value", [None, ""])
async def test_missing_or_empty_idempotency_id(running_app: RunningApp, value: str | None) -> None:
    order = sms_order()
    if value is None:
        del order["idempotencyId"]
    else:
        order["idempotencyId"] = value
    response = await running_app.client.post(SMS_PATH, headers=running_app.headers(), json=order)
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["idempotencyId"]


async def test_undefined_is_an_ordinary_key(running_app: RunningApp) -> None:
    first = await running_app.client.post(
        SMS_PATH, headers=running_app.headers(), json=sms_order(idempotency_id="undefined")
    )
    second = await running_app.client.post(
        SMS_PATH,
        headers=running_app.headers(),
        json=sms_order(idempotency_id="undefined", body="A different body", phone="+4791234567"),
    )
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json() == first.json()
    assert len(running_app.outbox_lines("sms")) == 1


async def test_proto_is_an_ordinary_key(running_app: RunningApp) -> None:
    response = await running_app.client.post(
        SMS_PATH, headers=running_app.headers(), json=sms_order(idempotency_id="__proto__")
    )
    assert response.status_code == 201


async def test_property_names_match_case_insensitively(running_app: RunningApp) -> None:
    order = {
        "IDEMPOTENCYID": "case-test",
        "recipientsms": {
            "PhoneNumber": "+4799999999",
            "timetoliveinseconds": 300,
            "SMSSETTINGS": {"Body": "hei", "unknownProperty": 1},
        },
    }
    response = await running_app.client.post(SMS_PATH, headers=running_app.headers(), json=order)
    assert response.status_code == 201


async def test_every_invalid_field_is_listed(running_app: RunningApp) -> None:
    order = {
        "idempotencyId": "",
        "recipientSms": {
            "phoneNumber": "12",
            "timeToLiveInSeconds": 5,
            "smsSettings": {"body": " "},
        },
    }
    response = await running_app.client.post(SMS_PATH, headers=running_app.headers(), json=order)
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {
        "idempotencyId",
        "recipientSms.phoneNumber",
        "recipientSms.timeToLiveInSeconds",
        "recipientSms.smsSettings.body",
    }


@pytest.mark.parametrize("address", ["ola@blåbær.example", "øyvind@example.com"])
async def test_international_addresses_accepted(running_app: RunningApp, address: str) -> None:
    response = await running_app.client.post(
        EMAIL_PATH,
        headers=running_app.headers(),
        json=email_order(address=address, subject="Kode for Bø"),
    )
    assert response.status_code == 201


async def test_broken_punycode_domain_is_400(running_app: RunningApp) -> None:
    response = await running_app.client.post(
        EMAIL_PATH,
        headers=running_app.headers(),
        json=email_order(address="ola@xn--zz--k1.example"),
    )
    assert response.status_code == 400
    message = response.json()["errors"]["recipientEmail.emailAddress"][0]
    assert "IDNA" in message
