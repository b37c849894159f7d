from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from budstikke.domain.masking import mask_email, mask_phone


@pytest.mark.parametrize(
    ("e164", "masked"),
    [
        ("+4799999999", "+47******99"),
        ("+12015550123", "+1********23"),
        ("+3531234567", "+353*****67"),
        ("+447911123456", "+44********56"),
    ],
)
def test_mask_phone_keeps_country_code_and_last_two(e164: str, masked: str) -> None:
    assert mask_phone(e164) == masked


def test_mask_phone_hides_short_national_number() -> None:
    assert mask_phone("+4702000") == "+47*****"


def test_mask_phone_unknown_country_code_masks_digits() -> None:
    assert mask_phone("+99912345678") == "+*********78"


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("99999999", "******99"),
        ("+", "*"),
        ("", ""),
        ("abc", "***"),
        ("+47 999 99 999", "************99"),
    ],
)
def test_mask_phone_non_e164_value(value: str, masked: str) -> None:
    assert mask_phone(value) == masked


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("ola.nordmann@example.com", "o***@e***.com"),
        ("a@sub.example.co.uk", "a***@s***.uk"),
        ("øyvind@blåbær.example", "ø***@b***.example"),
        ("postmaster@localhost", "p***@l***"),
        ("@example.com", "***@e***.com"),
        ("not-an-address", "n***"),
        ("", "***"),
    ],
)
def test_mask_email_keeps_first_characters_and_tld(address: str, masked: str) -> None:
    assert mask_email(address) == masked


@given(st.text())
def test_mask_phone_keeps_length_and_hides_digits(value: str) -> None:
    masked = mask_phone(value)

    assert len(masked) == len(value)
    # At most a 3-digit country code and the last two digits stay visible.
    assert sum(character.isdigit() for character in masked) <= 5


@given(st.text())
def test_mask_email_accepts_any_text(value: str) -> None:
    masked = mask_email(value)

    assert masked.count("***") >= 1


@given(st.from_regex(r"[a-z.]{2,20}@[a-z]{2,10}\.[a-z]{2,6}", fullmatch=True))
def test_mask_email_shows_one_character_of_local_part(address: str) -> None:
    local_part = address.rsplit("@", 1)[0]

    masked = mask_email(address)

    assert masked.split("@")[0] == local_part[0] + "***"
    assert masked.endswith("." + address.rsplit(".", 1)[1])
