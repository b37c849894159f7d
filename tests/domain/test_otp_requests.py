"""Validation of OTP requests: every rule, and no input that raises anything but a 400 error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budstikke.domain.otp import (
    LANGUAGES,
    MAX_CODE_LENGTH,
    MAX_TTL_S,
    MIN_CODE_LENGTH,
    MIN_TTL_S,
    message_text,
)
from budstikke.domain.otp_requests import OtpRequest, parse_check_request, parse_otp_request
from budstikke.domain.request_fields import RequestValidationError
from budstikke.domain.sensitive_content import find_sensitive_content
from budstikke.domain.statuses import Channel

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(
    [
        "idempotencyId",
        "recipientSms",
        "recipientEmail",
        "codeLength",
        "timeToLiveInSeconds",
        "language",
        "template",
        "sender",
        "sendersReference",
        "phoneNumber",
        "emailAddress",
        "code",
    ]
)
BODIES = st.dictionaries(FIELD_NAMES, JSON | st.dictionaries(FIELD_NAMES, JSON), max_size=8)
# Template text around {code}: digits, the guard's group separators and letters.
TEMPLATE_PARTS = st.text(alphabet="0123456789 -\u00a0ab", max_size=24)
CODES = st.integers(MIN_CODE_LENGTH, MAX_CODE_LENGTH).flatmap(
    lambda length: st.text(alphabet="0123456789", min_size=length, max_size=length)
)


def parse(body: Any) -> OtpRequest:
    return parse_otp_request(body, max_segments=16)


def errors_of(body: Any) -> dict[str, list[str]]:
    with pytest.raises(RequestValidationError) as raised:
        parse(body)
    return raised.value.errors


def test_defaults() -> None:
    request = parse({"idempotencyId": "a", "recipientSms": {"phoneNumber": "+47 999 99 999"}})

    assert request == OtpRequest(
        idempotency_id="a",
        senders_reference=None,
        channel=Channel.SMS,
        recipient="+4799999999",
        code_length=6,
        ttl_s=300,
        language="nb",
        template=None,
        sender=None,
    )


def test_case_insensitive_names_and_numeric_strings() -> None:
    request = parse(
        {
            "IDEMPOTENCYID": "a",
            "recipientemail": {"EmailAddress": "ola.nordmann@example.com"},
            "codelength": "8",
            "TimeToLiveInSeconds": "900",
            "Language": "NN",
            "sender": "otp@example.com",
        }
    )

    assert request.channel is Channel.EMAIL
    assert request.recipient == "ola.nordmann@example.com"
    assert (request.code_length, request.ttl_s, request.language) == (8, 900, "nn")
    assert request.sender == "otp@example.com"


def test_every_invalid_field_is_listed() -> None:
    errors = errors_of(
        {
            "recipientSms": {"phoneNumber": "12"},
            "codeLength": 12,
            "timeToLiveInSeconds": 30.5,
            "language": "de",
            "template": "{code}{code}",
            "sender": "Far too long sender",
        }
    )

    assert sorted(errors) == [
        "codeLength",
        "idempotencyId",
        "language",
        "recipientSms.phoneNumber",
        "sender",
        "template",
        "timeToLiveInSeconds",
    ]
    assert errors["timeToLiveInSeconds"] == [
        "timeToLiveInSeconds must be an integer between 60 and 900; got 30.5."
    ]


def test_null_recipient_object_is_reported_at_its_path() -> None:
    errors = errors_of({"idempotencyId": "a", "recipientSms": "+4799999999"})
    assert list(errors) == ["recipientSms"]


def test_sms_template_must_fit_the_segment_limit() -> None:
    body = {"idempotencyId": "a", "recipientSms": {"phoneNumber": "+4799999999"}}
    fits = parse_otp_request({**body, "template": "x" * 154 + "{code}"}, max_segments=1)
    assert fits.template is not None

    with pytest.raises(RequestValidationError) as raised:
        parse_otp_request({**body, "template": "x" * 155 + "{code}"}, max_segments=1)
    assert "2 SMS segments" in raised.value.errors["template"][0]


@pytest.mark.parametrize(
    "template",
    [
        "Ref 1234567{code}",
        "Ref 1234567 {code}",
        "Ref 1234567-{code}",
        "Ref 1234567\u00a0{code}",
        "{code}1234567",
        "{code} 1234567 is your code",
        "4{code}",
        "Kode {code}\u0663",
        "\u0969 {code}",
        "{code}-\uff17",
    ],
)
def test_template_digits_next_to_code_are_400(template: str) -> None:
    errors = errors_of(
        {"idempotencyId": "a", "recipientSms": {"phoneNumber": "+4799999999"}, "template": template}
    )

    assert list(errors) == ["template"]
    [message] = errors["template"]
    assert message.startswith("template has digits next to {code}")
    assert message.endswith("Put a letter or a word between the digits and {code}.")


@pytest.mark.parametrize(
    "template", ["Ref 1234567: {code}", "Ref 1234567 - {code}", "Kode {code}. Ref 12 34 56"]
)
def test_template_digits_apart_are_accepted(template: str) -> None:
    body = {"idempotencyId": "a", "recipientSms": {"phoneNumber": "+4799999999"}}
    assert parse({**body, "template": template}).template == template


@settings(max_examples=500, deadline=None)
@given(TEMPLATE_PARTS, TEMPLATE_PARTS, CODES)
def test_guard_verdict_ignores_the_code(before: str, after: str, code: str) -> None:
    template = before + "{code}" + after
    body = {"idempotencyId": "a", "recipientEmail": {"emailAddress": "ola@example.com"}}
    try:
        parse({**body, "template": template})
    except RequestValidationError:
        return
    with_code = message_text(language="nb", template=template, code=code, valid_minutes=5)
    without_code = message_text(
        language="nb", template=template, code="x" * len(code), valid_minutes=5
    )

    found = find_sensitive_content(with_code)
    expected = find_sensitive_content(without_code)
    assert (found and found.rule) == (expected and expected.rule), with_code


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(LANGUAGES),
    st.integers(MIN_TTL_S // 60, MAX_TTL_S // 60),
    CODES,
)
def test_guard_never_trips_on_built_in_texts(language: str, minutes: int, code: str) -> None:
    text = message_text(language=language, template=None, code=code, valid_minutes=minutes)
    assert find_sensitive_content(text) is None, text


def test_check_keeps_the_code_as_sent() -> None:
    assert parse_check_request({"code": " 482913 "}) == " 482913 "
    assert parse_check_request({"Code": "abc"}) == "abc"


@settings(max_examples=300, deadline=None)
@given(BODIES)
def test_any_create_body_parses_or_gives_field_errors(body: dict[str, Any]) -> None:
    try:
        parse(body)
    except RequestValidationError as error:
        assert error.errors
        assert all(isinstance(messages, list) and messages for messages in error.errors.values())


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_any_check_body_parses_or_gives_field_errors(body: Any) -> None:
    try:
        code = parse_check_request(body)
    except RequestValidationError as error:
        assert error.errors
    else:
        assert isinstance(code, str)
        assert 0 < len(code) <= 64
