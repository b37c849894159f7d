"""API-only servers and workers as separate processes on one PostgreSQL database.

The API processes run with --no-workers, so they run neither the dispatch
worker loop nor the regular-order processor. Every hand-off, and every
regular order turned into a notification, is therefore the work of the
`budstikke worker` processes.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import fresh_postgres_database
from tests.processes.cluster import BUDSTIKKE, Cluster, children_cpu_s, running_cluster
from tests.processes.orders import (
    KINDS,
    Order,
    Placed,
    build_order,
    expected_outcome,
    final_outcome,
    place_orders,
    wait_for_feed,
)

pytestmark = pytest.mark.slow

# SIGKILLs of a worker in the crash test, spread over the placing of its orders.
KILLS = 6


def create_key(cluster: Cluster) -> str:
    result = subprocess.run(
        [str(BUDSTIKKE), "apikey", "create", "--creator", "ttd"],
        env=cluster.environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


async def fetch_rows(database_url: str, query: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        return list(await connection.fetch(query))
    finally:
        await connection.close()


async def notification_states(database_url: str) -> dict[str, int]:
    rows = await fetch_rows(
        database_url, "SELECT status, count(*) AS n FROM notifications GROUP BY 1"
    )
    return {row["status"]: row["n"] for row in rows}


async def notifications_by_order(database_url: str) -> dict[str, list[asyncpg.Record]]:
    """Return each order's notifications (id, status, outcome_unknown_count) by shipment id."""
    rows = await fetch_rows(
        database_url,
        "SELECT o.shipment_id, n.id, n.status, n.outcome_unknown_count "
        "FROM notifications n JOIN orders o ON o.id = n.order_id",
    )
    by_order: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        by_order.setdefault(str(row["shipment_id"]), []).append(row)
    return by_order


def describe_placing(placed: list[Placed], seconds: float) -> str:
    retried = sum((item.retried for item in placed), Counter[int]())
    return (
        f"placed {len(placed)} orders in {seconds:.1f} s ({len(placed) / seconds:.0f}/s); "
        f"answers {dict(Counter(item.status for item in placed))}; retried {dict(retried)}"
    )


async def place_and_wait(
    cluster: Cluster,
    database_url: str,
    base_urls: list[str],
    orders: list[Order],
    *,
    concurrency: int,
    timeout_s: float,
) -> tuple[list[Placed], dict[str, list[dict[str, object]]]]:
    """Place the orders and read the status feed until each order is final."""
    key = create_key(cluster)
    started = time.monotonic()
    placed = await place_orders(base_urls, key, orders, concurrency=concurrency)
    placed_at = time.monotonic()
    print(describe_placing(placed, placed_at - started))
    failed = [item for item in placed if item.shipment_id is None]
    assert not failed, f"{len(failed)} orders not stored, first: {failed[0]}"

    entries = await wait_for_feed(
        base_urls[0],
        key,
        {item.shipment_id for item in placed if item.shipment_id is not None},
        timeout_s=timeout_s,
        describe_progress=lambda: notification_states(database_url),
    )
    print(f"every order final {time.monotonic() - placed_at:.1f} s after the last was placed")
    return placed, entries


def outbox_counts(cluster: Cluster) -> tuple[Counter[str], Counter[str]]:
    """Count outbox lines per notification id and per recipient, over both channels."""
    lines = cluster.outbox_lines("sms") + cluster.outbox_lines("email")
    by_id = Counter(str(line["notificationId"]) for line in lines)
    by_recipient = Counter(str(line["recipient"]) for line in lines)
    return by_id, by_recipient


async def order_statuses(database_url: str) -> Counter[tuple[str, str]]:
    rows = await fetch_rows(database_url, "SELECT order_type, status FROM orders")
    return Counter((row["order_type"], row["status"]) for row in rows)


async def test_workers_send_api_server_orders(tmp_path: Path, postgres_template: str) -> None:
    orders = [build_order(index) for index in range(len(KINDS))]
    async with fresh_postgres_database(template=postgres_template) as url:
        with running_cluster(
            tmp_path / "data", url, worker_poll_interval_s="0.5", handoff_timeout_s="0.5"
        ) as cluster:
            api = cluster.api()
            key = create_key(cluster)
            base_url = f"http://127.0.0.1:{api.port}"
            placed = await place_orders([base_url], key, orders)
            # Two seconds are four poll intervals, so a worker loop or a
            # regular-order processor in the API process would have acted by now.
            await asyncio.sleep(2)
            before_worker = await order_statuses(url)
            notifications_before = await notification_states(url)
            outbox_before = cluster.outbox_lines("sms") + cluster.outbox_lines("email")

            cluster.worker("a")
            entries = await wait_for_feed(
                base_url,
                key,
                {str(item.shipment_id) for item in placed},
                timeout_s=60,
                describe_progress=lambda: notification_states(url),
            )
            sent_ids, sent_recipients = outbox_counts(cluster)

    outcomes = [final_outcome(item.order, entries[str(item.shipment_id)]) for item in placed]

    assert [item.status for item in placed] == [201] * len(orders)
    assert before_worker == {
        ("Instant", "Order_Processed"): 2,
        ("Notification", "Order_Registered"): 2,
    }
    assert notifications_before == {"SMS_New": 1, "Email_New": 1}
    assert outbox_before == []
    assert outcomes == [expected_outcome(order) for order in orders]
    assert len(sent_ids) == len(orders)
    assert set(sent_recipients) == {order.recipient for order in orders}


