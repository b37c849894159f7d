"""Start-up logging of the worker process, and how its report sink fails."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from budstikke.channels.base import DeliveryReport
from budstikke.channels.outbox import FileOutbox
from budstikke.config import Settings
from budstikke.dispatch.runner import build_dispatcher, log_providers
from budstikke.domain.statuses import Channel, NotificationStatus
from budstikke.errors import DatabaseUnavailableError
from budstikke.store.database import Database


@pytest.mark.parametrize(
    ("database_url", "warned"),
    [("postgresql://postgres@127.0.0.1:5432/postgres", {"sms"}), ("sqlite:///{dir}/b.db", set())],
)
async def test_file_outbox_warned_only_on_postgresql(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, database_url: str, warned: set[str]
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=database_url.format(dir=tmp_path),
        email_url="smtp://127.0.0.1:2525",
    )
    database = Database(settings.resolved_database_url)
    try:
        with caplog.at_level(logging.INFO, logger="budstikke"):
            log_providers(settings, database)
    finally:
        await database.dispose()

    [configured] = [r for r in caplog.records if getattr(r, "event", "") == "providers_configured"]
    assert getattr(configured, "sms_provider", None) == "file"
    assert getattr(configured, "email_provider", None) == "smtp"
    warnings = [r for r in caplog.records if getattr(r, "event", "") == "file_outbox_in_production"]
    assert {getattr(r, "channel", None) for r in warnings} == warned


async def test_report_not_stored_is_refused_to_the_provider(tmp_path: Path) -> None:
    # The raised error makes the SMPP session respond with ESME_RX_T_APPN, so
    # the SMSC sends the receipt again instead of it being lost.
    settings = Settings(
        data_dir=tmp_path, database_url="postgresql://postgres@127.0.0.1:9/budstikke"
    )
    database = Database(settings.resolved_database_url)
    outbox = FileOutbox(Channel.SMS, tmp_path / "sms.jsonl")
    dispatcher = build_dispatcher(settings, database, {Channel.SMS: outbox})
    sink = dispatcher._report_sink_for(outbox)
    try:
        with pytest.raises(DatabaseUnavailableError):
            await sink(
                DeliveryReport(
                    provider_ref="msg-1", status=NotificationStatus.SMS_DELIVERED, error_code=None
                )
            )
    finally:
        await database.dispose()
