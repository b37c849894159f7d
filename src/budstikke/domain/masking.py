"""Mask phone numbers and e-mail addresses before they are written to logs."""

from __future__ import annotations

from typing import Final

import phonenumbers

# Digits at the end of a phone number that stay visible, so that an operator
# can tell two recipients apart in a log.
_VISIBLE_TRAILING_DIGITS: Final = 2
# A national number of 5 digits or fewer is masked in full, because its last two
# digits would give away too much of it.
_MIN_DIGITS_TO_SHOW_TAIL: Final = 6
_MASK: Final = "***"


def mask_phone(e164: str) -> str:
    """Mask a phone number, keeping '+', the country code and the last two digits.

    "+4799999999" becomes "+47******99": one '*' for each hidden digit. A value
    that is not in E.164 form has every character but the last two masked.
    The function never raises, so a log call cannot fail on a bad value.
    """
    digits = e164[1:]
    if not (e164.startswith("+") and digits.isascii() and digits.isdigit()):
        return _mask_all_but_tail(e164)

    country_code = _country_code_prefix(digits)
    national_number = digits[len(country_code) :]
    if len(national_number) < _MIN_DIGITS_TO_SHOW_TAIL:
        return f"+{country_code}" + "*" * len(national_number)
    hidden_count = len(national_number) - _VISIBLE_TRAILING_DIGITS
    return f"+{country_code}" + "*" * hidden_count + national_number[hidden_count:]


def _country_code_prefix(digits: str) -> str:
    # E.164 country codes are 1 to 3 digits and no code is a prefix of another,
    # so the first known prefix is the country code.
    for length in (1, 2, 3):
        prefix = digits[:length]
        if len(prefix) == length and int(prefix) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return prefix
    return ""


def _mask_all_but_tail(value: str) -> str:
    if len(value) <= 2 * _VISIBLE_TRAILING_DIGITS:
        return "*" * len(value)
    hidden_count = len(value) - _VISIBLE_TRAILING_DIGITS
    return "*" * hidden_count + value[hidden_count:]


def mask_email(address: str) -> str:
    """Mask an e-mail address, keeping the first character of each part and the top-level domain.

    "ola.nordmann@example.com" becomes "o***@e***.com". The mask is always three
    '*', so the length of the hidden part is not shown either. A value without
    '@' is masked as a local part. The function never raises.
    """
    local_part, at_sign, domain = address.rpartition("@")
    if not at_sign:
        return _mask_keeping_first(address)

    masked_local = _mask_keeping_first(local_part)
    first_label, dot, _ = domain.partition(".")
    if not dot:
        return f"{masked_local}@{_mask_keeping_first(domain)}"
    top_level_domain = domain.rsplit(".", 1)[1]
    return f"{masked_local}@{_mask_keeping_first(first_label)}.{top_level_domain}"


def _mask_keeping_first(text: str) -> str:
    return text[:1] + _MASK
