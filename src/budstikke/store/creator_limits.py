"""The operator's per-creator limits: stored overrides merged with the defaults."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from budstikke.domain.creator_limits import CreatorLimits
from budstikke.domain.sms_countries import SmsCountries, parse_sms_countries
from budstikke.store.database import Database
from budstikke.store.tables import creator_limits

# How long a process trusts limits it read: the longest time a change made
# with `budstikke limits set` takes to reach a running server.
LIMITS_CACHE_S = 1.0
# Creators remembered at once; when full, the memory starts over.
LIMITS_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class LimitOverrides:
    """The fields an operator set for a creator; None takes the default."""

    rate_per_s: float | None = None
    burst: int | None = None
    per_recipient_10min: int | None = None
    per_recipient_day: int | None = None
    sms_countries: SmsCountries | None = None
    sensitive_guard: bool | None = None

    def apply_to(self, defaults: CreatorLimits) -> CreatorLimits:
        changes = {
            field.name: getattr(self, field.name)
            for field in fields(self)
            if getattr(self, field.name) is not None
        }
        return replace(defaults, **changes)


async def read_overrides(database: Database, creator: str) -> LimitOverrides:
    async with database.read() as connection:
        row = (
            await connection.execute(
                select(creator_limits).where(creator_limits.c.creator == creator)
            )
        ).first()
    if row is None:
        return LimitOverrides()
    return LimitOverrides(
        rate_per_s=row.rate_per_s,
        burst=row.burst,
        per_recipient_10min=row.per_recipient_10min,
        per_recipient_day=row.per_recipient_day,
        sms_countries=None if row.sms_countries is None else parse_sms_countries(row.sms_countries),
        sensitive_guard=row.sensitive_guard,
    )


async def write_overrides(
    database: Database,
    creator: str,
    changes: LimitOverrides,
    now: datetime,
    *,
    reset: tuple[str, ...] = (),
) -> LimitOverrides:
    """Store the fields `changes` sets, clear the `reset` ones, and return the creator's overrides.

    Fields neither set nor reset keep their stored value.
    """
    values: dict[str, Any] = {name: None for name in reset}
    for field in fields(changes):
        value = getattr(changes, field.name)
        if value is not None:
            values[field.name] = str(value) if isinstance(value, SmsCountries) else value
    dialect_insert = sqlite.insert if database.is_sqlite else postgresql.insert
    statement = dialect_insert(creator_limits).values(creator=creator, updated_at=now, **values)
    statement = statement.on_conflict_do_update(
        index_elements=[creator_limits.c.creator], set_={"updated_at": now, **values}
    )
    async with database.write() as connection:
        await connection.execute(statement)
    return await read_overrides(database, creator)


class CreatorLimitsSource:
    """Each creator's effective limits, read from the database and kept for LIMITS_CACHE_S."""

    def __init__(
        self,
        database: Database,
        defaults: CreatorLimits,
        *,
        cache_s: float = LIMITS_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database = database
        self.defaults = defaults
        self.cache_s = cache_s
        self.clock = clock
        self._cached: dict[str, tuple[CreatorLimits, float]] = {}

    async def for_creator(self, creator: str) -> CreatorLimits:
        cached = self._cached.get(creator)
        if cached is not None and self.clock() < cached[1]:
            return cached[0]
        limits = (await read_overrides(self.database, creator)).apply_to(self.defaults)
        if self.cache_s > 0:
            if len(self._cached) >= LIMITS_CACHE_SIZE:
                self._cached.clear()
            self._cached[creator] = (limits, self.clock() + self.cache_s)
        return limits
