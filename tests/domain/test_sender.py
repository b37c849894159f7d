from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from budstikke.domain.sender import (
    NPI_E164,
    NPI_UNKNOWN,
    TON_ALPHANUMERIC,
    TON_INTERNATIONAL,
    TON_NETWORK_SPECIFIC,
    InvalidSenderError,
    SmsSender,
    parse_sms_sender,
)


@pytest.mark.parametrize(
    "raw",
    [
        "Kommune",
        "Bank&Co",
        "ValidSender",
        "Test sender",
        "Altinn-test",
        "Bø kommune",
        "@£$_!?",
        "A",
    ],
)
def test_alphanumeric_sender_is_ton_5_npi_0(raw: str) -> None:
    assert parse_sms_sender(raw) == SmsSender(value=raw, ton=TON_ALPHANUMERIC, npi=NPI_UNKNOWN)


def test_alphanumeric_constants_match_smpp_values() -> None:
    assert (TON_ALPHANUMERIC, NPI_UNKNOWN) == (5, 0)
    assert (TON_INTERNATIONAL, NPI_E164) == (1, 1)
    assert TON_NETWORK_SPECIFIC == 3


@pytest.mark.parametrize("raw", ["MinKommune24", "(TEST) Instant SMS Test"])
def test_alphanumeric_sender_over_11_characters_rejected(raw: str) -> None:
    with pytest.raises(InvalidSenderError) as caught:
        parse_sms_sender(raw)

    message = str(caught.value)
    assert f"sender id {raw!r} has {len(raw)} characters" in message
    assert "more than the 11" in message
    assert caught.value.value == raw


@pytest.mark.parametrize("raw", ["Ref{1}", "Pris 5€", "A|B", "x^2", "[Bank]"])
def test_extension_characters_rejected(raw: str) -> None:
    with pytest.raises(InvalidSenderError) as caught:
        parse_sms_sender(raw)

    message = str(caught.value)
    assert repr(raw) in message
    assert "from the GSM 03.38 extension table" in message


@pytest.mark.parametrize("raw", ["Kåre`s", "Tú banco", "Банк", "Line\nTwo", "Tab\there"])
def test_characters_outside_basic_table_rejected(raw: str) -> None:
    with pytest.raises(InvalidSenderError, match="which a sender id cannot use"):
        parse_sms_sender(raw)


def test_too_long_and_bad_character_both_reported() -> None:
    with pytest.raises(InvalidSenderError) as caught:
        parse_sms_sender("{Kommune Bø}")

    message = str(caught.value)
    assert "has 12 characters" in message
    assert "contains '{}'" in message


@pytest.mark.parametrize("raw", ["", " ", "   "])
def test_blank_sender_rejected(raw: str) -> None:
    with pytest.raises(InvalidSenderError, match="is blank"):
        parse_sms_sender(raw)


@pytest.mark.parametrize("raw", ["123456", "2222", "12345678", "0123"])
def test_short_code_is_ton_3_npi_0(raw: str) -> None:
    assert parse_sms_sender(raw) == SmsSender(value=raw, ton=TON_NETWORK_SPECIFIC, npi=NPI_UNKNOWN)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("4799999999", "4799999999"),
        ("+4799999999", "4799999999"),
        ("004799999999", "4799999999"),
        ("123456789", "123456789"),
        ("+123", "123"),
        ("123456789012345", "123456789012345"),
    ],
)
def test_international_number_is_ton_1_npi_1(raw: str, value: str) -> None:
    assert parse_sms_sender(raw) == SmsSender(value=value, ton=TON_INTERNATIONAL, npi=NPI_E164)


@pytest.mark.parametrize("raw", ["1234567890123456", "+1234567890123456"])
def test_number_over_15_digits_rejected(raw: str) -> None:
    with pytest.raises(
        InvalidSenderError, match="has 16 digits; a numeric sender id allows at most 15"
    ):
        parse_sms_sender(raw)


@pytest.mark.parametrize("raw", ["0799999999", "+0047999", "00", "000123456"])
def test_national_format_number_rejected(raw: str) -> None:
    with pytest.raises(InvalidSenderError, match="looks like a national number"):
        parse_sms_sender(raw)


def test_error_is_value_error() -> None:
    assert issubclass(InvalidSenderError, ValueError)


@given(st.text())
def test_any_text_parses_or_raises_invalid_sender(raw: str) -> None:
    try:
        sender = parse_sms_sender(raw)
    except InvalidSenderError:
        return
    assert sender.ton in {TON_ALPHANUMERIC, TON_INTERNATIONAL, TON_NETWORK_SPECIFIC}
    assert 1 <= len(sender.value) <= 15
