"""Benchmark: instant orders while 100,000 regular SMS drain through the test SMSC.

    python bench/priority.py [--regular 100000] [--rate 400] [--database sqlite|postgresql]
        [--roles single|split] [--pool-size 5]

Runs these processes on 127.0.0.1: the test SMSC (delivery receipts on),
`budstikke serve` with its SMPP provider limited to --rate submits per
second (the SMSC's rate), or with --roles split an API-only `serve
--no-workers` and a `budstikke worker`, and this script. It seeds --regular regular SMS
orders straight into the database, due --idle-s seconds after the server
is up, then sends instant SMS orders at --instant-rate per second the whole
time. Before the backlog falls due it measures the instant hand-off latency
on an idle server; while the backlog drains it measures the same latency
and the rate at which regular SMS are handed off.

Latency is the time from an instant order's creation to the SMSC's
acceptance (`handed_off_at - created_at` in the database), and, as the
client saw it, from sending the request to reading the 201. Targets: the
p99 under load within 2x of the idle p99, and the drain rate at 90 % or
more of --rate. The JSON of every figure is printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select, update

from budstikke.store.api_keys import create_api_key
from budstikke.store.database import Database
from budstikke.store.migrate import upgrade_to_head
from budstikke.store.tables import notifications, orders, regular_orders

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
API = "/notifications/api/v1/future"
SCOPE = "altinn:serviceowner/notifications.create"
SEED_BATCH = 2000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        running = subprocess.Popen(args, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield running
        finally:
            running.terminate()
            try:
                running.wait(timeout=30)
            except subprocess.TimeoutExpired:
                running.kill()
                running.wait()


def run_smsc(port: int) -> None:
    """Serve the test SMSC without per-PDU output or records, so its memory stays flat."""
    from budstikke.channels.smpp.dev_smsc import run_dev_smsc

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_dev_smsc(port=port, receipt_delay_s=0.2, echo=None))


async def seed(database_url: str, count: int) -> str:
    """Store `count` regular SMS orders, due only once `schedule` sets their time; return a key."""
    database = Database(database_url)
    await upgrade_to_head(database)
    now = datetime.now(UTC)
    due_at = now + timedelta(days=365)
    for start in range(0, count, SEED_BATCH):
        order_rows, detail_rows = [], []
        for index in range(start, min(start + SEED_BATCH, count)):
            order_id = uuid.uuid4()
            order_rows.append(
                {
                    "id": order_id,
                    "shipment_id": uuid.uuid4(),
                    "creator": "ttd",
                    "idempotency_id": f"bulk-{index}",
                    "senders_reference": None,
                    "order_type": "Notification",
                    "status": "Order_Registered",
                    "created_at": now,
                    "updated_at": now,
                }
            )
            detail_rows.append(
                {
                    "order_id": order_id,
                    "main_order_id": order_id,
                    "reminder_index": 0,
                    "channel": "sms",
                    "recipient": f"+479{index % 10_000_000:07d}",
                    "sender": "Kommune",
                    "subject": None,
                    "body": "Husk timen din i morgen kl. 10.",
                    "content_type": None,
                    "daytime_only": False,
                    "requested_send_time": due_at,
                    "condition_endpoint": None,
                    "process_after": due_at,
                    "condition_attempts": 0,
                }
            )
        async with database.write() as connection:
            await connection.execute(insert(orders), order_rows)
            await connection.execute(insert(regular_orders), detail_rows)
    _record, key = await create_api_key(database, creator="ttd", scopes=(SCOPE,), now=now)
    await database.dispose()
    return key


async def schedule(database_url: str, due_at: datetime) -> None:
    """Make every seeded order due at `due_at`."""
    database = Database(database_url)
    async with database.write() as connection:
        await connection.execute(
            update(regular_orders).values(requested_send_time=due_at, process_after=due_at)
        )
    await database.dispose()


def instant_body(index: int) -> dict[str, Any]:
    return {
        "idempotencyId": f"otp-{index}-{uuid.uuid4()}",
        "recipientSms": {
            # A different number each time: budstikke limits instant orders per recipient.
            "phoneNumber": f"+4791{index % 1_000_000:06d}",
            "timeToLiveInSeconds": 300,
            "smsSettings": {"sender": "Kommune", "body": f"Your code is {index % 1000000:06d}."},
        },
    }


async def send_instant(
    url: str, key: str, rate: float, stop_at: float, samples: list[tuple[float, float]]
) -> None:
    """Send instant orders open-loop at `rate`; record (start, client latency) of each 201."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:

        async def one(index: int, scheduled: float) -> None:
            response = await client.post(f"{API}/orders/instant/sms", json=instant_body(index))
            if response.status_code == 201:
                samples.append((scheduled, time.monotonic() - scheduled))

        tasks = []
        started = time.monotonic()
        index = 0
        while True:
            scheduled = started + index / rate
            if scheduled >= stop_at:
                break
            await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
            tasks.append(asyncio.create_task(one(index, scheduled)))
            index += 1
        await asyncio.gather(*tasks)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def read_hand_offs(database_url: str) -> tuple[list[tuple[datetime, float]], list[datetime]]:
    """Return (created, hand-off seconds) of instant SMS, and when regular SMS were handed off."""
    database = Database(database_url)
    async with database.read() as connection:
        rows = (
            await connection.execute(
                select(
                    notifications.c.priority,
                    notifications.c.created_at,
                    notifications.c.handed_off_at,
                ).where(notifications.c.handed_off_at.is_not(None))
            )
        ).all()
    await database.dispose()
    instant = [
        (row.created_at, (row.handed_off_at - row.created_at).total_seconds())
        for row in rows
        if row.priority == 0
    ]
    regular = sorted(row.handed_off_at for row in rows if row.priority == 1)
    return instant, regular


