from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from budstikke.domain import masking, phone
from budstikke.domain.phone import InvalidPhoneNumberError, parse_sms_recipient

MOBILE_REQUIRED = "An SMS recipient must be a mobile number"


@pytest.mark.parametrize(
    "raw",
    [
        "+4799999999",
        "004799999999",
        "+47 999 99 999",
        "00 47 999 99 999",
        "0047-99999999",
        " +47-999-99-999 ",
    ],
)
def test_norwegian_mobile_parses_to_e164(raw: str) -> None:
    assert parse_sms_recipient(raw) == "+4799999999"


def test_north_american_fixed_line_or_mobile_accepted() -> None:
    # libphonenumber cannot tell fixed lines from mobiles in the NANP ranges.
    assert parse_sms_recipient("+1 201-555-0123") == "+12015550123"


def test_uk_mobile_accepted() -> None:
    assert parse_sms_recipient("0044 7911 123456") == "+447911123456"


@pytest.mark.parametrize("raw", ["99999999", "1234567890", "12345", "0799999999"])
def test_number_without_country_prefix_rejected(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumberError) as caught:
        parse_sms_recipient(raw)

    message = str(caught.value)
    assert repr(raw) in message
    assert "no country code" in message
    assert "no default country is assumed" in message
    assert caught.value.value == raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("+4750099999", "no number range of country code +47 starts with these digits"),
        ("+4712345678", "no number range of country code +47 starts with these digits"),
        ("+479999999", "no number of country code +47 has this length"),
        ("+479999999999", "too long for country code +47"),
        ("+47", "too short"),
        ("+", "too short"),
        ("+0047", "no country code starts with these digits"),
        ("+999123", "no country code starts with these digits"),
    ],
)
def test_invalid_number_rejected_with_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidPhoneNumberError) as caught:
        parse_sms_recipient(raw)

    message = str(caught.value)
    assert repr(raw) in message
    assert "is not a valid phone number" in message
    assert reason in message
    assert MOBILE_REQUIRED in message


@pytest.mark.parametrize(
    ("raw", "character"),
    [
        ("invalid-phone", "i"),
        ("abcdefg", "a"),
        ("+47.999.99.999", "."),
        ("+47 (999) 99999", "("),
        ("+47/99999999", "/"),
        ("+1-800-FLOWERS", "F"),
        ("+４７９９９９９９９９", "４"),
    ],
)
def test_disallowed_character_rejected(raw: str, character: str) -> None:
    with pytest.raises(InvalidPhoneNumberError) as caught:
        parse_sms_recipient(raw)

    message = str(caught.value)
    assert f"contains {character!r}" in message
    assert "only digits, spaces, hyphens and a leading '+' are allowed" in message


@pytest.mark.parametrize("raw", ["", " ", "  -  "])
def test_blank_number_rejected(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumberError, match="is blank"):
        parse_sms_recipient(raw)


def test_plus_after_start_rejected() -> None:
    with pytest.raises(InvalidPhoneNumberError, match="'\\+' may only be the first character"):
        parse_sms_recipient("+47+99999999")


def test_more_than_15_digits_rejected() -> None:
    with pytest.raises(InvalidPhoneNumberError, match=r"16 digits .* at most 15"):
        parse_sms_recipient("+4799999999999999")


@pytest.mark.parametrize("raw", ["+4702000", "+4704000", "+4709000"])
def test_norwegian_five_digit_service_numbers_rejected(raw: str) -> None:
    # phonenumbers 9.0.43 calls 02000 and 09000 universal access numbers and 04000
    # invalid. The error must read the same whichever way the metadata goes.
    with pytest.raises(InvalidPhoneNumberError) as caught:
        parse_sms_recipient(raw)

    message = str(caught.value)
    assert repr(raw) in message
    assert message.endswith(f"{MOBILE_REQUIRED}, e.g. +4799999999.")


def test_oslo_fixed_line_cannot_receive_sms() -> None:
    with pytest.raises(InvalidPhoneNumberError) as caught:
        parse_sms_recipient("+4722999999")

    message = str(caught.value)
    assert "'+4722999999' is a fixed-line number, which cannot receive SMS" in message
    assert MOBILE_REQUIRED in message


@pytest.mark.parametrize(
    ("raw", "description"),
    [
        ("+4781000000", "a shared-cost number"),
        ("+4785000000", "a VoIP number"),
        ("+4780000000", "a toll-free number"),
        ("+4782000000", "a premium-rate number"),
        ("+447012345678", "a personal (call-forwarding) number"),
        ("+445612345678", "a VoIP number"),
    ],
)
def test_non_mobile_type_rejected(raw: str, description: str) -> None:
    with pytest.raises(InvalidPhoneNumberError) as caught:
        parse_sms_recipient(raw)

    assert f"is {description}, which cannot receive SMS" in str(caught.value)


def test_long_input_quoted_shortened() -> None:
    raw = "x" * 1000

    with pytest.raises(InvalidPhoneNumberError) as caught:
        parse_sms_recipient(raw)

    assert len(str(caught.value)) < 200
    assert caught.value.value == raw


def test_error_is_value_error() -> None:
    assert issubclass(InvalidPhoneNumberError, ValueError)


def test_phone_module_reexports_mask_phone() -> None:
    assert phone.mask_phone is masking.mask_phone


@given(st.text())
def test_any_text_parses_or_raises_invalid_phone_number(raw: str) -> None:
    try:
        result = parse_sms_recipient(raw)
    except InvalidPhoneNumberError:
        return
    assert result.startswith("+")
    assert result[1:].isdigit()


@given(st.text(alphabet="+0123456789 -", max_size=25))
def test_digit_text_parses_or_raises_invalid_phone_number(raw: str) -> None:
    try:
        result = parse_sms_recipient(raw)
    except InvalidPhoneNumberError:
        return
    assert parse_sms_recipient(result) == result
