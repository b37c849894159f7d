"""Personal data retention: bodies erased by the worker after the final status, and the purge."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import event, func, insert, select

from budstikke.config import Settings
from budstikke.dispatch.retention import RetentionPass
from budstikke.domain.statuses import Channel
from budstikke.store.database import Database
from budstikke.store.migrate import upgrade_to_head
from budstikke.store.orders import create_instant_order
from budstikke.store.records import NewNotification
from budstikke.store.retention import (
    count_purgeable,
    erase_final_bodies,
    prune_unmatched_reports,
    purge_orders,
)
from budstikke.store.tables import (
    feed_entries,
    notifications,
    orders,
    provider_parts,
    provider_ref_keys,
    regular_orders,
    unmatched_reports,
)
from tests.api.orders import EMAIL_PATH, SMS_PATH, email_order, sms_order
from tests.api.regular import ORDERS_PATH, regular_order
from tests.conftest import API, FakeClock, RunningApp, run_app, wait_for

THIRTY_DAYS_S = 30 * 86_400


async def place(app: RunningApp, path: str, body: dict[str, Any]) -> str:
    response = await app.client.post(path, json=body, headers=app.headers())
    assert response.status_code == 201, response.text
    shipment_id: str = response.json()["notification"]["shipmentId"]
    return shipment_id


async def stored_texts(database: Database, shipment_id: str) -> list[tuple[str | None, str | None]]:
    """Return (subject, body) of each notification of the shipment."""
    async with database.read() as connection:
        rows = await connection.execute(
            select(notifications.c.subject, notifications.c.body)
            .join(orders, orders.c.id == notifications.c.order_id)
            .where(orders.c.shipment_id == UUID(shipment_id))
        )
        return [(row.subject, row.body) for row in rows]


async def regular_texts(database: Database, shipment_id: str) -> str:
    async with database.read() as connection:
        body: str = (
            await connection.execute(
                select(regular_orders.c.body)
                .join(orders, orders.c.id == regular_orders.c.order_id)
                .where(orders.c.shipment_id == UUID(shipment_id))
            )
        ).scalar_one()
    return body


async def shipment(app: RunningApp, shipment_id: str) -> dict[str, Any]:
    response = await app.client.get(f"{API}/shipment/{shipment_id}", headers=app.headers())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def until_completed(app: RunningApp, shipment_id: str) -> None:
    async def completed() -> bool:
        return (await shipment(app, shipment_id))["status"] == "Order_Completed"

    await wait_for(completed)


def run_worker_pass(app: RunningApp, clock: FakeClock, seconds: float) -> None:
    clock.advance(seconds)
    app.app.state.services.dispatcher.wake()


async def test_worker_erases_instant_bodies(settings: Settings) -> None:
    clock = FakeClock()
    async with run_app(settings, clock=clock) as app:
        sms = await place(app, SMS_PATH, sms_order(body="Your code is 482913."))
        email = await place(app, EMAIL_PATH, email_order(subject="Code", body="Code 482913."))
        await until_completed(app, sms)
        await until_completed(app, email)
        run_worker_pass(app, clock, 11)

        async def erased() -> bool:
            texts = await stored_texts(app.database, sms) + await stored_texts(app.database, email)
            return texts == [(None, None), (None, None)]

        await wait_for(erased)
        shown = await shipment(app, sms)

    assert shown["status"] == "Order_Completed"
    assert shown["recipients"][0]["status"] == "SMS_Delivered"
    assert shown["recipients"][0]["destination"] == "+4799999999"


async def test_retention_setting_delays_erasure(settings: Settings) -> None:
    clock = FakeClock()
    kept_an_hour = settings.model_copy(update={"body_retention_s": 3600})
    async with run_app(kept_an_hour, clock=clock) as app:
        sms = await place(app, SMS_PATH, sms_order(body="Your code is 482913."))
        await until_completed(app, sms)
        for _ in range(3):
            run_worker_pass(app, clock, 1000)
            await app.app.state.services.dispatcher.run_pass()
        kept = await stored_texts(app.database, sms)
        run_worker_pass(app, clock, 601)

        async def erased() -> bool:
            return await stored_texts(app.database, sms) == [(None, None)]

        await wait_for(erased)

    assert kept == [(None, "Your code is 482913.")]


async def test_unfinished_notification_keeps_body(database: Database) -> None:
    now = datetime.now(UTC)
    receipt = await create_instant_order(
        database,
        creator="ttd",
        idempotency_id="waiting",
        senders_reference=None,
        notification=NewNotification(
            channel=Channel.SMS, recipient="+4799999999", sender="x", body="secret", ttl_s=300
        ),
        now=now,
    )

    erased = await erase_final_bodies(
        database,
        now=now + timedelta(days=400),
        instant_retention=timedelta(0),
        regular_retention=timedelta(0),
    )

    assert erased.notifications == 0
    assert await stored_texts(database, str(receipt.shipment_id)) == [(None, "secret")]


async def test_regular_bodies_kept_thirty_days(settings: Settings) -> None:
    clock = FakeClock()
    async with run_app(settings, clock=clock) as app:
        shipment_id = await place(app, ORDERS_PATH, regular_order())
        await until_completed(app, shipment_id)
        run_worker_pass(app, clock, THIRTY_DAYS_S - 60)
        await app.app.state.services.dispatcher.run_pass()
        kept = await stored_texts(app.database, shipment_id)
        kept_request = await regular_texts(app.database, shipment_id)
        run_worker_pass(app, clock, 120)

        async def erased() -> bool:
            return await stored_texts(app.database, shipment_id) == [(None, None)]

        await wait_for(erased)
        erased_request = await regular_texts(app.database, shipment_id)

    assert kept == [(None, "Reminder: your appointment is tomorrow.")]
    assert kept_request == "Reminder: your appointment is tomorrow."
    assert erased_request == ""


async def count_rows(database: Database, table: Any) -> int:
    async with database.read() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


async def test_purge_removes_old_orders_whole(settings: Settings) -> None:
    clock = FakeClock(datetime.now(UTC) - timedelta(days=100))
    async with run_app(settings, clock=clock) as app:
        old = [await place(app, SMS_PATH, sms_order(phone=f"+479000000{i}")) for i in range(3)]
        for shipment_id in old:
            await until_completed(app, shipment_id)
        clock.advance(95 * 86_400)
        recent = await place(app, SMS_PATH, sms_order())
        await until_completed(app, recent)
        database = app.database
        cutoff = datetime.now(UTC) - timedelta(days=90)

        counted = await count_purgeable(database, cutoff)
        result = await purge_orders(database, cutoff, batch=2)
        old_answers = [
            (
                await app.client.get(f"{API}/shipment/{shipment_id}", headers=app.headers())
            ).status_code
            for shipment_id in old
        ]
        recent_shown = await shipment(app, recent)
        feed = await app.client.get(f"{API}/shipment/feed", headers=app.headers())

        remaining = {
            table.name: await count_rows(database, table)
            for table in (orders, notifications, feed_entries)
        }

    assert (counted.orders, counted.notifications) == (3, 3)
    assert (result.orders, result.notifications, result.not_final) == (3, 3, 0)
    assert old_answers == [404, 404, 404]
    assert recent_shown["status"] == "Order_Completed"
    assert [entry["shipmentId"] for entry in feed.json()] == [recent]
    assert remaining == {"orders": 1, "notifications": 1, "feed_entries": 1}


async def test_purge_deletes_delivery_parts(database: Database) -> None:
    now = datetime.now(UTC) - timedelta(days=200)
    receipt = await create_instant_order(
        database,
        creator="ttd",
        idempotency_id="old",
        senders_reference=None,
        notification=NewNotification(
            channel=Channel.SMS, recipient="+4799999999", sender="x", body="b", ttl_s=300
        ),
        now=now,
    )
    [notification_id] = receipt.notification_ids
    async with database.write() as connection:
        await connection.execute(
            provider_parts.insert().values(
                notification_id=notification_id, part_index=0, provider_ref="ref-1"
            )
        )
        await connection.execute(
            provider_ref_keys.insert().values(
                ref_key="ref-1", notification_id=notification_id, part_index=0
            )
        )
        await connection.execute(
            notifications.update().values(status="SMS_Delivered", updated_at=now)
        )
        await connection.execute(orders.update().values(status="Order_Completed"))

    result = await purge_orders(database, datetime.now(UTC) - timedelta(days=90))

    assert result.orders == 1
    assert await count_rows(database, provider_parts) == 0
    assert await count_rows(database, provider_ref_keys) == 0


async def test_purge_keeps_unfinished_orders(database: Database) -> None:
    old = datetime.now(UTC) - timedelta(days=200)
    await create_instant_order(
        database,
        creator="ttd",
        idempotency_id="stuck",
        senders_reference=None,
        notification=NewNotification(
            channel=Channel.SMS, recipient="+4799999999", sender="x", body="b", ttl_s=300
        ),
        now=old,
    )

    result = await purge_orders(database, datetime.now(UTC) - timedelta(days=90))

    assert (result.orders, result.not_final) == (0, 1)
    assert await count_rows(database, orders) == 1


async def query_plans(
    tmp_path: Path, kind: str, run: Callable[[Database], Awaitable[object]]
) -> list[str]:
    """Run `run` on a new SQLite database; return SQLite's plan of each statement of `kind`."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}")
    await upgrade_to_head(database)
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if statement.startswith(kind):
            statements.append((statement, parameters))

    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    await run(database)
    plans = []
    async with database.read() as connection:
        for statement, parameters in statements:
            rows = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            plans.append(" | ".join(str(row[-1]) for row in rows))
    await database.dispose()
    return plans


