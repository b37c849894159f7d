"""Validation of regular (scheduled) orders: `POST /notifications/api/v1/future/orders`.

The body follows Altinn Notifications' order-with-reminders request: one
`recipient` with exactly one of `recipientSms` / `recipientEmail`, an
optional `requestedSendTime` and `conditionEndpoint`, and `reminders`, each
with its own recipient and either `delayDays` or `requestedSendTime`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from budstikke.domain.date_times import InvalidDateTimeError, parse_date_time
from budstikke.domain.order_requests import (
    read_content_type,
    read_email_address,
    read_email_body,
    read_order_header,
    read_phone_number,
    read_sender,
    read_sms_body,
    read_subject,
    require_object,
)
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
from budstikke.domain.webhook_requests import read_callback_url
from budstikke.domain.webhook_urls import (
    AddressPolicy,
    describe_host,
    find_rejected_host_address,
)

# A send time this far in the past still counts as "now": the client's clock
# and the request's travel time may put "now" slightly behind ours.
SEND_TIME_GRACE_S = 60
# The latest requestedSendTime accepted, in days from now. A reminder's
# delayDays counts from the order's send time, so a reminder can be due up
# to MAX_SEND_AHEAD_DAYS + MAX_DELAY_DAYS days ahead. The bound also keeps
# every stored time far from datetime's year 9999 limit.
MAX_SEND_AHEAD_DAYS = 365
MAX_REMINDERS = 20
MAX_DELAY_DAYS = 365
MAX_URL_LENGTH = 2000
# Recipient kinds of Altinn's API that need a look-up in a national register.
REGISTRY_RECIPIENTS = ("recipientPerson", "recipientOrganization", "recipientExternalIdentity")
SENDING_TIME_POLICIES = {"anytime": "Anytime", "daytime": "Daytime", "1": "Anytime", "2": "Daytime"}


@dataclass(frozen=True, slots=True)
class RegularSms:
    phone_number: str  # E.164
    sender: str | None  # None: the configured default
    body: str
    daytime_only: bool


@dataclass(frozen=True, slots=True)
class RegularEmail:
    email_address: str
    sender: str | None  # None: the configured default
    subject: str
    body: str
    content_type: Literal["Plain", "Html"]


@dataclass(frozen=True, slots=True)
class ScheduledMessage:
    """The main order or one reminder: one recipient at one send time."""

    senders_reference: str | None
    send_time: datetime  # UTC
    condition_endpoint: str | None
    recipient: RegularSms | RegularEmail


@dataclass(frozen=True, slots=True)
class RegularOrderRequest:
    idempotency_id: str
    main: ScheduledMessage
    reminders: tuple[ScheduledMessage, ...]
    # Extension: a URL under one of the creator's webhook endpoints that gets the events
    # of the order and its reminders.
    callback_url: str | None = None


def parse_regular_order(
    body: Any, *, now: datetime, max_segments: int, address_policy: AddressPolicy
) -> RegularOrderRequest:
    """Validate a regular order; raises RequestValidationError listing every invalid field."""
    errors = FieldErrors()
    source = require_object(body, errors)
    idempotency_id, senders_reference = read_order_header(source, errors)
    callback_url = read_callback_url(source, errors)
    rules = ReadRules(now, max_segments, address_policy)
    send_time = read_send_time(source, "", errors, now=now, required=False) or now
    endpoint = read_condition_endpoint(source, "", errors, rules)
    recipient = read_recipient(source, "", errors, rules)
    reminders = read_reminders(source, errors, rules, main_send_time=send_time)
    errors.raise_if_any()
    assert idempotency_id is not None and recipient is not None and reminders is not None
    main = ScheduledMessage(senders_reference, send_time.astimezone(UTC), endpoint, recipient)
    return RegularOrderRequest(idempotency_id, main, reminders, callback_url)


@dataclass(frozen=True, slots=True)
class ReadRules:
    now: datetime
    max_segments: int
    address_policy: AddressPolicy


def read_send_time(
    source: JsonObject, parent: str, errors: FieldErrors, *, now: datetime, required: bool
) -> datetime | None:
    path = join_path(parent, "requestedSendTime")
    value = source.get("requestedsendtime")
    if value is None:
        if required:
            errors.add(path, "requestedSendTime is required.")
        return None
    example = "e.g. 2026-12-06T10:00:00+01:00 or 2026-12-06T09:00:00Z"
    if not isinstance(value, str):
        errors.add(path, f"requestedSendTime must be a date-time string; got {json_type(value)}.")
        return None
    try:
        moment = parse_date_time(value)
    except InvalidDateTimeError as error:
        errors.add(
            path,
            f"requestedSendTime must be an RFC 3339 date-time with a time-zone offset, "
            f"{example}; got {describe(value)}: {error}.",
        )
        return None
    # Aware datetimes compare by their UTC instant without building a UTC
    # copy, so a time near year 9999 with a negative offset cannot overflow here.
    if moment < now - timedelta(seconds=SEND_TIME_GRACE_S):
        errors.add(
            path,
            f"requestedSendTime must not be in the past; got {describe(value)}, "
            f"and it is now {now.astimezone(UTC).isoformat(timespec='seconds')}.",
        )
        return None
    latest = now + timedelta(days=MAX_SEND_AHEAD_DAYS)
    if moment > latest:
        errors.add(
            path,
            f"requestedSendTime must be at most {MAX_SEND_AHEAD_DAYS} days ahead, no later "
            f"than {latest.astimezone(UTC).isoformat(timespec='seconds')}; got {describe(value)}.",
        )
        return None
    return max(moment.astimezone(UTC), now.astimezone(UTC))


def read_condition_endpoint(
    source: JsonObject, parent: str, errors: FieldErrors, rules: ReadRules
) -> str | None:
    path = join_path(parent, "conditionEndpoint")
    raw = read_string(
        source, "conditionEndpoint", parent, errors, required=False, max_length=MAX_URL_LENGTH
    )
    if raw is None or not raw.strip():
        return None
    problem = describe_endpoint_problem(raw, rules.address_policy)
    if problem is not None:
        errors.add(path, problem)
        return None
    return raw


def describe_endpoint_problem(url: str, policy: AddressPolicy) -> str | None:
    """Return why a condition endpoint cannot be used, or None when it can.

    A host that resolves without DNS (an IP literal, a numeric IPv4 form
    such as 2130706433, or `localhost`) is checked against the address
    policy here. A DNS name is checked at each request, against the
    addresses it resolves to then.
    """
    if any(not character.isprintable() or character.isspace() for character in url):
        return "conditionEndpoint must not contain spaces or control characters."
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"conditionEndpoint is not a valid URL; got {describe(url)}."
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return (
            f"conditionEndpoint must be an absolute http:// or https:// URL, e.g. "
            f"https://example.com/send?case=1; got {describe(url)}."
        )
    del port
    host = parts.hostname.lower().rstrip(".")
    rejected = find_rejected_host_address(host, policy)
    if rejected is None:
        return None
    address, reason = rejected
    return (
        f"conditionEndpoint host {describe_host(host, address)} is {reason}, which this "
        "service does not call. "
        "Use a public address, or ask the operator to add its network to "
        "BUDSTIKKE_CONDITION_ALLOWED_NETWORKS."
    )


def read_recipient(
    source: JsonObject, parent: str, errors: FieldErrors, rules: ReadRules
) -> RegularSms | RegularEmail | None:
    recipient = read_object(source, "recipient", parent, errors, required=True)
    if recipient is None:
        return None
    path = join_path(parent, "recipient")
    for name in REGISTRY_RECIPIENTS:
        if recipient.get(name.lower()) is not None:
            errors.add(
                join_path(path, name),
                f"{name} is not supported: budstikke sends only to phone numbers and email "
                "addresses, and does not look people or organisations up in a national "
                "register. Use recipientSms or recipientEmail.",
            )
    given = [
        name
        for name in ("recipientSms", "recipientEmail")
        if recipient.get(name.lower()) is not None
    ]
    if len(given) != 1:
        if not any(recipient.get(name.lower()) is not None for name in REGISTRY_RECIPIENTS):
            found = " and ".join(given) if given else "neither"
            errors.add(
                path,
                f"recipient must contain exactly one of recipientSms or "
                f"recipientEmail; got {found}.",
            )
        return None
    if given == ["recipientSms"]:
        return read_sms_recipient(recipient, path, errors, rules)
    return read_email_recipient(recipient, path, errors)


def read_sms_recipient(
    recipient: JsonObject, parent: str, errors: FieldErrors, rules: ReadRules
) -> RegularSms | None:
    sms = read_object(recipient, "recipientSms", parent, errors, required=True)
    if sms is None:
        return None
    path = join_path(parent, "recipientSms")
    phone_number = read_phone_number(sms, path, errors)
    settings = read_object(sms, "smsSettings", path, errors, required=True)
    if settings is None:
        return None
    settings_path = join_path(path, "smsSettings")
    sender = read_sender(settings, settings_path, errors)
    text = read_sms_body(settings, settings_path, errors, max_segments=rules.max_segments)
    # Altinn's default for SMS is Daytime, so an Altinn client that names no policy gets it.
    policy = read_policy(settings, settings_path, errors, default="Daytime")
    if phone_number is None or text is None or policy is None:
        return None
    return RegularSms(phone_number, sender, text, daytime_only=policy == "Daytime")


def read_email_recipient(
    recipient: JsonObject, parent: str, errors: FieldErrors
) -> RegularEmail | None:
    email = read_object(recipient, "recipientEmail", parent, errors, required=True)
    if email is None:
        return None
    path = join_path(parent, "recipientEmail")
    address = read_email_address(email, path, "emailAddress", errors, required=True)
    settings = read_object(email, "emailSettings", path, errors, required=True)
    if settings is None:
        return None
    settings_path = join_path(path, "emailSettings")
    sender = read_email_address(
        settings, settings_path, "senderEmailAddress", errors, required=False
    )
    subject = read_subject(settings, settings_path, errors)
    text = read_email_body(settings, settings_path, errors)
    content_type = read_content_type(settings, settings_path, errors)
    policy = read_policy(settings, settings_path, errors, default="Anytime")
    if policy == "Daytime":
        errors.add(
            join_path(settings_path, "sendingTimePolicy"),
            "sendingTimePolicy of an email must be Anytime; Daytime applies to SMS only.",
        )
        return None
    if address is None or subject is None or text is None or content_type is None:
        return None
    return RegularEmail(address, sender, subject, text, content_type)


def read_policy(
    settings: JsonObject, parent: str, errors: FieldErrors, *, default: str
) -> str | None:
    value = settings.get("sendingtimepolicy")
    if value is None:
        return default
    key = str(value).lower() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if key in SENDING_TIME_POLICIES:
        return SENDING_TIME_POLICIES[key]
    errors.add(
        join_path(parent, "sendingTimePolicy"),
        f"sendingTimePolicy must be Anytime or Daytime (or 1 or 2); got {describe(value)}.",
    )
    return None


def read_reminders(
    source: JsonObject, errors: FieldErrors, rules: ReadRules, *, main_send_time: datetime
) -> tuple[ScheduledMessage, ...] | None:
    value = source.get("reminders")
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.add("reminders", f"reminders must be an array; got {json_type(value)}.")
        return None
    if len(value) > MAX_REMINDERS:
        errors.add(
            "reminders", f"reminders may hold at most {MAX_REMINDERS} items; got {len(value)}."
        )
        return None
    reminders = []
    for index, item in enumerate(value):
        reminder = read_reminder(item, f"reminders[{index}]", errors, rules, main_send_time)
        if reminder is not None:
            reminders.append(reminder)
    return tuple(reminders) if len(reminders) == len(value) else None


def read_reminder(
    item: Any, path: str, errors: FieldErrors, rules: ReadRules, main_send_time: datetime
) -> ScheduledMessage | None:
    if not isinstance(item, dict):
        errors.add(path, f"each reminder must be a JSON object; got {json_type(item)}.")
        return None
    reminder = fold_keys(item)
    senders_reference = read_string(
        reminder, "sendersReference", path, errors, required=False, max_length=200, allow_blank=True
    )
    send_time = read_reminder_time(reminder, path, errors, rules, main_send_time)
    endpoint = read_condition_endpoint(reminder, path, errors, rules)
    recipient = read_recipient(reminder, path, errors, rules)
    if send_time is None or recipient is None:
        return None
    return ScheduledMessage(senders_reference, send_time, endpoint, recipient)


def read_reminder_time(
    reminder: JsonObject, path: str, errors: FieldErrors, rules: ReadRules, main_send_time: datetime
) -> datetime | None:
    has_delay = reminder.get("delaydays") is not None
    has_time = reminder.get("requestedsendtime") is not None
    if has_delay == has_time:
        given = "both" if has_delay else "neither"
        errors.add(
            path, f"a reminder needs exactly one of delayDays or requestedSendTime; got {given}."
        )
        return None
    if has_time:
        send_time = read_send_time(reminder, path, errors, now=rules.now, required=True)
        return reject_reminder_before_main(send_time, path, errors, main_send_time)
    days = read_integer(
        reminder, "delayDays", path, errors, required=True, minimum=1, maximum=MAX_DELAY_DAYS
    )
    if days is None:
        return None
    # Altinn counts delayDays in 24-hour steps from the order's requestedSendTime.
    return main_send_time.astimezone(UTC) + timedelta(days=days)


def reject_reminder_before_main(
    send_time: datetime | None, path: str, errors: FieldErrors, main_send_time: datetime
) -> datetime | None:
    """Return the reminder's send time, or None with an error when it is before the order's.

    A reminder due before the main message would reach the recipient first.
    """
    if send_time is None or send_time >= main_send_time:
        return send_time
    errors.add(
        join_path(path, "requestedSendTime"),
        f"{path} has requestedSendTime {format_utc(send_time)}, which is before the order's "
        f"requestedSendTime {format_utc(main_send_time)}. Give the reminder a time at or after "
        "the order's, or use delayDays.",
    )
    return None


def format_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
