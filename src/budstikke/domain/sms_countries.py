"""The country calling codes that SMS may be sent to.

SMS pumping (toll fraud) sends codes to numbers abroad whose operators
share the termination fee with the fraudster, so SMS go only to the
calling codes an operator allows; +47 (Norway) by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

# Stored and written as this to allow every country.
EVERY_COUNTRY = "*"
DEFAULT_SMS_COUNTRIES = "47"


class InvalidCountryCodesError(ValueError):
    """A list of country calling codes that cannot be read; the message names the bad entry."""


@dataclass(frozen=True, slots=True)
class SmsCountries:
    """Calling codes SMS may go to; `every_country` allows all of them."""

    codes: frozenset[int]
    every_country: bool = False

    def allows(self, calling_code: int) -> bool:
        return self.every_country or calling_code in self.codes

    def __str__(self) -> str:
        if self.every_country:
            return EVERY_COUNTRY
        return ",".join(str(code) for code in sorted(self.codes))

    def describe(self) -> str:
        """Return the allowed codes for messages, e.g. "+46, +47" or "every country"."""
        if self.every_country:
            return "every country"
        if not self.codes:
            return "no country"
        return ", ".join(f"+{code}" for code in sorted(self.codes))


def parse_sms_countries(text: str) -> SmsCountries:
    """Read a comma-separated list of calling codes ("47,46", "+47", or "*" for all).

    An empty list allows no SMS at all. Raises InvalidCountryCodesError for
    an entry that is not a calling code known to libphonenumber.
    """
    stripped = text.strip()
    if stripped == EVERY_COUNTRY:
        return SmsCountries(frozenset(), every_country=True)
    codes: set[int] = set()
    for raw_entry in stripped.split(","):
        entry = raw_entry.strip().removeprefix("+")
        if not entry:
            continue
        if not (entry.isascii() and entry.isdigit() and len(entry) <= 3):
            raise InvalidCountryCodesError(
                f"{entry[:20]!r} is not a country calling code; give 1 to 3 digits such as "
                f"47, separate several with commas, or give {EVERY_COUNTRY} for every country"
            )
        if int(entry) not in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            raise InvalidCountryCodesError(f"+{int(entry)} is not an assigned country calling code")
        codes.add(int(entry))
    return SmsCountries(frozenset(codes))


def calling_code_of(e164: str) -> int:
    """Return the country calling code of a number in E.164 form ("+4799999999" gives 47).

    Calling codes are one to three digits and none is the start of another,
    so the shortest known prefix is the code. The number was validated when
    the order was read, and parsing it again would double that cost per order.
    """
    digits = e164.removeprefix("+")
    for length in (1, 2, 3):
        code = int(digits[:length] or 0)
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return code
    return 0


def regions_of(calling_code: int) -> str:
    """Return the ISO regions that share a calling code, e.g. "NO, SJ" for 47."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(calling_code, ())
    shown = ", ".join(regions[:3])
    return shown + (", ..." if len(regions) > 3 else "")
