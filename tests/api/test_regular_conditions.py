"""Condition endpoints of regular orders end to end, against a real HTTP server on loopback."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from budstikke.config import Settings
from budstikke.dispatch.conditions import ConditionChecker
from budstikke.dispatch.regular import CREATOR_CONDITION_CONCURRENCY
from budstikke.domain.webhook_urls import AddressPolicy, parse_networks
from budstikke.store.tables import regular_orders
from tests.api.condition_server import closed_port, condition_server
from tests.api.regular import ORDERS_PATH, advance, place, regular_order, shipment
from tests.conftest import API, FakeClock, RunningApp, run_app, wait_for


def allowing_loopback(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"condition_allowed_networks": "127.0.0.1/32", "worker_poll_interval_s": 0.05}
    )


async def wait_status(app: RunningApp, shipment_id: str, status: str) -> dict[str, object]:
    async def reached() -> bool:
        return (await shipment(app, shipment_id))["status"] == status

    await wait_for(reached)
    return await shipment(app, shipment_id)


async def condition_row(app: RunningApp) -> object:
    async with app.database.read() as connection:
        return (
            await connection.execute(
                select(
                    regular_orders.c.condition_attempts,
                    regular_orders.c.condition_note,
                    regular_orders.c.process_after,
                )
            )
        ).one()


async def test_true_answer_sends(settings: Settings) -> None:
    async with condition_server() as server, run_app(allowing_loopback(settings)) as app:
        placed = await place(app, regular_order(conditionEndpoint=server.url("/seen?id=7")))
        shown = await wait_status(app, placed["notification"]["shipmentId"], "Order_Completed")

        assert server.paths == ["/seen?id=7"]
        assert shown["recipients"][0]["status"] == "SMS_Delivered"  # type: ignore[index]
        assert (await condition_row(app)).condition_attempts == 1  # type: ignore[attr-defined]


async def test_false_answer_ends_order(settings: Settings) -> None:
    async with condition_server() as server, run_app(allowing_loopback(settings)) as app:
        server.answer(b'{"sendNotification": false}')
        placed = await place(app, regular_order(conditionEndpoint=server.url()))
        shipment_id = placed["notification"]["shipmentId"]
        shown = await wait_status(app, shipment_id, "Order_SendConditionNotMet")

        assert shown["recipients"] == []
        assert app.outbox_lines("sms") == []
        feed = await app.client.get(
            "/notifications/api/v1/future/shipment/feed", headers=app.headers()
        )
        assert [entry["status"] for entry in feed.json()] == ["Order_SendConditionNotMet"]
        assert (await condition_row(app)).condition_attempts == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("answer", ["unreachable", "unclear", "string"])
async def test_no_answer_is_retried_then_sent(
    settings: Settings, answer: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="budstikke.dispatch.regular")
    clock = FakeClock(datetime.now(UTC))
    async with (
        condition_server() as server,
        run_app(allowing_loopback(settings), clock=clock) as app,
    ):
        if answer == "string":
            server.answer(b'{"sendNotification":"true"}')
        else:
            server.answer(b"<html>maintenance</html>")
        url = server.url() if answer != "unreachable" else f"http://127.0.0.1:{closed_port()}/c"
        placed = await place(app, regular_order(conditionEndpoint=url))
        shipment_id = placed["notification"]["shipmentId"]

        async def attempts_reach(count: int) -> bool:
            return (await condition_row(app)).condition_attempts >= count  # type: ignore[attr-defined]

        await wait_for(lambda: attempts_reach(1))
        assert (await shipment(app, shipment_id))["status"] == "Order_Processing"
        first = await condition_row(app)
        assert (first.process_after - clock.now).total_seconds() == pytest.approx(5)  # type: ignore[attr-defined]

        advance(app, clock, 5)
        await wait_for(lambda: attempts_reach(2))
        second = await condition_row(app)
        assert (second.process_after - clock.now).total_seconds() == pytest.approx(10)  # type: ignore[attr-defined]
        assert (await shipment(app, shipment_id))["status"] == "Order_Processing"

        advance(app, clock, 600)
        shown = await wait_status(app, shipment_id, "Order_Completed")

        assert shown["recipients"][0]["status"] == "SMS_Delivered"  # type: ignore[index]
        row = await condition_row(app)
        assert row.condition_note.startswith(  # type: ignore[attr-defined]
            "sent without an answer from the condition endpoint after 3 attempts"
        )
        assert row.condition_attempts == 3  # type: ignore[attr-defined]
        if answer != "unreachable":
            assert len(server.paths) == 3
        sent_anyway = [
            r for r in caplog.records if getattr(r, "event", "") == "condition_unanswered_sent"
        ]
        assert len(sent_anyway) == 1
        assert sent_anyway[0].order_id == placed["notificationOrderId"]  # type: ignore[attr-defined]
        retries = [r for r in caplog.records if getattr(r, "event", "") == "condition_retry"]
        assert len(retries) == 2


async def test_rejected_endpoint_is_sent_at_once(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="budstikke.dispatch.regular")
    clock = FakeClock(datetime.now(UTC))
    async with (
        condition_server() as server,
        run_app(allowing_loopback(settings), clock=clock) as app,
    ):
        send_time = clock.now + timedelta(minutes=5)
        placed = await place(
            app,
            regular_order(conditionEndpoint=server.url(), requestedSendTime=send_time.isoformat()),
        )
        # The endpoint passed registration. By its send time the address
        # policy no longer allows loopback, as after an operator's change.
        processor = app.app.state.services.regular_processor
        await processor.checker.aclose()
        processor.checker = ConditionChecker(AddressPolicy(), timeout_s=2.0)
        advance(app, clock, 300)
        shown = await wait_status(app, placed["notification"]["shipmentId"], "Order_Completed")
        row = await condition_row(app)

    assert shown["recipients"][0]["status"] == "SMS_Delivered"  # type: ignore[index]
    assert server.paths == []
    assert row.condition_attempts == 0  # type: ignore[attr-defined]
    note = row.condition_note  # type: ignore[attr-defined]
    assert note.startswith("sent without asking the condition endpoint: 127.0.0.1 resolves to")
    assert "a loopback address" in note
    rejected = [
        r for r in caplog.records if getattr(r, "event", "") == "condition_endpoint_rejected"
    ]
    assert len(rejected) == 1
    assert rejected[0].order_id == placed["notificationOrderId"]  # type: ignore[attr-defined]
    retries = [r for r in caplog.records if getattr(r, "event", "") == "condition_retry"]
    assert retries == []


async def test_slow_creator_does_not_delay_others(settings: Settings) -> None:
    # More orders than the slow creator's running and waiting checks, so
    # that some are released for later too.
    slow_order_count = 60
    async with (
        condition_server() as slow,
        condition_server() as fast,
        run_app(allowing_loopback(settings)) as app,
    ):
        # A timeout longer than the test waits: a pass that waited for the
        # slow checks would hold back the other creator's orders past it.
        processor = app.app.state.services.regular_processor
        await processor.checker.aclose()
        processor.checker = ConditionChecker(
            AddressPolicy(parse_networks("127.0.0.1/32")), timeout_s=60.0
        )
        slow.hold()
        slow_key = await app.new_key("slow-creator")
        slow_shipments = []
        for index in range(slow_order_count):
            body = regular_order(conditionEndpoint=slow.url(f"/slow/{index}"))
            response = await app.client.post(ORDERS_PATH, json=body, headers=app.headers(slow_key))
            assert response.status_code == 201, response.text
            slow_shipments.append(response.json()["notification"]["shipmentId"])
        await slow.wait_for_in_flight(CREATOR_CONDITION_CONCURRENCY)

        conditional = [
            await place(app, regular_order(conditionEndpoint=fast.url(f"/fast/{index}")))
            for index in range(5)
        ]
        plain = [await place(app, regular_order()) for _index in range(5)]
        others = [placed["notification"]["shipmentId"] for placed in conditional + plain]

        async def others_completed() -> bool:
            shown = [await shipment(app, shipment_id) for shipment_id in others]
            return all(item["status"] == "Order_Completed" for item in shown)

        await wait_for(others_completed)
        slow_in_flight = slow.in_flight
        slow.release()

        async def slow_completed() -> bool:
            for shipment_id in slow_shipments:
                response = await app.client.get(
                    f"{API}/shipment/{shipment_id}", headers=app.headers(slow_key)
                )
                if response.json()["status"] != "Order_Completed":
                    return False
            return True

        await wait_for(slow_completed, timeout_s=30.0)

    assert sorted(fast.paths) == sorted(f"/fast/{index}" for index in range(5))
    assert slow_in_flight == CREATOR_CONDITION_CONCURRENCY
    assert slow.max_in_flight == CREATOR_CONDITION_CONCURRENCY
    # Every slow order was asked once: waiting and released orders are not lost.
    assert sorted(slow.paths) == sorted(f"/slow/{index}" for index in range(slow_order_count))
