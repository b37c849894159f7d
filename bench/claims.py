"""Time the worker's claim of due notifications on SQLite, in process.

    python bench/claims.py [--queued 2000] [--settled 50000] [--limit 8]

Stores `--queued` regular SMS that are due and `--settled` delivered ones,
as a regular backlog leaves them while it drains. Then it claims the queued
ones `--limit` at a time, as the worker does when a quarter of its 32 slots
are free. Prints the mean and the 99th percentile of the wall and CPU time
of one claim.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from budstikke.domain.statuses import Priority
from budstikke.store.database import Database
from budstikke.store.migrate import upgrade_to_head
from budstikke.store.notifications import NotificationStore
from budstikke.store.tables import notifications, orders

SEED_BATCH = 5000


def order_and_notification(index: int, status: str, now: datetime) -> tuple[dict[str, Any], ...]:
    order_id = uuid.uuid4()
    order = {
        "id": order_id,
        "shipment_id": uuid.uuid4(),
        "creator": "ttd",
        "idempotency_id": f"bulk-{index}",
        "senders_reference": None,
        "order_type": "Notification",
        "status": "Order_Processing",
        "created_at": now,
        "updated_at": now,
    }
    notification = {
        "id": uuid.uuid4(),
        "order_id": order_id,
        "creator": "ttd",
        "channel": "sms",
        "priority": int(Priority.REGULAR),
        "status": status,
        "recipient": f"+479{index:07d}",
        "sender": "Kommune",
        "body": "Husk timen din i morgen kl. 10.",
        "created_at": now,
        "updated_at": now,
        "expires_at": now + timedelta(days=2),
        "report_deadline_at": now + timedelta(days=2),
        "due_at": now - timedelta(seconds=index % 60),
        "attempts": 0,
        "outcome_unknown_count": 0,
        "part_count": 0,
        "daytime_only": False,
    }
    return order, notification


async def seed(database: Database, queued: int, settled: int, now: datetime) -> None:
    statuses = ["SMS_New"] * queued + ["SMS_Delivered"] * settled
    for start in range(0, len(statuses), SEED_BATCH):
        rows = [
            order_and_notification(index, statuses[index], now)
            for index in range(start, min(start + SEED_BATCH, len(statuses)))
        ]
        async with database.write() as connection:
            await connection.execute(insert(orders), [order for order, _ in rows])
            await connection.execute(insert(notifications), [row for _, row in rows])


async def measure(arguments: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="budstikke-claims-"))
    database = Database(f"sqlite+aiosqlite:///{folder / 'claims.db'}")
    await upgrade_to_head(database)
    now = datetime.now(UTC)
    await seed(database, arguments.queued, arguments.settled, now)
    store = NotificationStore(database)

    wall_ms: list[float] = []
    cpu_ms: list[float] = []
    claimed_total = 0
    while True:
        started_wall, started_cpu = time.perf_counter(), time.process_time()
        claimed = await store.claim_due(
            worker_id="bench",
            now=now,
            lease_until=now + timedelta(minutes=1),
            limit=arguments.limit,
        )
        wall_ms.append((time.perf_counter() - started_wall) * 1000)
        cpu_ms.append((time.process_time() - started_cpu) * 1000)
        claimed_total += len(claimed)
        if not claimed:
            break
    await database.dispose()

    def p99(values: list[float]) -> float:
        return statistics.quantiles(values, n=100)[98]

    print(
        f"claimed {claimed_total} in {len(wall_ms)} claims of up to {arguments.limit}; "
        f"wall mean {statistics.mean(wall_ms):.2f} ms, p99 {p99(wall_ms):.2f} ms; "
        f"CPU mean {statistics.mean(cpu_ms):.2f} ms, p99 {p99(cpu_ms):.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--queued", type=int, default=2000)
    parser.add_argument("--settled", type=int, default=50_000)
    parser.add_argument("--limit", type=int, default=8)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
