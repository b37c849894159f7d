"""Rate limits in the database: the token bucket, the per-recipient windows, and concurrency."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from budstikke.domain.creator_limits import DEFAULT_LIMITS, CreatorLimits
from budstikke.domain.rate_limits import RateLimitExceededError
from budstikke.store.database import Database
from budstikke.store.rate_limits import prune_recipient_sends, take_order_allowance

START = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
BUCKET_ONLY = replace(DEFAULT_LIMITS, per_recipient_10min=0, per_recipient_day=0)
RECIPIENT_ONLY = replace(DEFAULT_LIMITS, rate_per_s=0)


async def take(
    database: Database,
    limits: CreatorLimits,
    now: datetime,
    *,
    creator: str = "ttd",
    recipient: str = "+4799999999",
) -> None:
    async with database.write() as connection:
        await take_order_allowance(
            connection, creator=creator, recipient_key=recipient, limits=limits, now=now
        )


async def granted(database: Database, limits: CreatorLimits, now: datetime, **kwargs: str) -> bool:
    try:
        await take(database, limits, now, **kwargs)
    except RateLimitExceededError:
        return False
    return True


async def test_bucket_allows_burst_then_rejects(database: Database) -> None:
    limits = replace(BUCKET_ONLY, rate_per_s=2, burst=5)

    results = [await granted(database, limits, START) for _ in range(6)]

    assert results == [True] * 5 + [False]


async def test_bucket_rejection_names_limit_and_wait(database: Database) -> None:
    limits = replace(BUCKET_ONLY, rate_per_s=0.25, burst=1)
    await take(database, limits, START)

    with pytest.raises(RateLimitExceededError) as caught:
        await take(database, limits, START + timedelta(seconds=1))

    assert caught.value.limit == "creator"
    assert caught.value.retry_after_s == 3
    assert "Retry after 3 s" in caught.value.detail


async def test_bucket_refills_at_rate(database: Database) -> None:
    limits = replace(BUCKET_ONLY, rate_per_s=2, burst=2)
    for _ in range(2):
        await take(database, limits, START)

    assert not await granted(database, limits, START + timedelta(seconds=0.4))
    assert await granted(database, limits, START + timedelta(seconds=0.5))
    assert not await granted(database, limits, START + timedelta(seconds=0.5))
    # Ten idle seconds refill only up to the burst.
    later = START + timedelta(seconds=10.5)
    assert [await granted(database, limits, later) for _ in range(3)] == [True, True, False]


async def test_rejected_request_spends_nothing(database: Database) -> None:
    limits = replace(BUCKET_ONLY, rate_per_s=1, burst=1)
    await take(database, limits, START)
    for _ in range(5):
        assert not await granted(database, limits, START + timedelta(seconds=0.5))

    assert await granted(database, limits, START + timedelta(seconds=1))


async def test_clock_behind_does_not_refill(database: Database) -> None:
    limits = replace(BUCKET_ONLY, rate_per_s=1, burst=1)
    await take(database, limits, START + timedelta(seconds=5))

    # A process whose clock is 5 s behind must not see 5 s of refill.
    assert not await granted(database, limits, START)
    assert not await granted(database, limits, START + timedelta(seconds=5.5))


async def test_buckets_are_per_creator(database: Database) -> None:
    limits = replace(BUCKET_ONLY, rate_per_s=1, burst=1)
    await take(database, limits, START, creator="ttd")

    assert await granted(database, limits, START, creator="digdir")
    assert not await granted(database, limits, START, creator="ttd")


async def test_recipient_ten_minute_window(database: Database) -> None:
    limits = replace(RECIPIENT_ONLY, per_recipient_10min=3, per_recipient_day=20)
    for minute in range(3):
        await take(database, limits, START + timedelta(minutes=minute))

    with pytest.raises(RateLimitExceededError) as caught:
        await take(database, limits, START + timedelta(minutes=5))

    assert caught.value.limit == "recipient"
    # The oldest of the three leaves the window at START + 10 min.
    assert caught.value.retry_after_s == 300
    assert "10 minutes" in caught.value.detail
    assert await granted(database, limits, START + timedelta(minutes=10, seconds=1))


async def test_recipient_day_window(database: Database) -> None:
    limits = replace(RECIPIENT_ONLY, per_recipient_10min=5, per_recipient_day=4)
    for hour in range(4):
        await take(database, limits, START + timedelta(hours=hour))

    with pytest.raises(RateLimitExceededError) as caught:
        await take(database, limits, START + timedelta(hours=5))

    assert caught.value.retry_after_s == 19 * 3600
    assert "24 hours" in caught.value.detail
    assert await granted(database, limits, START + timedelta(hours=24, seconds=1))


async def test_recipients_counted_apart(database: Database) -> None:
    limits = replace(RECIPIENT_ONLY, per_recipient_10min=1)
    await take(database, limits, START, recipient="+4799999999")

    assert await granted(database, limits, START, recipient="+4798888888")
    assert await granted(database, limits, START, recipient="+4799999999", creator="digdir")
    assert not await granted(database, limits, START, recipient="+4799999999")


async def test_rejected_recipient_send_not_counted(database: Database) -> None:
    limits = replace(RECIPIENT_ONLY, per_recipient_10min=1, per_recipient_day=0)
    await take(database, limits, START)
    for second in range(1, 50):
        assert not await granted(database, limits, START + timedelta(seconds=second))

    assert await granted(database, limits, START + timedelta(minutes=10, seconds=1))


async def test_zero_turns_limits_off(database: Database) -> None:
    limits = replace(DEFAULT_LIMITS, rate_per_s=0, per_recipient_10min=0, per_recipient_day=0)

    assert all([await granted(database, limits, START) for _ in range(30)])


async def test_prune_keeps_last_day(database: Database) -> None:
    limits = replace(RECIPIENT_ONLY, per_recipient_10min=0, per_recipient_day=2)
    await take(database, limits, START)
    await take(database, limits, START + timedelta(hours=12))

    pruned = await prune_recipient_sends(database, START + timedelta(hours=24))

    assert pruned == 1
    # One message of the last day remains, so one more fits.
    later = START + timedelta(hours=24, seconds=1)
    assert await granted(database, limits, later)
    assert not await granted(database, limits, later)


async def test_concurrent_orders_take_only_burst(database: Database) -> None:
    limits = replace(BUCKET_ONLY, rate_per_s=0.001, burst=10)
    other = Database(database.url)
    try:
        # Two engines, like two processes, each with several connections.
        results = await asyncio.gather(
            *(granted(database if i % 2 else other, limits, START) for i in range(40))
        )
    finally:
        await other.dispose()

    assert sum(results) == 10


async def test_concurrent_orders_one_recipient(database: Database) -> None:
    limits = replace(RECIPIENT_ONLY, per_recipient_10min=3)
    other = Database(database.url)
    try:
        results = await asyncio.gather(
            *(granted(database if i % 2 else other, limits, START) for i in range(30))
        )
    finally:
        await other.dispose()

    assert sum(results) == 3
