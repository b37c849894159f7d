"""Turns at SQLite's one write connection: urgent writers first, then instant orders in flight."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from budstikke.dispatch.instant_first import InstantFirst
from budstikke.domain.otp import code_digest
from budstikke.errors import DatabaseUnavailableError
from budstikke.store.database import Database, WriteTurns
from budstikke.store.migrate import upgrade_to_head
from budstikke.store.otp import OtpStore
from tests.store.test_otp_processes import KEY, new_verification


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


async def hold_write_connection(database: Database) -> tuple[asyncio.Task[None], asyncio.Event]:
    """Start a transaction that keeps the write connection until the returned event is set."""
    holding = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with database.write():
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await holding.wait()
    return holder, release


async def write_named(database: Database, order: list[str], name: str, *, urgent: bool) -> None:
    """Run a write transaction that appends the writer's name to `order`."""
    async with database.write(urgent=urgent) as connection:
        await connection.execute(text("SELECT 1"))
        order.append(name)


async def test_urgent_write_overtakes_queued_sqlite_writes(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}")
    order: list[str] = []

    holder, release = await hold_write_connection(database)
    regular = asyncio.create_task(write_named(database, order, "regular", urgent=False))
    await asyncio.sleep(0.01)
    instant = asyncio.create_task(write_named(database, order, "instant", urgent=True))
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


async def test_regular_write_yields_to_instant_order(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}")
    database.instant_first = instant_first = InstantFirst(max_wait_s=60)
    order: list[str] = []

    holder, release = await hold_write_connection(database)
    regular = asyncio.create_task(write_named(database, order, "regular", urgent=False))
    await asyncio.sleep(0.01)
    with instant_first.placing():
        # The regular writer gets the turn while the order is in flight, and hands it on.
        release.set()
        await asyncio.wait_for(write_named(database, order, "instant", urgent=True), timeout=5)
        await asyncio.sleep(0.05)

        assert order == ["instant"]

    await asyncio.wait_for(asyncio.gather(holder, regular), timeout=5)
    await database.dispose()

    assert order == ["instant", "regular"]


async def test_woken_future_ends_turn_wait(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}")
    database.instant_first = instant_first = InstantFirst(max_wait_s=60)
    woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def write() -> None:
        async with database.write(woken=woken) as connection:
            await connection.execute(text("SELECT 1"))

    with instant_first.placing():
        writer = asyncio.create_task(write())
        await asyncio.sleep(0.05)
        assert not writer.done()

        woken.set_result(None)
        await asyncio.wait_for(writer, timeout=5)
    await database.dispose()


async def test_otp_writes_skip_instant_wait(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}")
    await upgrade_to_head(database)
    database.instant_first = instant_first = InstantFirst(max_wait_s=60)
    store = OtpStore(database)
    now = datetime.now(UTC)

    # A user waits for each of these, so they must not wait 60 s for the order.
    with instant_first.placing():
        verification_id = await asyncio.wait_for(new_verification(database), timeout=5)
        verification = await store.get("ttd", verification_id)
        assert verification is not None
        replaced = await asyncio.wait_for(
            store.replace_code(verification, code_digest="new", now=now), timeout=5
        )
        assert replaced is not None
        _current, previous_digest = replaced
        await asyncio.wait_for(
            store.restore_code(verification, code_digest=previous_digest, now=now), timeout=5
        )
        outcome = await asyncio.wait_for(
            store.check(
                "ttd",
                verification_id,
                submitted_digest=code_digest(KEY, verification_id, "482913"),
                failed_check_limit=10,
                now=now,
            ),
            timeout=5,
        )
        discarded_id = await asyncio.wait_for(new_verification(database), timeout=5)
        discarded = await store.get("ttd", discarded_id)
        assert discarded is not None
        await asyncio.wait_for(store.discard(discarded), timeout=5)
    remaining = await store.get("ttd", discarded_id)
    await database.dispose()

    assert outcome is not None
    assert outcome.approved is True
    assert remaining is None
