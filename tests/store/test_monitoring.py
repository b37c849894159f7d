"""Read queries for metrics and the dashboard, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from budstikke.api.health import migration_head
from budstikke.domain.statuses import Channel, NotificationStatus, Priority
from budstikke.store.database import Database
from budstikke.store.monitoring import (
    LATENCY_BUCKETS_S,
    MinuteStats,
    estimate_quantile,
    ping_database,
    read_minute_stats,
    read_queue,
    read_recent_notifications,
    read_schema_revision,
)
from budstikke.store.notifications import NotificationStore
from tests.store.test_notifications import LEASE, NOW, new_order


async def test_queue_groups_by_priority_and_state(database: Database) -> None:
    store = NotificationStore(database)
    await new_order(database, "due-1")
    await new_order(database, "due-2", now=NOW + timedelta(seconds=10))
    await new_order(database, "regular", priority=Priority.REGULAR)
    sending = await new_order(database, "sending")
    await store.claim(sending.notification_ids[0], worker_id="w1", now=NOW, lease_until=NOW + LEASE)

    groups = await read_queue(database, NOW + timedelta(seconds=30))

    by_key = {(g.priority, g.channel, g.state): g for g in groups}
    due = by_key[(Priority.INSTANT, Channel.SMS, "due")]
    assert due.count == 2
    assert due.oldest_due_at == NOW
    assert by_key[(Priority.REGULAR, Channel.SMS, "due")].count == 1
    assert by_key[(Priority.INSTANT, Channel.SMS, "sending")].count == 1
    assert (Priority.INSTANT, Channel.SMS, "scheduled") not in by_key


async def test_queue_counts_future_due_as_scheduled(database: Database) -> None:
    await new_order(database, "later", now=NOW + timedelta(minutes=5))

    groups = await read_queue(database, NOW)

    assert [(g.state, g.count) for g in groups] == [("scheduled", 1)]


async def test_minute_stats_count_and_latency(database: Database) -> None:
    store = NotificationStore(database)
    first = await new_order(database, "a", now=NOW)
    await new_order(database, "b", now=NOW + timedelta(seconds=20))
    await new_order(database, "c", now=NOW + timedelta(minutes=1, seconds=5))
    claimed = await store.claim(
        first.notification_ids[0], worker_id="w1", now=NOW, lease_until=NOW + LEASE
    )
    assert claimed is not None
    handed_off_at = NOW + timedelta(milliseconds=40)
    await store.record_hand_off(
        claimed, status=NotificationStatus.SMS_ACCEPTED, parts=[], now=handed_off_at
    )

    stats = await read_minute_stats(database, since=NOW - timedelta(minutes=1))

    assert [item.minute for item in stats] == [NOW, NOW + timedelta(minutes=1)]
    assert [item.created for item in stats] == [2, 1]
    assert [item.handed_off for item in stats] == [1, 0]
    assert abs(stats[0].latency_max_s - 0.04) < 0.002
    assert stats[0].latency_buckets[LATENCY_BUCKETS_S.index(0.025)] == 0
    assert stats[0].latency_buckets[LATENCY_BUCKETS_S.index(0.05)] == 1


async def test_minute_stats_leave_out_older_rows(database: Database) -> None:
    await new_order(database, "old", now=NOW - timedelta(hours=2))

    assert await read_minute_stats(database, since=NOW - timedelta(hours=1)) == []


async def test_recent_notifications_newest_first(database: Database) -> None:
    store = NotificationStore(database)
    older = await new_order(database, "older", now=NOW)
    await new_order(database, "newer", now=NOW + timedelta(seconds=1))
    claimed = await store.claim(
        older.notification_ids[0], worker_id="w1", now=NOW, lease_until=NOW + LEASE
    )
    assert claimed is not None
    await store.record_hand_off(claimed, status=NotificationStatus.SMS_DELIVERED, parts=[], now=NOW)

    recent = await read_recent_notifications(database, limit=10)

    assert [item.created_at for item in recent] == [NOW + timedelta(seconds=1), NOW]
    assert recent[1].shipment_id == older.shipment_id
    assert recent[1].handed_off_at == NOW
    assert recent[1].status is NotificationStatus.SMS_DELIVERED
    assert recent[0].handed_off_at is None
    assert len(await read_recent_notifications(database, limit=1)) == 1


async def test_schema_revision_and_ping(database: Database) -> None:
    await ping_database(database)

    revision = await read_schema_revision(database)

    assert revision == migration_head()


def minute(buckets: list[int], *, maximum: float) -> MinuteStats:
    return MinuteStats(
        minute=NOW,
        created=buckets[-1],
        handed_off=buckets[-1],
        failed=0,
        latency_sum_s=0.0,
        latency_max_s=maximum,
        latency_buckets=tuple(buckets),
    )


def test_quantile_interpolates_inside_bucket() -> None:
    # 10 hand-offs: 4 within 5 ms, all 10 within 10 ms.
    counts = [0, 0, 4] + [10] * (len(LATENCY_BUCKETS_S) - 3)

    median = estimate_quantile([minute(counts, maximum=0.009)], 0.5)
    p95 = estimate_quantile([minute(counts, maximum=0.009)], 0.95, maximum=0.009)

    assert median is not None
    assert abs(median - (0.005 + 0.005 * 1 / 6)) < 1e-9
    assert p95 == 0.009


def test_quantile_without_hand_offs_is_none() -> None:
    empty = minute([0] * len(LATENCY_BUCKETS_S), maximum=0.0)

    assert estimate_quantile([empty], 0.5) is None
