"""SQLite statements run on the event loop's thread, with the usual errors and rollbacks."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError

from budstikke.store.database import Database

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), nullable=False, unique=True),
)


@pytest.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}")
    async with database.write() as connection:
        await connection.run_sync(metadata.create_all)
    yield database
    await database.dispose()


async def test_statements_run_on_loop_thread(sqlite_database: Database) -> None:
    threads_before = threading.active_count()
    async with sqlite_database.write() as connection:
        await connection.execute(insert(items).values(name="first"))
    async with sqlite_database.read() as connection:
        names = (await connection.execute(select(items.c.name))).scalars().all()

    assert names == ["first"]
    assert threading.active_count() == threads_before


async def test_unique_violation_raises_integrity_error(sqlite_database: Database) -> None:
    async with sqlite_database.write() as connection:
        await connection.execute(insert(items).values(name="twice"))

    with pytest.raises(IntegrityError):
        async with sqlite_database.write() as connection:
            await connection.execute(insert(items).values(name="other"))
            await connection.execute(insert(items).values(name="twice"))

    async with sqlite_database.read() as connection:
        names = (await connection.execute(select(items.c.name))).scalars().all()
    assert names == ["twice"]


async def test_failed_transaction_leaves_connection_usable(sqlite_database: Database) -> None:
    with pytest.raises(RuntimeError):
        async with sqlite_database.write() as connection:
            await connection.execute(insert(items).values(name="rolled-back"))
            raise RuntimeError("abort")

    async with sqlite_database.write() as connection:
        await connection.execute(insert(items).values(name="kept"))
    async with sqlite_database.read() as connection:
        names = (await connection.execute(select(items.c.name))).scalars().all()
    assert names == ["kept"]


async def test_write_begins_immediate_transaction(sqlite_database: Database) -> None:
    async with sqlite_database.write() as connection:
        raw = await connection.get_raw_connection()
        in_transaction = raw.driver_connection._conn.in_transaction  # type: ignore[union-attr]

    assert in_transaction
