"""Queries for OTP verifications: create with idempotency and a limit, check, resend, read.

Every change of a verification is one conditional UPDATE on the state it was
read in (pending, attempts left, not expired, the same code), so two
processes can never both approve a code or both count the same attempt.

The limits count rows in the last hour. Both count per creator and
recipient: the verifications made for the recipient, and the wrong codes
submitted to them. On PostgreSQL each count first takes a transaction-scoped
advisory lock on what it counts, so concurrent requests cannot all read a
count just under the limit. SQLite needs no lock because it runs one write
transaction at a time.

The code of serial N travels in the instant order whose idempotency id is
`order_key(verification_id, N)`; the verification finds its shipment by that key.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import case, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from budstikke.domain.otp import (
    LIMIT_WINDOW_S,
    MAX_ATTEMPTS,
    MAX_TTL_S,
    ORDER_KEY_PREFIX,
    OtpStatus,
    digests_match,
)
from budstikke.domain.rate_limits import (
    OTP_FAILED_CHECKS_LIMIT,
    OTP_RECIPIENT_LIMIT,
    RateLimitExceededError,
)
from budstikke.domain.statuses import Channel
from budstikke.store.database import Database
from budstikke.store.notifications import NEW_STATUSES, SENDING_STATUSES
from budstikke.store.tables import notifications, orders, otp_failed_checks, otp_verifications


@dataclass(frozen=True, slots=True)
class NewVerification:
    id: UUID
    creator: str
    idempotency_id: str
    channel: Channel
    recipient: str
    sender: str | None
    senders_reference: str | None
    language: str
    template: str | None
    code_length: int
    code_digest: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Verification:
    """A verification as stored, with the shipment of its current code."""

    id: UUID
    creator: str
    idempotency_id: str
    channel: Channel
    recipient: str
    sender: str | None
    senders_reference: str | None
    language: str
    template: str | None
    code_length: int
    code_serial: int
    status: OtpStatus  # as stored: never EXPIRED
    attempts: int
    created_at: datetime
    expires_at: datetime
    last_sent_at: datetime
    # None until the order that carries the current code is stored.
    shipment_id: UUID | None


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """The state after a check; `counted` is True when the check used an attempt."""

    verification: Verification
    counted: bool
    approved: bool


def recipient_key(channel: Channel, recipient: str) -> str:
    # Mailbox names are case-insensitive in practice, so Ola@ and ola@ share one limit.
    return recipient.lower() if channel is Channel.EMAIL else recipient


def order_key(verification_id: UUID, code_serial: int) -> str:
    """Return the idempotency id of the instant order that carries one code."""
    return f"{ORDER_KEY_PREFIX}{verification_id}:{code_serial}"


def lock_key(name: str) -> int:
    """Map a name to the signed 64-bit key that pg_advisory_xact_lock takes."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


async def lock(connection: AsyncConnection, name: str) -> None:
    if connection.dialect.name == "postgresql":
        await connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)}
        )


async def retry_after_s(
    connection: AsyncConnection,
    moment: ColumnElement[datetime],
    where: list[ColumnElement[bool]],
    *,
    limit: int,
    now: datetime,
    source: FromClause | None = None,
) -> int | None:
    """Return the seconds until fewer than `limit` events lie in the window, or None if they do.

    The `limit`-th newest event in the window is the one that must leave it.
    `source` is the table or join to select from when `moment`'s table alone is not enough.
    """
    window_start = now - timedelta(seconds=LIMIT_WINDOW_S)
    query = select(moment) if source is None else select(moment).select_from(source)
    blocking = (
        await connection.execute(
            query.where(*where, moment > window_start)
            .order_by(moment.desc())
            .offset(limit - 1)
            .limit(1)
        )
    ).scalar()
    if blocking is None:
        return None
    leaves_at = blocking + timedelta(seconds=LIMIT_WINDOW_S)
    return max(1, math.ceil((leaves_at - now).total_seconds()))


def to_verification(row: object, shipment_id: UUID | None) -> Verification:
    values = row._mapping  # type: ignore[attr-defined]
    return Verification(
        id=values["id"],
        creator=values["creator"],
        idempotency_id=values["idempotency_id"],
        channel=Channel(values["channel"]),
        recipient=values["recipient"],
        sender=values["sender"],
        senders_reference=values["senders_reference"],
        language=values["language"],
        template=values["template"],
        code_length=values["code_length"],
        code_serial=values["code_serial"],
        status=OtpStatus(values["status"]),
        attempts=values["attempts"],
        created_at=values["created_at"],
        expires_at=values["expires_at"],
        last_sent_at=values["last_sent_at"],
        shipment_id=shipment_id,
    )


