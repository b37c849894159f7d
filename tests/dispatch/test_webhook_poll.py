"""The webhook delivery loop's poll when nothing is due."""

from __future__ import annotations

from pathlib import Path

from budstikke.config import Settings
from budstikke.dispatch.webhooks import build_webhook_loop
from budstikke.metrics import Metrics
from budstikke.store.database import Database
from budstikke.store.migrate import upgrade_to_head
from tests.store.test_notifications import NOW, count_transactions


async def test_idle_poll_takes_no_write(tmp_path: Path) -> None:
    # On SQLite a write waits for the one write connection, which orders share.
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await upgrade_to_head(database)
    settings = Settings(data_dir=tmp_path)
    loop = build_webhook_loop(
        settings, database, worker_id="w", clock=lambda: NOW, metrics=Metrics()
    )
    try:
        # The first pass also purges old deliveries, which is a write.
        await loop.run_pass()
        begins = count_transactions(database)

        claimed_all_slots = await loop.run_pass()
    finally:
        await database.dispose()

    assert claimed_all_slots is False
    assert begins == []
