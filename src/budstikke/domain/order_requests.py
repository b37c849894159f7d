"""Validation of instant order requests (SMS, email, and the deprecated nested SMS form)."""

from __future__ import annotations

from dataclasses import dataclass
from email.header import decode_header
from typing import Any, Literal, cast

from budstikke.domain.email_address import InvalidEmailAddressError, validate_email_address
from budstikke.domain.otp import ORDER_KEY_PREFIX
from budstikke.domain.phone import InvalidPhoneNumberError, parse_sms_recipient
from budstikke.domain.request_fields import (
    FieldErrors,
    JsonObject,
    describe,
    fold_keys,
    join_path,
    json_type,
    read_integer,
    read_object,
    read_string,
)
from budstikke.domain.sender import TON_INTERNATIONAL, InvalidSenderError, parse_sms_sender
from budstikke.domain.sms_text import count_segments
from budstikke.domain.webhook_requests import read_callback_url

MAX_ID_LENGTH = 200
MIN_TTL_S = 60
MAX_TTL_S = 172_800  # 48 hours
MAX_SUBJECT_LENGTH = 998  # the longest line RFC 5322 allows
MAX_EMAIL_BODY_BYTES = 1024 * 1024
CONTENT_TYPES = {"plain": "Plain", "html": "Html", "0": "Plain", "1": "Html"}


@dataclass(frozen=True, slots=True)
class InstantSmsOrder:
    idempotency_id: str
    senders_reference: str | None
    phone_number: str  # E.164
    ttl_s: int
    sender: str | None  # None: use the configured default
    body: str
    # Extension: a URL under one of the creator's webhook endpoints that gets this order's events.
    callback_url: str | None = None
    # JSON path of the recipient object, for errors found after parsing.
    recipient_path: str = "recipientSms"


@dataclass(frozen=True, slots=True)
class InstantEmailOrder:
    idempotency_id: str
    senders_reference: str | None
    email_address: str
    ttl_s: int
    sender: str | None  # None: use the configured default
    subject: str
    body: str
    content_type: Literal["Plain", "Html"]
    # Extension: a URL under one of the creator's webhook endpoints that gets this order's events.
    callback_url: str | None = None


def require_object(body: Any, errors: FieldErrors) -> JsonObject:
    if not isinstance(body, dict):
        errors.add("$", f"The request body must be a JSON object; got {json_type(body)}.")
        errors.raise_if_any()
    return fold_keys(body)


def read_order_header(source: JsonObject, errors: FieldErrors) -> tuple[str | None, str | None]:
    idempotency_id = read_string(
        source, "idempotencyId", "", errors, required=True, max_length=MAX_ID_LENGTH
    )
    if idempotency_id is not None and idempotency_id.startswith(ORDER_KEY_PREFIX):
        errors.add(
            "idempotencyId",
            f"idempotencyId must not start with {ORDER_KEY_PREFIX!r}, which is reserved for the "
            f"orders that carry OTP codes; got {describe(idempotency_id)}. Use another prefix.",
        )
        idempotency_id = None
    senders_reference = read_string(
        source,
        "sendersReference",
        "",
        errors,
        required=False,
        max_length=MAX_ID_LENGTH,
        allow_blank=True,
    )
    return idempotency_id, senders_reference


