"""The status feed: entries become visible in sequence order, whatever the commit order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from budstikke.domain.statuses import NotificationStatus
from budstikke.store.database import Database
from budstikke.store.feed import complete_order_if_final, read_feed
from budstikke.store.records import OrderReceipt
from budstikke.store.tables import notifications
from tests.store.test_notifications import new_order

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


async def mark_delivered(database: Database, receipt: OrderReceipt) -> None:
    async with database.write() as connection:
        await connection.execute(
            update(notifications)
            .where(notifications.c.order_id == receipt.order_id)
            .values(status=NotificationStatus.SMS_DELIVERED.value)
        )


async def test_reader_resuming_from_last_seq_misses_nothing(database: Database) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite has one writer at a time, so commits cannot overtake each other")
    first = await new_order(database, "first")
    second = await new_order(database, "second")
    await mark_delivered(database, first)
    await mark_delivered(database, second)

    # The first writer takes its sequence number and holds its transaction open.
    slow = await database.engine.connect()
    slow_transaction = await slow.begin()
    await complete_order_if_final(slow, first.order_id, NOW)

    async def complete_second() -> None:
        async with database.write() as connection:
            await complete_order_if_final(connection, second.order_id, NOW)

    fast = asyncio.create_task(complete_second())
    await asyncio.sleep(0.3)
    seen_while_open = await read_feed(
        database, creator="ttd", after_seq=0, page_size=10, descending=False
    )
    blocked = not fast.done()
    await slow_transaction.commit()
    await slow.close()
    await fast

    assert blocked
    assert seen_while_open == []
    resumed = await read_feed(database, creator="ttd", after_seq=0, page_size=1, descending=False)
    rest = await read_feed(
        database, creator="ttd", after_seq=resumed[0].seq, page_size=10, descending=False
    )
    assert len(resumed) == 1
    assert len(rest) == 1
    assert rest[0].seq > resumed[0].seq


async def test_descending_lists_newest_first(database: Database) -> None:
    for key in ("a", "b", "c"):
        receipt = await new_order(database, key)
        await mark_delivered(database, receipt)
        async with database.write() as connection:
            await complete_order_if_final(connection, receipt.order_id, NOW)

    newest = await read_feed(database, creator="ttd", after_seq=0, page_size=2, descending=True)
    older = await read_feed(
        database, creator="ttd", after_seq=newest[-1].seq, page_size=10, descending=True
    )

    assert [entry.seq for entry in newest] == sorted((entry.seq for entry in newest), reverse=True)
    assert len(newest) == 2
    assert len(older) == 1
    assert older[0].seq < newest[-1].seq
