"""Validation of OTP requests: creating a verification, and checking a code."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from budstikke.domain.order_requests import (
    read_email_address,
    read_order_header,
    read_phone_number,
    read_sender,
    require_object,
)
from budstikke.domain.otp import (
    CODE_PLACEHOLDER,
    DEFAULT_CODE_LENGTH,
    DEFAULT_LANGUAGE,
    DEFAULT_TTL_S,
    LANGUAGES,
    MAX_CODE_LENGTH,
    MAX_TTL_S,
    MIN_CODE_LENGTH,
    MIN_TTL_S,
)
from budstikke.domain.request_fields import (
    FieldErrors,
    JsonObject,
    describe,
    read_integer,
    read_object,
    read_string,
)
from budstikke.domain.sensitive_content import GROUP_SEPARATOR
from budstikke.domain.sms_text import count_segments
from budstikke.domain.statuses import Channel

# Long enough for any template a person writes, short enough to store per verification.
MAX_TEMPLATE_LENGTH = 10_000
# A submitted code longer than this is rejected with 400 before it is hashed.
MAX_SUBMITTED_CODE_LENGTH = 64
# A digit right before or after the placeholder, or with one group separator between.
# \d matches every Unicode decimal digit, such as the Arabic-Indic "٣", because
# a reader takes those as part of the code too.
_PLACEHOLDER = re.escape(CODE_PLACEHOLDER)
_SEPARATOR = GROUP_SEPARATOR.pattern
CODE_NEXT_TO_DIGITS = re.compile(rf"\d{_SEPARATOR}?{_PLACEHOLDER}|{_PLACEHOLDER}{_SEPARATOR}?\d")


@dataclass(frozen=True, slots=True)
class OtpRequest:
    idempotency_id: str
    senders_reference: str | None
    channel: Channel
    recipient: str  # E.164 for SMS, the normalised address for email
    code_length: int
    ttl_s: int
    language: str
    template: str | None  # None: the built-in text in `language`
    sender: str | None  # None: the configured default of the channel


def parse_otp_request(body: Any, *, max_segments: int) -> OtpRequest:
    """Validate a request to create a verification; raises RequestValidationError."""
    errors = FieldErrors()
    source = require_object(body, errors)
    idempotency_id, senders_reference = read_order_header(source, errors)
    channel, recipient = read_recipient(source, errors)

    code_length = read_integer(
        source,
        "codeLength",
        "",
        errors,
        required=False,
        minimum=MIN_CODE_LENGTH,
        maximum=MAX_CODE_LENGTH,
    )
    ttl_s = read_integer(
        source,
        "timeToLiveInSeconds",
        "",
        errors,
        required=False,
        minimum=MIN_TTL_S,
        maximum=MAX_TTL_S,
    )
    language = read_language(source, errors)

    template = read_template(
        source,
        errors,
        channel=channel,
        code_length=code_length or DEFAULT_CODE_LENGTH,
        max_segments=max_segments,
    )
    sender = None
    if channel is Channel.SMS:
        sender = read_sender(source, "", errors)
    elif channel is Channel.EMAIL:
        sender = read_email_address(source, "", "sender", errors, required=False)
    errors.raise_if_any()

    assert idempotency_id is not None
    assert channel is not None
    assert recipient is not None
    return OtpRequest(
        idempotency_id=idempotency_id,
        senders_reference=senders_reference,
        channel=channel,
        recipient=recipient,
        code_length=code_length or DEFAULT_CODE_LENGTH,
        ttl_s=ttl_s or DEFAULT_TTL_S,
        language=language or DEFAULT_LANGUAGE,
        template=template,
        sender=sender,
    )


def read_recipient(source: JsonObject, errors: FieldErrors) -> tuple[Channel | None, str | None]:
    """Read exactly one of recipientSms and recipientEmail."""
    present = [
        name for name in ("recipientSms", "recipientEmail") if source.get(name.lower()) is not None
    ]
    if len(present) != 1:
        found = "both" if present else "neither"
        for name in ("recipientSms", "recipientEmail"):
            errors.add(name, f"Give exactly one of recipientSms and recipientEmail; got {found}.")
        return None, None
    if present == ["recipientSms"]:
        sms = read_object(source, "recipientSms", "", errors, required=True)
        phone = None if sms is None else read_phone_number(sms, "recipientSms", errors)
        return Channel.SMS, phone
    email = read_object(source, "recipientEmail", "", errors, required=True)
    if email is None:
        return Channel.EMAIL, None
    address = read_email_address(email, "recipientEmail", "emailAddress", errors, required=True)
    return Channel.EMAIL, address


def read_language(source: JsonObject, errors: FieldErrors) -> str | None:
    raw = read_string(source, "language", "", errors, required=False, max_length=10)
    if raw is None:
        return None
    if raw.lower() not in LANGUAGES:
        errors.add(
            "language", f"language must be one of {', '.join(LANGUAGES)}; got {describe(raw)}."
        )
        return None
    return raw.lower()


def read_template(
    source: JsonObject,
    errors: FieldErrors,
    *,
    channel: Channel | None,
    code_length: int,
    max_segments: int,
) -> str | None:
    template = read_string(
        source, "template", "", errors, required=False, max_length=MAX_TEMPLATE_LENGTH
    )
    if template is None:
        return None
    if not template.strip():
        errors.add("template", "template must not be blank; leave it out for the built-in text.")
        return None
    placeholders = template.count(CODE_PLACEHOLDER)
    if placeholders != 1:
        errors.add(
            "template",
            f"template must contain {CODE_PLACEHOLDER} exactly once; "
            f"found it {placeholders} times.",
        )
        return None
    if code_joins_digits(template):
        errors.add(
            "template",
            f"template has digits next to {CODE_PLACEHOLDER} (directly or after one space, "
            "no-break space or hyphen), so the code would form one longer number with them, "
            "and some codes would make it look like a card or identity number. Put a letter or "
            f"a word between the digits and {CODE_PLACEHOLDER}.",
        )
        return None
    if channel is Channel.SMS:
        return check_sms_template(template, errors, code_length, max_segments)
    return template


def code_joins_digits(template: str) -> bool:
    """Tell whether the code would share a number with digits of the template.

    The sensitive content guard reads digits in groups joined by one space,
    no-break space or hyphen as one number. A code alone in its number has 4
    to 10 digits, too few for either of the guard's rules, so the guard's
    verdict never depends on the random code.
    """
    return CODE_NEXT_TO_DIGITS.search(template) is not None


def check_sms_template(
    template: str, errors: FieldErrors, code_length: int, max_segments: int
) -> str | None:
    # Digits are single septets in GSM-7 and single units in UCS-2, so any
    # code of this length gives the same segment count.
    text = template.replace(CODE_PLACEHOLDER, "0" * code_length)
    try:
        segments = count_segments(text)
    except ValueError as error:
        errors.add("template", f"template cannot be encoded as SMS text: {error}")
        return None
    if segments > max_segments:
        errors.add(
            "template",
            f"template needs {segments} SMS segments with the code; at most {max_segments} "
            "are allowed. Shorten the text.",
        )
        return None
    return template


def parse_check_request(body: Any) -> str:
    """Return the submitted code exactly as sent (never trimmed); raises RequestValidationError."""
    errors = FieldErrors()
    source = require_object(body, errors)
    code = read_string(
        source, "code", "", errors, required=True, max_length=MAX_SUBMITTED_CODE_LENGTH
    )
    errors.raise_if_any()
    assert code is not None
    return code
