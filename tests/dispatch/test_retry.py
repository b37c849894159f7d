"""The retry policy as a table of cases."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from budstikke.dispatch.retry import GiveUp, RetryAt, decide_retry
from budstikke.domain.statuses import NotificationStatus
from budstikke.errors import HandOffError

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


class NoJitter(random.Random):
    def random(self) -> float:
        return 0.0


@pytest.mark.parametrize(
    ("attempts", "delay_s"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (20, 60.0)],
)
def test_transient_backoff_doubles_to_cap(attempts: int, delay_s: float) -> None:
    decision = decide_retry(
        HandOffError("421"),
        attempts=attempts,
        now=NOW,
        expires_at=NOW + timedelta(hours=1),
        jitter=NoJitter(),
    )
    assert decision == RetryAt(NOW + timedelta(seconds=delay_s))


def test_jitter_takes_off_at_most_half() -> None:
    delays = {
        decide_retry(
            HandOffError("down"),
            attempts=4,
            now=NOW,
            expires_at=NOW + timedelta(hours=1),
            jitter=random.Random(seed),
        )
        for seed in range(50)
    }
    seconds = [(d.when - NOW).total_seconds() for d in delays if isinstance(d, RetryAt)]
    assert len(seconds) == 50
    assert all(4.0 <= value <= 8.0 for value in seconds)


def test_permanent_failure_gives_up_with_its_status() -> None:
    error = HandOffError("550", failure_status=NotificationStatus.EMAIL_FAILED_BOUNCED)
    decision = decide_retry(error, attempts=1, now=NOW, expires_at=NOW + timedelta(minutes=5))
    assert decision == GiveUp(NotificationStatus.EMAIL_FAILED_BOUNCED)


def test_retry_after_ttl_is_moved_to_ttl() -> None:
    expires_at = NOW + timedelta(seconds=3)
    decision = decide_retry(
        HandOffError("down"), attempts=5, now=NOW, expires_at=expires_at, jitter=NoJitter()
    )
    assert decision == RetryAt(expires_at)


def test_provider_pause_is_respected() -> None:
    error = HandOffError("throttled", retry_after_s=10.0)
    decision = decide_retry(
        error, attempts=1, now=NOW, expires_at=NOW + timedelta(hours=1), jitter=NoJitter()
    )
    assert decision == RetryAt(NOW + timedelta(seconds=10))
