"""Rate limit rules: recipient keys and the waits that Retry-After reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from budstikke.domain.rate_limits import (
    bucket_retry_after_s,
    recipient_key,
    whole_seconds,
    window_retry_after_s,
)
from budstikke.domain.statuses import Channel

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
TEN_MINUTES = timedelta(minutes=10)


def minutes_ago(*minutes: float) -> list[datetime]:
    return [NOW - timedelta(minutes=value) for value in minutes]


def test_email_key_is_lower_case() -> None:
    assert recipient_key(Channel.EMAIL, "Ola.Nordmann@Example.COM") == "ola.nordmann@example.com"


def test_phone_key_is_e164_as_stored() -> None:
    assert recipient_key(Channel.SMS, "+4799999999") == "+4799999999"


@pytest.mark.parametrize(
    ("seconds", "expected"), [(0.0, 1), (0.2, 1), (1.0, 1), (1.01, 2), (59.5, 60), (600, 600)]
)
def test_whole_seconds_rounds_up(seconds: float, expected: int) -> None:
    assert whole_seconds(seconds) == expected


@pytest.mark.parametrize(
    ("tokens", "rate", "expected"), [(0.0, 100, 1), (0.5, 0.25, 2), (-0.0, 0.1, 10)]
)
def test_bucket_wait(tokens: float, rate: float, expected: int) -> None:
    assert bucket_retry_after_s(tokens, rate) == expected


def test_window_with_room_gives_none() -> None:
    assert window_retry_after_s(minutes_ago(1, 2, 3, 4), 5, TEN_MINUTES, NOW) is None


def test_full_window_waits_for_limit_th_newest() -> None:
    # Five within the window: the fifth newest (9 minutes old) leaves in 60 s.
    sends = minutes_ago(1, 2, 3, 4, 9, 30)

    assert window_retry_after_s(sends, 5, TEN_MINUTES, NOW) == 60


def test_sends_outside_window_ignored() -> None:
    sends = minutes_ago(1, 2, 3, 4, 10, 11)

    assert window_retry_after_s(sends, 5, TEN_MINUTES, NOW) is None


def test_zero_limit_is_off() -> None:
    assert window_retry_after_s(minutes_ago(1, 2, 3), 0, TEN_MINUTES, NOW) is None
