"""The dashboard's contents, read from the database and the providers, with recipients masked."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from budstikke.api.charts import Series, render_line_chart
from budstikke.api.health import check_database, describe_provider
from budstikke.channels.base import Provider
from budstikke.channels.provider_state import snapshot_provider
from budstikke.domain.masking import mask_email, mask_phone
from budstikke.domain.recipients import mask_recipient
from budstikke.domain.statuses import (
    DELIVERED_STATUS,
    HANDED_OFF_STATUS,
    NEW_STATUS,
    Channel,
    NotificationStatus,
    Priority,
)
from budstikke.errors import DatabaseUnavailableError
from budstikke.store.database import Database
from budstikke.store.monitoring import (
    MinuteStats,
    QueueGroup,
    RecentNotification,
    estimate_quantile,
    read_minute_stats,
    read_queue,
    read_recent_notifications,
)

CHART_MINUTES = 60
RECENT_SHIPMENTS = 25
QUEUE_STATES = ("due", "scheduled", "sending")

# Phone numbers (7 to 15 digits, optionally after + or 00) and email addresses
# inside free text such as a stored error message.
PHONE_IN_TEXT = re.compile(r"(?<![\w*])(?:\+|00)?\d[\d ]{5,17}\d(?!\w)")
EMAIL_IN_TEXT = re.compile(r"[^\s@<>()\[\]'\",;:]+@[^\s@<>()\[\]'\",;:]+\.[A-Za-z]{2,}")


@dataclass(frozen=True, slots=True)
class TimelineStep:
    status: str
    at: str  # HH:MM:SS.mmm UTC
    after: str  # time since the notification was stored, e.g. "+0.21 s"; empty for the first


@dataclass(frozen=True, slots=True)
class ShipmentRow:
    created: str
    shipment_id: str
    creator: str
    channel: str
    priority: str
    recipient: str  # masked
    status: str
    status_class: str  # "ok", "failed" or "pending", for styling
    attempts: int
    outcome_unknown: int
    timeline: tuple[TimelineStep, ...]
    error: str | None  # masked


@dataclass(frozen=True, slots=True)
class QueueRow:
    priority: str
    channel: str
    counts: tuple[int, ...]  # in QUEUE_STATES order
    oldest_due: str  # age of the oldest due notification, or "-"


@dataclass(slots=True)
class DashboardView:
    rendered_at: str
    database_ok: bool
    database_detail: str
    migrations_ok: bool
    migrations_detail: str
    providers: list[dict[str, object]] = field(default_factory=list)
    throughput_chart: str = ""
    latency_chart: str = ""
    totals: dict[str, str] = field(default_factory=dict)
    queue: list[QueueRow] = field(default_factory=list)
    shipments: list[ShipmentRow] = field(default_factory=list)


async def load_dashboard(
    database: Database, providers: Mapping[Channel, Provider], now: datetime
) -> DashboardView:
    """Read everything the dashboard shows; an unreachable database gives an empty view."""
    database_check, migrations_check = await check_database(database)
    view = DashboardView(
        rendered_at=now.strftime("%Y-%m-%d %H:%M:%S UTC"),
        database_ok=database_check.ok,
        database_detail=database_check.detail,
        migrations_ok=migrations_check.ok,
        migrations_detail=migrations_check.detail,
        providers=[
            {"channel": channel.value, **describe_provider(snapshot_provider(provider))}
            for channel, provider in providers.items()
        ],
    )
    first_minute = now.replace(second=0, microsecond=0) - timedelta(minutes=CHART_MINUTES - 1)
    try:
        stats = await read_minute_stats(database, since=first_minute)
        groups = await read_queue(database, now)
        recent = await read_recent_notifications(database, limit=RECENT_SHIPMENTS)
    except DatabaseUnavailableError as error:
        view.database_ok = False
        view.database_detail = str(error)[:200]
        return view
    minutes = [first_minute + timedelta(minutes=i) for i in range(CHART_MINUTES)]
    view.throughput_chart = throughput_chart(minutes, stats)
    view.latency_chart = latency_chart(minutes, stats)
    view.totals = hour_totals(stats)
    view.queue = queue_rows(groups, now)
    view.shipments = [shipment_row(item) for item in recent]
    return view


def throughput_chart(minutes: Sequence[datetime], stats: Sequence[MinuteStats]) -> str:
    by_minute = {item.minute: item for item in stats}
    rows = [by_minute.get(minute) for minute in minutes]
    created = [row.created if row else 0 for row in rows]
    handed_off = [row.handed_off if row else 0 for row in rows]
    failed = [row.failed if row else 0 for row in rows]
    return render_line_chart(
        "throughput",
        "Notifications per minute, by the minute they were stored",
        [minute.strftime("%H:%M") for minute in minutes],
        [
            Series("created", "stored", "#64748b", created),
            Series("handed_off", "handed off", "#2563eb", handed_off),
            Series("failed", "failed", "#dc2626", failed),
        ],
        format_value=lambda value: f"{value:g}",
    )


def latency_chart(minutes: Sequence[datetime], stats: Sequence[MinuteStats]) -> str:
    by_minute = {item.minute: item for item in stats}
    p50: list[float | None] = []
    p95: list[float | None] = []
    maximum: list[float | None] = []
    for minute in minutes:
        item = by_minute.get(minute)
        if item is None or item.handed_off == 0:
            p50.append(None)
            p95.append(None)
            maximum.append(None)
            continue
        p50.append(estimate_quantile([item], 0.5, maximum=item.latency_max_s))
        p95.append(estimate_quantile([item], 0.95, maximum=item.latency_max_s))
        maximum.append(item.latency_max_s)
    return render_line_chart(
        "latency",
        "Time from storing to hand-off, by the minute the order was stored",
        [minute.strftime("%H:%M") for minute in minutes],
        [
            Series("p50", "median", "#16a34a", p50),
            Series("p95", "95th percentile", "#d97706", p95),
            Series("max", "maximum", "#dc2626", maximum),
        ],
        format_value=format_duration,
        log_scale=True,
    )


def hour_totals(stats: Sequence[MinuteStats]) -> dict[str, str]:
    created = sum(item.created for item in stats)
    handed_off = sum(item.handed_off for item in stats)
    failed = sum(item.failed for item in stats)
    p95 = estimate_quantile(stats, 0.95, maximum=max((i.latency_max_s for i in stats), default=0))
    return {
        "stored": str(created),
        "handed off": str(handed_off),
        "failed": str(failed),
        "p95 time to hand-off": "-" if p95 is None else format_duration(p95),
    }


def queue_rows(groups: Sequence[QueueGroup], now: datetime) -> list[QueueRow]:
    rows = []
    for priority in Priority:
        for channel in Channel:
            mine = [g for g in groups if g.priority == priority and g.channel == channel]
            counts = tuple(sum(g.count for g in mine if g.state == state) for state in QUEUE_STATES)
            due = [g.oldest_due_at for g in mine if g.state == "due" and g.oldest_due_at]
            oldest = format_duration((now - min(due)).total_seconds()) if due else "-"
            rows.append(QueueRow(priority.name.lower(), channel.value, counts, oldest))
    return rows


def shipment_row(item: RecentNotification) -> ShipmentRow:
    if item.status in DELIVERED_STATUS.values():
        status_class = "ok"
    elif item.status.is_final:
        status_class = "failed"
    else:
        status_class = "pending"
    return ShipmentRow(
        created=item.created_at.strftime("%H:%M:%S"),
        shipment_id=str(item.shipment_id),
        creator=item.creator,
        channel=item.channel.value,
        priority=item.priority.name.lower(),
        recipient=mask_recipient(item.channel, item.recipient),
        status=item.status.value,
        status_class=status_class,
        attempts=item.attempts,
        outcome_unknown=item.outcome_unknown_count,
        timeline=timeline(item),
        error=mask_text(item.last_error, item.channel, item.recipient) if item.last_error else None,
    )


def timeline(item: RecentNotification) -> tuple[TimelineStep, ...]:
    """Rebuild the status steps from the stored times: stored, handed off, and the last status.

    Intermediate retries are not stored one by one; the attempts column counts them.
    """
    steps = [step(NEW_STATUS[item.channel], item.created_at, item.created_at, first=True)]
    handed_off_status: NotificationStatus | None = None
    if item.handed_off_at is not None:
        settled_at_hand_off = item.status.is_final and item.updated_at == item.handed_off_at
        handed_off_status = item.status if settled_at_hand_off else HANDED_OFF_STATUS[item.channel]
        steps.append(step(handed_off_status, item.handed_off_at, item.created_at))
    if item.status not in (NEW_STATUS[item.channel], handed_off_status):
        steps.append(step(item.status, item.updated_at, item.created_at))
    return tuple(steps)


def step(
    status: NotificationStatus, at: datetime, created_at: datetime, *, first: bool = False
) -> TimelineStep:
    after = "" if first else "+" + format_duration((at - created_at).total_seconds())
    return TimelineStep(status.value, at.strftime("%H:%M:%S.%f")[:-3], after)


def format_duration(seconds: float) -> str:
    """Format seconds for people: "12 ms", "1.4 s", "3.5 min" or "2.0 h"."""
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def mask_text(text: str, channel: Channel, recipient: str) -> str:
    """Mask the recipient and anything that looks like a phone number or address in free text."""
    text = text.replace(recipient, mask_recipient(channel, recipient))
    text = EMAIL_IN_TEXT.sub(lambda match: mask_email(match.group()), text)
    return PHONE_IN_TEXT.sub(lambda match: mask_phone(normalise_number(match.group())), text)


def normalise_number(text: str) -> str:
    digits = text.replace(" ", "")
    if digits.startswith("00"):
        return "+" + digits[2:]
    return digits
