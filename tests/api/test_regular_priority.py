"""An instant order overtakes a full queue of regular orders on a slow SMPP bind."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from sqlalchemy import func, select

from budstikke.channels.smpp import SmppProvider
from budstikke.channels.smpp.dev_smsc import DevSmsc, DevSmscOptions
from budstikke.config import Settings
from budstikke.domain.statuses import Channel, NotificationStatus, Priority
from budstikke.store.tables import notifications
from tests.api.orders import SMS_PATH, sms_order
from tests.api.regular import advance, place, regular_order, sms_recipient
from tests.conftest import FakeClock, RunningApp, run_app, wait_for

REGULAR_ORDERS = 120
# 20 submits per second, so the regular queue needs about 6 s to drain.
SMSC_RATE = 20
WAITING = [NotificationStatus.SMS_NEW.value, NotificationStatus.SMS_SENDING.value]


async def count_regular(app: RunningApp, statuses: list[str]) -> int:
    async with app.database.read() as connection:
        return int(
            (
                await connection.execute(
                    select(func.count()).where(
                        notifications.c.priority == int(Priority.REGULAR),
                        notifications.c.status.in_(statuses),
                    )
                )
            ).scalar_one()
        )


async def test_instant_overtakes_regular_queue(settings: Settings) -> None:
    options = DevSmscOptions(port=0, receipt_delay_s=0.05, seed=1, response_delay_s=0.02)
    async with DevSmsc(options) as smsc:
        provider = SmppProvider.from_url(
            f"smpp://budstikke:secret@127.0.0.1:{smsc.port}?max_rate={SMSC_RATE}&window=4"
        )
        fast = settings.model_copy(update={"worker_poll_interval_s": 0.05})
        clock = FakeClock()
        async with run_app(fast, providers={Channel.SMS: provider}, clock=clock) as app:
            await wait_for(lambda: asyncio.sleep(0, result=smsc.bound_connections > 0))
            # All regular orders fall due together, after they are all placed.
            due = (clock.now + timedelta(minutes=1)).isoformat()
            for index in range(REGULAR_ORDERS):
                recipient = sms_recipient(f"+47900{index:05d}")
                await place(app, regular_order(recipient, requestedSendTime=due))
            advance(app, clock, 60)

            async def queue_is_full() -> bool:
                return await count_regular(app, WAITING) >= REGULAR_ORDERS * 3 // 4

            await wait_for(queue_is_full, timeout_s=20)

            started = time.monotonic()
            response = await app.client.post(SMS_PATH, json=sms_order(), headers=app.headers())
            instant_s = time.monotonic() - started

            assert response.status_code == 201
            shipment_id = response.json()["notification"]["shipmentId"]
            shown = await app.client.get(
                f"/notifications/api/v1/future/shipment/{shipment_id}", headers=app.headers()
            )
            assert shown.json()["recipients"][0]["status"] in ("SMS_Accepted", "SMS_Delivered")
            # Handed off ahead of the queue, which needs seconds more to drain.
            assert instant_s < 2.0
            assert await count_regular(app, WAITING) >= REGULAR_ORDERS // 2
