"""Instant email through the dispatcher to a real SMTP server with injected faults."""

from __future__ import annotations

import logging
import socket

import pytest

from budstikke.config import Settings
from tests.api.orders import EMAIL_PATH, email_order
from tests.channels.smtp_server import SmtpTestServer, StartServer
from tests.conftest import FakeClock, RunningApp, run_app, shipment_status, wait_for


def smtp_settings(settings: Settings, port: int) -> Settings:
    return settings.model_copy(
        update={
            "email_url": f"smtp://127.0.0.1:{port}?tls=none&timeout_s=2",
            "worker_poll_interval_s": 0.05,
        }
    )


async def place_email(app: RunningApp, ttl_s: int = 300) -> str:
    response = await app.client.post(
        EMAIL_PATH, headers=app.headers(), json=email_order(ttl_s=ttl_s)
    )
    assert response.status_code == 201
    return str(response.json()["notification"]["shipmentId"])


def mail_commands(server: SmtpTestServer) -> int:
    return server.handler.verbs().count("MAIL")


async def test_421_is_retried_until_accepted(
    settings: Settings, start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server()
    server.handler.mail_replies = ["421 4.7.0 Try again later", "421 4.7.0 Try again later"]
    clock = FakeClock()
    caplog.set_level(logging.WARNING, logger="budstikke.dispatch.dispatcher")
    async with run_app(smtp_settings(settings, server.port), clock=clock) as app:
        shipment_id = await place_email(app)
        assert await shipment_status(app, shipment_id) == ("Order_Processed", "Email_New")

        for expected_mails in (2, 3):
            # The clock moves only once the retry is scheduled: a retry scheduled
            # after the move would be due only after the next one.
            await wait_for(lambda count=expected_mails - 1: _retries_logged(caplog, count))
            clock.advance(61)
            await wait_for(lambda count=expected_mails: _mail_count_reached(server, count))

        await wait_for(lambda: _status_is(app, shipment_id, "Email_Succeeded"))
    assert mail_commands(server) == 3
    assert len(server.handler.messages) == 1


async def test_unknown_user_bounces_without_retry(
    settings: Settings, start_server: StartServer
) -> None:
    server = await start_server()
    server.handler.rcpt_reply = "550 5.1.1 User unknown"
    clock = FakeClock()
    async with run_app(smtp_settings(settings, server.port), clock=clock) as app:
        shipment_id = await place_email(app)
        assert await shipment_status(app, shipment_id) == (
            "Order_Completed",
            "Email_Failed_Bounced",
        )
        clock.advance(120)
        await app.app.state.services.dispatcher.run_pass()
    assert mail_commands(server) == 1


async def test_down_server_is_retried_after_it_recovers(
    settings: Settings, start_server: StartServer
) -> None:
    # Reserve a port, then free it so nothing listens there until the server starts.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clock = FakeClock()
    async with run_app(smtp_settings(settings, port), clock=clock) as app:
        shipment_id = await place_email(app)
        assert await shipment_status(app, shipment_id) == ("Order_Processed", "Email_New")

        server = await start_server(port=port)
        clock.advance(61)
        await wait_for(lambda: _status_is(app, shipment_id, "Email_Succeeded"))
    assert len(server.handler.messages) == 1


async def test_ttl_ends_before_recovery(settings: Settings, start_server: StartServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clock = FakeClock()
    async with run_app(smtp_settings(settings, port), clock=clock) as app:
        shipment_id = await place_email(app, ttl_s=60)
        clock.advance(30)
        await app.app.state.services.dispatcher.run_pass()
        clock.advance(31)
        await wait_for(lambda: _status_is(app, shipment_id, "Email_Failed_TTL"))

        server = await start_server(port=port)
        clock.advance(120)
        await app.app.state.services.dispatcher.run_pass()
        assert await shipment_status(app, shipment_id) == ("Order_Completed", "Email_Failed_TTL")
    assert server.handler.commands == []


async def _retries_logged(caplog: pytest.LogCaptureFixture, count: int) -> bool:
    events = [getattr(record, "event", None) for record in caplog.records]
    return events.count("hand_off_retry") >= count


async def _mail_count_reached(server: SmtpTestServer, count: int) -> bool:
    return mail_commands(server) >= count


async def _status_is(app: RunningApp, shipment_id: str, status: str) -> bool:
    return (await shipment_status(app, shipment_id))[1] == status


async def test_slow_server_stopped_before_lease_ends(
    settings: Settings, start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server()
    server.handler.data_delay_s = 5.0
    slow = smtp_settings(settings, server.port).model_copy(
        update={
            "email_url": f"smtp://127.0.0.1:{server.port}?tls=none&timeout_s=10",
            "lease_s": 1.0,
        }
    )
    caplog.set_level(logging.WARNING, logger="budstikke.dispatch.dispatcher")

    async with run_app(slow) as app:
        await place_email(app)
        await wait_for(lambda: _retries_logged(caplog, 1))

        mails_at_retry = mail_commands(server)
        events = [getattr(record, "event", None) for record in caplog.records]
        reasons = [str(getattr(record, "reason", "")) for record in caplog.records]

    # Stopped at 0.8 s of the 1 s lease, so no second worker claim could
    # start another MAIL while the first one was still running.
    assert mails_at_retry == 1
    assert "hand_off_lease_lost" not in events
    assert any("within 0.8 s" in reason for reason in reasons)