async def load_verification(
    connection: AsyncConnection,
    *,
    creator: str,
    verification_id: UUID | None = None,
    idempotency_id: str | None = None,
) -> Verification | None:
    query = select(otp_verifications).where(otp_verifications.c.creator == creator)
    if verification_id is not None:
        query = query.where(otp_verifications.c.id == verification_id)
    if idempotency_id is not None:
        query = query.where(otp_verifications.c.idempotency_id == idempotency_id)
    row = (await connection.execute(query)).first()
    if row is None:
        return None
    shipment_id = (
        await connection.execute(
            select(orders.c.shipment_id).where(
                orders.c.creator == creator,
                orders.c.idempotency_id == order_key(row.id, row.code_serial),
            )
        )
    ).scalar()
    return to_verification(row, shipment_id)


async def recipient_failures_retry_after_s(
    connection: AsyncConnection, creator: str, key: str, *, limit: int, now: datetime
) -> int | None:
    """Return the seconds until the recipient's wrong codes fall below `limit`, or None.

    A failure row reaches its verification's recipient through
    verification_id. A code can only be checked before its verification
    expires, at most MAX_TTL_S after creation, so only verifications created
    in the window plus MAX_TTL_S can own a failure in the window. That bound
    keeps the scan of otp_verifications to the recipient's recent rows.
    """
    oldest_owner = now - timedelta(seconds=LIMIT_WINDOW_S + MAX_TTL_S)
    return await retry_after_s(
        connection,
        otp_failed_checks.c.failed_at,
        [
            otp_verifications.c.creator == creator,
            otp_verifications.c.recipient_key == key,
            otp_verifications.c.created_at > oldest_owner,
        ],
        limit=limit,
        now=now,
        source=otp_failed_checks.join(
            otp_verifications, otp_verifications.c.id == otp_failed_checks.c.verification_id
        ),
    )


def status_after_wrong_attempt(attempts: ColumnElement[int]) -> ColumnElement[str]:
    """Return the stored status after a wrong attempt, computed from the row's own count."""
    return case(
        (attempts + 1 >= MAX_ATTEMPTS, OtpStatus.MAX_ATTEMPTS_REACHED.value),
        else_=OtpStatus.PENDING.value,
    )


