"""Validate email addresses and derive the forms an SMTP envelope needs.

An address is valid when the `email-validator` library accepts it with its
default options and no DNS look-up: no quoted local parts, no IP-literal
domains, internationalised domains allowed. Input is not trimmed, so
surrounding whitespace makes an address invalid.
"""

from __future__ import annotations

from dataclasses import dataclass

from email_validator import validate_email

# The maximum length of a local part (RFC 5321 4.5.3.1.1).
LOCAL_PART_MAX_OCTETS = 64


class InvalidEmailAddressError(ValueError):
    """An email address that email-validator rejects. The message names the value and the rule."""

    def __init__(self, value: str, rule: str) -> None:
        super().__init__(f"invalid email address {value!r}: {rule}")
        self.value = value
        self.rule = rule


@dataclass(frozen=True, slots=True)
class EmailAddress:
    """A valid address with the forms needed to send to it.

    `normalized` is what to store and show (domain lower-cased and in Unicode
    NFC form). `envelope` is the address for MAIL FROM / RCPT TO, with the
    domain as its ASCII (punycode) A-label. `needs_smtputf8` is set when the
    local part has non-ASCII characters, which only a server that advertises
    SMTPUTF8 (RFC 6531) can take.
    """

    original: str
    normalized: str
    local_part: str
    domain: str
    ascii_domain: str
    envelope: str
    needs_smtputf8: bool


def parse_email_address(raw: str) -> EmailAddress:
    """Validate `raw` and return it with its envelope form.

    Raises InvalidEmailAddressError, and nothing else, for any string that is
    not a valid address.
    """
    try:
        validated = validate_email(raw, check_deliverability=False)
    except ValueError as error:
        # EmailNotValidError is a ValueError. Catching ValueError also covers
        # UnicodeError from the idna and punycode codecs, which some older
        # email-validator and idna releases let escape on a malformed A-label
        # such as "xn--zz--k1".
        raise InvalidEmailAddressError(raw, str(error)) from error
    # email-validator lets longer local parts through; SMTP servers may reject them.
    if len(validated.local_part.encode()) > LOCAL_PART_MAX_OCTETS:
        raise InvalidEmailAddressError(
            raw,
            f"the part before the @ is longer than {LOCAL_PART_MAX_OCTETS} octets "
            "(RFC 5321 4.5.3.1.1); use a shorter address",
        )

    return EmailAddress(
        original=raw,
        normalized=validated.normalized,
        local_part=validated.local_part,
        domain=validated.domain,
        ascii_domain=validated.ascii_domain,
        envelope=f"{validated.local_part}@{validated.ascii_domain}",
        needs_smtputf8=not validated.local_part.isascii(),
    )


def validate_email_address(raw: str) -> str:
    """Return the normalised form of `raw`, or raise InvalidEmailAddressError."""
    return parse_email_address(raw).normalized
