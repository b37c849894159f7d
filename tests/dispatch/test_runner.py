"""Start-up logging of the worker process."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from budstikke.config import Settings
from budstikke.dispatch.runner import log_providers
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
