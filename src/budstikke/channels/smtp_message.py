"""Build the MIME message for one outgoing email and serialise it for SMTP DATA.

Headers are written by Python's `email` package. With an all-ASCII envelope
they are pure ASCII on the wire, and non-ASCII text becomes RFC 2047 encoded
words (`Subject: Kode for =?utf-8?q?B=C3=B8?=`). An address with a non-ASCII
local part cannot be written that way, so such a message is built with UTF-8
headers (RFC 6532) and needs a server that advertises SMTPUTF8. The body is
always quoted-printable or base64, whichever the `email` package finds
shorter, so it never needs 8BITMIME and no line exceeds 78 characters.
"""

from __future__ import annotations

import email.policy
import unicodedata
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Final, Literal

from budstikke.domain.email_address import EmailAddress, parse_email_address

# RFC 5322 section 2.1.1: a line must not exceed 998 octets before its CRLF.
MAX_LINE_OCTETS: Final = 998

# cte_type="7bit" makes set_content choose quoted-printable or base64 for any
# body that is not short-lined ASCII, instead of sending raw 8-bit text.
_ASCII_POLICY: Final = email.policy.SMTP.clone(cte_type="7bit")
_UTF8_POLICY: Final = email.policy.SMTPUTF8.clone(cte_type="7bit")

_WRITTEN_HEADERS: Final = frozenset(
    {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)

_SUBTYPES: Final[dict[str, str]] = {"Plain": "plain", "Html": "html"}


def build_message(
    *,
    sender: str | EmailAddress,
    recipient: str | EmailAddress,
    subject: str,
    body: str,
    content_type: Literal["Plain", "Html"],
    sender_name: str | None = None,
    recipient_name: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """Build a single-part text/plain or text/html message with charset utf-8.

    Raises ValueError when the subject, an address or a display name contains
    a control character (which could start a new header), and
    InvalidEmailAddressError (a ValueError) for an invalid address.
    """
    _reject_control_characters("subject", subject)
    _reject_control_characters("sender", _raw(sender))
    _reject_control_characters("recipient", _raw(recipient))
    _reject_control_characters("sender name", sender_name or "")
    _reject_control_characters("recipient name", recipient_name or "")

    sender_address = _parse(sender)
    recipient_address = _parse(recipient)
    utf8 = sender_address.needs_smtputf8 or recipient_address.needs_smtputf8

    message = EmailMessage(policy=_UTF8_POLICY if utf8 else _ASCII_POLICY)
    message["From"] = _header_address(sender_address, sender_name, utf8=utf8)
    message["To"] = _header_address(recipient_address, recipient_name, utf8=utf8)
    message["Subject"] = subject
    message["Date"] = format_datetime(date or datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=sender_address.ascii_domain)
    message.set_content(body, subtype=_SUBTYPES[content_type], charset="utf-8")

    # The header parser decodes RFC 2047 words, so a subject such as
    # "=?utf-8?q?x=0D=0ABcc:_y?=" passes the check above but contains a CR LF
    # once parsed, and Python 3.11 then writes it out as a second header line.
    for name, value in message.items():
        _reject_control_characters(f"{name} header", str(value))
    return message


def serialize_message(message: EmailMessage) -> bytes:
    """Return the message as bytes for SMTP DATA, with CRLF line endings.

    Raises ValueError if a line exceeds MAX_LINE_OCTETS or the header section
    contains a header that build_message did not write. Either would mean the
    builder failed to keep its guarantees.
    """
    data = message.as_bytes()
    lines = data.split(b"\r\n")

    too_long = [number for number, line in enumerate(lines, 1) if len(line) > MAX_LINE_OCTETS]
    if too_long:
        raise ValueError(f"serialised message line {too_long[0]} exceeds {MAX_LINE_OCTETS} octets")

    for line in lines:
        if not line:
            break  # the blank line that ends the header section
        if line[:1] in (b" ", b"\t"):
            continue  # a folded continuation of the previous header
        name = line.partition(b":")[0].decode("ascii", "replace").lower()
        if name not in _WRITTEN_HEADERS:
            raise ValueError(f"serialised message has an unexpected header {name!r}")
    return data


def _raw(address: str | EmailAddress) -> str:
    return address.original if isinstance(address, EmailAddress) else address


def _parse(address: str | EmailAddress) -> EmailAddress:
    return address if isinstance(address, EmailAddress) else parse_email_address(address)


def _header_address(address: EmailAddress, display_name: str | None, *, utf8: bool) -> Address:
    # Without SMTPUTF8 the domain must be its A-label, because the email package
    # would otherwise write it as an encoded word, which RFC 2047 forbids in an address.
    domain = address.domain if utf8 else address.ascii_domain
    return Address(display_name=display_name or "", username=address.local_part, domain=domain)


def _reject_control_characters(field: str, value: str) -> None:
    for character in value:
        # U+2028 and U+2029 are not Cc, but str.splitlines() breaks on them,
        # and the email package uses it when it stores and folds header values.
        if unicodedata.category(character) == "Cc" or character in "\u2028\u2029":
            raise ValueError(
                f"{field} contains the control character U+{ord(character):04X}; "
                "remove it, because a header value must be a single line"
            )
