"""A creator's limits, and the content rules of instant orders that depend on them.

The operator sets limits per creator (`budstikke limits set`); every field
a creator has not set comes from the BUDSTIKKE_* defaults. A broken content
rule gets 400 and a used-up rate limit 429, so a client can tell a message
that will never be accepted from one that may be accepted later.
"""

from __future__ import annotations

from dataclasses import dataclass

from budstikke.domain.order_requests import InstantEmailOrder, InstantSmsOrder
from budstikke.domain.regular_orders import RegularOrderRequest, RegularSms
from budstikke.domain.request_fields import FieldErrors, join_path
from budstikke.domain.sensitive_content import SensitiveMatch, find_sensitive_content
from budstikke.domain.sms_countries import (
    DEFAULT_SMS_COUNTRIES,
    SmsCountries,
    calling_code_of,
    parse_sms_countries,
    regions_of,
)

DEFAULT_RATE_PER_S = 100.0
DEFAULT_BURST = 200
DEFAULT_PER_RECIPIENT_10MIN = 5
DEFAULT_PER_RECIPIENT_DAY = 20


@dataclass(frozen=True, slots=True)
class CreatorLimits:
    # Token bucket of new orders: refill rate per second and size; rate 0 is no limit.
    rate_per_s: float
    burst: int
    # Instant messages to one recipient in any 10 minutes and any 24 hours; 0 is no limit.
    per_recipient_10min: int
    per_recipient_day: int
    sms_countries: SmsCountries
    # Reject instant messages that carry identity or card numbers.
    sensitive_guard: bool


DEFAULT_LIMITS = CreatorLimits(
    rate_per_s=DEFAULT_RATE_PER_S,
    burst=DEFAULT_BURST,
    per_recipient_10min=DEFAULT_PER_RECIPIENT_10MIN,
    per_recipient_day=DEFAULT_PER_RECIPIENT_DAY,
    sms_countries=parse_sms_countries(DEFAULT_SMS_COUNTRIES),
    sensitive_guard=True,
)


def check_instant_sms_order(order: InstantSmsOrder, limits: CreatorLimits) -> None:
    """Apply the creator's country allow-list and sensitive content guard.

    Raises RequestValidationError naming each field that breaks a rule.
    """
    errors = FieldErrors()
    path = order.recipient_path
    check_sms_country(order.phone_number, join_path(path, "phoneNumber"), limits, errors)
    if limits.sensitive_guard:
        check_sensitive(order.body, join_path(path, "smsSettings.body"), "body", errors)
    errors.raise_if_any()


def check_regular_order(request: RegularOrderRequest, limits: CreatorLimits) -> None:
    """Apply the creator's country allow-list to the SMS of an order and of its reminders.

    The sensitive content guard is for instant messages only.
    """
    errors = FieldErrors()
    messages = [("", request.main)]
    messages += [(f"reminders[{index}]", item) for index, item in enumerate(request.reminders)]
    for parent, message in messages:
        if isinstance(message.recipient, RegularSms):
            path = join_path(parent, "recipient.recipientSms.phoneNumber")
            check_sms_country(message.recipient.phone_number, path, limits, errors)
    errors.raise_if_any()


def check_sms_country(
    phone_number: str, path: str, limits: CreatorLimits, errors: FieldErrors
) -> None:
    calling_code = calling_code_of(phone_number)
    if not limits.sms_countries.allows(calling_code):
        errors.add(
            path,
            f"phoneNumber is in country code +{calling_code} ({regions_of(calling_code)}), and "
            f"this creator may send SMS only to {limits.sms_countries.describe()}. The operator "
            "can allow more with `budstikke limits set --sms-countries`.",
        )


def check_instant_email_order(order: InstantEmailOrder, limits: CreatorLimits) -> None:
    """Apply the creator's sensitive content guard to the subject and the body."""
    if not limits.sensitive_guard:
        return
    errors = FieldErrors()
    settings_path = "recipientEmail.emailSettings"
    check_sensitive(order.subject, join_path(settings_path, "subject"), "subject", errors)
    check_sensitive(order.body, join_path(settings_path, "body"), "body", errors)
    errors.raise_if_any()


def check_sensitive(text: str, path: str, name: str, errors: FieldErrors) -> None:
    match = find_sensitive_content(text)
    if match is not None:
        errors.add(path, sensitive_content_message(name, match))


def sensitive_content_message(name: str, match: SensitiveMatch) -> str:
    # The message gives the position, never the digits, so that it can be logged.
    return (
        f"{name} contains what looks like {match.description} at characters "
        f"{match.start}-{match.end} (rule {match.rule.value}); instant messages must not carry "
        "it. Remove the number, or ask the operator to turn the sensitive content guard off "
        "for this creator."
    )
