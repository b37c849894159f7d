"""Faults around an instant order: the client hangs up mid-request, the database goes away.

The disconnect tests run the app in uvicorn on a loopback port, so the request
and the hang-up really travel over TCP. The database tests need the PostgreSQL
server at 127.0.0.1:5432 and skip when it accepts no connections.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select

from budstikke.api.app import create_app
from budstikke.channels.base import (
    HandOffReceipt,
    OutgoingMessage,
    Provider,
    ReportSink,
)
from budstikke.channels.outbox import FileOutbox
from budstikke.config import Settings
from budstikke.domain.statuses import Channel
from budstikke.store.api_keys import create_api_key
from budstikke.store.database import Database
from budstikke.store.tables import notifications, orders
from tests.api.regular import ORDERS_PATH, regular_order
from tests.api.servers import (
    CREATE_SCOPE,
    HOST,
    InProcessApp,
    in_process_app,
    postgres_database,
    postgres_url,
    set_allow_connections,
    uvicorn_server,
)

API = "/notifications/api/v1/future"
# The app's hand-off timeout. A GatedProvider keeps each message longer, so the
# API sends its response while the provider still has the message.
HANDOFF_TIMEOUT_S = 0.2
WAIT_TIMEOUT_S = 5.0
# In the worker outage test, the regular order falls due this long after it
# is placed. The outage starts at once and ends a second after that time.
SEND_DELAY_S = 2.0


class GatedProvider:
    """A file outbox that keeps each message waiting until `release` is set.

    `entered` is set when a hand-off has started, so a test knows the order was
    stored and the request is still being processed.
    """

    def __init__(self, channel: Channel, path: Path) -> None:
        self.channel = channel
        self.outbox = FileOutbox(channel, path)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.handed_off = asyncio.Event()

    async def start(self, report_sink: ReportSink) -> None:
        await self.outbox.start(report_sink)

    async def stop(self) -> None:
        await self.outbox.stop()

    async def hand_off(self, message: OutgoingMessage) -> HandOffReceipt:
        self.entered.set()
        await self.release.wait()
        receipt = await self.outbox.hand_off(message)
        self.handed_off.set()
        return receipt

    def is_ready(self) -> tuple[bool, str]:
        return self.outbox.is_ready()

    def reference_keys(self, provider_ref: str) -> tuple[str, ...]:
        return self.outbox.reference_keys(provider_ref)


@dataclass
class GatedServer:
    base_url: str
    api_key: str
    database: Database
    providers: dict[Channel, GatedProvider]
    settings: Settings

    def outbox_lines(self, channel: Channel) -> list[dict[str, Any]]:
        path = self.providers[channel].outbox.path
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
async def gated_server(tmp_path: Path) -> AsyncIterator[GatedServer]:
    settings = Settings(data_dir=tmp_path / "data", handoff_timeout_s=HANDOFF_TIMEOUT_S)
    outbox_dir = tmp_path / "data" / "outbox"
    providers = {
        Channel.SMS: GatedProvider(Channel.SMS, outbox_dir / "sms.jsonl"),
        Channel.EMAIL: GatedProvider(Channel.EMAIL, outbox_dir / "email.jsonl"),
    }
    as_providers: dict[Channel, Provider] = dict(providers)
    app = create_app(settings, providers=as_providers)
    async with uvicorn_server(app) as base_url:
        database = app.state.services.database
        _record, key = await create_api_key(
            database, creator="ttd", scopes=(CREATE_SCOPE,), now=datetime.now(UTC)
        )
        yield GatedServer(base_url, key, database, providers, settings)
        # A test that failed early may leave a hand-off waiting. Releasing it
        # lets the server shut down without waiting for it.
        for provider in providers.values():
            provider.release.set()


def raw_post(path: str, key: str, body: bytes, host: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    ).encode() + body


async def post_and_hang_up(server: GatedServer, path: str, order: dict[str, Any]) -> None:
    """Send the order over a raw TCP connection and close it once the hand-off has started."""
    port = int(server.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(raw_post(path, server.api_key, json.dumps(order).encode(), f"{HOST}:{port}"))
        await writer.drain()
        channel = Channel.EMAIL if path.endswith("/email") else Channel.SMS
        await asyncio.wait_for(server.providers[channel].entered.wait(), WAIT_TIMEOUT_S)
        assert not reader.at_eof()
    finally:
        writer.close()
        await writer.wait_closed()


async def stored_orders(database: Database, idempotency_id: str) -> list[Any]:
    async with database.read() as connection:
        rows = await connection.execute(
            select(orders.c.id, orders.c.shipment_id).where(
                orders.c.idempotency_id == idempotency_id
            )
        )
        return list(rows)


async def notification_ids(database: Database, order_id: UUID) -> list[UUID]:
    async with database.read() as connection:
        rows = await connection.execute(
            select(notifications.c.id).where(notifications.c.order_id == order_id)
        )
        return list(rows.scalars())


def sms_order(idempotency_id: str) -> dict[str, Any]:
    return {
        "idempotencyId": idempotency_id,
        "sendersReference": None,
        "recipientSms": {
            "phoneNumber": "+4799999999",
            "timeToLiveInSeconds": 360,
            "smsSettings": {"body": "Test message", "sender": "Altinn"},
        },
    }


def email_order(idempotency_id: str) -> dict[str, Any]:
    return {
        "idempotencyId": idempotency_id,
        "sendersReference": None,
        "recipientEmail": {
            "emailAddress": "test@example.com",
            "emailSettings": {
                "subject": "Test Subject",
                "body": "Test email body",
                "contentType": 0,
                "senderEmailAddress": "sender@altinn.no",
            },
        },
    }


def legacy_order(idempotency_id: str) -> dict[str, Any]:
    order = sms_order(idempotency_id)
    return {
        "idempotencyId": order["idempotencyId"],
        "sendersReference": None,
        "recipient": {"recipientSms": order["recipientSms"]},
    }


DISCONNECT_CASES = [
    pytest.param("/orders/instant/sms", Channel.SMS, sms_order, id="sms"),
    pytest.param("/orders/instant/email", Channel.EMAIL, email_order, id="email"),
    pytest.param("/orders/instant", Channel.SMS, legacy_order, id="deprecated-nested-sms"),
]


@pytest.mark.parametrize(("path", "channel", "make_order"), DISCONNECT_CASES)
async def test_hang_up_then_retry_sends_once(
    gated_server: GatedServer, path: str, channel: Channel, make_order: Any
) -> None:
    idempotency_id = f"hang-up-{channel.value}"
    order = make_order(idempotency_id)
    provider = gated_server.providers[channel]

    await post_and_hang_up(gated_server, API + path, order)
    # Let the server see the closed connection and pass its hand-off timeout.
    await asyncio.sleep(HANDOFF_TIMEOUT_S * 2)
    provider.release.set()
    await asyncio.wait_for(provider.handed_off.wait(), WAIT_TIMEOUT_S)

    headers = {"Authorization": f"Bearer {gated_server.api_key}"}
    async with httpx.AsyncClient(base_url=gated_server.base_url, headers=headers) as client:
        retry = await client.post(API + path, json=order)
        assert retry.status_code == 200, retry.text
        body = retry.json()
        shipment = await client.get(f"{API}/shipment/{body['notification']['shipmentId']}")
        assert shipment.status_code == 200, shipment.text

    [stored] = await stored_orders(gated_server.database, idempotency_id)
    assert body["notificationOrderId"] == str(stored.id)
    assert body["notification"]["shipmentId"] == str(stored.shipment_id)
    [notification_id] = await notification_ids(gated_server.database, stored.id)
    sent = gated_server.outbox_lines(channel)
    assert [line["notificationId"] for line in sent] == [str(notification_id)]
    assert shipment.json()["recipients"][0]["status"].endswith("_Delivered")


async def hang_up_during_body(server: GatedServer, order: dict[str, Any]) -> None:
    """Send the headers and all but the last 10 bytes of the body, then close the connection."""
    port = int(server.base_url.rsplit(":", 1)[1])
    body = json.dumps(order).encode()
    request = raw_post(f"{API}/orders/instant/sms", server.api_key, body, f"{HOST}:{port}")
    _reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(request[:-10])
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    await writer.wait_closed()
    # Let the server read the end of the stream and finish the request.
    await asyncio.sleep(0.1)


async def test_hang_up_during_body_stores_nothing(gated_server: GatedServer) -> None:
    order = sms_order("hang-up-during-body")

    await hang_up_during_body(gated_server, order)

    assert await stored_orders(gated_server.database, "hang-up-during-body") == []
    assert gated_server.outbox_lines(Channel.SMS) == []
    gated_server.providers[Channel.SMS].release.set()
    headers = {"Authorization": f"Bearer {gated_server.api_key}"}
    async with httpx.AsyncClient(base_url=gated_server.base_url, headers=headers) as client:
        retry = await client.post(f"{API}/orders/instant/sms", json=order)
    assert retry.status_code == 201, retry.text
    assert len(gated_server.outbox_lines(Channel.SMS)) == 1


async def test_hang_up_during_body_logs_no_error(
    gated_server: GatedServer, caplog: pytest.LogCaptureFixture
) -> None:
    await hang_up_during_body(gated_server, sms_order("hang-up-during-body"))

    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.getMessage() for record in errors] == []


# --- The database goes away ---------------------------------------------------------------


@dataclass
class PostgresApp:
    app: InProcessApp
    database_name: str

    async def order_count(self) -> int:
        async with self.app.database.read() as connection:
            count = await connection.execute(select(func.count()).select_from(orders))
            return int(count.scalar_one())

    def sent_count(self) -> int:
        return len(self.app.outbox_lines("sms")) + len(self.app.outbox_lines("email"))


@pytest.fixture
async def postgres_app(tmp_path: Path) -> AsyncIterator[PostgresApp]:
    async with postgres_database() as name:
        settings = Settings(data_dir=tmp_path / "data", database_url=postgres_url(name))
        # Instant orders are handed off by the request itself. The worker loop is
        # left out here, and test_worker_survives_database_outage covers it.
        async with in_process_app(settings, run_workers=False) as app:
            try:
                yield PostgresApp(app, name)
            finally:
                await set_allow_connections(name, True)


DATABASE_DOWN_CASES = [
    pytest.param("/orders/instant", legacy_order, id="deprecated-nested-sms"),
    pytest.param("/orders/instant/sms", sms_order, id="sms"),
    pytest.param("/orders/instant/email", email_order, id="email"),
]


@pytest.mark.parametrize(("path", "make_order"), DATABASE_DOWN_CASES)
async def test_database_down_returns_503(
    postgres_app: PostgresApp, path: str, make_order: Any
) -> None:
    order = make_order("database-down")
    client, headers = postgres_app.app.client, postgres_app.app.headers()
    await set_allow_connections(postgres_app.database_name, False)

    refused = await client.post(API + path, json=order, headers=headers)

    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["status"] == 503
    assert problem["code"] == "NOT-00004"

    await set_allow_connections(postgres_app.database_name, True)
    assert await postgres_app.order_count() == 0
    assert postgres_app.sent_count() == 0

    accepted = await client.post(API + path, json=order, headers=headers)

    assert accepted.status_code == 201, accepted.text
    created = accepted.json()
    assert created["notificationOrderId"] != created["notification"]["shipmentId"]
    assert await postgres_app.order_count() == 1
    assert postgres_app.sent_count() == 1


async def test_worker_survives_database_outage(tmp_path: Path) -> None:
    async with postgres_database() as name:
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=postgres_url(name),
            worker_poll_interval_s=0.05,
        )
        async with in_process_app(settings) as app:
            # A regular order that falls due while the database is away: only
            # the worker loops send it, so it shows that they resume.
            send_at = datetime.now(UTC) + timedelta(seconds=SEND_DELAY_S)
            regular = await app.client.post(
                ORDERS_PATH,
                json=regular_order(requestedSendTime=send_at.isoformat()),
                headers=app.headers(),
            )
            assert regular.status_code == 201, regular.text
            await set_allow_connections(name, False)
            outage_started = datetime.now(UTC)
            # Many worker passes run while the database refuses connections.
            await asyncio.sleep((send_at - outage_started).total_seconds() + 1)
            sent_during_outage = len(app.outbox_lines("sms"))
            await set_allow_connections(name, True)

            deadline = asyncio.get_running_loop().time() + WAIT_TIMEOUT_S * 4
            while not app.outbox_lines("sms") and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            sent_after_outage = len(app.outbox_lines("sms"))
            response = await app.client.post(
                f"{API}/orders/instant/sms", json=sms_order("after-outage"), headers=app.headers()
            )

            assert outage_started < send_at
            assert sent_during_outage == 0
            assert sent_after_outage == 1
            assert response.status_code == 201, response.text
            assert len(app.outbox_lines("sms")) == 2
        # Leaving the block ran the shutdown, which waits for the worker loop
        # and raises the error that ended it, if any.
