"""Parse SMS sender ids into the source address, TON and NPI that SMPP submit_sm carries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from budstikke.domain.sms_text import is_gsm7, is_gsm7_basic

# SMPP 3.4 values of the type of number (TON) and numbering plan indicator (NPI).
TON_INTERNATIONAL: Final = 1
TON_NETWORK_SPECIFIC: Final = 3
TON_ALPHANUMERIC: Final = 5
NPI_UNKNOWN: Final = 0
NPI_E164: Final = 1

# An alphanumeric originator travels in the SMS address field as packed septets,
# and its 10 octets hold 11 septets.
MAX_ALPHANUMERIC_LENGTH: Final = 11
MAX_NUMERIC_DIGITS: Final = 15
# Short codes are typically 3 to 8 digits, so a longer number is taken as international.
MAX_SHORT_CODE_DIGITS: Final = 8

_MAX_QUOTED_LENGTH: Final = 40
_NUMERIC: Final = re.compile(r"\+?[0-9]+")
_RULE: Final = (
    "A sender id is either 1 to 11 characters of the GSM 03.38 basic set "
    "(letters, digits, space and common punctuation) with at least one non-digit, "
    "or a number of up to 15 digits with an optional leading '+'."
)


class InvalidSenderError(ValueError):
    """A sender id that fits neither the alphanumeric nor the numeric form."""

    def __init__(self, value: str, message: str) -> None:
        super().__init__(message)
        self.value = value


@dataclass(frozen=True)
class SmsSender:
    """Sender id as SMPP carries it in source_addr, source_addr_ton and source_addr_npi."""

    # The text of an alphanumeric sender, or the digits of a number without '+' or '00'.
    value: str
    ton: int
    npi: int


def parse_sms_sender(raw: str) -> SmsSender:
    """Parse a sender id as a number or an alphanumeric name and pick its TON and NPI.

    A number (digits with an optional leading '+', at most 15 digits) is
    international (TON 1, NPI 1) when it starts with '+' or '00' or has more than
    8 digits, and a short code otherwise. Anything else is alphanumeric (TON 5,
    NPI 0) and must be 1 to 11 characters of the GSM 03.38 basic table, without
    LF or CR. The caller replaces an absent or blank sender with the configured
    default before calling.
    Raises InvalidSenderError naming the value and the rule it breaks.
    """
    if not raw.strip():
        raise InvalidSenderError(raw, f"sender id {_quote(raw)} is blank. {_RULE}")
    if _NUMERIC.fullmatch(raw):
        return _parse_numeric_sender(raw)
    return _parse_alphanumeric_sender(raw)


def _parse_numeric_sender(raw: str) -> SmsSender:
    digit_count = len(raw.removeprefix("+"))
    if digit_count > MAX_NUMERIC_DIGITS:
        raise InvalidSenderError(
            raw,
            f"sender id {_quote(raw)} has {digit_count} digits; a numeric sender id allows at most "
            f"{MAX_NUMERIC_DIGITS}. {_RULE}",
        )

    if raw.startswith(("+", "00")):
        digits = raw.removeprefix("+") if raw.startswith("+") else raw[2:]
        return _international_sender(raw, digits)
    if digit_count > MAX_SHORT_CODE_DIGITS:
        return _international_sender(raw, raw)

    # TON 3 (network-specific) with NPI 0 is the short-code default in Infobip's
    # SMPP guide (https://infobip.com/glossary/ton-npi-settings). The SMS address
    # field defines TON 3 as a service number specific to the serving network.
    # NOTE: gateways differ here. Sinch's SMPP guide recommends TON 0 and NPI 1 for
    # short codes, so a gateway that rejects TON 3 needs this value made configurable.
    return SmsSender(value=raw, ton=TON_NETWORK_SPECIFIC, npi=NPI_UNKNOWN)


def _international_sender(raw: str, digits: str) -> SmsSender:
    # E.164 country codes never start with 0, so a leading 0 here is a national
    # trunk prefix or a typo, and the SMSC would route the number wrongly.
    if not digits or digits.startswith("0"):
        raise InvalidSenderError(
            raw,
            f"sender id {_quote(raw)} looks like a national number. A numeric sender id "
            f"that starts with '+' or '00' or has more than {MAX_SHORT_CODE_DIGITS} digits "
            "must start with the country code, e.g. 4799999999 or +4799999999.",
        )
    return SmsSender(value=digits, ton=TON_INTERNATIONAL, npi=NPI_E164)


def _parse_alphanumeric_sender(raw: str) -> SmsSender:
    problems: list[str] = []
    if len(raw) > MAX_ALPHANUMERIC_LENGTH:
        problems.append(
            f"has {len(raw)} characters, more than the {MAX_ALPHANUMERIC_LENGTH} an "
            "alphanumeric sender id allows"
        )

    # LF and CR are in the basic table, but a sender id is shown on one line.
    disallowed = [
        character for character in raw if character in "\n\r" or not is_gsm7_basic(character)
    ]
    if disallowed:
        problems.append(f"contains {_describe_characters(disallowed)}")

    if problems:
        raise InvalidSenderError(
            raw, f"sender id {_quote(raw)} " + " and ".join(problems) + f". {_RULE}"
        )
    return SmsSender(value=raw, ton=TON_ALPHANUMERIC, npi=NPI_UNKNOWN)


def _quote(raw: str) -> str:
    """Quote the input for an error message, shortened so a huge value stays readable."""
    if len(raw) > _MAX_QUOTED_LENGTH:
        return repr(raw[:_MAX_QUOTED_LENGTH]) + "..."
    return repr(raw)


def _describe_characters(characters: list[str]) -> str:
    unique = "".join(dict.fromkeys(characters))
    if all(is_gsm7(character) and character not in "\n\r" for character in unique):
        return f"{unique!r}, from the GSM 03.38 extension table, which a sender id cannot use"
    return f"{unique!r}, which a sender id cannot use"
