"""Record hand-offs and apply delivery reports, many of them in one transaction.

A hand-off record moves a claimed notification to the provider's status and
stores each part's message id under the keys a report may use for it. A
delivery report sets the status of the part it names. Once every part has
one, it sets the notification's status, and the order completes when all
its notifications are final. A report that comes before its message id is
recorded waits in unmatched_reports, and the hand-off record applies it.

`write_outcomes` does this for a batch with a fixed number of statements,
whatever its size: it reads the notifications and parts it needs once,
applies the reports in memory in the order they arrived, and writes the
changes with executemany. The rows it read are locked (PostgreSQL) or
cannot change under the single writer (SQLite), so the changes it computes
are the ones the database makes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import bindparam, delete, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter

from budstikke.domain.statuses import (
    DELIVERED_STATUS,
    HANDED_OFF_STATUS,
    SENDING_STATUS,
    Channel,
    NotificationStatus,
)
from budstikke.store.feed import complete_orders_if_final
from budstikke.store.prepared import PreparedStatement
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

LOCK_REFERENCE_KEYS = text(
    "SELECT pg_advisory_xact_lock(:namespace, hashtext(key)) "
    "FROM unnest(CAST(:keys AS text[])) AS key"
)

_SENDING_STATUSES = [status.value for status in SENDING_STATUS.values()]
_HANDED_OFF_STATUSES = frozenset(status.value for status in HANDED_OFF_STATUS.values())
# An estimate of how far the clocks of two processes that share a database
# may differ, so that a report one of them kept is not judged too old.
REPORT_CLOCK_SKEW = timedelta(seconds=60)
# The earliest time of a kept report, for hand-offs without a start time.
ANY_TIME = datetime(1970, 1, 1, tzinfo=UTC)

# Built once: building a Core statement and its cache key costs about as much
# as executing it on SQLite. One statement moves every hand-off of a batch
# that has the same lease owner, status and part count, which is usually all.
_HAND_OFF_NOW: BindParameter[datetime] = bindparam("hand_off_now")
MOVE_HANDED_OFF = PreparedStatement(
    update(notifications)
    .where(
        notifications.c.id.in_(bindparam("hand_off_ids", expanding=True)),
        notifications.c.lease_owner == bindparam("hand_off_lease_owner"),
        notifications.c.status.in_(_SENDING_STATUSES),
    )
    .values(
        status=bindparam("hand_off_status"),
        part_count=bindparam("hand_off_part_count"),
        handed_off_at=_HAND_OFF_NOW,
        updated_at=_HAND_OFF_NOW,
        lease_owner=None,
        lease_expires_at=None,
    )
    .returning(notifications.c.id)
)
# A hand-off accepted before its batch was written keeps the time of the acceptance.
SET_HAND_OFF_TIME = PreparedStatement(
    update(notifications)
    .where(notifications.c.id == bindparam("accepted_id"))
    .values(handed_off_at=bindparam("accepted_at"), updated_at=bindparam("accepted_at"))
)
INSERT_PARTS = PreparedStatement(
    insert(provider_parts), columns=("notification_id", "part_index", "provider_ref", "status")
)
INSERT_REFERENCE_KEYS = PreparedStatement(
    insert(provider_ref_keys), columns=("ref_key", "notification_id", "part_index")
)
TAKE_UNMATCHED_REPORTS = PreparedStatement(
    delete(unmatched_reports)
    .where(
        unmatched_reports.c.ref_key.in_(bindparam("unmatched_keys", expanding=True)),
        unmatched_reports.c.received_at >= bindparam("unmatched_since"),
    )
    .returning(
        unmatched_reports.c.id,
        unmatched_reports.c.ref_key,
        unmatched_reports.c.report_id,
        unmatched_reports.c.status,
        unmatched_reports.c.error_code,
    )
)
# The rows of taken reports that are stored under keys the recorded parts do not have.
DELETE_REPORT_ROWS = PreparedStatement(
    delete(unmatched_reports).where(
        unmatched_reports.c.report_id.in_(bindparam("taken_report_ids", expanding=True))
    )
)
INSERT_UNMATCHED_REPORTS = PreparedStatement(
    insert(unmatched_reports),
    columns=("ref_key", "report_id", "status", "error_code", "received_at"),
)
# Every part a report's keys may name, with its notification. Sorted by
# notification id, so that two transactions lock shared rows in one order.
_REPORT_CANDIDATES = (
    select(
        provider_ref_keys.c.ref_key,
        provider_ref_keys.c.notification_id,
        provider_ref_keys.c.part_index,
        notifications.c.status,
        notifications.c.channel,
        notifications.c.order_id,
        notifications.c.creator,
        notifications.c.recipient,
        notifications.c.created_at,
    )
    .join(notifications, notifications.c.id == provider_ref_keys.c.notification_id)
    .where(provider_ref_keys.c.ref_key.in_(bindparam("report_keys", expanding=True)))
    .order_by(notifications.c.id)
)
# Receipts of the parts of one message arrive together. Locking the
# notification rows makes their transactions take turns, so the last one reads
# every other part's status. Without the lock, two concurrent transactions
# could each read the other's part as still open (PostgreSQL).
REPORT_CANDIDATES = PreparedStatement(_REPORT_CANDIDATES)
LOCKED_REPORT_CANDIDATES = PreparedStatement(_REPORT_CANDIDATES.with_for_update(of=notifications))
PARTS_OF_NOTIFICATIONS = PreparedStatement(
    select(
        provider_parts.c.notification_id,
        provider_parts.c.part_index,
        provider_parts.c.status,
        provider_parts.c.error_code,
    ).where(
        provider_parts.c.notification_id.in_(bindparam("part_notification_ids", expanding=True))
    )
)
SET_PART_STATUS = PreparedStatement(
    update(provider_parts)
    .where(
        provider_parts.c.notification_id == bindparam("report_notification_id"),
        provider_parts.c.part_index == bindparam("report_part_index"),
        provider_parts.c.status.is_(None),
    )
    .values(status=bindparam("report_status"), error_code=bindparam("report_error_code"))
)
SET_REPORTED_STATUS = PreparedStatement(
    update(notifications)
    .where(
        notifications.c.id == bindparam("report_notification_id"),
        # Not IN (...): its expanding parameter does not work with executemany.
        or_(*(notifications.c.status == status for status in sorted(_HANDED_OFF_STATUSES))),
    )
    .values(
        status=bindparam("report_status"),
        error_code=bindparam("report_error_code"),
        updated_at=bindparam("report_now"),
    )
)


@dataclass(frozen=True, slots=True)
class PartReference:
    """A provider's message id for one part, with the keys a report may use for it."""

    provider_ref: str
    keys: tuple[str, ...]

    @property
    def lookup_keys(self) -> tuple[str, ...]:
        return self.keys or (self.provider_ref,)


