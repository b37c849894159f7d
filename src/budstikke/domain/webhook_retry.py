"""The webhook retry policy: from a failed attempt to "retry at T" or "give up".

An event is retried for RETRY_WINDOW_S after its first attempt; an endpoint
that fails without a single success for ENDPOINT_DISABLE_AFTER_S is disabled.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

FIRST_RETRY_DELAY_S = 5.0
MAX_RETRY_DELAY_S = 3600.0
RETRY_WINDOW_S = 24 * 3600.0
ENDPOINT_DISABLE_AFTER_S = 24 * 3600.0
# A receiver's Retry-After is followed up to this many seconds.
MAX_RETRY_AFTER_S = 3600.0
# After this many failures in a row an endpoint is paused: no request goes to
# it until the pause ends, so a dead receiver does not hold every delivery
# slot with requests that wait for their timeout.
PAUSE_AFTER_FAILURES = 5
MIN_PAUSE_S = 5.0
MAX_PAUSE_S = 3600.0


def next_attempt_at(
    *,
    attempts: int,
    first_attempt_at: datetime,
    now: datetime,
    retry_after_s: float | None = None,
    jitter: random.Random | None = None,
) -> datetime | None:
    """Return when to try an event again after its `attempts`-th failure, or None to give up.

    The delay is 5 s doubled per attempt up to 1 h, with up to half of it
    taken off at random so that events that failed together do not retry in
    step; a receiver's Retry-After makes it longer. The last retry is moved
    to the end of the retry window, and a failure at or after that end gives
    up.
    """
    deadline = first_attempt_at + timedelta(seconds=RETRY_WINDOW_S)
    if now >= deadline:
        return None
    delay_s = min(FIRST_RETRY_DELAY_S * 2 ** max(attempts - 1, 0), MAX_RETRY_DELAY_S)
    delay_s *= 1 - 0.5 * (jitter or random).random()
    if retry_after_s is not None:
        delay_s = max(delay_s, min(retry_after_s, MAX_RETRY_AFTER_S))
    return min(now + timedelta(seconds=delay_s), deadline)


def endpoint_pause_until(
    *, consecutive_failures: int, failing_since: datetime, now: datetime
) -> datetime | None:
    """Return until when an endpoint gets no requests, or None when it is not paused.

    The pause lasts as long as the endpoint has been failing (5 s to 1 h), so
    the probes of a dead receiver grow about twice as far apart each time.
    """
    if consecutive_failures < PAUSE_AFTER_FAILURES:
        return None
    failing_s = (now - failing_since).total_seconds()
    return now + timedelta(seconds=min(max(failing_s, MIN_PAUSE_S), MAX_PAUSE_S))


def should_disable_endpoint(*, failing_since: datetime, now: datetime) -> bool:
    """Tell whether an endpoint has failed long enough, without a success, to be disabled."""
    return now - failing_since >= timedelta(seconds=ENDPOINT_DISABLE_AFTER_S)
