"""Queries that move notifications: claim, record hand-offs, retry, expire, apply reports."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import and_, bindparam, case, delete, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from budstikke.domain.daytime import is_daytime
from budstikke.domain.statuses import (
    DELIVERED_STATUS,
    HANDED_OFF_STATUS,
    NEW_STATUS,
    SENDING_STATUS,
    Channel,
    NotificationStatus,
    Priority,
)
from budstikke.store.database import Database
from budstikke.store.events import SETTLED_CHANNEL, notify
from budstikke.store.feed import complete_order_if_final
from budstikke.store.records import ClaimedNotification
from budstikke.store.tables import (
    notifications,
    provider_parts,
    provider_ref_keys,
    unmatched_reports,
)
from budstikke.store.webhook_events import (
    NotificationChange,
    change_of,
    record_notification_events,
)

logger = logging.getLogger(__name__)

# First half of the two-part advisory lock ids that guard provider message ids.
REFERENCE_LOCK_NAMESPACE = 0x62736B

NEW_STATUSES = [status.value for status in NEW_STATUS.values()]
SENDING_STATUSES = [status.value for status in SENDING_STATUS.values()]
HANDED_OFF_STATUSES = [status.value for status in HANDED_OFF_STATUS.values()]

# The receipt path runs these for every message, so they are built once:
# building a Core statement and its cache key costs about as much as
# executing it on SQLite.
# An SMSC may reuse message ids (after a restart its counter can start over),
# so a receipt goes to the newest part with that id whose message still waits
# for its report, and only falls back to a finished one, where it is ignored.
PART_BY_KEYS = (
    select(provider_ref_keys.c.notification_id, provider_ref_keys.c.part_index)
    .join(notifications, notifications.c.id == provider_ref_keys.c.notification_id)
    .where(provider_ref_keys.c.ref_key.in_(bindparam("report_keys", expanding=True)))
    .order_by(
        case((notifications.c.status.in_(HANDED_OFF_STATUSES), 0), else_=1),
        notifications.c.created_at.desc(),
    )
    .limit(1)
)
INSERT_UNMATCHED_REPORT = insert(unmatched_reports)
NOTIFICATION_OF_REPORT = (
    select(
        notifications.c.status,
        notifications.c.channel,
        notifications.c.order_id,
        notifications.c.part_count,
        notifications.c.creator,
        notifications.c.recipient,
    )
    .where(notifications.c.id == bindparam("report_notification_id"))
    .with_for_update()
)
SET_PART_STATUS = (
    update(provider_parts)
    .where(
        provider_parts.c.notification_id == bindparam("report_notification_id"),
        provider_parts.c.part_index == bindparam("report_part_index"),
        provider_parts.c.status.is_(None),
    )
    .values(status=bindparam("report_status"), error_code=bindparam("report_error_code"))
)
PART_STATUSES = (
    select(provider_parts.c.status, provider_parts.c.error_code)
    .where(provider_parts.c.notification_id == bindparam("report_notification_id"))
    .order_by(provider_parts.c.part_index)
)
SET_REPORTED_STATUS = (
    update(notifications)
    .where(
        notifications.c.id == bindparam("report_notification_id"),
        notifications.c.status.in_(HANDED_OFF_STATUSES),
    )
    .values(
        status=bindparam("report_status"),
        error_code=bindparam("report_error_code"),
        updated_at=bindparam("report_now"),
    )
)

CLAIMED_COLUMNS = (
    notifications.c.id,
    notifications.c.order_id,
    notifications.c.creator,
    notifications.c.channel,
    notifications.c.priority,
    notifications.c.recipient,
    notifications.c.sender,
    notifications.c.subject,
    notifications.c.body,
    notifications.c.content_type,
    notifications.c.created_at,
    notifications.c.expires_at,
    notifications.c.attempts,
    notifications.c.lease_owner,
)


@dataclass(frozen=True, slots=True)
class PartReference:
    """A provider's message id for one part, with the keys a report may use for it."""

    provider_ref: str
    keys: tuple[str, ...]