async def test_erasure_reads_through_indexes(tmp_path: Path) -> None:
    # A pass that erased nothing read every kept regular body and every regular
    # order: 110 ms with 100,000 regular orders, on the event loop.
    plans = await query_plans(
        tmp_path,
        "UPDATE",
        lambda database: erase_final_bodies(
            database,
            now=datetime.now(UTC),
            instant_retention=timedelta(0),
            regular_retention=timedelta(days=30),
        ),
    )

    assert len(plans) == 3
    assert all("SCAN" not in plan for plan in plans), plans
    assert "ix_notifications_erasable (priority=? AND updated_at<?)" in plans[0]
    assert "ix_orders_updated_at" in plans[2]


async def test_unmatched_prune_reads_through_index(tmp_path: Path) -> None:
    plans = await query_plans(
        tmp_path,
        "DELETE",
        lambda database: prune_unmatched_reports(database, now=datetime.now(UTC)),
    )

    assert len(plans) == 1
    assert "ix_unmatched_reports_received_at" in plans[0], plans


async def test_retention_pass_prunes_unmatched_reports(database: Database) -> None:
    now = datetime.now(UTC)
    async with database.write() as connection:
        await connection.execute(
            insert(unmatched_reports),
            [
                {
                    "ref_key": "OLD",
                    "status": "SMS_Delivered",
                    "received_at": now - timedelta(days=2),
                },
                {"ref_key": "NEW", "status": "SMS_Delivered", "received_at": now},
            ],
        )
    retention = RetentionPass(
        database, instant_retention=timedelta(0), regular_retention=timedelta(days=30)
    )

    await retention.run_if_due(now)

    async with database.read() as connection:
        remaining = (await connection.execute(select(unmatched_reports.c.ref_key))).scalars().all()
    assert remaining == ["NEW"]


async def test_claimed_orders_are_updated_by_id(tmp_path: Path) -> None:
    # With an index on the status, SQLite read every registered order instead.
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'claim.db'}")
    await upgrade_to_head(database)
    ids = ", ".join(f"'{index}'" for index in range(50))
    async with database.read() as connection:
        rows = await connection.exec_driver_sql(
            "EXPLAIN QUERY PLAN UPDATE orders SET status = 'Order_Processing' "
            f"WHERE id IN ({ids}) AND status = 'Order_Registered'"
        )
        plan = " | ".join(str(row[-1]) for row in rows)
    await database.dispose()

    assert plan == "SEARCH orders USING INDEX sqlite_autoindex_orders_1 (id=?)"
