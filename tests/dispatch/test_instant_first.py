"""Regular batches wait while an instant order is being placed, for a bounded time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from budstikke.channels.base import HandOffReceipt, OutgoingMessage
from budstikke.channels.outbox import FileOutbox
from budstikke.config import Settings
from budstikke.dispatch.instant_first import InstantFirst
from budstikke.dispatch.runner import build_dispatcher
from budstikke.domain.statuses import Channel, Priority
from budstikke.store.database import Database
from budstikke.store.migrate import upgrade_to_head
from budstikke.store.notifications import NotificationStore
from budstikke.store.records import OrderReceipt
from budstikke.store.tables import notifications
from tests.api.orders import SMS_PATH, sms_order
from tests.conftest import run_app, wait_for
from tests.store.test_notifications import new_order, status_of
from tests.store.test_outcomes import LEASE, NOW


async def test_wait_without_orders_returns_at_once() -> None:
    waiting = InstantFirst().wait_turn()

    # The coroutine finishes on its first step: it never gives up the event loop.
    with pytest.raises(StopIteration):
        waiting.send(None)


async def test_wait_ends_after_last_order() -> None:
    instant_first = InstantFirst(max_wait_s=60)
    with instant_first.placing():
        with instant_first.placing():
            waiting = asyncio.create_task(instant_first.wait_turn())
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)
        assert not waiting.done()

    await asyncio.wait_for(waiting, timeout=5)
    assert instant_first.in_flight == 0


async def test_wait_ends_after_max_wait() -> None:
    instant_first = InstantFirst(max_wait_s=0.05)
    loop = asyncio.get_running_loop()

    with instant_first.placing():
        started = loop.time()
        await instant_first.wait_turn()
        waited_s = loop.time() - started

    assert 0.04 <= waited_s < 5


async def test_woken_future_ends_the_wait() -> None:
    instant_first = InstantFirst(max_wait_s=60)
    woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    with instant_first.placing():
        waiting = asyncio.create_task(instant_first.wait_turn(woken))
        await asyncio.sleep(0.01)
        woken.set_result(None)
        await asyncio.wait_for(waiting, timeout=5)

        assert instant_first.in_flight == 1


async def test_old_order_stops_the_wait() -> None:
    instant_first = InstantFirst(max_wait_s=0.05)

    with instant_first.placing():
        # Placed longer ago than the bound, as an order that waits for a slow provider.
        await asyncio.sleep(0.1)
        waiting = instant_first.wait_turn()

        with pytest.raises(StopIteration):
            waiting.send(None)


async def test_waiters_released_when_only_old_orders_remain() -> None:
    instant_first = InstantFirst(max_wait_s=2)

    with instant_first.placing():
        await asyncio.sleep(2.1)
        with instant_first.placing():
            waiting = asyncio.create_task(instant_first.wait_turn())
            await asyncio.sleep(0.01)
            assert not waiting.done()

        await asyncio.wait_for(waiting, timeout=1)
        assert instant_first.in_flight == 1


async def test_wait_leaves_woken_future_pending() -> None:
    instant_first = InstantFirst(max_wait_s=0.02)
    woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    with instant_first.placing():
        await instant_first.wait_turn(woken)

    assert not woken.done()


async def test_failed_order_is_not_counted() -> None:
    instant_first = InstantFirst(max_wait_s=60)

    with pytest.raises(RuntimeError), instant_first.placing():
        raise RuntimeError("rate limit")

    assert instant_first.in_flight == 0
    await asyncio.wait_for(instant_first.wait_turn(), timeout=5)


def test_negative_max_wait_rejected() -> None:
    with pytest.raises(ValueError, match="max_wait_s must be 0 or more, not -1"):
        InstantFirst(max_wait_s=-1)


async def test_regular_hand_off_waits_for_instant(database: Database, tmp_path: Path) -> None:
    outbox_path = tmp_path / "sms.jsonl"
    outbox = FileOutbox(Channel.SMS, outbox_path)
    dispatcher = build_dispatcher(Settings(data_dir=tmp_path), database, {Channel.SMS: outbox})
    dispatcher.instant_first.max_wait_s = 60
    store = NotificationStore(database)
    claimed = {}
    for priority in Priority:
        receipt = await new_order(database, priority.name, priority=priority)
        notification = await store.claim(
            receipt.notification_ids[0], worker_id="w", now=NOW, lease_until=NOW + LEASE
        )
        assert notification is not None
        claimed[priority] = notification
    await dispatcher.start_providers()
    try:
        with dispatcher.instant_first.placing():
            regular = dispatcher.start_hand_off(claimed[Priority.REGULAR])
            instant = dispatcher.start_hand_off(claimed[Priority.INSTANT])
            await asyncio.wait_for(instant, timeout=20)
            await asyncio.sleep(0.1)

            assert not regular.done()
            assert len(outbox_path.read_text().splitlines()) == 1

        await asyncio.wait_for(regular, timeout=20)
        assert len(outbox_path.read_text().splitlines()) == 2
    finally:
        await dispatcher.stop()


async def test_worker_pass_waits_for_instant(database: Database, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, worker_poll_interval_s=0.05)
    outbox = FileOutbox(Channel.SMS, tmp_path / "sms.jsonl")
    dispatcher = build_dispatcher(settings, database, {Channel.SMS: outbox})
    dispatcher.instant_first.max_wait_s = 60
    receipt = await new_order(database, "due", priority=Priority.REGULAR, now=datetime.now(UTC))
    await dispatcher.start_providers()
    try:
        with dispatcher.instant_first.placing():
            dispatcher.start_worker()
            await asyncio.sleep(0.3)

            assert await lease_of(database, receipt) is None

        await wait_for(lambda: status_of_is(database, receipt, "SMS_Delivered"))
    finally:
        await dispatcher.stop()


async def lease_of(database: Database, receipt: OrderReceipt) -> datetime | None:
    async with database.read() as connection:
        lease: datetime | None = (
            await connection.execute(
                select(notifications.c.lease_expires_at).where(
                    notifications.c.id == receipt.notification_ids[0]
                )
            )
        ).scalar_one()
    return lease


async def status_of_is(database: Database, receipt: OrderReceipt, status: str) -> bool:
    return (await status_of(database, receipt))[1] == status


class CountingOutbox(FileOutbox):
    """File outbox that records how many instant orders were in flight at each hand-off."""

    instant_first: InstantFirst | None = None
    seen: list[int]

    async def hand_off(self, message: OutgoingMessage) -> HandOffReceipt:
        assert self.instant_first is not None
        self.seen.append(self.instant_first.in_flight)
        return await super().hand_off(message)


async def test_instant_order_counted_until_hand_off(settings: Settings, tmp_path: Path) -> None:
    outbox = CountingOutbox(Channel.SMS, tmp_path / "sms.jsonl")
    outbox.seen = []
    async with run_app(settings, providers={Channel.SMS: outbox}) as app:
        instant_first = app.app.state.services.dispatcher.instant_first
        outbox.instant_first = instant_first

        response = await app.client.post(SMS_PATH, json=sms_order(), headers=app.headers())

        assert response.status_code == 201
        assert outbox.seen == [1]
        assert instant_first.in_flight == 0


async def test_dispatcher_makes_regular_writes_wait(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await upgrade_to_head(database)
    dispatcher = build_dispatcher(Settings(data_dir=tmp_path), database, {})
    dispatcher.instant_first.max_wait_s = 60
    store = NotificationStore(database)

    with dispatcher.instant_first.placing():
        expiry = asyncio.create_task(store.expire_overdue(NOW))
        await asyncio.sleep(0.05)
        assert not expiry.done()

    assert await asyncio.wait_for(expiry, timeout=5) == []
    await database.dispose()
