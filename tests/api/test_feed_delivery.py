"""The status feed gets one entry per order, written only when the order is final.

The SMS provider here is SMPP, bound over loopback to the test SMSC in
budstikke.channels.smpp.dev_smsc, so an SMS stays SMS_Accepted until the
SMSC's delivery receipt arrives (or until budstikke's TTL plus the 300 s
report grace has passed without one).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from budstikke.channels.smpp.dev_smsc import DevSmsc, DevSmscOptions
from budstikke.config import Settings
from tests.api.replay import CASES_BY_ID
from tests.api.servers import InProcessApp, in_process_app

API = "/notifications/api/v1/future"
RECEIPT_DELAY_S = 1.0
WAIT_TIMEOUT_S = 10.0
# The order of the recorded Altinn case INS-SMS-01, whose feed entry the recorded
# case STS-19 expects (both in tests/api/data/altinn_replay.json).
ORDER = CASES_BY_ID["INS-SMS-01"]["body"]
TTL_S = ORDER["recipientSms"]["timeToLiveInSeconds"]
REPORT_GRACE_S = 300
# The SMS is being handed off, or was handed off and waits for its receipt.
NOT_FINAL = {"SMS_Sending", "SMS_Accepted"}


class MovableClock:
    """The app's clock: the real time plus an offset that a test can move forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class SmppApp:
    app: InProcessApp
    smsc: DevSmsc
    clock: MovableClock

    async def place_order(self) -> str:
        order = json.loads(json.dumps(ORDER).replace("{{uuid}}", str(uuid.uuid4())))
        response = await self.app.client.post(
            f"{API}/orders/instant/sms", json=order, headers=self.app.headers()
        )
        assert response.status_code == 201, response.text
        shipment_id: str = response.json()["notification"]["shipmentId"]
        return shipment_id

    async def feed_entries(self, shipment_id: str) -> list[dict[str, Any]]:
        response = await self.app.client.get(
            f"{API}/shipment/feed", params={"seq": 0}, headers=self.app.headers()
        )
        assert response.status_code == 200, response.text
        return [entry for entry in response.json() if entry["shipmentId"] == shipment_id]

    async def wait_for_feed_entry(self, shipment_id: str) -> list[dict[str, Any]]:
        async with asyncio.timeout(WAIT_TIMEOUT_S):
            while not (entries := await self.feed_entries(shipment_id)):
                await asyncio.sleep(0.05)
        return entries

    async def recipient_status(self, shipment_id: str) -> str:
        response = await self.app.client.get(
            f"{API}/shipment/{shipment_id}", headers=self.app.headers()
        )
        assert response.status_code == 200, response.text
        status: str = response.json()["recipients"][0]["status"]
        return status


@asynccontextmanager
async def smpp_app(tmp_path: Path, *, send_receipts: bool) -> AsyncIterator[SmppApp]:
    """Run the test SMSC and the app with its SMS provider bound to it."""
    options = DevSmscOptions(
        port=0, receipt_delay_s=RECEIPT_DELAY_S, send_receipts=send_receipts, seed=1
    )
    clock = MovableClock()
    async with DevSmsc(options) as smsc:
        settings = Settings(
            data_dir=tmp_path / "data",
            sms_url=f"smpp://budstikke:secret@127.0.0.1:{smsc.port}",
            worker_poll_interval_s=0.05,
        )
        async with in_process_app(settings, clock=clock) as app:
            # An order placed before the bind would wait for a retry.
            async with asyncio.timeout(WAIT_TIMEOUT_S):
                while smsc.bound_connections == 0:
                    await asyncio.sleep(0.01)
            yield SmppApp(app, smsc, clock)


def check_entry(entry: dict[str, Any], shipment_id: str, recipient_status: str) -> None:
    assert entry["shipmentId"] == shipment_id
    assert entry["sendersReference"] == ORDER["sendersReference"]
    assert entry["shipmentType"] == "Instant"
    assert entry["type"] == "Instant"
    assert entry["status"] == "Order_Completed"
    [recipient] = entry["recipients"]
    assert recipient["type"] == "SMS"
    assert recipient["destination"] == "+4799999999"
    assert recipient["status"] == recipient_status


async def test_feed_entry_after_delivery_receipt(tmp_path: Path) -> None:
    async with smpp_app(tmp_path, send_receipts=True) as server:
        shipment_id = await server.place_order()

        # The receipt comes RECEIPT_DELAY_S after the hand-off.
        assert await server.recipient_status(shipment_id) in NOT_FINAL
        assert await server.feed_entries(shipment_id) == []

        [entry] = await server.wait_for_feed_entry(shipment_id)

        check_entry(entry, shipment_id, "SMS_Delivered")
        # Later worker passes must not write a second entry.
        await asyncio.sleep(0.3)
        assert len(await server.feed_entries(shipment_id)) == 1


async def test_feed_entry_after_report_deadline(tmp_path: Path) -> None:
    async with smpp_app(tmp_path, send_receipts=False) as server:
        shipment_id = await server.place_order()
        # Only a handed-off SMS waits for the report deadline. One that was not
        # handed off by its TTL ends SMS_Failed_TTL earlier.
        async with asyncio.timeout(WAIT_TIMEOUT_S):
            while await server.recipient_status(shipment_id) != "SMS_Accepted":
                await asyncio.sleep(0.05)

        server.clock.offset = timedelta(seconds=TTL_S + REPORT_GRACE_S - 5)
        await asyncio.sleep(0.3)
        assert await server.feed_entries(shipment_id) == []

        server.clock.offset = timedelta(seconds=TTL_S + REPORT_GRACE_S + 1)
        [entry] = await server.wait_for_feed_entry(shipment_id)

        check_entry(entry, shipment_id, "SMS_Failed_TTL")
        await asyncio.sleep(0.3)
        assert len(await server.feed_entries(shipment_id)) == 1
