"""The webhook retry policy, the endpoint pause and the 24-hour disable rule."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from budstikke.domain.webhook_retry import (
    endpoint_pause_until,
    next_attempt_at,
    should_disable_endpoint,
)

START = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


class NoJitter(random.Random):
    def random(self) -> float:
        return 0.0


class FullJitter(random.Random):
    def random(self) -> float:
        return 0.999999


@pytest.mark.parametrize(
    ("attempts", "delay_s"),
    [(1, 5), (2, 10), (3, 20), (4, 40), (10, 2560), (11, 3600), (30, 3600)],
)
def test_delay_doubles_up_to_an_hour(attempts: int, delay_s: float) -> None:
    retry_at = next_attempt_at(
        attempts=attempts, first_attempt_at=START, now=START, jitter=NoJitter()
    )

    assert retry_at == START + timedelta(seconds=delay_s)


def test_jitter_takes_off_at_most_half() -> None:
    retry_at = next_attempt_at(attempts=3, first_attempt_at=START, now=START, jitter=FullJitter())

    assert retry_at is not None
    assert START + timedelta(seconds=10) <= retry_at < START + timedelta(seconds=11)


def test_retry_after_lengthens_the_delay() -> None:
    retry_at = next_attempt_at(
        attempts=1, first_attempt_at=START, now=START, retry_after_s=120, jitter=NoJitter()
    )

    assert retry_at == START + timedelta(seconds=120)


def test_retry_after_is_capped_at_an_hour() -> None:
    retry_at = next_attempt_at(
        attempts=1, first_attempt_at=START, now=START, retry_after_s=10**6, jitter=NoJitter()
    )

    assert retry_at == START + timedelta(hours=1)


def test_last_retry_moves_to_the_window_end() -> None:
    now = START + timedelta(hours=23, minutes=50)

    retry_at = next_attempt_at(attempts=40, first_attempt_at=START, now=now, jitter=NoJitter())

    assert retry_at == START + timedelta(hours=24)


def test_gives_up_at_the_window_end() -> None:
    now = START + timedelta(hours=24)

    assert next_attempt_at(attempts=41, first_attempt_at=START, now=now) is None


def test_no_pause_before_five_failures() -> None:
    pause = endpoint_pause_until(consecutive_failures=4, failing_since=START, now=START)

    assert pause is None


@pytest.mark.parametrize(("failing_s", "pause_s"), [(0, 5), (60, 60), (1800, 1800), (7200, 3600)])
def test_pause_lasts_as_long_as_the_failures(failing_s: int, pause_s: int) -> None:
    now = START + timedelta(seconds=failing_s)

    pause = endpoint_pause_until(consecutive_failures=5, failing_since=START, now=now)

    assert pause == now + timedelta(seconds=pause_s)


def test_disable_after_a_day_of_failures() -> None:
    assert not should_disable_endpoint(failing_since=START, now=START + timedelta(hours=23))
    assert should_disable_endpoint(failing_since=START, now=START + timedelta(hours=24))