async def test_two_apis_three_workers_send_each_once(
    tmp_path: Path, postgres_template: str
) -> None:
    count = 10_000
    orders = [build_order(index) for index in range(count)]
    cpu_before_s = children_cpu_s()
    async with fresh_postgres_database(template=postgres_template) as url:
        # One creator places every order as fast as it can: its rate limit is off.
        with running_cluster(
            tmp_path / "data", url, worker_poll_interval_s="0.5", rate_limit_per_s="0"
        ) as cluster:
            apis = [cluster.api(), cluster.api()]
            for name in ("a", "b", "c"):
                cluster.worker(name)

            placed, entries = await place_and_wait(
                cluster,
                url,
                [f"http://127.0.0.1:{api.port}" for api in apis],
                orders,
                concurrency=48,
                timeout_s=240,
            )
            sent_ids, sent_recipients = outbox_counts(cluster)
            by_order = await notifications_by_order(url)
            exit_codes = cluster.stop_all()

    # Other load on the machine changes CPU time much less than run time, so
    # this figure compares runs.
    cluster_cpu_s = children_cpu_s() - cpu_before_s
    per_order_ms = cluster_cpu_s / count * 1000
    print(f"cluster processes used {cluster_cpu_s:.1f} CPU s, {per_order_ms:.1f} ms per order")
    outcomes = Counter(final_outcome(item.order, entries[str(item.shipment_id)]) for item in placed)
    expected = Counter(expected_outcome(order) for order in orders)
    states = Counter(row["status"] for rows in by_order.values() for row in rows)
    notification_ids = {str(row["id"]) for rows in by_order.values() for row in rows}

    assert Counter(item.status for item in placed) == {201: count}
    assert outcomes == expected
    assert len(entries) == count
    assert Counter(len(rows) for rows in by_order.values()) == {1: count}
    assert states == {"SMS_Delivered": count // 2, "Email_Delivered": count // 2}
    assert set(sent_ids) == notification_ids
    assert set(sent_ids.values()) == {1}
    assert set(sent_recipients) == {order.recipient for order in orders}
    assert set(sent_recipients.values()) == {1}
    assert set(exit_codes.values()) == {0}


async def wait_orders_stored(database_url: str, at_least: int) -> int:
    """Wait until at least `at_least` orders are stored; returns the number stored then."""
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        while True:
            stored = int(await connection.fetchval("SELECT count(*) FROM orders"))
            if stored >= at_least:
                return stored
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


async def test_killed_workers_lose_nothing(tmp_path: Path, postgres_template: str) -> None:
    count = 1_000
    orders = [build_order(index) for index in range(count)]
    async with fresh_postgres_database(template=postgres_template) as url:
        with running_cluster(
            tmp_path / "data", url, worker_poll_interval_s="0.2", lease_s="5", rate_limit_per_s="0"
        ) as cluster:
            api = cluster.api()
            workers = [cluster.worker(f"w{index}") for index in range(2)]
            chaos = random.Random(7)

            async def kill_workers_repeatedly() -> list[int]:
                """Kill a worker each time another 1/(KILLS + 1) of the orders is stored.

                Returns the number of stored orders at each kill. Kills follow
                the progress, not the clock, so they fall among the orders
                however fast this machine places them.
                """
                stored_at_kills = []
                for round_number in range(KILLS):
                    stored = await wait_orders_stored(
                        url, count * (round_number + 1) // (KILLS + 1)
                    )
                    victim = workers.pop(chaos.randrange(len(workers)))
                    victim.kill_hard()
                    stored_at_kills.append(stored)
                    workers.append(cluster.worker(f"r{round_number}"))
                return stored_at_kills

            async with asyncio.TaskGroup() as group:
                placing = group.create_task(
                    place_and_wait(
                        cluster,
                        url,
                        [f"http://127.0.0.1:{api.port}"],
                        orders,
                        concurrency=16,
                        timeout_s=180,
                    )
                )
                killing = group.create_task(kill_workers_repeatedly())
            (placed, entries), stored_at_kills = placing.result(), killing.result()
            sent_ids, sent_recipients = outbox_counts(cluster)
            by_order = await notifications_by_order(url)

    rows = [row for order_rows in by_order.values() for row in order_rows]
    reclaimed = sum(row["outcome_unknown_count"] for row in rows)
    duplicates = sum(times - 1 for times in sent_ids.values())
    outcomes = Counter(final_outcome(item.order, entries[str(item.shipment_id)]) for item in placed)
    print(f"orders stored at kills={stored_at_kills} reclaimed={reclaimed} duplicates={duplicates}")

    assert len(stored_at_kills) == KILLS
    assert Counter(item.status for item in placed) == {201: count}
    assert outcomes == Counter(expected_outcome(order) for order in orders)
    # A regular order whose worker died is claimed again after its lease, and
    # must still get one notification only.
    assert Counter(len(order_rows) for order_rows in by_order.values()) == {1: count}
    assert set(sent_ids) == {str(row["id"]) for row in rows}
    assert set(sent_recipients) == {order.recipient for order in orders}
    # A message is sent twice only when a worker died between the hand-off and
    # recording it; each such notification was reclaimed after its lease.
    assert duplicates <= reclaimed


def test_orders_mix_kinds_and_recipients() -> None:
    orders = [build_order(index) for index in range(400)]

    assert Counter(order.kind for order in orders) == dict.fromkeys(KINDS, 100)
    assert len({order.body["idempotencyId"] for order in orders}) == 400
    assert len({order.recipient for order in orders}) == 400
