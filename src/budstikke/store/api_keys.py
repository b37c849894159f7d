"""API keys: created once, stored as a SHA-256 hash, found by their public prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import insert, select, update

from budstikke.store.database import Database
from budstikke.store.tables import api_keys

KEY_MARKER = "bsk"
PREFIX_BYTES = 6  # 12 hex characters: enough to find the row, useless without the secret
SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: UUID
    creator: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """Who a presented key belongs to."""

    creator: str
    scopes: frozenset[str]


def hash_key(key: str) -> str:
    # The secret has 256 bits of entropy, so a plain SHA-256 is as strong as a slow hash here.
    return hashlib.sha256(key.encode()).hexdigest()


def split_key(key: str) -> str | None:
    """Return the prefix of a well-formed key (`bsk_<prefix>_<secret>`), else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_MARKER or len(parts[1]) != PREFIX_BYTES * 2:
        return None
    return parts[1]


async def create_api_key(
    database: Database, *, creator: str, scopes: tuple[str, ...], now: datetime
) -> tuple[ApiKeyRecord, str]:
    """Create a key and return its record and the key itself, which is never stored."""
    prefix = secrets.token_hex(PREFIX_BYTES)
    key = f"{KEY_MARKER}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    record = ApiKeyRecord(
        id=uuid.uuid4(),
        creator=creator,
        prefix=prefix,
        scopes=scopes,
        created_at=now,
        revoked_at=None,
    )
    async with database.write() as connection:
        await connection.execute(
            insert(api_keys).values(
                id=record.id,
                creator=creator,
                prefix=prefix,
                secret_hash=hash_key(key),
                scopes=" ".join(scopes),
                created_at=now,
            )
        )
    return record, key


async def list_api_keys(database: Database) -> list[ApiKeyRecord]:
    async with database.read() as connection:
        rows = await connection.execute(select(api_keys).order_by(api_keys.c.created_at))
        return [record_from_row(row) for row in rows]


def record_from_row(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        creator=row.creator,
        prefix=row.prefix,
        scopes=tuple(row.scopes.split()),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


async def find_api_keys_by_prefix(database: Database, prefix_start: str) -> list[ApiKeyRecord]:
    """Return the keys, revoked ones included, whose prefix starts with `prefix_start`.

    `prefix_start` must be lowercase hex, so it carries no LIKE wildcard.
    """
    if not all(character in "0123456789abcdef" for character in prefix_start):
        raise ValueError(f"a key prefix is lowercase hex, not {prefix_start!r}")
    async with database.read() as connection:
        rows = await connection.execute(
            select(api_keys)
            .where(api_keys.c.prefix.like(f"{prefix_start}%"))
            .order_by(api_keys.c.created_at)
        )
        return [record_from_row(row) for row in rows]


def key_matches_hash(key: str, secret_hash: str) -> bool:
    return hmac.compare_digest(secret_hash, hash_key(key))


async def read_secret_hash(database: Database, key_id: UUID) -> str | None:
    async with database.read() as connection:
        return (
            await connection.execute(select(api_keys.c.secret_hash).where(api_keys.c.id == key_id))
        ).scalar()


async def revoke_api_key(database: Database, key_id: UUID, now: datetime) -> bool:
    """Revoke a key; returns False if no unrevoked key has that id."""
    async with database.write() as connection:
        result = await connection.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    return result.rowcount == 1


async def find_key_owner(database: Database, key: str) -> KeyOwner | None:
    """Return the owner of a valid, unrevoked key, or None."""
    prefix = split_key(key)
    if prefix is None:
        return None
    async with database.read() as connection:
        row = (
            await connection.execute(
                select(api_keys.c.creator, api_keys.c.scopes, api_keys.c.secret_hash).where(
                    api_keys.c.prefix == prefix, api_keys.c.revoked_at.is_(None)
                )
            )
        ).first()
    if row is None or not hmac.compare_digest(row.secret_hash, hash_key(key)):
        return None
    return KeyOwner(creator=row.creator, scopes=frozenset(row.scopes.split()))


async def creator_has_active_key(database: Database, creator: str) -> bool:
    """Tell whether the creator has at least one API key that is not revoked."""
    async with database.read() as connection:
        row = (
            await connection.execute(
                select(api_keys.c.id)
                .where(api_keys.c.creator == creator, api_keys.c.revoked_at.is_(None))
                .limit(1)
            )
        ).first()
    return row is not None
