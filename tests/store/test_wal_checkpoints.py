"""SQLite's write-ahead log is copied into the database file by a thread, not by COMMIT."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, insert

from budstikke.store.database import Database, WalCheckpointer

metadata = MetaData()
blobs = Table("blobs", metadata, Column("id", Integer, primary_key=True), Column("data", Text))
# 3,000 rows of 2 KB fill about 1,500 pages of 4 KB: past the 1,000 pages at
# which a COMMIT would copy the log into the database file by default.
ROWS = 3000
ROWS_PER_COMMIT = 500
ROW_TEXT = "x" * 2000


async def fill(database: Database) -> None:
    async with database.write() as connection:
        await connection.run_sync(metadata.create_all)
    for _commit in range(ROWS // ROWS_PER_COMMIT):
        async with database.write() as connection:
            await connection.execute(insert(blobs), [{"data": ROW_TEXT}] * ROWS_PER_COMMIT)


async def fill_and_wait_for_copy(database: Database, path: Path) -> int:
    """Fill the database and wait until a checkpoint has copied the rows; return the file size."""
    await fill(database)
    async with asyncio.timeout(10):
        while path.stat().st_size <= ROWS * len(ROW_TEXT):
            await asyncio.sleep(0.05)
    return path.stat().st_size


async def test_commits_leave_log_to_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The thread waits an hour between checkpoints, so only the one at stop runs.
    monkeypatch.setattr("budstikke.store.database.CHECKPOINT_INTERVAL_S", 3600.0)
    path = tmp_path / "log.db"
    database = Database(f"sqlite+aiosqlite:///{path}", checkpoint_in_background=True)
    await fill(database)
    size_before_stop = path.stat().st_size

    await database.dispose()

    assert size_before_stop < 100_000
    assert path.stat().st_size > ROWS * len(ROW_TEXT)


async def test_thread_checkpoints_while_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("budstikke.store.database.CHECKPOINT_INTERVAL_S", 0.05)
    path = tmp_path / "log.db"
    database = Database(f"sqlite+aiosqlite:///{path}", checkpoint_in_background=True)
    try:
        size_while_running = await fill_and_wait_for_copy(database, path)
    finally:
        await database.dispose()

    assert size_while_running > ROWS * len(ROW_TEXT)


async def test_log_starts_over_under_steady_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("budstikke.store.database.CHECKPOINT_INTERVAL_S", 0.02)
    monkeypatch.setattr("budstikke.store.database.RESTART_LOG_FRAMES", 64)
    path = tmp_path / "log.db"
    log = tmp_path / "log.db-wal"
    database = Database(f"sqlite+aiosqlite:///{path}", checkpoint_in_background=True)
    transactions, rows_per_transaction = 400, 10
    largest_log = 0
    try:
        async with database.write() as connection:
            await connection.run_sync(metadata.create_all)
        for _transaction in range(transactions):
            async with database.write() as connection:
                await connection.execute(insert(blobs), [{"data": ROW_TEXT}] * rows_per_transaction)
            largest_log = max(largest_log, log.stat().st_size)
            await asyncio.sleep(0.001)
    finally:
        await database.dispose()
    written = transactions * rows_per_transaction * len(ROW_TEXT)

    # Without a restart the log would contain every page written, more than `written`.
    assert largest_log < written / 4


async def test_busy_default_threads_delay_no_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every pass restarts the log, so the checkpointer often takes a write turn.
    monkeypatch.setattr("budstikke.store.database.CHECKPOINT_INTERVAL_S", 0.01)
    monkeypatch.setattr("budstikke.store.database.RESTART_LOG_FRAMES", 1)
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}", checkpoint_in_background=True)
    slowest_write_s = 0.0
    try:
        await fill(database)
        # Slow work, such as name lookups, takes every thread of the default
        # executor, which has min(32, cores + 4) of them, for 1.5 s.
        threads = min(32, (os.cpu_count() or 1) + 4)
        sleepers = [asyncio.create_task(asyncio.to_thread(time.sleep, 1.5)) for _ in range(threads)]
        loop = asyncio.get_running_loop()
        until = loop.time() + 0.5
        while loop.time() < until:
            started = loop.time()
            async with database.write() as connection:
                await connection.execute(insert(blobs).values(data="x"))
            slowest_write_s = max(slowest_write_s, loop.time() - started)
            await asyncio.sleep(0.005)
        await asyncio.gather(*sleepers)
    finally:
        await database.dispose()

    assert slowest_write_s < 0.5


async def test_failed_pass_stops_no_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("budstikke.store.database.CHECKPOINT_INTERVAL_S", 0.02)
    calls = 0
    checkpoint = WalCheckpointer.checkpoint

    def fail_first(self: WalCheckpointer) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("first pass fails")
        return checkpoint(self)

    monkeypatch.setattr(WalCheckpointer, "checkpoint", fail_first)
    path = tmp_path / "log.db"
    database = Database(f"sqlite+aiosqlite:///{path}", checkpoint_in_background=True)
    try:
        await fill_and_wait_for_copy(database, path)
    finally:
        await database.dispose()

    assert calls > 2
    events = [getattr(record, "event", None) for record in caplog.records]
    assert "sqlite_checkpoint_failed" in events
