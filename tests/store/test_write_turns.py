"""Turns at SQLite's one write connection: urgent writers first, cancelled ones pass on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from budstikke.errors import DatabaseUnavailableError
from budstikke.store.database import Database, WriteTurns


async def write_in_turn(turns: WriteTurns, order: list[str], name: str, *, urgent: bool) -> None:
    """Take a turn, note the writer's name, and give the turn back."""
    await turns.acquire(urgent=urgent)
    order.append(name)
    turns.release()


async def test_urgent_waiter_goes_before_earlier_ones() -> None:
    turns = WriteTurns()
    await turns.acquire(urgent=False)
    order: list[str] = []

    waiters = [
        asyncio.create_task(write_in_turn(turns, order, "receipts", urgent=False)),
        asyncio.create_task(write_in_turn(turns, order, "claim", urgent=False)),
        asyncio.create_task(write_in_turn(turns, order, "instant order", urgent=True)),
    ]
    await asyncio.sleep(0)
    turns.release()
    await asyncio.wait_for(asyncio.gather(*waiters), timeout=2)

    assert order == ["instant order", "receipts", "claim"]


async def test_cancelled_waiter_passes_its_turn_on() -> None:
    turns = WriteTurns()
    await turns.acquire(urgent=False)
    cancelled = asyncio.create_task(turns.acquire(urgent=True))
    later = asyncio.create_task(turns.acquire(urgent=False))
    await asyncio.sleep(0)

    # The turn is handed to the first waiter, which is cancelled before it runs.
    turns.release()
    cancelled.cancel()
    await asyncio.wait_for(later, timeout=2)

    assert cancelled.cancelled()
    assert later.done()


async def test_cancelled_waiter_leaves_the_queue() -> None:
    turns = WriteTurns()
    await turns.acquire(urgent=False)
    cancelled = asyncio.create_task(turns.acquire(urgent=False))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)

    turns.release()

    # The connection is free now, so the next writer gets it at once.
    await asyncio.wait_for(turns.acquire(urgent=False), timeout=0.1)


async def test_urgent_write_overtakes_queued_sqlite_writes(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}")
    order: list[str] = []
    holding = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with database.write():
            holding.set()
            await release.wait()

    async def write(name: str, *, urgent: bool) -> None:
        async with database.write(urgent=urgent) as connection:
            await connection.execute(text("SELECT 1"))
            order.append(name)

    holder = asyncio.create_task(hold())
    await holding.wait()
    regular = asyncio.create_task(write("regular", urgent=False))
    await asyncio.sleep(0.01)
    instant = asyncio.create_task(write("instant", urgent=True))
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.wait_for(asyncio.gather(holder, regular, instant), timeout=5)
    await database.dispose()

    assert order == ["instant", "regular"]


async def test_regular_writer_not_starved() -> None:
    turns = WriteTurns()
    await turns.acquire(urgent=False)
    order: list[str] = []

    claim = asyncio.create_task(write_in_turn(turns, order, "claim", urgent=False))
    instant = [
        asyncio.create_task(write_in_turn(turns, order, f"instant {index}", urgent=True))
        for index in range(WriteTurns.MAX_URGENT_IN_A_ROW + 2)
    ]
    await asyncio.sleep(0)
    turns.release()
    await asyncio.wait_for(asyncio.gather(claim, *instant), timeout=2)

    assert order.index("claim") == WriteTurns.MAX_URGENT_IN_A_ROW


async def test_wait_for_a_turn_times_out() -> None:
    turns = WriteTurns()
    await turns.acquire(urgent=False)

    with pytest.raises(DatabaseUnavailableError, match="no turn"):
        await turns.acquire(urgent=True, timeout_s=0.05)
    turns.release()

    # The timed-out waiter left the queue, so the connection is free now.
    await asyncio.wait_for(turns.acquire(urgent=False), timeout=0.1)
