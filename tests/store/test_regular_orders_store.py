"""Claiming regular orders and their notifications: batch limits and the daytime window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from budstikke.domain.statuses import Channel
from budstikke.store.database import Database
from budstikke.store.notifications import NotificationStore
from budstikke.store.regular_orders import (
    REGULAR_EXPIRY_S,
    NewScheduledMessage,
    RegularOrderStore,
    create_regular_order,
)

# 18:00 and 10:00 in Oslo on a winter day (UTC+1).
EVENING = datetime(2026, 1, 15, 17, 0, tzinfo=UTC)
NEXT_MORNING = datetime(2026, 1, 16, 9, 0, tzinfo=UTC)


def message(send_time: datetime, *, daytime_only: bool = False) -> NewScheduledMessage:
    return NewScheduledMessage(
        senders_reference=None,
        send_time=send_time,
        condition_endpoint=None,
        channel=Channel.SMS,
        recipient="+4799999999",
        sender="Kommune",
        body="Hei",
        daytime_only=daytime_only,
    )


async def store_orders(database: Database, count: int, now: datetime, **options: bool) -> None:
    for index in range(count):
        await create_regular_order(
            database,
            creator="ttd",
            idempotency_id=f"order-{index}",
            main=message(now, **options),
            reminders=[],
            now=now,
        )


async def test_claims_respect_limit(database: Database) -> None:
    now = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    await store_orders(database, 30, now)
    regular = RegularOrderStore(database)
    lease_until = now + timedelta(seconds=60)

    orders = await regular.claim_due(worker_id="w1", now=now, lease_until=lease_until, limit=5)
    assert len(orders) == 5
    rest = await regular.claim_due(worker_id="w2", now=now, lease_until=lease_until, limit=100)
    assert len(rest) == 25

    stored = await regular.store_notifications([(order, None) for order in orders + rest], now=now)
    assert len(stored) == 30
    claimed = await NotificationStore(database).claim_due(
        worker_id="w1", now=now, lease_until=lease_until, limit=5
    )
    assert len(claimed) == 5
    assert claimed[0].expires_at == now + timedelta(seconds=REGULAR_EXPIRY_S)


async def test_lost_lease_stores_nothing(database: Database) -> None:
    now = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
    await store_orders(database, 1, now)
    regular = RegularOrderStore(database)
    [first] = await regular.claim_due(
        worker_id="w1", now=now, lease_until=now + timedelta(seconds=1), limit=10
    )
    later = now + timedelta(seconds=2)
    [again] = await regular.claim_due(
        worker_id="w2", now=later, lease_until=later + timedelta(seconds=60), limit=10
    )

    assert await regular.store_notifications([(first, None)], now=later) == []
    assert len(await regular.store_notifications([(again, None)], now=later)) == 1


async def test_daytime_sms_waits_for_morning(database: Database) -> None:
    await store_orders(database, 1, EVENING, daytime_only=True)
    regular = RegularOrderStore(database)
    orders = await regular.claim_due(
        worker_id="w", now=EVENING, lease_until=EVENING + timedelta(seconds=60), limit=10
    )
    await regular.store_notifications([(order, None) for order in orders], now=EVENING)
    notifications = NotificationStore(database)

    late = EVENING + timedelta(hours=1)
    evening_claim = await notifications.claim_due(
        worker_id="w", now=late, lease_until=late + timedelta(seconds=60), limit=10
    )
    assert evening_claim == []
    morning_claim = await notifications.claim_due(
        worker_id="w", now=NEXT_MORNING, lease_until=NEXT_MORNING + timedelta(seconds=60), limit=10
    )
    assert len(morning_claim) == 1
    # Due at 09:00 Oslo time (08:00 UTC), and valid for 48 hours from then.
    assert morning_claim[0].expires_at == datetime(2026, 1, 18, 8, 0, tzinfo=UTC)


async def test_claimable_count_skips_waiting_daytime(database: Database) -> None:
    await store_orders(database, 3, EVENING, daytime_only=True)
    regular = RegularOrderStore(database)
    orders = await regular.claim_due(
        worker_id="w", now=EVENING, lease_until=EVENING + timedelta(seconds=60), limit=10
    )
    await regular.store_notifications([(order, None) for order in orders], now=EVENING)

    assert await regular.count_claimable_notifications(now=EVENING, limit=100) == 0
    assert await regular.count_claimable_notifications(now=NEXT_MORNING, limit=100) == 3
    assert await regular.count_claimable_notifications(now=NEXT_MORNING, limit=2) == 2