def sending_status_for_channel() -> ColumnElement[str]:
    return case(
        (notifications.c.channel == Channel.SMS.value, NotificationStatus.SMS_SENDING.value),
        else_=NotificationStatus.EMAIL_SENDING.value,
    )


def to_claimed(row: object) -> ClaimedNotification:
    return ClaimedNotification(
        id=row.id,  # type: ignore[attr-defined]
        order_id=row.order_id,  # type: ignore[attr-defined]
        creator=row.creator,  # type: ignore[attr-defined]
        channel=Channel(row.channel),  # type: ignore[attr-defined]
        priority=Priority(row.priority),  # type: ignore[attr-defined]
        recipient=row.recipient,  # type: ignore[attr-defined]
        sender=row.sender,  # type: ignore[attr-defined]
        subject=row.subject,  # type: ignore[attr-defined]
        body=row.body or "",  # type: ignore[attr-defined]
        content_type=row.content_type,  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
        expires_at=row.expires_at,  # type: ignore[attr-defined]
        attempts=row.attempts,  # type: ignore[attr-defined]
        lease_owner=row.lease_owner,  # type: ignore[attr-defined]
    )


class NotificationStore:
    """Every write that moves a notification between statuses.

    Each transition is a conditional UPDATE on the expected status (and, for
    a claimed notification, on the worker's lease), so two processes can
    never both move the same notification.
    """

    def __init__(self, database: Database) -> None:
        self.database = database

    async def claim(
        self, notification_id: UUID, *, worker_id: str, now: datetime, lease_until: datetime
    ) -> ClaimedNotification | None:
        """Lease one new notification for an immediate hand-off, if it is still new and live."""
        async with self.database.write() as connection:
            row = (
                await connection.execute(
                    update(notifications)
                    .where(
                        notifications.c.id == notification_id,
                        notifications.c.status.in_(NEW_STATUSES),
                        notifications.c.expires_at > now,
                    )
                    .values(
                        status=sending_status_for_channel(),
                        lease_owner=worker_id,
                        lease_expires_at=lease_until,
                        attempts=notifications.c.attempts + 1,
                        updated_at=now,
                    )
                    .returning(*CLAIMED_COLUMNS)
                )
            ).first()
            if row is not None:
                sending = change_of(to_claimed(row), SENDING_STATUS[Channel(row.channel)])
                await record_notification_events(connection, [sending], now=now)
        return None if row is None else to_claimed(row)

    async def claim_due(
        self, *, worker_id: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedNotification]:
        """Lease up to `limit` due notifications, instant before regular, oldest due first.

        Due means new with `due_at` passed, or sending under a lease that
        expired (its worker died): the latter is a possible duplicate, which
        `outcome_unknown_count` records. Outside 09:00-17:00 Oslo time,
        notifications marked `daytime_only` are not due.
        """
        due = or_(
            and_(notifications.c.status.in_(NEW_STATUSES), notifications.c.due_at <= now),
            and_(
                notifications.c.status.in_(SENDING_STATUSES),
                notifications.c.lease_expires_at < now,
            ),
        )
        if not is_daytime(now):
            due = and_(due, notifications.c.daytime_only.is_(False))
        candidates = (
            select(notifications.c.id)
            .where(due, notifications.c.expires_at > now)
            .order_by(notifications.c.priority, notifications.c.due_at)
            .limit(limit)
        )
        if not self.database.is_sqlite:
            candidates = candidates.with_for_update(skip_locked=True)
        # A materialized CTE runs the LIMIT once. As `IN (subquery)` PostgreSQL
        # may run it again for each row, and SKIP LOCKED then claims every row.
        picked = candidates.cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
        was_sending = notifications.c.status.in_(SENDING_STATUSES)
        async with self.database.write() as connection:
            rows = (
                await connection.execute(
                    update(notifications)
                    .where(notifications.c.id.in_(select(picked.c.id)), due)
                    .values(
                        status=sending_status_for_channel(),
                        lease_owner=worker_id,
                        lease_expires_at=lease_until,
                        attempts=notifications.c.attempts + 1,
                        outcome_unknown_count=notifications.c.outcome_unknown_count
                        + case((was_sending, 1), else_=0),
                        updated_at=now,
                    )
                    .returning(*CLAIMED_COLUMNS)
                )
            ).all()
            await record_notification_events(
                connection,
                [change_of(to_claimed(row), SENDING_STATUS[Channel(row.channel)]) for row in rows],
                now=now,
            )
        claimed = [to_claimed(row) for row in rows]
        claimed.sort(key=lambda item: (item.priority, item.created_at))
        return claimed

    async def record_hand_off(
        self,
        claimed: ClaimedNotification,
        *,
        status: NotificationStatus,
        parts: Sequence[PartReference],
        now: datetime,
    ) -> bool:
        """Store the provider's acceptance; returns False if the lease was lost meanwhile."""
        async with self.database.write() as connection:
            moved = await self._move_leased(
                connection, claimed, status, now, part_count=len(parts), handed_off_at=now
            )
            if not moved:
                return False
            await lock_reference_keys(connection, [key for part in parts for key in part.keys])
            await self._insert_parts(connection, claimed.id, parts)
            if parts:
                await self._apply_unmatched_reports(connection, claimed.id, parts, now)
            if status.is_final:
                await complete_order_if_final(connection, claimed.order_id, now)
            await self._announce_settled(connection, claimed)
        return True

    async def reschedule(
        self,
        claimed: ClaimedNotification,
        *,
        due_at: datetime,
        error: str,
        outcome_unknown: bool,
        now: datetime,
    ) -> bool:
        """Put a notification back in the queue after a transient failure."""
        async with self.database.write() as connection:
            result = await connection.execute(
                update(notifications)
                .where(
                    notifications.c.id == claimed.id,
                    notifications.c.lease_owner == claimed.lease_owner,
                    notifications.c.status.in_(SENDING_STATUSES),
                )
                .values(
                    status=NEW_STATUS[claimed.channel].value,
                    due_at=due_at,
                    lease_owner=None,
                    lease_expires_at=None,
                    last_error=error[:500],
                    outcome_unknown_count=notifications.c.outcome_unknown_count
                    + (1 if outcome_unknown else 0),
                    updated_at=now,
                )
            )
            if result.rowcount == 1:
                new = change_of(claimed, NEW_STATUS[claimed.channel])
                await record_notification_events(connection, [new], now=now)
            await self._announce_settled(connection, claimed)
        return result.rowcount == 1

    async def fail(
        self,
        claimed: ClaimedNotification,
        *,
        status: NotificationStatus,
        error: str,
        now: datetime,
    ) -> bool:
        """End a claimed notification with a final failure status."""
        async with self.database.write() as connection:
            moved = await self._move_leased(connection, claimed, status, now, error=error)
            if moved:
                await complete_order_if_final(connection, claimed.order_id, now)
            await self._announce_settled(connection, claimed)
        return moved

    async def expire_overdue(self, now: datetime) -> list[UUID]:
        """End every notification whose TTL (or report deadline) has passed as *_Failed_TTL.

        Covers three cases: never handed off before `expires_at`; claimed by a
        worker whose lease ran out past `expires_at`; handed off but with no
        final report by `report_deadline_at`. Returns the ids it ended.
        """
        overdue = or_(
            and_(
                notifications.c.status.in_(NEW_STATUSES),
                notifications.c.expires_at <= now,
            ),
            and_(
                notifications.c.status.in_(SENDING_STATUSES),
                notifications.c.expires_at <= now,
                notifications.c.lease_expires_at < now,
            ),
            and_(
                notifications.c.status.in_(HANDED_OFF_STATUSES),
                notifications.c.report_deadline_at <= now,
            ),
        )
        async with self.database.write() as connection:
            rows = (
                await connection.execute(
                    update(notifications)
                    .where(overdue)
                    .values(
                        status=case(
                            (
                                notifications.c.channel == Channel.SMS.value,
                                NotificationStatus.SMS_FAILED_TTL.value,
                            ),
                            else_=NotificationStatus.EMAIL_FAILED_TTL.value,
                        ),
                        lease_owner=None,
                        lease_expires_at=None,
                        updated_at=now,
                    )
                    .returning(
                        notifications.c.id,
                        notifications.c.order_id,
                        notifications.c.creator,
                        notifications.c.channel,
                        notifications.c.recipient,
                        notifications.c.status,
                    )
                )
            ).all()
            await record_notification_events(
                connection,
                [
                    NotificationChange(
                        row.creator,
                        row.order_id,
                        Channel(row.channel),
                        row.recipient,
                        NotificationStatus(row.status),
                    )
                    for row in rows
                ],
                now=now,
            )
            for order_id in {row.order_id for row in rows}:
                await complete_order_if_final(connection, order_id, now)
        return [row.id for row in rows]

    async def apply_report(
        self,
        keys: Sequence[str],
        *,
        status: NotificationStatus | None,
        error_code: str | None,
        now: datetime,
    ) -> UUID | None:
        """Apply a delivery report to the part it names; keep it for later if none matches.

        Returns the notification id the report matched, or None when it was
        kept as unmatched. A report never changes a part or notification that
        is already final.
        """
        async with self.database.write() as connection:
            await lock_reference_keys(connection, keys)
            part = (await connection.execute(PART_BY_KEYS, {"report_keys": list(keys)})).first()
            if part is None:
                await connection.execute(
                    INSERT_UNMATCHED_REPORT,
                    [
                        {
                            "ref_key": key,
                            "status": None if status is None else status.value,
                            "error_code": error_code,
                            "received_at": now,
                        }
                        for key in keys
                    ],
                )
                return None
            await self._apply_part_status(
                connection, part.notification_id, part.part_index, status, error_code, now
            )
            return part.notification_id  # type: ignore[no-any-return]

    async def _announce_settled(
        self, connection: AsyncConnection, claimed: ClaimedNotification
    ) -> None:
        # An API process without providers waits for this to answer its request.
        if not self.database.is_sqlite:
            await notify(connection, SETTLED_CHANNEL, str(claimed.id))

    async def _move_leased(
        self,
        connection: AsyncConnection,
        claimed: ClaimedNotification,
        status: NotificationStatus,
        now: datetime,
        *,
        part_count: int | None = None,
        error: str | None = None,
        handed_off_at: datetime | None = None,
    ) -> bool:
        values: dict[str, object] = {
            "status": status.value,
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": now,
        }
        if part_count is not None:
            values["part_count"] = part_count
        if handed_off_at is not None:
            values["handed_off_at"] = handed_off_at
        if error is not None:
            values["last_error"] = error[:500]
        result = await connection.execute(
            update(notifications)
            .where(
                notifications.c.id == claimed.id,
                notifications.c.lease_owner == claimed.lease_owner,
                notifications.c.status.in_(SENDING_STATUSES),
            )
            .values(**values)
        )
        if result.rowcount == 1:
            await record_notification_events(connection, [change_of(claimed, status)], now=now)
        return result.rowcount == 1

    async def _insert_parts(
        self, connection: AsyncConnection, notification_id: UUID, parts: Sequence[PartReference]
    ) -> None:
        if not parts:
            return
        await connection.execute(
            insert(provider_parts),
            [
                {
                    "notification_id": notification_id,
                    "part_index": index,
                    "provider_ref": part.provider_ref,
                    "status": None,
                }
                for index, part in enumerate(parts)
            ],
        )
        key_rows = {
            (key, index)
            for index, part in enumerate(parts)
            for key in (part.keys or (part.provider_ref,))
        }
        await connection.execute(
            insert(provider_ref_keys),
            [
                {"ref_key": key, "notification_id": notification_id, "part_index": index}
                for key, index in sorted(key_rows)
            ],
        )

    async def _apply_unmatched_reports(
        self,
        connection: AsyncConnection,
        notification_id: UUID,
        parts: Sequence[PartReference],
        now: datetime,
    ) -> None:
        for index, part in enumerate(parts):
            keys = list(part.keys or (part.provider_ref,))
            reports = (
                await connection.execute(
                    delete(unmatched_reports)
                    .where(unmatched_reports.c.ref_key.in_(keys))
                    .returning(
                        unmatched_reports.c.id,
                        unmatched_reports.c.status,
                        unmatched_reports.c.error_code,
                    )
                )
            ).all()
            for report in sorted(reports, key=lambda row: row.id):
                status = None if report.status is None else NotificationStatus(report.status)
                await self._apply_part_status(
                    connection, notification_id, index, status, report.error_code, now
                )

    async def _apply_part_status(
        self,
        connection: AsyncConnection,
        notification_id: UUID,
        part_index: int,
        status: NotificationStatus | None,
        error_code: str | None,
        now: datetime,
    ) -> None:
        if status is None:
            return
        # Receipts of the parts of one message arrive together. Locking the
        # notification row first makes them take turns, so the last one sees
        # every other part's status; without it, two concurrent transactions
        # could each see the other's part as still open (PostgreSQL).
        notification = (
            await connection.execute(
                NOTIFICATION_OF_REPORT, {"report_notification_id": notification_id}
            )
        ).one()
        await connection.execute(
            SET_PART_STATUS,
            {
                "report_notification_id": notification_id,
                "report_part_index": part_index,
                "report_status": status.value,
                "report_error_code": error_code,
            },
        )
        if NotificationStatus(notification.status).is_final:
            logger.info(
                "delivery report after final status ignored",
                extra={
                    "event": "late_report_ignored",
                    "notification_id": str(notification_id),
                    "report_status": status.value,
                    "status": notification.status,
                },
            )
            return
        part_statuses = (
            await connection.execute(PART_STATUSES, {"report_notification_id": notification_id})
        ).all()
        outcome = combine_part_statuses(
            Channel(notification.channel),
            [
                None if row.status is None else NotificationStatus(row.status)
                for row in part_statuses
            ],
        )
        if outcome is None:
            return
        codes = [row.error_code for row in part_statuses if row.error_code]
        result = await connection.execute(
            SET_REPORTED_STATUS,
            {
                "report_notification_id": notification_id,
                "report_status": outcome.value,
                "report_error_code": codes[0] if codes else None,
                "report_now": now,
            },
        )
        if result.rowcount == 1:
            change = NotificationChange(
                notification.creator,
                notification.order_id,
                Channel(notification.channel),
                notification.recipient,
                outcome,
            )
            await record_notification_events(connection, [change], now=now)
        await complete_order_if_final(connection, notification.order_id, now)