def parse_instant_sms_order(
    body: Any, *, max_segments: int, nested: bool = False
) -> InstantSmsOrder:
    """Validate an instant SMS order; `nested` reads the deprecated `recipient.recipientSms` form.

    Raises RequestValidationError listing every invalid field.
    """
    errors = FieldErrors()
    source = require_object(body, errors)
    idempotency_id, senders_reference = read_order_header(source, errors)
    callback_url = read_callback_url(source, errors)
    parent, container = "", cast(JsonObject | None, source)
    if nested:
        recipient = read_object(source, "recipient", "", errors, required=True)
        parent, container = "recipient", recipient
    # A missing `recipient` is reported once, under its own path.
    sms = None
    if container is not None:
        sms = read_object(container, "recipientSms", parent, errors, required=True)
    sms_path = join_path(parent, "recipientSms")
    phone_number = ttl_s = settings = None
    sender: str | None = None
    text: str | None = None
    if sms is not None:
        phone_number = read_phone_number(sms, sms_path, errors)
        ttl_s = read_integer(
            sms,
            "timeToLiveInSeconds",
            sms_path,
            errors,
            required=True,
            minimum=MIN_TTL_S,
            maximum=MAX_TTL_S,
        )
        settings = read_object(sms, "smsSettings", sms_path, errors, required=True)
    if settings is not None:
        settings_path = join_path(sms_path, "smsSettings")
        sender = read_sender(settings, settings_path, errors)
        text = read_sms_body(settings, settings_path, errors, max_segments=max_segments)
    errors.raise_if_any()
    assert idempotency_id is not None and phone_number is not None
    assert ttl_s is not None and text is not None
    return InstantSmsOrder(
        idempotency_id=idempotency_id,
        senders_reference=senders_reference,
        phone_number=phone_number,
        ttl_s=ttl_s,
        sender=sender,
        body=text,
        callback_url=callback_url,
        recipient_path=sms_path,
    )


def read_phone_number(sms: JsonObject, parent: str, errors: FieldErrors) -> str | None:
    raw = read_string(sms, "phoneNumber", parent, errors, required=True, max_length=64)
    if raw is None:
        return None
    try:
        return parse_sms_recipient(raw)
    except InvalidPhoneNumberError as error:
        errors.add(join_path(parent, "phoneNumber"), str(error))
        return None


def read_sender(settings: JsonObject, parent: str, errors: FieldErrors) -> str | None:
    raw = read_string(settings, "sender", parent, errors, required=False, allow_blank=True)
    if raw is None or not raw.strip():
        return None  # absent, null and blank all mean the configured default
    try:
        sender = parse_sms_sender(raw)
    except InvalidSenderError as error:
        errors.add(join_path(parent, "sender"), str(error))
        return None
    # A short number is international only by its prefix, so "0047" is kept as
    # "+47": stored as "47" the SMPP client would read it as a short code.
    if sender.ton == TON_INTERNATIONAL and raw.startswith(("+", "00")):
        return f"+{sender.value}"
    return sender.value


def read_sms_body(
    settings: JsonObject, parent: str, errors: FieldErrors, *, max_segments: int
) -> str | None:
    text = read_string(settings, "body", parent, errors, required=True)
    if text is None:
        return None
    try:
        segments = count_segments(text)
    except ValueError as error:
        errors.add(join_path(parent, "body"), f"body cannot be encoded as SMS text: {error}")
        return None
    if segments > max_segments:
        errors.add(
            join_path(parent, "body"),
            f"body needs {segments} SMS segments; at most {max_segments} are allowed. "
            "Shorten the text (a segment holds 153 GSM characters or 67 UCS-2 characters "
            "when the message is split).",
        )
        return None
    return text