@dataclass(frozen=True, slots=True)
class HandOffRecord:
    """A provider's acceptance of a claimed notification, with one reference per part."""

    claimed: ClaimedNotification
    status: NotificationStatus
    parts: tuple[PartReference, ...]
    # When the provider accepted the message; the batch's time when not known.
    accepted_at: datetime | None = None
    # When the hand-off began. A kept report received well before is for an
    # earlier message with the same provider id, not for this one.
    sent_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReceivedReport:
    """A delivery report, with the keys its message id may be stored under."""

    keys: tuple[str, ...]
    status: NotificationStatus | None
    error_code: str | None


@dataclass(frozen=True, slots=True)
class OutcomeResults:
    """The result of each item of a batch, in the order of the batch."""

    # Per hand-off: False when the lease was lost and nothing was stored.
    recorded: list[bool]
    # Per report: the notification it matched, or None when it was kept as unmatched.
    matched: list[UUID | None]


@dataclass(slots=True)
class _Notification:
    """One notification's status and the fields its events need, kept current in the batch."""

    status: NotificationStatus
    channel: Channel
    order_id: UUID
    creator: str
    recipient: str
    created_at: datetime


@dataclass(slots=True)
class _Part:
    status: NotificationStatus | None
    error_code: str | None


@dataclass(frozen=True, slots=True)
class _PartReport:
    """A final report matched to one part."""

    notification_id: UUID
    part_index: int
    status: NotificationStatus
    error_code: str | None