async def lock_reference_keys(connection: AsyncConnection, keys: Sequence[str]) -> None:
    """Serialise the recording of a hand-off and the reports on its message ids (PostgreSQL).

    A receipt can arrive while the submit response is being recorded. Without
    a lock, the report's transaction may not yet see the parts and keep the
    report as unmatched, while the recording transaction started too early to
    see that unmatched report: both miss each other and the message stays
    accepted forever. Both sides lock every key they use, in sorted order so
    two transactions never wait on each other; a report and its part share
    at least one key. SQLite runs one writer at a time and needs no lock.
    """
    if connection.dialect.name != "postgresql":
        return
    for key in sorted(set(keys)):
        await connection.execute(
            text("SELECT pg_advisory_xact_lock(:namespace, hashtext(:key))"),
            {"namespace": REFERENCE_LOCK_NAMESPACE, "key": key},
        )


def combine_part_statuses(
    channel: Channel, part_statuses: Sequence[NotificationStatus | None]
) -> NotificationStatus | None:
    """Return the notification's final status once every part has one, else None.

    A message is delivered only when every part is; otherwise the first
    failed part's status stands for the message.
    """
    if not part_statuses or any(status is None for status in part_statuses):
        return None
    delivered = DELIVERED_STATUS[channel]
    for status in part_statuses:
        if status is not delivered:
            return status
    return delivered
