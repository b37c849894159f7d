"""The MIME message the SMTP provider sends: headers, encodings and line limits."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from budstikke.channels.smtp_message import MAX_LINE_OCTETS, build_message, serialize_message

LONG_LINK = "https://example.com/verify?t=" + "a" * 2000


def _wire(**overrides: object) -> bytes:
    arguments: dict[str, object] = {
        "sender": "noreply@example.com",
        "recipient": "ola@example.com",
        "subject": "Your one-time code",
        "body": "Your code is 482913.",
        "content_type": "Plain",
    }
    arguments.update(overrides)
    return serialize_message(build_message(**arguments))  # type: ignore[arg-type]


def _header_lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def _parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_plain_message_headers() -> None:
    sent_at = datetime(2026, 12, 4, 10, 15, 2, tzinfo=UTC)
    message = _parse(_wire(date=sent_at))

    assert message["From"] == "noreply@example.com"
    assert message["To"] == "ola@example.com"
    assert message["Subject"] == "Your one-time code"
    assert message["Date"] == "Fri, 04 Dec 2026 10:15:02 +0000"
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content() == "Your code is 482913.\r\n"


def test_message_id_uses_sender_domain() -> None:
    message = _parse(_wire(sender="noreply@blåbær.example"))

    assert message["Message-ID"].endswith("@xn--blbr-roah.example>")


def test_html_content_type() -> None:
    message = _parse(_wire(body="<p>Koden din er <b>482913</b></p>", content_type="Html"))

    assert message.get_content_type() == "text/html"
    assert message.get_content() == "<p>Koden din er <b>482913</b></p>\r\n"


def test_non_ascii_subject_rfc2047_encoded() -> None:
    data = _wire(subject="Kode for Bø")

    assert b"Subject: Kode for =?utf-8?q?B=C3=B8?=" in _header_lines(data)
    assert data.isascii()


def test_display_name_rfc2047_encoded() -> None:
    message = build_message(
        sender="noreply@example.com",
        recipient="ola@example.com",
        recipient_name="Ola Nørdmann",
        subject="Kode",
        body="482913",
        content_type="Plain",
    )

    assert b"To: Ola =?utf-8?q?N=C3=B8rdmann?= <ola@example.com>" in _header_lines(
        serialize_message(message)
    )


def test_idn_recipient_header_uses_punycode() -> None:
    data = _wire(recipient="ola@blåbær.example")

    assert b"To: ola@xn--blbr-roah.example" in _header_lines(data)
    assert data.isascii()


def test_non_ascii_local_part_uses_utf8_headers() -> None:
    data = _wire(recipient="øyvind@example.com", subject="Kode for Bø")

    assert "To: øyvind@example.com".encode() in _header_lines(data)
    assert "Subject: Kode for Bø".encode() in _header_lines(data)
    assert b"Content-Transfer-Encoding: 8bit" not in data


def test_non_ascii_body_not_sent_as_8bit() -> None:
    data = _wire(body="Hei på deg, koden er 482913.")

    assert data.isascii()
    assert _parse(data).get_content() == "Hei på deg, koden er 482913.\r\n"


def test_long_line_body_quoted_printable() -> None:
    data = _wire(body=LONG_LINK)
    body_lines = data.split(b"\r\n\r\n", 1)[1].split(b"\r\n")

    assert b"Content-Transfer-Encoding: quoted-printable" in _header_lines(data)
    assert max(len(line) for line in body_lines) <= 78
    assert _parse(data).get_content() == LONG_LINK + "\r\n"


@pytest.mark.parametrize("subject", ["a" * 998, "Ø" * 998, "word " * 199])
def test_no_line_over_998_octets(subject: str) -> None:
    data = _wire(subject=subject, body="x" * 5000, recipient_name="Ø" * 2000)

    assert max(len(line) for line in data.split(b"\r\n")) <= MAX_LINE_OCTETS
    assert _parse(data)["Subject"] == subject


def test_unfoldable_display_name_rejected() -> None:
    # An ASCII word in an address header cannot be folded or encoded, so
    # 2000 letters without a space would make one line of over 2000 octets.
    with pytest.raises(ValueError, match="exceeds 998 octets"):
        _wire(recipient_name="N" * 2000)


@pytest.mark.parametrize(
    "subject",
    [
        "Code\r\nBcc: x@example.com",
        "Code\nBcc: x@example.com",
        "Code\rBcc: x@example.com",
        "Code\x00",
        "Code\x85Bcc: x@example.com",
        "Code\u2028Bcc: x@example.com",
        "=?utf-8?q?Code=0D=0ABcc:_x@example.com?=",
    ],
)
def test_subject_with_line_break_rejected(subject: str) -> None:
    with pytest.raises(ValueError, match="control character"):
        _wire(subject=subject)


@pytest.mark.parametrize("field", ["sender", "recipient", "recipient_name", "sender_name"])
def test_address_with_control_character_rejected(field: str) -> None:
    value = "ola@example.com\r\nBcc: x@example.com"

    with pytest.raises(ValueError, match="control character"):
        _wire(**{field: value})


def test_invalid_recipient_rejected() -> None:
    with pytest.raises(ValueError, match="invalid email address"):
        _wire(recipient="invalid-email")


def test_serialize_rejects_foreign_header() -> None:
    message = build_message(
        sender="noreply@example.com",
        recipient="ola@example.com",
        subject="Kode",
        body="482913",
        content_type="Plain",
    )
    message["Bcc"] = "x@example.com"

    with pytest.raises(ValueError, match="unexpected header 'bcc'"):
        serialize_message(message)