class OtpStore:
    """Every read and write of OTP verifications.

    Its write transactions are urgent: a user waits for each of them (a code
    sent, a code checked), so on SQLite they go before regular writes and do
    not wait for instant orders being placed.
    """

    def __init__(self, database: Database) -> None:
        self.database = database

    async def get(self, creator: str, verification_id: UUID) -> Verification | None:
        """Return the creator's verification, or None when it is missing or another creator's."""
        async with self.database.read() as connection:
            return await load_verification(
                connection, creator=creator, verification_id=verification_id
            )

    async def create(
        self, new: NewVerification, *, recipient_limit: int, now: datetime
    ) -> tuple[Verification, bool]:
        """Store a new verification, or return the one stored under the same creator and key.

        Returns the verification and whether it is new. Raises
        RateLimitExceededError when this creator made `recipient_limit`
        verifications for the recipient in the last hour.
        """
        key = recipient_key(new.channel, new.recipient)
        try:
            async with self.database.write(urgent=True) as connection:
                # Locked before the replay lookup: a request that waited here for
                # a concurrent one with the same key must see it as a replay,
                # not count it against the recipient's limit.
                await lock(connection, f"otp-recipient:{new.creator}:{key}")
                existing = await load_verification(
                    connection, creator=new.creator, idempotency_id=new.idempotency_id
                )
                if existing is not None:
                    return existing, False
                wait_s = await retry_after_s(
                    connection,
                    otp_verifications.c.created_at,
                    [
                        otp_verifications.c.creator == new.creator,
                        otp_verifications.c.recipient_key == key,
                    ],
                    limit=recipient_limit,
                    now=now,
                )
                if wait_s is not None:
                    raise RateLimitExceededError(
                        OTP_RECIPIENT_LIMIT,
                        wait_s,
                        f"This recipient got {recipient_limit} verifications from this creator "
                        f"in the last hour, the most allowed. Retry after {wait_s} s.",
                    )
                await connection.execute(
                    insert(otp_verifications).values(
                        id=new.id,
                        creator=new.creator,
                        idempotency_id=new.idempotency_id,
                        channel=new.channel.value,
                        recipient=new.recipient,
                        recipient_key=key,
                        sender=new.sender,
                        senders_reference=new.senders_reference,
                        language=new.language,
                        template=new.template,
                        code_length=new.code_length,
                        code_digest=new.code_digest,
                        code_serial=0,
                        status=OtpStatus.PENDING.value,
                        attempts=0,
                        created_at=now,
                        updated_at=now,
                        expires_at=new.expires_at,
                        last_sent_at=now,
                    )
                )
        except IntegrityError:
            # A concurrent request with the same key committed first, so return its verification.
            async with self.database.read() as connection:
                existing = await load_verification(
                    connection, creator=new.creator, idempotency_id=new.idempotency_id
                )
            if existing is None:
                raise
            return existing, False
        return stored_verification(new, now), True

    async def discard(self, verification: Verification) -> None:
        """Delete a verification whose first code could not be stored for sending.

        Only an untouched verification is deleted, so a retry with the same
        idempotency id starts afresh and the recipient's limit is not charged.
        """
        async with self.database.write(urgent=True) as connection:
            await connection.execute(
                delete(otp_verifications).where(
                    otp_verifications.c.id == verification.id,
                    otp_verifications.c.code_serial == 0,
                    otp_verifications.c.attempts == 0,
                )
            )

    async def check(
        self,
        creator: str,
        verification_id: UUID,
        *,
        submitted_digest: str,
        failed_check_limit: int,
        now: datetime,
    ) -> CheckOutcome | None:
        """Count one check of a code, approving the verification if the digests match.

        Returns None for a missing or another creator's verification. A
        verification that is not pending (or expired) is returned unchanged
        and no attempt is counted. Raises RateLimitExceededError, before the
        attempt is counted, when the creator's verifications for the same
        recipient had `failed_check_limit` wrong codes in the last hour.
        """
        async with self.database.write(urgent=True) as connection:
            key = (
                await connection.execute(
                    select(otp_verifications.c.recipient_key).where(
                        otp_verifications.c.id == verification_id,
                        otp_verifications.c.creator == creator,
                    )
                )
            ).scalar()
            if key is None:
                return None
            # Locked before the row is read, so the state checked below is the
            # state after every concurrent check of this recipient committed.
            await lock(connection, f"otp-failures:{creator}:{key}")
            row = (
                await connection.execute(
                    select(
                        otp_verifications.c.code_digest,
                        otp_verifications.c.code_serial,
                        otp_verifications.c.status,
                        otp_verifications.c.expires_at,
                    ).where(otp_verifications.c.id == verification_id)
                )
            ).first()
            if row is None:
                return None  # deleted while this check waited for the lock
            counted = matched = False
            if row.status == OtpStatus.PENDING.value and row.expires_at > now:
                wait_s = await recipient_failures_retry_after_s(
                    connection, creator, key, limit=failed_check_limit, now=now
                )
                if wait_s is not None:
                    raise RateLimitExceededError(
                        OTP_FAILED_CHECKS_LIMIT,
                        wait_s,
                        f"This recipient's verifications from this creator had "
                        f"{failed_check_limit} wrong codes in the last hour, the most allowed. "
                        f"Retry after {wait_s} s.",
                    )
                matched = digests_match(row.code_digest, submitted_digest)
                counted = await self._count_attempt(
                    connection, verification_id, row.code_serial, matched=matched, now=now
                )
                if counted and not matched:
                    await self._record_failure(connection, creator, verification_id, now)
            current = await load_verification(
                connection, creator=creator, verification_id=verification_id
            )
            assert current is not None
            if counted and current.status is not OtpStatus.PENDING:
                await self._erase_codes(connection, current, through_serial=current.code_serial)
        return CheckOutcome(current, counted=counted, approved=counted and matched)

    async def _count_attempt(
        self,
        connection: AsyncConnection,
        verification_id: UUID,
        code_serial: int,
        *,
        matched: bool,
        now: datetime,
    ) -> bool:
        """Apply one attempt if the verification is still pending with the same code.

        The WHERE clause repeats every condition the caller read, so of two
        concurrent checks only one can move the row, and a check that lost
        the race changes nothing.
        """
        attempts = otp_verifications.c.attempts
        new_status = OtpStatus.APPROVED.value if matched else status_after_wrong_attempt(attempts)
        moved = (
            await connection.execute(
                update(otp_verifications)
                .where(
                    otp_verifications.c.id == verification_id,
                    otp_verifications.c.status == OtpStatus.PENDING.value,
                    otp_verifications.c.attempts < MAX_ATTEMPTS,
                    otp_verifications.c.expires_at > now,
                    otp_verifications.c.code_serial == code_serial,
                )
                .values(attempts=attempts + 1, status=new_status, updated_at=now)
                .returning(otp_verifications.c.id)
            )
        ).first()
        return moved is not None

    async def _record_failure(
        self, connection: AsyncConnection, creator: str, verification_id: UUID, now: datetime
    ) -> None:
        await connection.execute(
            delete(otp_failed_checks).where(
                otp_failed_checks.c.creator == creator,
                otp_failed_checks.c.failed_at <= now - timedelta(seconds=LIMIT_WINDOW_S),
            )
        )
        await connection.execute(
            insert(otp_failed_checks).values(
                creator=creator, verification_id=verification_id, failed_at=now
            )
        )

    async def replace_code(
        self, verification: Verification, *, code_digest: str, now: datetime
    ) -> tuple[Verification, str] | None:
        """Make a new code the only valid one of a verification read earlier.

        Returns the verification with the new code's serial and the digest of
        the code it replaced (for restore_code), or None when the verification
        changed since it was read (a concurrent resend or a check closed it).
        """
        async with self.database.write(urgent=True) as connection:
            previous_digest = (
                await connection.execute(
                    select(otp_verifications.c.code_digest).where(
                        otp_verifications.c.id == verification.id,
                        otp_verifications.c.code_serial == verification.code_serial,
                    )
                )
            ).scalar()
            moved = (
                await connection.execute(
                    update(otp_verifications)
                    .where(
                        otp_verifications.c.id == verification.id,
                        otp_verifications.c.status == OtpStatus.PENDING.value,
                        otp_verifications.c.expires_at > now,
                        otp_verifications.c.code_serial == verification.code_serial,
                    )
                    .values(
                        code_digest=code_digest,
                        code_serial=verification.code_serial + 1,
                        last_sent_at=now,
                        updated_at=now,
                    )
                    .returning(otp_verifications.c.id)
                )
            ).first()
            if moved is None or previous_digest is None:
                return None
            await self._erase_codes(
                connection, verification, through_serial=verification.code_serial
            )
        updated = replace(
            verification,
            code_serial=verification.code_serial + 1,
            last_sent_at=now,
            shipment_id=None,
        )
        return updated, previous_digest

    async def restore_code(
        self, previous: Verification, *, code_digest: str, now: datetime
    ) -> None:
        """Undo replace_code when the new code could not be stored for sending.

        `previous` is the verification as read before replace_code and
        `code_digest` the digest replace_code returned; that code is valid again.
        """
        async with self.database.write(urgent=True) as connection:
            await connection.execute(
                update(otp_verifications)
                .where(
                    otp_verifications.c.id == previous.id,
                    otp_verifications.c.code_serial == previous.code_serial + 1,
                )
                .values(
                    code_digest=code_digest,
                    code_serial=previous.code_serial,
                    last_sent_at=previous.last_sent_at,
                    updated_at=now,
                )
            )

    async def _erase_codes(
        self, connection: AsyncConnection, verification: Verification, *, through_serial: int
    ) -> None:
        """Erase the bodies of the messages whose code can no longer approve anything.

        Only messages past their hand-off are erased: one still waiting for a
        (retried) hand-off keeps its body, because the dispatcher sends what is
        stored.
        """
        keys = [order_key(verification.id, serial) for serial in range(through_serial + 1)]
        carrying = select(orders.c.id).where(
            orders.c.creator == verification.creator, orders.c.idempotency_id.in_(keys)
        )
        await connection.execute(
            update(notifications)
            .where(
                notifications.c.order_id.in_(carrying.scalar_subquery()),
                notifications.c.status.not_in([*NEW_STATUSES, *SENDING_STATUSES]),
            )
            .values(body=None)
        )


def stored_verification(new: NewVerification, now: datetime) -> Verification:
    """Return a verification as create stores it, without reading it back."""
    return Verification(
        id=new.id,
        creator=new.creator,
        idempotency_id=new.idempotency_id,
        channel=new.channel,
        recipient=new.recipient,
        sender=new.sender,
        senders_reference=new.senders_reference,
        language=new.language,
        template=new.template,
        code_length=new.code_length,
        code_serial=0,
        status=OtpStatus.PENDING,
        attempts=0,
        created_at=now,
        expires_at=new.expires_at,
        last_sent_at=now,
        shipment_id=None,
    )