@dataclass(slots=True)
class _Batch:
    """The state of one batch's notifications and the writes that applying reports needs."""

    now: datetime
    notifications: dict[UUID, _Notification] = field(default_factory=dict)
    parts: dict[UUID, dict[int, _Part]] = field(default_factory=dict)
    changes: list[NotificationChange] = field(default_factory=list)
    part_updates: list[dict[str, Any]] = field(default_factory=list)
    status_updates: list[dict[str, Any]] = field(default_factory=list)
    unmatched_rows: list[dict[str, Any]] = field(default_factory=list)
    order_ids: list[UUID] = field(default_factory=list)

    def rank(self, notification_id: UUID) -> tuple[bool, datetime]:
        """Return the sort key of a candidate for a report: the higher, the better.

        An SMSC may reuse message ids, because after a restart its counter can
        start over. A report therefore goes to the newest part with that id
        whose message still waits for its report. It falls back to a finished
        one only when there is no such part, and is then ignored.
        """
        notification = self.notifications[notification_id]
        return notification.status.value in _HANDED_OFF_STATUSES, notification.created_at

    def apply(self, report: _PartReport) -> None:
        """Set the part's status, and the notification's once every part has one."""
        parts = self.parts.setdefault(report.notification_id, {})
        self._set_part_status(parts, report)

        notification = self.notifications[report.notification_id]
        if notification.status.is_final:
            logger.info(
                "delivery report after final status ignored",
                extra={
                    "event": "late_report_ignored",
                    "notification_id": str(report.notification_id),
                    "report_status": report.status.value,
                    "status": notification.status.value,
                },
            )
            return

        ordered = [parts[index] for index in sorted(parts)]
        outcome = combine_part_statuses(notification.channel, [part.status for part in ordered])
        # A notification that is not waiting for reports (claimed again after
        # its lease ended) keeps its status, and the part's status stays recorded.
        if outcome is None or notification.status.value not in _HANDED_OFF_STATUSES:
            return
        codes = [part.error_code for part in ordered if part.error_code]
        self._set_notification_status(
            report.notification_id, notification, outcome, codes[0] if codes else None
        )

    def _set_part_status(self, parts: dict[int, _Part], report: _PartReport) -> None:
        part = parts.get(report.part_index)
        if part is None or part.status is not None:
            return
        part.status = report.status
        part.error_code = report.error_code
        self.part_updates.append(
            {
                "report_notification_id": report.notification_id,
                "report_part_index": report.part_index,
                "report_status": report.status.value,
                "report_error_code": report.error_code,
            }
        )

    def _set_notification_status(
        self,
        notification_id: UUID,
        notification: _Notification,
        outcome: NotificationStatus,
        error_code: str | None,
    ) -> None:
        self.status_updates.append(
            {
                "report_notification_id": notification_id,
                "report_status": outcome.value,
                "report_error_code": error_code,
                "report_now": self.now,
            }
        )
        notification.status = outcome
        self.changes.append(
            NotificationChange(
                notification.creator,
                notification.order_id,
                notification.channel,
                notification.recipient,
                outcome,
            )
        )
        self.order_ids.append(notification.order_id)


async def write_outcomes(
    connection: AsyncConnection,
    hand_offs: Sequence[HandOffRecord],
    reports: Sequence[ReceivedReport],
    now: datetime,
) -> OutcomeResults:
    """Record the hand-offs, then apply the reports in the order given, in one transaction.

    A report for a hand-off of the same batch finds its part. A report never
    changes a part or notification that is already final.
    """
    keys = [key for record in hand_offs for part in record.parts for key in part.lookup_keys]
    keys.extend(key for report in reports for key in report.keys)
    await lock_reference_keys(connection, keys)
    batch = _Batch(now)
    recorded, early_reports = await _record_hand_offs(connection, batch, hand_offs)
    candidates = await _load_candidates(connection, batch, reports)
    for early in early_reports:
        batch.apply(early)
    matched = [_match_report(batch, report, candidates) for report in reports]
    await _write_changes(connection, batch)
    return OutcomeResults(recorded=recorded, matched=matched)


