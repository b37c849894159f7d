"""Queries for the fingerprint of the OTP key that the stored digests were made with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from budstikke.store.database import Database
from budstikke.store.tables import key_fingerprints

OTP_KEY_NAME = "otp"


@dataclass(frozen=True, slots=True)
class KeyFingerprint:
    fingerprint: str
    recorded_at: datetime


async def read_otp_key_fingerprint(database: Database) -> KeyFingerprint | None:
    async with database.read() as connection:
        row = (
            await connection.execute(
                select(key_fingerprints.c.fingerprint, key_fingerprints.c.recorded_at).where(
                    key_fingerprints.c.name == OTP_KEY_NAME
                )
            )
        ).first()
    return None if row is None else KeyFingerprint(row.fingerprint, row.recorded_at)


async def claim_otp_key_fingerprint(
    database: Database, fingerprint: str, *, now: datetime
) -> KeyFingerprint:
    """Record the fingerprint unless one is stored already; return the stored one.

    Of two processes that start together on an empty table, the second
    insert fails on the primary key and reads the first one's fingerprint.
    """
    stored = await read_otp_key_fingerprint(database)
    if stored is not None:
        return stored
    try:
        async with database.write() as connection:
            await connection.execute(
                insert(key_fingerprints).values(
                    name=OTP_KEY_NAME, fingerprint=fingerprint, recorded_at=now
                )
            )
    except IntegrityError:
        stored = await read_otp_key_fingerprint(database)
        if stored is None:
            raise
        return stored
    return KeyFingerprint(fingerprint, now)


async def replace_otp_key_fingerprint(
    database: Database, fingerprint: str, *, now: datetime
) -> KeyFingerprint | None:
    """Record the fingerprint of a new key in place of the stored one; return the stored one.

    The same fingerprint again leaves the row as it was.
    """
    async with database.write() as connection:
        previous = (
            await connection.execute(
                select(key_fingerprints.c.fingerprint, key_fingerprints.c.recorded_at)
                .where(key_fingerprints.c.name == OTP_KEY_NAME)
                .with_for_update()
            )
        ).first()
        values = {"fingerprint": fingerprint, "recorded_at": now}
        if previous is not None and previous.fingerprint == fingerprint:
            return KeyFingerprint(previous.fingerprint, previous.recorded_at)
        if previous is None:
            await connection.execute(insert(key_fingerprints).values(name=OTP_KEY_NAME, **values))
            return None
        await connection.execute(
            update(key_fingerprints).where(key_fingerprints.c.name == OTP_KEY_NAME).values(**values)
        )
    return KeyFingerprint(previous.fingerprint, previous.recorded_at)
