"""SMTP connections kept for instant emails while regular ones fill the rest."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from budstikke.channels.base import OutgoingEmail
from budstikke.channels.smtp import SmtpProvider, SmtpSettings
from budstikke.domain.statuses import NotificationStatus, Priority
from budstikke.errors import ConfigurationError
from tests.channels.smtp_server import StartServer


def email(priority: Priority) -> OutgoingEmail:
    return OutgoingEmail(
        notification_id=uuid.uuid4(),
        recipient="ola@example.com",
        sender="noreply@example.com",
        subject="Kode",
        body="Din kode er 482913",
        content_type="Plain",
        expires_at=datetime.now(UTC) + timedelta(minutes=5),
        priority=priority,
    )


async def ignore_report(report: object) -> None:
    del report


async def test_instant_email_uses_kept_connection(start_server: StartServer) -> None:
    server = await start_server()
    # Each DATA takes 1 s, so the regular emails hold their 2 of 3 connections.
    server.handler.data_delay_s = 1.0
    provider = SmtpProvider.from_url(
        f"smtp://127.0.0.1:{server.port}?tls=none&connections=3&instant_share=0.3"
    )
    await provider.start(ignore_report)
    try:
        regular = [
            asyncio.create_task(provider.hand_off(email(Priority.REGULAR))) for _ in range(6)
        ]
        await asyncio.sleep(0.2)

        started = time.monotonic()
        receipt = await asyncio.wait_for(provider.hand_off(email(Priority.INSTANT)), timeout=5)
        instant_s = time.monotonic() - started

        assert receipt.status is NotificationStatus.EMAIL_SUCCEEDED
        assert instant_s < 1.6
        await asyncio.wait_for(asyncio.gather(*regular), timeout=10)
    finally:
        await provider.stop()


def test_settings_read_instant_share() -> None:
    assert SmtpSettings.from_url("smtp://mail.example.com").instant_share == 0.05
    settings = SmtpSettings.from_url("smtp://mail.example.com?instant_share=0.5")
    assert settings.instant_share == 0.5


@pytest.mark.parametrize("value", ["-1", "1", "lots"])
def test_settings_reject_bad_instant_share(value: str) -> None:
    with pytest.raises(ConfigurationError, match="instant_share"):
        SmtpSettings.from_url(f"smtp://mail.example.com?instant_share={value}")
