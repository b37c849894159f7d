"""Email address validation and the envelope forms the SMTP provider sends."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from budstikke.domain.email_address import (
    EmailAddress,
    InvalidEmailAddressError,
    parse_email_address,
    validate_email_address,
)

VALID = [
    "test@example.com",
    "first.last+tag@sub.example.co.uk",
    "simple@test.org",
    "user123@my-domain.com",
    "ola@blåbær.example",
    "øyvind@example.com",
]

INVALID = [
    "invalid-email",
    "@example.com",
    "test@",
    "test.example.com",
    "",
    " test@example.com ",
    "\ttest@example.com\t",
    "ola@xn--zz--k1.example",
    '"quoted"@example.com',
    "user@[192.0.2.1]",
    "\ud800@example.com",
]


@pytest.mark.parametrize("raw", VALID)
def test_valid_address_accepted(raw: str) -> None:
    assert validate_email_address(raw) == raw


@pytest.mark.parametrize("raw", INVALID)
def test_invalid_address_rejected(raw: str) -> None:
    with pytest.raises(InvalidEmailAddressError) as caught:
        validate_email_address(raw)

    assert caught.value.value == raw
    assert repr(raw) in str(caught.value)
    assert caught.value.rule


def test_broken_punycode_names_idna_rule() -> None:
    with pytest.raises(InvalidEmailAddressError) as caught:
        validate_email_address("ola@xn--zz--k1.example")

    assert caught.value.rule == "The part after the @-sign is not valid IDNA (Invalid A-label)."


def test_surrounding_space_not_trimmed() -> None:
    with pytest.raises(InvalidEmailAddressError) as caught:
        validate_email_address(" test@example.com ")

    assert "SPACE" in caught.value.rule


def test_domain_normalised_to_lower_case() -> None:
    assert validate_email_address("Ola@BLÅBÆR.Example") == "Ola@blåbær.example"


def test_idn_domain_envelope_uses_punycode() -> None:
    address = parse_email_address("ola@blåbær.example")

    assert address == EmailAddress(
        original="ola@blåbær.example",
        normalized="ola@blåbær.example",
        local_part="ola",
        domain="blåbær.example",
        ascii_domain="xn--blbr-roah.example",
        envelope="ola@xn--blbr-roah.example",
        needs_smtputf8=False,
    )


def test_non_ascii_local_part_needs_smtputf8() -> None:
    address = parse_email_address("øyvind@example.com")

    assert address.needs_smtputf8
    assert address.envelope == "øyvind@example.com"


def test_ascii_address_needs_no_smtputf8() -> None:
    assert not parse_email_address("test@example.com").needs_smtputf8


# Any code point, including lone surrogates, which st.text() leaves out by default.
_ANY_TEXT = st.text(st.characters(exclude_categories=()))
_ADDRESS_LIKE = st.builds(
    "{}@{}{}".format,
    _ANY_TEXT,
    st.sampled_from(["", "xn--", "xn--zz--", "a.xn--", "ß."]),
    _ANY_TEXT,
)


@given(st.one_of(_ANY_TEXT, _ADDRESS_LIKE))
def test_any_text_valid_or_invalid_error(raw: str) -> None:
    try:
        address = parse_email_address(raw)
    except InvalidEmailAddressError as error:
        assert error.value == raw
    else:
        assert address.original == raw
        assert address.ascii_domain.isascii()


def test_local_part_over_64_octets_rejected() -> None:
    longest = "a" * 64 + "@example.com"

    with pytest.raises(InvalidEmailAddressError, match="64 octets"):
        parse_email_address("a" * 65 + "@example.com")
    with pytest.raises(InvalidEmailAddressError, match="64 octets"):
        parse_email_address("ø" * 33 + "@example.com")
    assert parse_email_address(longest).local_part == "a" * 64
