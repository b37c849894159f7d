"""Count and time the SQL statements of instant orders, in process.

    python bench/sqltrace.py --provider smpp --orders 500

Runs the app in this process without uvicorn, so requests go through
httpx's ASGI transport one after another. It places the orders and waits
until each is final. Then it prints per order the CPU time of the whole
path, the number of transactions and statements, the time SQLite itself
spent in them (the driver's execute), and the statements grouped by their
first words. The
difference between the CPU time and the SQLite time is what Python spends
around the database: HTTP handling, SQLAlchemy, the provider, logging.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from harness import BENCH, free_port, start_helper
from sqlalchemy import event, func, select

from budstikke.api.app import create_app
from budstikke.config import Settings
from budstikke.domain.statuses import NotificationStatus
from budstikke.store.api_keys import create_api_key
from budstikke.store.tables import notifications

API = "/notifications/api/v1/future"
SCOPE = "altinn:serviceowner/notifications.create"


class StatementLog:
    """Counts statements and the time the driver spent in each kind."""

    def __init__(self) -> None:
        self.count: collections.Counter[str] = collections.Counter()
        self.seconds: collections.Counter[str] = collections.Counter()
        self.started: dict[int, float] = {}
        self.enabled = False

    def attach(self, engine: Any) -> None:
        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def before(_conn: Any, cursor: Any, *_args: Any) -> None:
            self.started[id(cursor)] = time.perf_counter()

        @event.listens_for(engine.sync_engine, "after_cursor_execute")
        def after(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
            began = self.started.pop(id(cursor), None)
            if began is None or not self.enabled:
                return
            kind = " ".join(statement.split()[:3])[:48]
            self.count[kind] += 1
            self.seconds[kind] += time.perf_counter() - began


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def open_count(app: Any) -> int:
    final = [status.value for status in NotificationStatus if status.is_final]
    async with app.state.services.database.read() as connection:
        query = select(func.count()).select_from(notifications)
        result = await connection.execute(query.where(notifications.c.status.not_in(final)))
        return int(result.scalar_one())


async def wait_until_final(app: Any) -> None:
    """Poll until every notification is final: receipts arrive on their own schedule."""
    for _ in range(3000):
        if not await open_count(app):
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("notifications still open after 30 s")


async def trace(provider: str, orders: int) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="budstikke-sqltrace-"))
    settings: dict[str, Any] = {"data_dir": data_dir}
    helper = None
    if provider == "smpp":
        port = free_port()
        helper = start_helper([str(BENCH / "smsc.py")], port)
        settings["sms_url"] = f"smpp://bench:secret@127.0.0.1:{port}?window=100"
    os.environ.setdefault("BUDSTIKKE_RATE_LIMIT_PER_S", "1000000")
    os.environ.setdefault("BUDSTIKKE_RATE_LIMIT_BURST", "1000000")
    app = create_app(Settings(**settings))
    log = StatementLog()
    try:
        async with app.router.lifespan_context(app):
            database = app.state.services.database
            log.attach(database._write_engine)
            if database._read_engine is not database._write_engine:
                log.attach(database._read_engine)
            _record, key = await create_api_key(
                database, creator="bench", scopes=(SCOPE,), now=datetime.now(UTC)
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                headers = {"Authorization": f"Bearer {key}"}
                await place(client, headers, 0, 50)
                await wait_until_final(app)
                log.enabled = True
                started_cpu = cpu_s()
                await place(client, headers, 1000, orders)
                await wait_until_final(app)
                used_s = cpu_s() - started_cpu
                log.enabled = False
    finally:
        if helper is not None:
            helper.terminate()
    report(log, used_s, orders)


async def place(client: httpx.AsyncClient, headers: dict[str, str], first: int, n: int) -> None:
    for index in range(first, first + n):
        body = {
            "idempotencyId": f"trace-{index}",
            "recipientSms": {
                "phoneNumber": f"+474{index:07d}",
                "timeToLiveInSeconds": 300,
                "smsSettings": {"sender": "Bench", "body": "Your code is 482913."},
            },
        }
        response = await client.post(f"{API}/orders/instant/sms", headers=headers, json=body)
        if response.status_code != 201:
            raise RuntimeError(f"order {index} returned {response.status_code}: {response.text}")


def report(log: StatementLog, used_s: float, orders: int) -> None:
    statements = sum(log.count.values())
    sqlite_s = sum(log.seconds.values())
    print(f"CPU per order (whole path, this process): {1e6 * used_s / orders:.0f} µs")
    print(f"statements per order: {statements / orders:.1f}")
    print(f"time in the driver per order: {1e6 * sqlite_s / orders:.0f} µs")
    print("per order, by statement:")
    for kind, count in log.count.most_common():
        mean_us = 1e6 * log.seconds[kind] / count
        print(f"  {count / orders:5.2f} x {mean_us:6.1f} µs  {kind}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--provider", choices=("outbox", "smpp"), default="smpp")
    parser.add_argument("--orders", type=int, default=500)
    arguments = parser.parse_args()
    asyncio.run(trace(arguments.provider, arguments.orders))


if __name__ == "__main__":
    main()
