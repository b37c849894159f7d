"""Rate limits held in the database: each creator's token bucket and the per-recipient counts.

`take_order_allowance` runs inside the transaction that stores a new
order, after the idempotency key was found new, so a replay spends
nothing, and a rejection rolls the order back. Both limits hold across
processes: on PostgreSQL the bucket row is locked by its upsert and the
recipient's count by an advisory lock, each until the order commits, so
two concurrent orders cannot both take the last room. SQLite runs one
write transaction at a time.

The per-recipient counts come from `recipient_sends`, one row per accepted
instant order, rather than from `notifications`. The count is keyed by the
lower-cased email address, which `notifications.recipient` does not store.
Rows older than a day can also be deleted without touching any shipment.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import Float, bindparam, case, delete, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from budstikke.domain.creator_limits import CreatorLimits
from budstikke.domain.rate_limits import (
    CREATOR_LIMIT,
    RECIPIENT_LIMIT,
    RECIPIENT_WINDOW_DAY,
    RECIPIENT_WINDOW_SHORT,
    RateLimitExceededError,
    bucket_retry_after_s,
    window_retry_after_s,
)
from budstikke.store.database import Database
from budstikke.store.tables import rate_buckets, recipient_sends

# First key of the PostgreSQL advisory locks on recipients ("bsk" and 1); the
# two-key form never collides with the one-key locks used elsewhere.
RECIPIENT_LOCK_SPACE = 0x62736B01
LOCK_RECIPIENT = text("SELECT pg_advisory_xact_lock(:space, :key)")


def build_take_token(dialect_insert: type[sqlite.Insert] | type[postgresql.Insert]) -> object:
    """Build the upsert that refills a creator's bucket and takes one token if there is one.

    The refill uses the time since the last refill, never negative, so
    clocks that differ between processes cannot refill a bucket twice. The
    new row of a creator's first order starts full, minus that order's token.
    """
    now_s = bindparam("now_s", type_=Float)
    rate = bindparam("rate", type_=Float)
    burst = bindparam("burst", type_=Float)
    stored = rate_buckets.c
    elapsed_s = case((now_s > stored.refilled_at_s, now_s - stored.refilled_at_s), else_=0.0)
    refilled = stored.tokens + rate * elapsed_s
    available = case((refilled < burst, refilled), else_=burst)
    statement = dialect_insert(rate_buckets).values(
        creator=bindparam("creator"),
        tokens=burst - 1,
        refilled_at_s=now_s,
        last_granted=True,
    )
    return statement.on_conflict_do_update(
        index_elements=[stored.creator],
        set_={
            "tokens": case((available >= 1, available - 1), else_=available),
            "refilled_at_s": case(
                (now_s > stored.refilled_at_s, now_s), else_=stored.refilled_at_s
            ),
            "last_granted": available >= 1,
        },
    ).returning(stored.tokens, stored.last_granted)


TAKE_TOKEN = {
    "sqlite": build_take_token(sqlite.Insert),
    "postgresql": build_take_token(postgresql.Insert),
}
RECENT_SENDS = (
    select(recipient_sends.c.created_at)
    .where(
        recipient_sends.c.creator == bindparam("creator"),
        recipient_sends.c.recipient_key == bindparam("recipient_key"),
        recipient_sends.c.created_at > bindparam("since"),
    )
    .order_by(recipient_sends.c.created_at.desc())
    .limit(bindparam("count"))
)


async def take_order_allowance(
    connection: AsyncConnection,
    *,
    creator: str,
    recipient_key: str,
    limits: CreatorLimits,
    now: datetime,
) -> None:
    """Count a new instant order against the creator's limits; raises RateLimitExceededError.

    The recipient is checked first and the bucket last, because the bucket
    row lock serialises every order of the creator until the commit.
    """
    if limits.per_recipient_10min > 0 or limits.per_recipient_day > 0:
        await count_recipient_send(
            connection, creator=creator, recipient_key=recipient_key, limits=limits, now=now
        )
    if limits.rate_per_s > 0:
        await take_token(connection, creator=creator, limits=limits, now=now)


async def take_token(
    connection: AsyncConnection, *, creator: str, limits: CreatorLimits, now: datetime
) -> None:
    row = (
        await connection.execute(
            TAKE_TOKEN[connection.dialect.name],  # type: ignore[call-overload]
            {
                "creator": creator,
                "now_s": now.timestamp(),
                "rate": limits.rate_per_s,
                "burst": float(limits.burst),
            },
        )
    ).one()
    if row.last_granted:
        return
    retry_after_s = bucket_retry_after_s(row.tokens, limits.rate_per_s)
    raise RateLimitExceededError(
        CREATOR_LIMIT,
        retry_after_s,
        f"This creator may place {limits.rate_per_s:g} new orders per second with bursts of "
        f"{limits.burst}, and that rate is used up. Retry after {retry_after_s} s.",
    )


async def count_recipient_send(
    connection: AsyncConnection,
    *,
    creator: str,
    recipient_key: str,
    limits: CreatorLimits,
    now: datetime,
) -> None:
    if connection.dialect.name == "postgresql":
        await connection.execute(
            LOCK_RECIPIENT, {"space": RECIPIENT_LOCK_SPACE, "key": lock_key(creator, recipient_key)}
        )
    rows = await connection.execute(
        RECENT_SENDS,
        {
            "creator": creator,
            "recipient_key": recipient_key,
            "since": now - RECIPIENT_WINDOW_DAY,
            "count": max(limits.per_recipient_10min, limits.per_recipient_day),
        },
    )
    newest_first = list(rows.scalars())
    for limit, window, window_text in (
        (limits.per_recipient_10min, RECIPIENT_WINDOW_SHORT, "10 minutes"),
        (limits.per_recipient_day, RECIPIENT_WINDOW_DAY, "24 hours"),
    ):
        retry_after_s = window_retry_after_s(newest_first, limit, window, now)
        if retry_after_s is not None:
            raise RateLimitExceededError(
                RECIPIENT_LIMIT,
                retry_after_s,
                f"This recipient got {limit} instant messages from this creator in the last "
                f"{window_text}, the most allowed. Retry after {retry_after_s} s.",
            )
    await connection.execute(
        insert(recipient_sends).values(creator=creator, recipient_key=recipient_key, created_at=now)
    )


def lock_key(creator: str, recipient_key: str) -> int:
    """Return a stable signed 32-bit key for a creator's recipient.

    Two recipients may share a key; that only makes their orders wait for
    each other, never count together.
    """
    digest = hashlib.blake2b(f"{creator}\n{recipient_key}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


async def prune_recipient_sends(database: Database, now: datetime) -> int:
    """Delete the rows that no per-recipient window reaches any more; returns how many."""
    async with database.write() as connection:
        result = await connection.execute(
            delete(recipient_sends).where(
                recipient_sends.c.created_at <= now - RECIPIENT_WINDOW_DAY
            )
        )
    return int(result.rowcount)
