"""Group commit: orders placed together share a transaction, and each fails on its own."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from budstikke.domain.rate_limits import RateLimitExceededError
from budstikke.domain.statuses import Channel
from budstikke.errors import DatabaseUnavailableError
from budstikke.store import database as database_module
from budstikke.store.database import Database
from budstikke.store.migrate import upgrade_to_head
from budstikke.store.order_batches import OrderBatcher
from budstikke.store.records import NewNotification, OrderReceipt
from budstikke.store.tables import notifications, orders

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


async def place(
    batcher: OrderBatcher,
    key: str,
    *,
    reject: bool = False,
    recipient: str = "+4799999999",
    on_stored: Callable[[OrderReceipt], None] | None = None,
    admit: Callable[[AsyncConnection], Awaitable[None]] | None = None,
) -> OrderReceipt:
    async def reject_when_set(_connection: AsyncConnection) -> None:
        if reject:
            raise RateLimitExceededError("creator", 1, f"order {key} is over the limit")

    return await batcher.create(
        creator="ttd",
        idempotency_id=key,
        senders_reference=None,
        notification=NewNotification(
            channel=Channel.SMS, recipient=recipient, sender="Kommune", body="Kode", ttl_s=300
        ),
        now=NOW,
        admit=admit or reject_when_set,
        on_stored=on_stored,
    )


async def stored_keys(database: Database) -> list[str]:
    async with database.read() as connection:
        query = select(orders.c.idempotency_id).order_by(orders.c.idempotency_id)
        return list((await connection.execute(query)).scalars())


async def notification_count(database: Database) -> int:
    async with database.read() as connection:
        query = select(func.count()).select_from(notifications)
        return int((await connection.execute(query)).scalar_one())


def count_commits(database: Database) -> list[int]:
    commits = [0]

    def on_commit(_connection: Any) -> None:
        commits[0] += 1

    event.listen(database.engine.sync_engine, "commit", on_commit)
    return commits


async def test_orders_placed_together_share_commit(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await upgrade_to_head(database)
    batcher = OrderBatcher(database)
    commits = count_commits(database)
    try:
        receipts = await asyncio.gather(*(place(batcher, f"key-{n}") for n in range(10)))
        keys = await stored_keys(database)
        stored_notifications = await notification_count(database)
    finally:
        await database.dispose()

    assert commits[0] == 1
    assert all(receipt.created for receipt in receipts)
    assert len({receipt.order_id for receipt in receipts}) == 10
    assert keys == sorted(f"key-{n}" for n in range(10))
    assert stored_notifications == 10


async def test_stored_orders_reported_before_callers(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await upgrade_to_head(database)
    batcher = OrderBatcher(database)
    steps: list[tuple[str, str, asyncio.Task[Any] | None]] = []

    async def order(key: str, *, reject: bool = False) -> None:
        def on_stored(_receipt: OrderReceipt) -> None:
            steps.append(("stored", key, asyncio.current_task()))

        await place(batcher, key, reject=reject, on_stored=on_stored)
        steps.append(("returned", key, asyncio.current_task()))

    try:
        callers = [
            asyncio.create_task(order("first")),
            asyncio.create_task(order("rejected", reject=True)),
            asyncio.create_task(order("third")),
        ]
        await asyncio.wait(callers)
    finally:
        await database.dispose()

    assert [(step, key) for step, key, _task in steps] == [
        ("stored", "first"),
        ("stored", "third"),
        ("returned", "first"),
        ("returned", "third"),
    ]
    # The writer's task reported both orders, so neither waited for its caller.
    assert {task for step, _key, task in steps if step == "stored"}.isdisjoint(callers)


async def test_order_of_cancelled_caller_reported(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await upgrade_to_head(database)
    batcher = OrderBatcher(database)
    in_transaction, release = asyncio.Event(), asyncio.Event()
    stored: list[OrderReceipt] = []

    async def admit(_connection: AsyncConnection) -> None:
        in_transaction.set()
        await release.wait()

    caller = asyncio.create_task(place(batcher, "left", admit=admit, on_stored=stored.append))
    try:
        await in_transaction.wait()
        caller.cancel()
        release.set()
        await asyncio.wait({caller})
        # The writer's transaction goes on without the caller; wait for its commit.
        async with asyncio.timeout(5):
            while not stored:
                await asyncio.sleep(0.01)
        keys = await stored_keys(database)
    finally:
        await database.dispose()

    assert caller.cancelled()
    assert keys == ["left"]
    assert [receipt.created for receipt in stored] == [True]


async def test_failing_on_stored_is_logged(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    batcher = OrderBatcher(database)

    def fail(_receipt: OrderReceipt) -> None:
        raise RuntimeError("no dispatcher")

    async with asyncio.timeout(5):
        receipts = await asyncio.gather(
            place(batcher, "first", on_stored=fail), place(batcher, "second")
        )
    keys = await stored_keys(database)

    assert [receipt.created for receipt in receipts] == [True, True]
    assert keys == ["first", "second"]
    failures = [
        getattr(record, "order_id", None)
        for record in caplog.records
        if getattr(record, "event", None) == "order_stored_callback_failed"
    ]
    assert failures == [str(receipts[0].order_id)]


async def test_rejected_order_fails_alone(database: Database) -> None:
    batcher = OrderBatcher(database)

    outcomes = await asyncio.gather(
        place(batcher, "first"),
        place(batcher, "rejected", reject=True),
        place(batcher, "third"),
        return_exceptions=True,
    )

    first, rejected, third = outcomes
    assert isinstance(first, OrderReceipt)
    assert isinstance(third, OrderReceipt)
    assert isinstance(rejected, RateLimitExceededError)
    assert "order rejected is over the limit" in rejected.detail
    assert await stored_keys(database) == ["first", "third"]
    assert await notification_count(database) == 2


async def test_same_key_in_batch_stores_once(database: Database) -> None:
    batcher = OrderBatcher(database)

    first, second = await asyncio.gather(place(batcher, "twice"), place(batcher, "twice"))

    # On PostgreSQL the two run in transactions of their own, and either may commit first.
    winner, replay = (first, second) if first.created else (second, first)
    assert winner.created
    assert not replay.created
    assert replay.order_id == winner.order_id
    assert replay.notification_ids == winner.notification_ids
    assert await stored_keys(database) == ["twice"]
    assert await notification_count(database) == 1


async def test_batches_follow_each_other(database: Database) -> None:
    batcher = OrderBatcher(database)

    first = await asyncio.gather(*(place(batcher, f"a-{n}") for n in range(3)))
    second = await asyncio.gather(*(place(batcher, f"b-{n}") for n in range(3)))

    assert all(receipt.created for receipt in first + second)
    assert len(await stored_keys(database)) == 6


async def test_failed_transaction_fails_whole_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "SQLITE_BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "store.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    await upgrade_to_head(database)
    batcher = OrderBatcher(database)
    other_process = sqlite3.connect(path, isolation_level=None)
    try:
        other_process.execute("BEGIN IMMEDIATE")
        outcomes = await asyncio.gather(
            place(batcher, "one"), place(batcher, "two"), return_exceptions=True
        )
        other_process.execute("ROLLBACK")
        after = await place(batcher, "after")
        keys = await stored_keys(database)
    finally:
        other_process.close()
        await database.dispose()

    assert all(isinstance(outcome, DatabaseUnavailableError) for outcome in outcomes)
    assert after.created
    assert keys == ["after"]
