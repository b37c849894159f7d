"""Country calling codes that SMS may go to."""

from __future__ import annotations

import phonenumbers
import pytest

from budstikke.domain.sms_countries import (
    InvalidCountryCodesError,
    calling_code_of,
    parse_sms_countries,
    regions_of,
)


def test_default_allows_norway_only() -> None:
    countries = parse_sms_countries("47")

    assert countries.allows(47)
    assert not countries.allows(46)
    assert not countries.allows(1)


@pytest.mark.parametrize("text", ["47,46", " +47 , 46 ", "46,47,47", "47,,46,"])
def test_list_forms_read_alike(text: str) -> None:
    countries = parse_sms_countries(text)

    assert countries.codes == frozenset({46, 47})
    assert str(countries) == "46,47"
    assert countries.describe() == "+46, +47"


def test_star_allows_every_country() -> None:
    countries = parse_sms_countries("*")

    assert countries.allows(1)
    assert countries.allows(882)
    assert str(countries) == "*"
    assert countries.describe() == "every country"


def test_empty_list_allows_none() -> None:
    countries = parse_sms_countries("")

    assert not countries.allows(47)
    assert countries.describe() == "no country"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("47,NO", "'NO' is not a country calling code"),
        ("4747", "'4747' is not a country calling code"),
        ("47;46", "'47;46' is not a country calling code"),
        ("999", r"\+999 is not an assigned country calling code"),
        ("0", r"\+0 is not an assigned"),
    ],
)
def test_bad_codes_rejected(text: str, message: str) -> None:
    with pytest.raises(InvalidCountryCodesError, match=message):
        parse_sms_countries(text)


@pytest.mark.parametrize(
    ("number", "code"),
    [("+4799999999", 47), ("+46701234567", 46), ("+12025550123", 1), ("+37060012345", 370)],
)
def test_calling_code_of_number(number: str, code: int) -> None:
    assert calling_code_of(number) == code


def test_regions_named() -> None:
    assert regions_of(47) == "NO, SJ"
    assert regions_of(1).startswith("US, ")
    assert regions_of(1).endswith(", ...")


@pytest.mark.parametrize("region", sorted(phonenumbers.SUPPORTED_REGIONS))
def test_calling_code_matches_phonenumbers(region: str) -> None:
    example = phonenumbers.example_number(region)
    assert example is not None
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)

    assert calling_code_of(e164) == example.country_code
