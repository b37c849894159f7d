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

from sqlalchemy import (
    Float,
    Integer,
    String,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

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
from budstikke.store.prepared import PreparedStatement
from budstikke.store.tables import rate_buckets, recipient_sends
from budstikke.store.types import UtcDateTime

# First key of the PostgreSQL advisory locks on recipients ("bsk" and 1). The
# two-key form does not overlap the one-key locks used elsewhere (PostgreSQL
# manual, "Advisory Lock Functions": the two key spaces do not overlap).
RECIPIENT_LOCK_SPACE = 0x62736B01
LOCK_RECIPIENT = text("SELECT pg_advisory_xact_lock(:space, :key)")


def build_take_token(
    dialect_insert: type[sqlite.Insert] | type[postgresql.Insert],
) -> PreparedStatement:
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
    upsert = statement.on_conflict_do_update(
        index_elements=[stored.creator],
        set_={
            "tokens": case((available >= 1, available - 1), else_=available),
            "refilled_at_s": case(
                (now_s > stored.refilled_at_s, now_s), else_=stored.refilled_at_s
            ),
            "last_granted": available >= 1,
        },
    )
    return PreparedStatement(upsert.returning(stored.tokens, stored.last_granted))


TAKE_TOKEN = {
    "sqlite": build_take_token(sqlite.Insert),
    "postgresql": build_take_token(postgresql.Insert),
}


def build_insert_send_if_room() -> PreparedStatement:
    """Build the insert of a recipient send that happens only while both windows have room.

    One statement in place of a count and an insert, because this runs for
    every instant order. A limit of 0 is off. It returns the new row's id,
    and no row when a window is full.
    """

    def sends_since(name: str) -> ColumnElement[int]:
        return (
            select(func.count())
            .where(
                recipient_sends.c.creator == bindparam("creator"),
                recipient_sends.c.recipient_key == bindparam("recipient_key"),
                recipient_sends.c.created_at > bindparam(name, type_=UtcDateTime),
            )
            .scalar_subquery()
        )

    limit_short = bindparam("limit_short", type_=Integer)
    limit_day = bindparam("limit_day", type_=Integer)
    row = select(
        bindparam("creator", type_=String),
        bindparam("recipient_key", type_=String),
        bindparam("created_at", type_=UtcDateTime),
    ).where(
        or_(limit_short == 0, sends_since("since_short") < limit_short),
        or_(limit_day == 0, sends_since("since_day") < limit_day),
    )
    return PreparedStatement(
        insert(recipient_sends)
        .from_select(["creator", "recipient_key", "created_at"], row)
        .returning(recipient_sends.c.id)
    )


# Built once and prepared, like the inserts in store/orders.py, because they run for every order.
INSERT_SEND_IF_ROOM = build_insert_send_if_room()
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
    rows = await TAKE_TOKEN[connection.dialect.name].execute(
        connection,
        {
            "creator": creator,
            "now_s": now.timestamp(),
            "rate": limits.rate_per_s,
            "burst": float(limits.burst),
        },
    )
    tokens, last_granted = rows[0]
    if last_granted:
        return
    retry_after_s = bucket_retry_after_s(tokens, limits.rate_per_s)
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
    inserted = await INSERT_SEND_IF_ROOM.execute(
        connection,
        {
            "creator": creator,
            "recipient_key": recipient_key,
            "created_at": now,
            "limit_short": limits.per_recipient_10min,
            "limit_day": limits.per_recipient_day,
            "since_short": now - RECIPIENT_WINDOW_SHORT,
            "since_day": now - RECIPIENT_WINDOW_DAY,
        },
    )
    if inserted:
        return
    # A window is full: read the recent sends to find which, and when it has room again.
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
    raise RuntimeError("a recipient window was full, but no window is full on a second read")


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