def summarise(
    arguments: argparse.Namespace,
    load_started: datetime,
    instant: list[tuple[datetime, float]],
    regular: list[datetime],
    client: list[tuple[float, float]],
    client_load_started: float,
    client_load_ended: float,
) -> dict[str, Any]:
    idle = [seconds for created, seconds in instant if created < load_started]
    # Instant orders created while regular SMS were being handed off.
    drain_end = regular[-1] if regular else load_started
    loaded = [seconds for created, seconds in instant if load_started <= created <= drain_end]
    # The rate over the middle 80 % of the drain leaves out its ramp-up and its tail.
    middle = regular[len(regular) // 10 : len(regular) * 9 // 10]
    span_s = (middle[-1] - middle[0]).total_seconds() if len(middle) > 1 else float("nan")
    drain_rate = (len(middle) - 1) / span_s if span_s else float("nan")
    whole_s = (regular[-1] - regular[0]).total_seconds() if len(regular) > 1 else float("nan")
    client_idle = [latency for at, latency in client if at < client_load_started]
    client_loaded = [
        latency for at, latency in client if client_load_started <= at <= client_load_ended
    ]
    figures = {
        "regular_orders": arguments.regular,
        "smsc_rate": arguments.rate,
        "instant_rate": arguments.instant_rate,
        "database": arguments.database,
        "roles": arguments.roles,
        "pool_size": arguments.pool_size,
        "instant_share": arguments.instant_share,
        "max_loop_lag_ms": arguments.max_loop_lag_ms,
        "regular_handed_off": len(regular),
        "drain_rate_middle_80": round(drain_rate, 1),
        "drain_rate_whole": round((len(regular) - 1) / whole_s, 1) if whole_s else None,
        "drain_share_of_rate": round(drain_rate / arguments.rate, 3),
        "instant_idle": latency_figures(idle),
        "instant_loaded": latency_figures(loaded),
        "client_idle": latency_figures(client_idle),
        "client_loaded": latency_figures(client_loaded),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }
    idle_p99 = figures["instant_idle"].get("p99_ms")
    loaded_p99 = figures["instant_loaded"].get("p99_ms")
    figures["p99_ratio"] = round(loaded_p99 / idle_p99, 2) if idle_p99 and loaded_p99 else None
    return figures


def latency_figures(seconds: list[float]) -> dict[str, Any]:
    if not seconds:
        return {"count": 0}
    return {
        "count": len(seconds),
        "p50_ms": round(statistics.median(seconds) * 1000, 1),
        "p99_ms": round(percentile(seconds, 0.99) * 1000, 1),
        "max_ms": round(max(seconds) * 1000, 1),
    }


async def measure(arguments: argparse.Namespace, folder: Path) -> dict[str, Any]:
    database_url = (
        arguments.postgres_url.replace("postgresql://", "postgresql+asyncpg://", 1)
        if arguments.database == "postgresql"
        else f"sqlite+aiosqlite:///{folder / 'data' / 'budstikke.db'}"
    )
    smsc_port, api_port = free_port(), free_port()
    env = {
        **os.environ,
        "BUDSTIKKE_DATA_DIR": str(folder / "data"),
        "BUDSTIKKE_DATABASE_URL": database_url.replace("+aiosqlite", "").replace("+asyncpg", ""),
        "BUDSTIKKE_SMS_URL": f"smpp://bench:bench@127.0.0.1:{smsc_port}?max_rate={arguments.rate}"
        f"&window={arguments.window}&instant_share={arguments.instant_share}"
        + (
            f"&max_loop_lag_ms={arguments.max_loop_lag_ms}"
            if arguments.max_loop_lag_ms is not None
            else ""
        ),
        "BUDSTIKKE_LOG_LEVEL": "WARNING",
        "BUDSTIKKE_PORT": str(api_port),
        "BUDSTIKKE_WORKER_POLL_INTERVAL_S": "0.2",
        # Each process opens up to twice this many PostgreSQL connections.
        "BUDSTIKKE_DATABASE_POOL_SIZE": str(arguments.pool_size),
    }
    (folder / "data").mkdir()
    print(f"seeding {arguments.regular} regular orders ...", flush=True)
    key = await seed(database_url, arguments.regular)
    server_up = datetime.now(UTC) + timedelta(seconds=20)
    await schedule(database_url, server_up + timedelta(seconds=arguments.idle_s))
    smsc_args = [sys.executable, str(Path(__file__)), "--smsc-port", str(smsc_port)]
    serve_args = [str(BIN / "budstikke"), "serve"]
    with contextlib.ExitStack() as processes:
        smsc = processes.enter_context(process(smsc_args, env, folder / "smsc.log"))
        if arguments.roles == "split":
            serve_args.append("--no-workers")
            worker_args = [str(BIN / "budstikke"), "worker"]
            processes.enter_context(process(worker_args, env, folder / "worker.log"))
        server = processes.enter_context(process(serve_args, env, folder / "serve.log"))
        wait_for_port(smsc_port, smsc)
        wait_for_port(api_port, server)
        await asyncio.sleep(max(0.0, (server_up - datetime.now(UTC)).total_seconds()))
        load_started = server_up + timedelta(seconds=arguments.idle_s)
        client_load_started = time.monotonic() + arguments.idle_s
        expected_s = arguments.regular / arguments.rate
        stop_at = client_load_started + expected_s * 0.9
        samples: list[tuple[float, float]] = []
        print(
            f"sending instant orders; the backlog falls due in {arguments.idle_s:g} s and "
            f"needs about {expected_s:.0f} s",
            flush=True,
        )
        await send_instant(
            f"http://127.0.0.1:{api_port}", key, arguments.instant_rate, stop_at, samples
        )
        # Let the backlog finish before reading the hand-off times.
        deadline = time.monotonic() + expected_s
        while time.monotonic() < deadline:
            _instant, regular = await read_hand_offs(database_url)
            if len(regular) >= arguments.regular:
                break
            await asyncio.sleep(2)
    instant, regular = await read_hand_offs(database_url)
    return summarise(
        arguments, load_started, instant, regular, samples, client_load_started, stop_at
    )


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """Create an empty database for one run on the server of `admin_url`, and drop it after."""
    import asyncpg

    name = f"budstikke_bench_{uuid.uuid4().hex[:8]}"

    async def run(statement: str) -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--regular", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=400.0, help="SMSC submits per second")
    parser.add_argument("--instant-rate", type=float, default=20.0)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--instant-share", type=float, default=0.05)
    parser.add_argument(
        "--max-loop-lag-ms",
        type=float,
        help="the SMPP URL's max_loop_lag_ms (0 turns the wait off); the product default if unset",
    )
    # 60 s gives about 1,200 instant orders for the idle p99; 20 s gave about
    # 400, and that p99 moved by a third from run to run.
    parser.add_argument("--idle-s", type=float, default=60.0, help="idle phase before the drain")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--roles",
        choices=["single", "split"],
        default="single",
        help="single: one `budstikke serve` process. split: `budstikke serve --no-workers` "
        "for the API and one `budstikke worker` process",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=5,
        help="PostgreSQL connections per process (BUDSTIKKE_DATABASE_POOL_SIZE); each process "
        "may open twice as many, and the server's max_connections is shared with other clients",
    )
    parser.add_argument(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a database on the server to connect to while creating the run's own database",
    )
    parser.add_argument("--smsc-port", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the SMSC and server processes are stopped too.
    signal.signal(signal.SIGTERM, lambda _number, _frame: sys.exit(143))
    if arguments.smsc_port:
        run_smsc(arguments.smsc_port)
        return
    folder = Path(tempfile.mkdtemp(prefix="budstikke-priority-"))
    print(f"logs and database in {folder}", flush=True)
    if arguments.database == "postgresql":
        with postgres_database(arguments.postgres_url) as url:
            arguments.postgres_url = url
            figures = asyncio.run(measure(arguments, folder))
    else:
        figures = asyncio.run(measure(arguments, folder))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