async def _record_hand_offs(
    connection: AsyncConnection, batch: _Batch, hand_offs: Sequence[HandOffRecord]
) -> tuple[list[bool], list[_PartReport]]:
    """Move each hand-off whose lease still holds, and store its parts and their keys.

    Returns whether each hand-off was recorded, and the reports that were
    waiting for its parts.
    """
    if not hand_offs:
        return [], []
    groups: dict[tuple[str, str, int], list[UUID]] = {}
    for record in hand_offs:
        group = (record.claimed.lease_owner, record.status.value, len(record.parts))
        groups.setdefault(group, []).append(record.claimed.id)
    moved_ids: set[UUID] = set()
    for (lease_owner, status, part_count), ids in groups.items():
        rows = await MOVE_HANDED_OFF.execute(
            connection,
            {
                "hand_off_ids": ids,
                "hand_off_lease_owner": lease_owner,
                "hand_off_status": status,
                "hand_off_part_count": part_count,
                "hand_off_now": batch.now,
            },
        )
        moved_ids.update(row.id for row in rows)
    recorded: list[bool] = []
    moved: list[HandOffRecord] = []
    for record in hand_offs:
        # The same notification twice in a batch is recorded once.
        is_recorded = record.claimed.id in moved_ids
        moved_ids.discard(record.claimed.id)
        recorded.append(is_recorded)
        if is_recorded:
            moved.append(record)
            _remember_hand_off(batch, record)
    await SET_HAND_OFF_TIME.execute_many(
        connection,
        [
            {"accepted_id": record.claimed.id, "accepted_at": record.accepted_at}
            for record in moved
            if record.accepted_at is not None and record.accepted_at < batch.now
        ],
    )
    await _insert_parts(connection, moved)
    early_reports = await _take_unmatched_reports(connection, moved)
    return recorded, early_reports


def _remember_hand_off(batch: _Batch, record: HandOffRecord) -> None:
    claimed = record.claimed
    batch.notifications[claimed.id] = _Notification(
        status=record.status,
        channel=claimed.channel,
        order_id=claimed.order_id,
        creator=claimed.creator,
        recipient=claimed.recipient,
        created_at=claimed.created_at,
    )
    batch.parts[claimed.id] = {index: _Part(None, None) for index in range(len(record.parts))}
    batch.changes.append(change_of(claimed, record.status))
    if record.status.is_final:
        batch.order_ids.append(claimed.order_id)


async def _insert_parts(connection: AsyncConnection, moved: Sequence[HandOffRecord]) -> None:
    part_rows = [
        {
            "notification_id": record.claimed.id,
            "part_index": index,
            "provider_ref": part.provider_ref,
            "status": None,
        }
        for record in moved
        for index, part in enumerate(record.parts)
    ]
    if not part_rows:
        return
    await INSERT_PARTS.execute_many(connection, part_rows)
    key_rows: list[dict[str, Any]] = []
    for record in moved:
        pairs = {
            (key, index) for index, part in enumerate(record.parts) for key in part.lookup_keys
        }
        key_rows.extend(
            {"ref_key": key, "notification_id": record.claimed.id, "part_index": index}
            for key, index in sorted(pairs)
        )
    await INSERT_REFERENCE_KEYS.execute_many(connection, key_rows)


async def _take_unmatched_reports(
    connection: AsyncConnection, moved: Sequence[HandOffRecord]
) -> list[_PartReport]:
    """Delete the kept reports for the parts just recorded; return them in arrival order."""
    keys = sorted({key for record in moved for part in record.parts for key in part.lookup_keys})
    if not keys:
        return []
    rows = await TAKE_UNMATCHED_REPORTS.execute(
        connection, {"unmatched_keys": keys, "unmatched_since": earliest_report_time(moved)}
    )
    if not rows:
        return []
    report_ids = sorted({row.report_id for row in rows if row.report_id is not None}, key=str)
    if report_ids:
        await DELETE_REPORT_ROWS.execute(connection, {"taken_report_ids": report_ids})
    by_key: dict[str, list[Any]] = {}
    for row in rows:
        by_key.setdefault(row.ref_key, []).append(row)
    # A report kept under several keys is one report, applied once.
    applied: set[object] = set()
    early_reports: list[_PartReport] = []
    for record in moved:
        for index, part in enumerate(record.parts):
            found = {row.id: row for key in part.lookup_keys for row in by_key.get(key, ())}
            for row_id in sorted(found):
                row = found[row_id]
                report = report_of(row)
                if report in applied:
                    continue
                applied.add(report)
                if row.status is not None:
                    early_reports.append(
                        _PartReport(
                            record.claimed.id, index, NotificationStatus(row.status), row.error_code
                        )
                    )
    return early_reports


