"""Content rules that depend on a creator's limits: SMS countries and the sensitive guard."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from budstikke.domain.creator_limits import (
    DEFAULT_LIMITS,
    check_instant_email_order,
    check_instant_sms_order,
)
from budstikke.domain.order_requests import parse_instant_email_order, parse_instant_sms_order
from budstikke.domain.request_fields import RequestValidationError
from budstikke.domain.sms_countries import parse_sms_countries

CARD = "4111 1111 1111 1111"
IDENTITY_NUMBER = "01019012480"


def sms_body(phone: str = "+4799999999", text: str = "Your code is 482913.") -> dict[str, Any]:
    return {
        "idempotencyId": "k",
        "recipientSms": {
            "phoneNumber": phone,
            "timeToLiveInSeconds": 300,
            "smsSettings": {"body": text},
        },
    }


def email_body(subject: str = "Your code", text: str = "Your code is 482913.") -> dict[str, Any]:
    return {
        "idempotencyId": "k",
        "recipientEmail": {
            "emailAddress": "ola.nordmann@example.com",
            "emailSettings": {"subject": subject, "body": text},
        },
    }


def sms_errors(
    body: dict[str, Any], *, nested: bool = False, **limits: Any
) -> dict[str, list[str]]:
    if nested:
        body = {"idempotencyId": "k", "recipient": {"recipientSms": body["recipientSms"]}}
    order = parse_instant_sms_order(body, max_segments=16, nested=nested)
    try:
        check_instant_sms_order(order, replace(DEFAULT_LIMITS, **limits))
    except RequestValidationError as error:
        return error.errors
    return {}


def email_errors(body: dict[str, Any], **limits: Any) -> dict[str, list[str]]:
    order = parse_instant_email_order(body)
    try:
        check_instant_email_order(order, replace(DEFAULT_LIMITS, **limits))
    except RequestValidationError as error:
        return error.errors
    return {}


def test_norwegian_sms_passes_defaults() -> None:
    assert sms_errors(sms_body()) == {}


def test_swedish_number_rejected_by_default() -> None:
    errors = sms_errors(sms_body(phone="+46701234567"))

    [message] = errors["recipientSms.phoneNumber"]
    assert "+46 (SE)" in message
    assert "only to +47" in message
    assert "budstikke limits set --sms-countries" in message
    assert "701234567" not in message


def test_country_error_keyed_by_nested_path() -> None:
    errors = sms_errors(sms_body(phone="+46701234567"), nested=True)

    assert list(errors) == ["recipient.recipientSms.phoneNumber"]


def test_allowed_country_list_per_creator() -> None:
    sweden_too = parse_sms_countries("47,46")

    assert sms_errors(sms_body(phone="+46701234567"), sms_countries=sweden_too) == {}
    assert "recipientSms.phoneNumber" in sms_errors(
        sms_body(phone="+12025550123"), sms_countries=sweden_too
    )


def test_every_country_allowed_with_star() -> None:
    errors = sms_errors(sms_body(phone="+12025550123"), sms_countries=parse_sms_countries("*"))

    assert errors == {}


def test_sms_with_card_number_rejected() -> None:
    errors = sms_errors(sms_body(text=f"Card {CARD} was charged"))

    [message] = errors["recipientSms.smsSettings.body"]
    assert "payment_card_number" in message
    assert "Luhn" in message
    assert CARD not in message


def test_country_and_guard_reported_together() -> None:
    errors = sms_errors(sms_body(phone="+46701234567", text=f"fnr {IDENTITY_NUMBER}"))

    assert set(errors) == {"recipientSms.phoneNumber", "recipientSms.smsSettings.body"}
    assert "national_identity_number" in errors["recipientSms.smsSettings.body"][0]


def test_guard_off_lets_numbers_through() -> None:
    assert sms_errors(sms_body(text=f"fnr {IDENTITY_NUMBER}"), sensitive_guard=False) == {}
    assert email_errors(email_body(text=f"Card {CARD}"), sensitive_guard=False) == {}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (email_body(subject=f"Receipt for {CARD}"), "recipientEmail.emailSettings.subject"),
        (email_body(text=f"<p>fnr {IDENTITY_NUMBER}</p>"), "recipientEmail.emailSettings.body"),
    ],
    ids=["subject", "body"],
)
def test_email_guard_names_field(body: dict[str, Any], path: str) -> None:
    assert list(email_errors(body)) == [path]


@pytest.mark.parametrize("code", ["4829", "482913", "4829130", "48291307", "4829130751"])
def test_otp_codes_pass_guard(code: str) -> None:
    assert sms_errors(sms_body(text=f"Your code is {code}.")) == {}
    assert email_errors(email_body(subject=f"Code {code}", text=f"Your code is {code}.")) == {}
