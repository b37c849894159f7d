"""Rate limit rules: the recipient key, the rejection, and when to try again."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from budstikke.domain.statuses import Channel
from budstikke.errors import BudstikkeError

RECIPIENT_WINDOW_SHORT = timedelta(minutes=10)
RECIPIENT_WINDOW_DAY = timedelta(days=1)
# Named in metrics and logs.
CREATOR_LIMIT = "creator"
RECIPIENT_LIMIT = "recipient"
OTP_RECIPIENT_LIMIT = "otp_recipient"
OTP_FAILED_CHECKS_LIMIT = "otp_failed_checks"
OTP_COOLDOWN_LIMIT = "otp_cooldown"
OTP_LIMITS = frozenset((OTP_RECIPIENT_LIMIT, OTP_FAILED_CHECKS_LIMIT, OTP_COOLDOWN_LIMIT))


class RateLimitExceededError(BudstikkeError):
    """A rate limit has no room for the order; the API responds 429 with Retry-After.

    `limit` is "creator" or "recipient". `retry_after_s` is whole seconds,
    at least 1, after which the same request can succeed if nothing else
    used the room meanwhile.
    """

    def __init__(self, limit: str, retry_after_s: int, detail: str) -> None:
        super().__init__(detail)
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.detail = detail


def recipient_key(channel: Channel, recipient: str) -> str:
    """Return the form under which messages to one recipient are counted.

    Phone numbers are stored in E.164 already. Email addresses are
    lower-cased, so that changing the case of an address does not make a
    new recipient. The domain ignores case by RFC 5321, and most mailbox
    providers ignore it in the local part too.
    """
    return recipient if channel is Channel.SMS else recipient.lower()


def whole_seconds(seconds: float) -> int:
    """Round a wait up to whole seconds for Retry-After, at least 1."""
    return max(1, math.ceil(seconds - 1e-9))


def bucket_retry_after_s(tokens: float, rate_per_s: float) -> int:
    """Return the seconds until a bucket with `tokens` (below 1) refills to one token."""
    return whole_seconds((1.0 - tokens) / rate_per_s)


def window_retry_after_s(
    newest_first: Sequence[datetime], limit: int, window: timedelta, now: datetime
) -> int | None:
    """Return the seconds until one more message fits in the window, or None if one fits now.

    `newest_first` contains the times of earlier messages to the recipient,
    newest first, at least the `limit` newest of them. One more fits while
    fewer than `limit` of them lie within `window` before `now`; otherwise
    the limit-th newest must leave the window first.
    """
    if limit <= 0:
        return None
    in_window = [moment for moment in newest_first if moment > now - window]
    if len(in_window) < limit:
        return None
    leaves_at = in_window[limit - 1] + window
    return whole_seconds((leaves_at - now).total_seconds())
