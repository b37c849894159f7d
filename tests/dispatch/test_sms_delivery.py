"""Instant SMS through the dispatcher to the strict test SMSC over real SMPP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from budstikke.channels.smpp.dev_smsc import DevSmsc, DevSmscOptions
from budstikke.channels.smpp.pdu import SubmitSm
from budstikke.channels.smpp.receipts import reference_keys
from budstikke.config import Settings
from budstikke.domain.statuses import Channel
from budstikke.store.tables import unmatched_reports
from tests.api.orders import SMS_PATH, sms_order
from tests.conftest import API, FakeClock, RunningApp, run_app, shipment_status, wait_for


@pytest.fixture
async def smsc() -> AsyncIterator[DevSmsc]:
    async with DevSmsc(DevSmscOptions(port=0, receipt_delay_s=0.05, seed=3)) as server:
        yield server


def smpp_settings(settings: Settings, smsc: DevSmsc, query: str = "", **updates: Any) -> Settings:
    url = f"smpp://budstikke:secret@127.0.0.1:{smsc.port}?response_timeout_s=2{query}"
    return settings.model_copy(update={"sms_url": url, "worker_poll_interval_s": 0.05, **updates})


async def place_sms(app: RunningApp, **fields: Any) -> str:
    response = await app.client.post(SMS_PATH, headers=app.headers(), json=sms_order(**fields))
    assert response.status_code == 201, response.text
    return str(response.json()["notification"]["shipmentId"])


def submits(smsc: DevSmsc) -> list[SubmitSm]:
    return [item.pdu for item in smsc.received if isinstance(item.pdu, SubmitSm)]


async def logged(caplog: pytest.LogCaptureFixture, event: str) -> bool:
    return any(getattr(record, "event", None) == event for record in caplog.records)


async def status_is(app: RunningApp, shipment_id: str, wanted: Sequence[str]) -> bool:
    return (await shipment_status(app, shipment_id))[1] in wanted


async def test_shipment_is_accepted_right_after_201(settings: Settings, smsc: DevSmsc) -> None:
    smsc.options.send_receipts = False
    async with run_app(smpp_settings(settings, smsc)) as app:
        await wait_for(lambda: _bound(app))
        shipment_id = await place_sms(app)

        assert await shipment_status(app, shipment_id) == ("Order_Processed", "SMS_Accepted")


async def test_hand_off_logged_once(
    settings: Settings, smsc: DevSmsc, caplog: pytest.LogCaptureFixture
) -> None:
    smsc.options.send_receipts = False
    caplog.set_level(logging.INFO, logger="budstikke")
    async with run_app(smpp_settings(settings, smsc)) as app:
        await wait_for(lambda: _bound(app))
        shipment_id = await place_sms(app)
        await wait_for(lambda: status_is(app, shipment_id, ["SMS_Accepted"]))
        # The dispatcher logs once the record is stored, just after the status shows.
        await wait_for(lambda: logged(caplog, "hand_off_accepted"))

    lines = [
        record
        for record in caplog.records
        if getattr(record, "event", None) == "hand_off_accepted" and record.levelno >= logging.INFO
    ]
    assert len(lines) == 1
    assert lines[0].provider_refs == list(smsc.accepted)


async def test_receipt_completes_order_and_feed(settings: Settings, smsc: DevSmsc) -> None:
    smsc.options.receipt_delay_s = 0.5
    async with run_app(smpp_settings(settings, smsc)) as app:
        await wait_for(lambda: _bound(app))
        shipment_id = await place_sms(app)
        feed_before = await _feed(app)

        await wait_for(lambda: status_is(app, shipment_id, ["SMS_Delivered"]))
        feed_after = await _feed(app)

    assert feed_before == []
    assert [entry["shipmentId"] for entry in feed_after] == [shipment_id]
    assert feed_after[0]["status"] == "Order_Completed"
    assert feed_after[0]["recipients"][0]["status"] == "SMS_Delivered"


async def test_thousand_messages_each_sent_once(settings: Settings, smsc: DevSmsc) -> None:
    # One creator sends 1000 orders as fast as it can: its rate limit is off.
    async with run_app(smpp_settings(settings, smsc, "&window=10", rate_limit_per_s=0)) as app:
        await wait_for(lambda: _bound(app))
        # 50 requests at a time, as a busy client with a connection pool sends them.
        limit = asyncio.Semaphore(50)

        async def place_one(index: int) -> str:
            async with limit:
                # Distinct recipients stay under the per-recipient limits.
                return await place_sms(app, body=f"Kode {index:04d}", phone=f"+4790{index:06d}")

        shipment_ids = await asyncio.gather(*(place_one(index) for index in range(1000)))

        async def all_delivered() -> bool:
            async with app.database.read() as connection:
                result = await connection.exec_driver_sql(
                    "SELECT count(*) FROM notifications WHERE status = 'SMS_Delivered'"
                )
                return result.scalar_one() == 1000

        await wait_for(all_delivered, timeout_s=120)

    bodies = [submit.short_message for submit in submits(smsc)]
    assert len(shipment_ids) == 1000
    assert len(bodies) == 1000
    assert len(set(bodies)) == 1000
    assert smsc.max_outstanding <= 10
    assert smsc.violations == []


async def test_expired_receipt_is_its_own_status(settings: Settings, smsc: DevSmsc) -> None:
    smsc.options.outcomes = {"EXPIRED": 1.0}
    async with run_app(smpp_settings(settings, smsc)) as app:
        await wait_for(lambda: _bound(app))
        shipment_id = await place_sms(app)

        await wait_for(lambda: status_is(app, shipment_id, ["SMS_Failed_Expired"]))


async def test_no_receipt_ends_ttl_after_grace(settings: Settings, smsc: DevSmsc) -> None:
    smsc.options.send_receipts = False
    clock = FakeClock()
    async with run_app(smpp_settings(settings, smsc), clock=clock) as app:
        await wait_for(lambda: _bound(app))
        shipment_id = await place_sms(app, ttl_s=60)
        dispatcher = app.app.state.services.dispatcher

        clock.advance(359)
        await dispatcher.run_pass()
        before = await shipment_status(app, shipment_id)
        clock.advance(1)
        await dispatcher.run_pass()
        after = await shipment_status(app, shipment_id)

    assert before == ("Order_Processed", "SMS_Accepted")
    assert after == ("Order_Completed", "SMS_Failed_TTL")


@pytest.mark.parametrize("form", ["stripped", "lower", "upper"])
async def test_receipt_id_forms_match(settings: Settings, smsc: DevSmsc, form: str) -> None:
    smsc.options.receipt_id_form = form
    smsc.options.message_id_factory = lambda number: f"00ab{number:04X}"
    async with run_app(smpp_settings(settings, smsc)) as app:
        await wait_for(lambda: _bound(app))
        shipment_id = await place_sms(app)

        await wait_for(lambda: status_is(app, shipment_id, ["SMS_Delivered"]))


async def test_stale_receipt_reused_id_ignored(settings: Settings, smsc: DevSmsc) -> None:
    smsc.options.send_receipts = False
    smsc.options.message_id_factory = lambda _number: "00C0FFEE"
    async with run_app(smpp_settings(settings, smsc)) as app:
        await wait_for(lambda: _bound(app))
        # A receipt for an earlier message that the SMSC gave the same id.
        async with app.database.write() as connection:
            await connection.execute(
                insert(unmatched_reports),
                [
                    {
                        "ref_key": key,
                        "status": "SMS_Failed_Undelivered",
                        "received_at": datetime.now(UTC) - timedelta(hours=2),
                    }
                    for key in reference_keys("00C0FFEE")
                ],
            )
        shipment_id = await place_sms(app)

        await wait_for(
            lambda: status_is(app, shipment_id, ["SMS_Accepted", "SMS_Failed_Undelivered"])
        )
        status = await shipment_status(app, shipment_id)

    assert status == ("Order_Processed", "SMS_Accepted")


@pytest.mark.parametrize(
    ("sender", "ton", "npi"), [("Kommune", 5, 0), ("4799999999", 1, 1), ("Bank&Co", 5, 0)]
)
async def test_sender_address_type(
    settings: Settings, smsc: DevSmsc, sender: str, ton: int, npi: int
) -> None:
    async with run_app(smpp_settings(settings, smsc)) as app:
        await wait_for(lambda: _bound(app))
        await place_sms(app, sender=sender)

    submit = submits(smsc)[0]
    assert (submit.source_addr, submit.source_addr_ton, submit.source_addr_npi) == (
        sender,
        ton,
        npi,
    )
    assert (submit.dest_addr_ton, submit.dest_addr_npi) == (1, 1)
    assert submit.destination_addr == "4799999999"


async def test_seventeen_segments_when_allowed(settings: Settings, smsc: DevSmsc) -> None:
    async with run_app(smpp_settings(settings, smsc, sms_max_segments=17)) as app:
        await wait_for(lambda: _bound(app))
        shipment_id = await place_sms(app, body="x" * 2449)
        await wait_for(lambda: status_is(app, shipment_id, ["SMS_Delivered"]))

    assert len(submits(smsc)) == 17


async def test_sms_waits_for_smsc_that_comes_back(settings: Settings, smsc: DevSmsc) -> None:
    async with run_app(smpp_settings(settings, smsc, "&reconnect_max_s=1")) as app:
        await wait_for(lambda: _bound(app))
        restart = asyncio.create_task(smsc.restart(down_s=3))
        await asyncio.sleep(0.5)
        shipment_id = await place_sms(app)

        await restart
        await wait_for(
            lambda: status_is(app, shipment_id, ["SMS_Accepted", "SMS_Delivered"]), timeout_s=20
        )

    assert len(submits(smsc)) == 1


async def _bound(app: RunningApp) -> bool:
    ready, _reason = app.app.state.services.dispatcher.providers[Channel.SMS].is_ready()
    return bool(ready)


async def _feed(app: RunningApp) -> list[dict[str, Any]]:
    response = await app.client.get(f"{API}/shipment/feed?seq=0", headers=app.headers())
    result: list[dict[str, Any]] = response.json()
    return result


async def test_dropped_connection_loses_nothing(settings: Settings, smsc: DevSmsc) -> None:
    smsc.options.response_delay_s = 0.2
    query = "&window=10&reconnect_max_s=0.5"
    async with run_app(smpp_settings(settings, smsc, query)) as app:
        await wait_for(lambda: _bound(app))
        smsc.drop_after_submits(5)
        shipment_ids = await asyncio.gather(
            *(
                place_sms(app, body=f"Drop {index}", phone=f"+4791{index:06d}")
                for index in range(20)
            )
        )

        async def all_final() -> bool:
            statuses = [await shipment_status(app, shipment_id) for shipment_id in shipment_ids]
            return all(order == "Order_Completed" for order, _status in statuses)

        await wait_for(all_final, timeout_s=60)
        final = {(await shipment_status(app, shipment_id))[1] for shipment_id in shipment_ids}
        async with app.database.read() as connection:
            unknown = (
                await connection.exec_driver_sql(
                    "SELECT coalesce(sum(outcome_unknown_count), 0) FROM notifications"
                )
            ).scalar_one()

    accepted_bodies = [message.submit.short_message for message in smsc.accepted.values()]
    duplicates = len(accepted_bodies) - len(set(accepted_bodies))
    assert final == {"SMS_Delivered"}
    assert len(set(accepted_bodies)) == 20
    # Only a submit that was in flight when the connection dropped may be sent
    # twice, and each one is counted as an unknown outcome.
    assert unknown >= 1
    assert duplicates <= unknown
