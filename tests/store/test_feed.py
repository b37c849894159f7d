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

    # The first writer inserts its entry and then sits idle in its transaction.
    slow = await database.engine.connect()
    slow_transaction = await slow.begin()
    await complete_order_if_final(slow, first.order_id, NOW)

    async def complete_second() -> None:
        async with database.write() as connection:
            await complete_order_if_final(connection, second.order_id, NOW)

    # The second writer must not wait for the idle one. A waiting writer keeps
    # its pooled connection, so under load such waits take every connection.
    await asyncio.wait_for(complete_second(), timeout=5)
    seen_while_open = await read_feed(
        database, creator="ttd", after_seq=0, page_size=10, descending=False
    )
    await slow_transaction.commit()
    await slow.close()
    resumed = await read_feed(
        database, creator="ttd", after_seq=seen_while_open[-1].seq, page_size=10, descending=False
    )

    assert len(seen_while_open) == 1
    assert str(second.shipment_id) in seen_while_open[0].entry_json
    assert len(resumed) == 1
    assert str(first.shipment_id) in resumed[0].entry_json
    assert resumed[0].seq > seen_while_open[0].seq


async def test_entries_of_one_transaction_keep_their_order(database: Database) -> None:
    receipts = [await new_order(database, key) for key in ("a", "b", "c")]
    for receipt in receipts:
        await mark_delivered(database, receipt)

    async with database.write() as connection:
        for receipt in receipts:
            await complete_order_if_final(connection, receipt.order_id, NOW)
    entries = await read_feed(database, creator="ttd", after_seq=0, page_size=10, descending=False)

    assert len(entries) == 3
    for receipt, entry in zip(receipts, entries, strict=True):
        assert str(receipt.shipment_id) in entry.entry_json


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
