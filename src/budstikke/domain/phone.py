"""Parse and check SMS recipient numbers with libphonenumber (the `phonenumbers` package)."""

from __future__ import annotations

import re
from typing import Final

import phonenumbers
from phonenumbers import PhoneNumberType, ValidationResult

from budstikke.domain.masking import mask_phone

__all__ = ["InvalidPhoneNumberError", "mask_phone", "parse_sms_recipient"]

# E.164 allows at most 15 digits after the '+'.
_MAX_E164_DIGITS: Final = 15
_EXAMPLE: Final = "+4799999999"
_MAX_QUOTED_LENGTH: Final = 40
_SEPARATORS: Final = re.compile(r"[ -]")
_DISALLOWED_CHARACTER: Final = re.compile(r"[^0-9+]")

# Number types that can receive SMS. libphonenumber returns FIXED_LINE_OR_MOBILE
# where a country's numbering plan uses the same ranges for both (the United
# States and Canada, for example), so such a number may be a mobile.
_SMS_CAPABLE_TYPES: Final = frozenset(
    {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
)

# Every other type is rejected, and this table names it in the error. None of
# these ranges reliably ends at a handset that receives SMS. Fixed lines and UAN,
# toll-free, premium-rate, shared-cost and voicemail numbers lead to a line or a
# service. Personal numbers forward calls to another line, which may not be a
# mobile, and pager networks are not reached through an SMSC. VoIP ranges end at
# a provider that may not accept SMS, so a message there can vanish without a
# failure report.
_TYPE_DESCRIPTIONS: Final[dict[int, str]] = {
    PhoneNumberType.FIXED_LINE: "a fixed-line number",
    PhoneNumberType.TOLL_FREE: "a toll-free number",
    PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    PhoneNumberType.SHARED_COST: "a shared-cost number",
    PhoneNumberType.VOIP: "a VoIP number",
    PhoneNumberType.PERSONAL_NUMBER: "a personal (call-forwarding) number",
    PhoneNumberType.PAGER: "a pager number",
    PhoneNumberType.UAN: "a universal access number",
    PhoneNumberType.VOICEMAIL: "a voicemail access number",
}

# Closing sentence of every error about the number itself, whether libphonenumber
# calls it invalid or valid but of the wrong type. Its metadata moves short
# service numbers between those two outcomes, so callers see one kind of error.
_MOBILE_REQUIRED: Final = f"An SMS recipient must be a mobile number, e.g. {_EXAMPLE}."


class InvalidPhoneNumberError(ValueError):
    """A recipient number that is malformed, invalid or unable to receive SMS.

    The message quotes the number as given, so log mask_phone(...) of it instead.
    """

    def __init__(self, value: str, message: str) -> None:
        super().__init__(message)
        self.value = value


def parse_sms_recipient(raw: str) -> str:
    """Parse a recipient number and return it in E.164 form, e.g. "+4799999999".

    The number must start with '+' or '00' and the country code, because no
    default country is assumed. A leading '00' is read as '+'. Spaces and
    hyphens are removed. Other punctuation, such as dots or parentheses, is
    rejected rather than guessed at: "+47 (0) 999" could mean a trunk prefix
    that does not belong in an international number.
    The number must be valid by libphonenumber's metadata and of a type that
    can receive SMS: mobile, or fixed-line-or-mobile where the plan cannot tell.
    Raises InvalidPhoneNumberError, and nothing else, for any other input.
    """
    compact = _SEPARATORS.sub("", raw)
    international = _to_international_form(raw, compact)

    try:
        number = phonenumbers.parse(international, None)
    except phonenumbers.NumberParseException as error:
        raise InvalidPhoneNumberError(
            raw,
            f"phone number {_quote(raw)} is not a valid phone number "
            f"({_describe_parse_error(error)}). {_MOBILE_REQUIRED}",
        ) from error

    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumberError(
            raw,
            f"phone number {_quote(raw)} is not a valid phone number "
            f"({_describe_invalid_number(number)}). {_MOBILE_REQUIRED}",
        )

    number_type = phonenumbers.number_type(number)
    if number_type not in _SMS_CAPABLE_TYPES:
        description = _TYPE_DESCRIPTIONS.get(number_type, "of a type that is not known")
        raise InvalidPhoneNumberError(
            raw,
            f"phone number {_quote(raw)} is {description}, which cannot receive SMS. "
            f"{_MOBILE_REQUIRED}",
        )

    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _quote(raw: str) -> str:
    """Quote the input for an error message, shortened so a huge value stays readable."""
    if len(raw) > _MAX_QUOTED_LENGTH:
        return repr(raw[:_MAX_QUOTED_LENGTH]) + "..."
    return repr(raw)


def _to_international_form(raw: str, compact: str) -> str:
    """Return '+' and the digits of `compact`, or raise if it is not in that form."""
    if not compact:
        raise InvalidPhoneNumberError(
            raw, f"phone number {_quote(raw)} is blank. Give a mobile number, e.g. {_EXAMPLE}."
        )

    disallowed = _DISALLOWED_CHARACTER.search(compact)
    if disallowed:
        raise InvalidPhoneNumberError(
            raw,
            f"phone number {_quote(raw)} contains {disallowed.group()!r}; only digits, spaces, "
            f"hyphens and a leading '+' are allowed, e.g. {_EXAMPLE}.",
        )

    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not compact.startswith("+"):
        raise InvalidPhoneNumberError(
            raw,
            f"phone number {_quote(raw)} has no country code. Start it with '+' or '00' and the "
            f"country code (e.g. {_EXAMPLE}), because no default country is assumed.",
        )

    digits = compact[1:]
    if "+" in digits:
        raise InvalidPhoneNumberError(
            raw,
            f"phone number {_quote(raw)} has a '+' after the start; '+' may only be the first "
            f"character, e.g. {_EXAMPLE}.",
        )
    if len(digits) > _MAX_E164_DIGITS:
        raise InvalidPhoneNumberError(
            raw,
            f"phone number {_quote(raw)} has {len(digits)} digits after the country prefix; "
            f"E.164 allows at most {_MAX_E164_DIGITS}. {_MOBILE_REQUIRED}",
        )
    return compact


def _describe_parse_error(error: phonenumbers.NumberParseException) -> str:
    if error.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
        return "no country code starts with these digits"
    if error.error_type == phonenumbers.NumberParseException.TOO_LONG:
        return "too long"
    return "too short"


def _describe_invalid_number(number: phonenumbers.PhoneNumber) -> str:
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason == ValidationResult.INVALID_COUNTRY_CODE:
        return f"+{number.country_code} is not a country code"
    if reason == ValidationResult.TOO_SHORT:
        return f"too short for country code +{number.country_code}"
    if reason == ValidationResult.TOO_LONG:
        return f"too long for country code +{number.country_code}"
    if reason == ValidationResult.INVALID_LENGTH:
        return f"no number of country code +{number.country_code} has this length"
    return f"no number range of country code +{number.country_code} starts with these digits"
