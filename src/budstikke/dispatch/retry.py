"""The retry policy: from a failed hand-off to "retry at T" or "give up with status S"."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from budstikke.domain.statuses import NotificationStatus
from budstikke.errors import HandOffError

FIRST_RETRY_DELAY_S = 1.0
MAX_RETRY_DELAY_S = 60.0


@dataclass(frozen=True, slots=True)
class RetryAt:
    when: datetime


@dataclass(frozen=True, slots=True)
class GiveUp:
    status: NotificationStatus


RetryDecision = RetryAt | GiveUp


def decide_retry(
    error: HandOffError,
    *,
    attempts: int,
    now: datetime,
    expires_at: datetime,
    jitter: random.Random | None = None,
) -> RetryDecision:
    """Decide what follows a failed hand-off.

    A permanent failure gives up with its status. A transient one is retried
    after an exponential backoff (1 s, 2 s, 4 s ... capped at 60 s, with up to
    half of it taken off at random so that many failures do not retry in step),
    or later if the provider asked for a pause. A retry that would fall after
    the TTL is scheduled at the TTL instead, where the expiry sweep ends it as
    *_Failed_TTL, so the status changes at the moment the TTL really ends.
    """
    if error.failure_status is not None:
        return GiveUp(error.failure_status)
    delay_s = min(FIRST_RETRY_DELAY_S * 2 ** max(attempts - 1, 0), MAX_RETRY_DELAY_S)
    delay_s *= 1 - 0.5 * (jitter or random).random()
    if error.retry_after_s is not None:
        delay_s = max(delay_s, error.retry_after_s)
    return RetryAt(min(now + timedelta(seconds=delay_s), expires_at))