def earliest_report_time(moved: Sequence[HandOffRecord]) -> datetime:
    """Return the earliest time a kept report for these hand-offs can have been received.

    That is the start of the earliest hand-off, less REPORT_CLOCK_SKEW for a
    report kept by another process, whose clock may differ. Without a start
    time, any report is taken.
    """
    if any(record.sent_at is None for record in moved):
        return ANY_TIME
    return min(record.sent_at for record in moved if record.sent_at) - REPORT_CLOCK_SKEW


def report_of(row: Any) -> object:
    """Return what identifies a kept report: its report_id, or its row id when it has none."""
    return row.report_id if row.report_id is not None else row.id


async def _load_candidates(
    connection: AsyncConnection, batch: _Batch, reports: Sequence[ReceivedReport]
) -> dict[str, list[tuple[UUID, int]]]:
    """Read and lock every part the reports' keys name, with the parts of their notifications.

    Returns the (notification id, part index) pairs stored under each key.
    """
    keys = sorted({key for report in reports for key in report.keys})
    if not keys:
        return {}
    query = (
        LOCKED_REPORT_CANDIDATES if connection.dialect.name == "postgresql" else REPORT_CANDIDATES
    )
    rows = await query.execute(connection, {"report_keys": keys})
    candidates: dict[str, list[tuple[UUID, int]]] = {}
    unread: set[UUID] = set()
    for row in rows:
        candidates.setdefault(row.ref_key, []).append((row.notification_id, row.part_index))
        if row.notification_id not in batch.notifications:
            batch.notifications[row.notification_id] = _Notification(
                status=NotificationStatus(row.status),
                channel=Channel(row.channel),
                order_id=row.order_id,
                creator=row.creator,
                recipient=row.recipient,
                created_at=row.created_at,
            )
            unread.add(row.notification_id)
    if unread:
        parts = await PARTS_OF_NOTIFICATIONS.execute(
            connection, {"part_notification_ids": sorted(unread, key=str)}
        )
        for part in parts:
            status = None if part.status is None else NotificationStatus(part.status)
            batch.parts.setdefault(part.notification_id, {})[part.part_index] = _Part(
                status, part.error_code
            )
    return candidates


def _match_report(
    batch: _Batch, report: ReceivedReport, candidates: dict[str, list[tuple[UUID, int]]]
) -> UUID | None:
    """Apply one report to the part it names, or keep it as unmatched; return the notification."""
    options = [option for key in report.keys for option in candidates.get(key, ())]
    if not options:
        report_id = uuid4()
        batch.unmatched_rows.extend(
            {
                "ref_key": key,
                "report_id": report_id,
                "status": None if report.status is None else report.status.value,
                "error_code": report.error_code,
                "received_at": batch.now,
            }
            for key in report.keys
        )
        return None
    notification_id, part_index = max(options, key=lambda option: batch.rank(option[0]))
    if report.status is not None:
        batch.apply(_PartReport(notification_id, part_index, report.status, report.error_code))
    return notification_id


async def _write_changes(connection: AsyncConnection, batch: _Batch) -> None:
    """Write what applying the reports changed, then complete the orders that became final."""
    if batch.part_updates:
        await SET_PART_STATUS.execute_many(connection, batch.part_updates)
    if batch.status_updates:
        await SET_REPORTED_STATUS.execute_many(connection, batch.status_updates)
    if batch.unmatched_rows:
        await INSERT_UNMATCHED_REPORTS.execute_many(connection, batch.unmatched_rows)
    await record_notification_events(connection, batch.changes, now=batch.now)
    await complete_orders_if_final(connection, batch.order_ids, batch.now)


async def lock_reference_keys(connection: AsyncConnection, keys: Sequence[str]) -> None:
    """Serialise the recording of a hand-off and the reports on its message ids (PostgreSQL).

    A receipt can arrive while the submit response is being recorded. Without
    a lock, the report's transaction may not yet see the parts and keep the
    report as unmatched, while the recording transaction started too early to
    see that unmatched report: both miss each other and the message stays
    accepted forever. Both sides lock every key they use, and a report and its
    part share at least one key. Every transaction takes its keys in sorted
    order, so two of them never wait on each other for these locks. SQLite
    runs one writer at a time and needs no lock.
    """
    if connection.dialect.name != "postgresql" or not keys:
        return
    # unnest yields the keys in array order, and each row takes its lock in turn.
    await connection.execute(
        LOCK_REFERENCE_KEYS, {"namespace": REFERENCE_LOCK_NAMESPACE, "keys": sorted(set(keys))}
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
