"""Read-only queries for metrics, health checks and the operator dashboard."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import Float, Integer, case, cast, extract, func, select, text
from sqlalchemy.sql.elements import ColumnElement

from budstikke.domain.statuses import (
    DELIVERED_STATUS,
    NEW_STATUS,
    SENDING_STATUS,
    Channel,
    NotificationStatus,
    OrderStatus,
    Priority,
)
from budstikke.store.database import Database
from budstikke.store.tables import notifications, orders

NEW_STATUSES = [status.value for status in NEW_STATUS.values()]
SENDING_STATUSES = [status.value for status in SENDING_STATUS.values()]
FAILED_STATUSES = [
    status.value
    for status in NotificationStatus
    if status.is_final and status not in DELIVERED_STATUS.values()
]

# Upper bounds, in seconds, of the hand-off latency buckets that the
# dashboard's per-minute percentiles are estimated from.
LATENCY_BUCKETS_S = (
    *(0.001, 0.0025, 0.005),
    *(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)


@dataclass(frozen=True, slots=True)
class QueueGroup:
    """Notifications waiting for a hand-off, of one priority, channel and state.

    `state` is "due" (new, due now), "scheduled" (new, waiting for a retry
    time) or "sending" (claimed by a worker).
    """

    priority: Priority
    channel: Channel
    state: str
    count: int
    oldest_due_at: datetime | None


@dataclass(frozen=True, slots=True)
class MinuteStats:
    """Notifications created in one minute, and how fast those were handed off."""

    minute: datetime
    created: int
    handed_off: int
    failed: int
    latency_sum_s: float
    latency_max_s: float
    # Cumulative counts: handed-off notifications with latency <= LATENCY_BUCKETS_S[i].
    latency_buckets: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RecentNotification:
    """A notification as the dashboard lists it; the recipient is not masked yet."""

    id: UUID
    shipment_id: UUID
    creator: str
    channel: Channel
    priority: Priority
    recipient: str
    status: NotificationStatus
    order_status: OrderStatus
    attempts: int
    outcome_unknown_count: int
    created_at: datetime
    handed_off_at: datetime | None
    updated_at: datetime
    last_error: str | None


async def ping_database(database: Database) -> None:
    """Run a trivial query; raises DatabaseUnavailableError when the database does not answer."""
    async with database.read() as connection:
        await connection.execute(text("SELECT 1"))


async def read_schema_revision(database: Database) -> str | None:
    """Return the Alembic revision the database is at, or None before the first migration."""
    async with database.read() as connection:
        has_table = await connection.run_sync(
            lambda sync: sync.dialect.has_table(sync, "alembic_version")
        )
        if not has_table:
            return None
        return (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()


async def read_queue(database: Database, now: datetime) -> list[QueueGroup]:
    """Count the notifications not handed off yet, by priority, channel and state."""
    is_due = notifications.c.due_at <= now
    state = case(
        (notifications.c.status.in_(SENDING_STATUSES), "sending"),
        (is_due, "due"),
        else_="scheduled",
    ).label("state")
    query = (
        select(
            notifications.c.priority,
            notifications.c.channel,
            state,
            func.count().label("total"),
            func.min(notifications.c.due_at).label("oldest_due_at"),
        )
        .where(notifications.c.status.in_(NEW_STATUSES + SENDING_STATUSES))
        .group_by(notifications.c.priority, notifications.c.channel, state)
    )
    async with database.read() as connection:
        rows = (await connection.execute(query)).all()
    return [
        QueueGroup(
            priority=Priority(row.priority),
            channel=Channel(row.channel),
            state=row.state,
            count=int(row.total),
            oldest_due_at=as_utc(row.oldest_due_at),
        )
        for row in rows
    ]


async def read_minute_stats(database: Database, *, since: datetime) -> list[MinuteStats]:
    """Return per-minute counts and hand-off latencies of notifications created since `since`.

    Minutes without notifications are left out.
    """
    minute = minute_number(database, notifications.c.created_at).label("minute")
    latency = latency_seconds(database)
    failed = case((notifications.c.status.in_(FAILED_STATUSES), 1), else_=0)
    buckets = [
        func.sum(case((latency <= bound, 1), else_=0)).label(f"le_{index}")
        for index, bound in enumerate(LATENCY_BUCKETS_S)
    ]
    query = (
        select(
            minute,
            func.count().label("created"),
            func.count(notifications.c.handed_off_at).label("handed_off"),
            func.sum(failed).label("failed"),
            func.sum(latency).label("latency_sum"),
            func.max(latency).label("latency_max"),
            *buckets,
        )
        .where(notifications.c.created_at >= since)
        .group_by(minute)
        .order_by(minute)
    )
    async with database.read() as connection:
        rows = (await connection.execute(query)).all()
    return [
        MinuteStats(
            minute=datetime.fromtimestamp(int(row.minute) * 60, UTC),
            created=int(row.created),
            handed_off=int(row.handed_off),
            failed=int(row.failed or 0),
            latency_sum_s=float(row.latency_sum or 0.0),
            latency_max_s=float(row.latency_max or 0.0),
            latency_buckets=tuple(
                int(getattr(row, f"le_{index}") or 0) for index in range(len(LATENCY_BUCKETS_S))
            ),
        )
        for row in rows
    ]


async def read_recent_notifications(database: Database, *, limit: int) -> list[RecentNotification]:
    """Return the newest notifications of every creator, newest first."""
    query = (
        select(
            notifications.c.id,
            orders.c.shipment_id,
            notifications.c.creator,
            notifications.c.channel,
            notifications.c.priority,
            notifications.c.recipient,
            notifications.c.status,
            orders.c.status.label("order_status"),
            notifications.c.attempts,
            notifications.c.outcome_unknown_count,
            notifications.c.created_at,
            notifications.c.handed_off_at,
            notifications.c.updated_at,
            notifications.c.last_error,
        )
        .join(orders, orders.c.id == notifications.c.order_id)
        .order_by(notifications.c.created_at.desc(), notifications.c.id)
        .limit(limit)
    )
    async with database.read() as connection:
        rows = (await connection.execute(query)).all()
    return [
        RecentNotification(
            id=row.id,
            shipment_id=row.shipment_id,
            creator=row.creator,
            channel=Channel(row.channel),
            priority=Priority(row.priority),
            recipient=row.recipient,
            status=NotificationStatus(row.status),
            order_status=OrderStatus(row.order_status),
            attempts=row.attempts,
            outcome_unknown_count=row.outcome_unknown_count,
            created_at=row.created_at,
            handed_off_at=row.handed_off_at,
            updated_at=row.updated_at,
            last_error=row.last_error,
        )
        for row in rows
    ]


def minute_number(database: Database, column: ColumnElement[datetime]) -> ColumnElement[int]:
    """Return whole minutes since the Unix epoch of a timestamp column, computed in SQL."""
    if database.is_sqlite:
        # SQLite stores UtcDateTime as naive UTC text, which strftime reads as UTC.
        return cast(cast(func.strftime("%s", column), Integer) / 60, Integer)
    return cast(func.floor(extract("epoch", column) / 60), Integer)


def latency_seconds(database: Database) -> ColumnElement[float]:
    """Return handed_off_at - created_at in seconds; NULL for notifications not handed off."""
    if database.is_sqlite:
        days = func.julianday(notifications.c.handed_off_at) - func.julianday(
            notifications.c.created_at
        )
        return cast(days * 86400.0, Float)
    return cast(extract("epoch", notifications.c.handed_off_at - notifications.c.created_at), Float)


def as_utc(value: datetime | str | None) -> datetime | None:
    """Read a timestamp from an aggregate, which SQLite returns as text without the column type."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def estimate_quantile(
    stats: Sequence[MinuteStats], quantile: float, *, maximum: float | None = None
) -> float | None:
    """Estimate a latency quantile over some minutes from their buckets, as Prometheus does.

    Interpolates linearly inside the bucket that holds the quantile, and
    never returns more than `maximum`, the largest latency measured. Returns
    None without handed-off notifications; a quantile above the last bucket
    returns that bucket's bound.
    """
    estimate = _interpolate_quantile(stats, quantile)
    if estimate is None or maximum is None:
        return estimate
    return min(estimate, maximum)


def _interpolate_quantile(stats: Sequence[MinuteStats], quantile: float) -> float | None:
    total = sum(item.handed_off for item in stats)
    if total == 0:
        return None
    cumulative = [
        sum(item.latency_buckets[i] for item in stats) for i in range(len(LATENCY_BUCKETS_S))
    ]
    rank = quantile * total
    lower_bound, lower_count = 0.0, 0
    for bound, count in zip(LATENCY_BUCKETS_S, cumulative, strict=True):
        if count >= rank:
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return LATENCY_BUCKETS_S[-1]