def parse_instant_email_order(body: Any) -> InstantEmailOrder:
    """Validate an instant email order; raises RequestValidationError naming every bad field."""
    errors = FieldErrors()
    source = require_object(body, errors)
    idempotency_id, senders_reference = read_order_header(source, errors)
    callback_url = read_callback_url(source, errors)
    email = read_object(source, "recipientEmail", "", errors, required=True)
    address = ttl_s = settings = None
    sender = subject = text = None
    content_type: Literal["Plain", "Html"] | None = "Plain"
    if email is not None:
        address = read_email_address(email, "recipientEmail", "emailAddress", errors, required=True)
        ttl_s = read_integer(
            email,
            "timeToLiveInSeconds",
            "recipientEmail",
            errors,
            required=False,
            minimum=MIN_TTL_S,
            maximum=MAX_TTL_S,
        )
        settings = read_object(email, "emailSettings", "recipientEmail", errors, required=True)
    if settings is not None:
        path = "recipientEmail.emailSettings"
        sender = read_email_address(settings, path, "senderEmailAddress", errors, required=False)
        subject = read_subject(settings, path, errors)
        text = read_email_body(settings, path, errors)
        content_type = read_content_type(settings, path, errors)
    errors.raise_if_any()
    assert idempotency_id is not None and address is not None
    assert subject is not None and text is not None and content_type is not None
    return InstantEmailOrder(
        idempotency_id=idempotency_id,
        senders_reference=senders_reference,
        email_address=address,
        ttl_s=MAX_TTL_S if ttl_s is None else ttl_s,
        sender=sender,
        subject=subject,
        body=text,
        content_type=content_type,
        callback_url=callback_url,
    )


def read_email_address(
    source: JsonObject, parent: str, name: str, errors: FieldErrors, *, required: bool
) -> str | None:
    # A given address is checked as sent: "" and padded addresses are invalid.
    raw = read_string(
        source, name, parent, errors, required=required, max_length=320, allow_blank=not required
    )
    if raw is None:
        return None
    try:
        return validate_email_address(raw)
    except InvalidEmailAddressError as error:
        errors.add(join_path(parent, name), str(error))
        return None


def read_subject(settings: JsonObject, parent: str, errors: FieldErrors) -> str | None:
    subject = read_string(
        settings, "subject", parent, errors, required=True, max_length=MAX_SUBJECT_LENGTH
    )
    if subject is None:
        return None
    bad = sorted({f"U+{ord(c):04X}" for c in subject if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0})
    if bad or "\u2028" in subject or "\u2029" in subject:
        bad += ["U+2028"] if "\u2028" in subject else []
        bad += ["U+2029"] if "\u2029" in subject else []
        errors.add(
            join_path(parent, "subject"),
            f"subject must not contain line breaks or other control characters; found "
            f"{', '.join(bad)}. Put the subject on one line.",
        )
        return None
    if has_hidden_line_break(subject):
        errors.add(
            join_path(parent, "subject"),
            "subject contains an RFC 2047 encoded word that decodes to a line break or other "
            "control character; send the subject as plain text on one line.",
        )
        return None
    return subject


def has_hidden_line_break(subject: str) -> bool:
    """Tell whether encoded words (=?charset?q?...?=) in the subject decode to control characters.

    A mail client decodes them, so such a subject would arrive as two lines.
    """
    if "=?" not in subject:
        return False
    try:
        parts = decode_header(subject)
    except (ValueError, LookupError):
        return True
    for data, charset in parts:
        if isinstance(data, str):
            continue
        try:
            text = data.decode(charset or "ascii", errors="replace")
        except LookupError:
            text = data.decode("latin-1")
        if any(ord(character) < 0x20 or 0x7F <= ord(character) < 0xA0 for character in text):
            return True
    return False


def read_email_body(settings: JsonObject, parent: str, errors: FieldErrors) -> str | None:
    text = read_string(settings, "body", parent, errors, required=True)
    if text is None:
        return None
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_EMAIL_BODY_BYTES:
        errors.add(
            join_path(parent, "body"),
            f"body must be at most {MAX_EMAIL_BODY_BYTES} bytes in UTF-8; got {size}.",
        )
        return None
    return text


def read_content_type(
    settings: JsonObject, parent: str, errors: FieldErrors
) -> Literal["Plain", "Html"] | None:
    value = settings.get("contenttype")
    if value is None:
        return "Plain"
    key = str(value).lower() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if key in CONTENT_TYPES:
        return "Html" if CONTENT_TYPES[key] == "Html" else "Plain"
    errors.add(
        join_path(parent, "contentType"),
        f"contentType must be Plain or Html (or 0 or 1); got {value!r}.",
    )
    return None
