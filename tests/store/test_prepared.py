"""Prepared statements store and return the same values as SQLAlchemy's own execution."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, select, text
from sqlalchemy.exc import IntegrityError

from budstikke.errors import DatabaseUnavailableError
from budstikke.store import database as database_module
from budstikke.store.database import Database
from budstikke.store.migrate import upgrade_to_head
from budstikke.store.prepared import PreparedStatement, inline_sqlite_connection
from budstikke.store.tables import orders

NOW = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)

INSERT_ORDER = PreparedStatement(insert(orders).returning(orders.c.id, orders.c.created_at))


def order_values(idempotency_id: str) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "shipment_id": uuid.uuid4(),
        "creator": "prepared",
        "idempotency_id": idempotency_id,
        "senders_reference": None,
        "order_type": "Instant",
        "status": "Order_Processed",
        "created_at": NOW,
        "updated_at": NOW + timedelta(seconds=1),
    }


async def test_prepared_insert_reads_back_like_core_insert(database: Database) -> None:
    prepared_values = order_values("prepared")
    core_values = order_values("core")
    async with database.write() as connection:
        returned = await INSERT_ORDER.execute(connection, prepared_values)
        await connection.execute(insert(orders), core_values)

    async with database.read() as connection:
        rows = {
            row.idempotency_id: row._asdict()
            for row in await connection.execute(select(orders).order_by(orders.c.idempotency_id))
        }

    assert returned == [(prepared_values["id"], NOW)]
    for values in (prepared_values, core_values):
        stored = rows[values["idempotency_id"]]
        assert {name: stored[name] for name in values} == values


async def test_prepared_insert_stores_same_sqlite_text(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await upgrade_to_head(database)
    prepared_values = order_values("prepared")
    core_values = order_values("core")
    try:
        async with database.write() as connection:
            assert inline_sqlite_connection(connection) is not None
            await INSERT_ORDER.execute(connection, prepared_values)
            await connection.execute(insert(orders), core_values)
        async with database.read() as connection:
            # The columns as SQLite stores them, without SQLAlchemy's result processing.
            stored = (
                await connection.execute(
                    text(
                        "SELECT id, shipment_id, created_at, updated_at FROM orders "
                        "ORDER BY idempotency_id"
                    )
                )
            ).all()
    finally:
        await database.dispose()

    core_row, prepared_row = stored
    assert prepared_row.id == prepared_values["id"].hex
    assert core_row.id == core_values["id"].hex
    assert prepared_row.created_at == core_row.created_at
    assert prepared_row.updated_at == core_row.updated_at


async def test_prepared_duplicate_raises_integrity_error(database: Database) -> None:
    first = order_values("twice")
    async with database.write() as connection:
        await INSERT_ORDER.execute(connection, first)

    with pytest.raises(IntegrityError):
        async with database.write() as connection:
            await INSERT_ORDER.execute(connection, order_values("other"))
            await INSERT_ORDER.execute(connection, order_values("twice"))

    async with database.read() as connection:
        keys = (await connection.execute(select(orders.c.idempotency_id))).scalars().all()
    assert keys == ["twice"]


async def test_prepared_missing_parameter_names_it(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await upgrade_to_head(database)
    values = order_values("missing")
    del values["shipment_id"]
    try:
        with pytest.raises(KeyError, match="shipment_id"):
            async with database.write() as connection:
                await INSERT_ORDER.execute(connection, values)
    finally:
        await database.dispose()


SELECT_ORDERS_BY_ID = PreparedStatement(
    select(orders.c.idempotency_id, orders.c.created_at)
    .where(
        orders.c.id.in_(bindparam("order_ids", expanding=True)),
        orders.c.order_type.in_(["Instant", "Notification"]),
    )
    .order_by(orders.c.idempotency_id)
)
INSERT_SOME_COLUMNS = PreparedStatement(
    insert(orders),
    columns=(
        "id",
        "shipment_id",
        "creator",
        "idempotency_id",
        "order_type",
        "status",
        "created_at",
        "updated_at",
    ),
)


async def test_prepared_select_expands_lists(database: Database) -> None:
    rows = [order_values(f"many-{index}") for index in range(4)]
    for values in rows:
        del values["senders_reference"]
    async with database.write() as connection:
        await INSERT_SOME_COLUMNS.execute_many(connection, rows)
        found = await SELECT_ORDERS_BY_ID.execute(
            connection, {"order_ids": [rows[2]["id"], rows[0]["id"], uuid.uuid4()]}
        )
        empty = await SELECT_ORDERS_BY_ID.execute(connection, {"order_ids": []})

    assert [(row.idempotency_id, row.created_at) for row in found] == [
        ("many-0", NOW),
        ("many-2", NOW),
    ]
    assert empty == []


async def test_prepared_many_leaves_other_columns_unset(database: Database) -> None:
    values = order_values("some")
    del values["senders_reference"]
    async with database.write() as connection:
        await INSERT_SOME_COLUMNS.execute_many(connection, [values])
        await INSERT_SOME_COLUMNS.execute_many(connection, [])

    async with database.read() as connection:
        stored = (await connection.execute(select(orders))).one()

    assert stored.senders_reference is None
    assert stored.shipment_id == values["shipment_id"]


def test_prepared_rejects_literal_values() -> None:
    statement = select(orders.c.id).where(
        orders.c.creator.in_(bindparam("creators", expanding=True, literal_execute=True))
    )

    with pytest.raises(ValueError, match="per-execution processing"):
        PreparedStatement(statement)


def test_prepared_rejects_python_side_defaults() -> None:
    metadata = MetaData()
    table = Table(
        "defaults",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("token", String(32), default=lambda: uuid.uuid4().hex),
    )

    with pytest.raises(ValueError, match="per-execution processing"):
        PreparedStatement(insert(table).values(id=bindparam("id")))


async def test_locked_sqlite_begin_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "SQLITE_BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "store.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    await upgrade_to_head(database)
    other_process = sqlite3.connect(path, isolation_level=None)
    try:
        other_process.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseUnavailableError, match="locked"):
            async with database.write() as connection:
                await INSERT_ORDER.execute(connection, order_values("locked"))
        other_process.execute("ROLLBACK")

        async with database.write() as connection:
            await INSERT_ORDER.execute(connection, order_values("after"))
        async with database.read() as connection:
            keys = (await connection.execute(select(orders.c.idempotency_id))).scalars().all()
    finally:
        other_process.close()
        await database.dispose()

    assert keys == ["after"]
