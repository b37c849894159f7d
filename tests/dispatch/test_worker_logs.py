"""Dispatcher log lines for operators: unreported hand-offs, unmatched reports, outages."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from budstikke.api.app import create_app
from budstikke.channels.base import DeliveryReport
from budstikke.channels.outbox import FileOutbox
from budstikke.config import Settings
from budstikke.dispatch.runner import build_dispatcher
from budstikke.domain.statuses import Channel, NotificationStatus
from budstikke.logs import JsonFormatter, RepeatCountingHandler
from budstikke.store.api_keys import create_api_key
from budstikke.store.database import Database
from budstikke.store.migrate import upgrade_to_head
from tests.api.orders import SMS_PATH, sms_order
from tests.api.servers import (
    CREATE_SCOPE,
    in_process_app,
    postgres_database,
    postgres_url,
    set_allow_connections,
)

DISPATCHER_LOGGER = "budstikke.dispatch.dispatcher"


async def test_unmatched_report_flood_logged_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    database = Database(settings.resolved_database_url)
    outbox = FileOutbox(Channel.SMS, tmp_path / "sms.jsonl")
    dispatcher = build_dispatcher(settings, database, {Channel.SMS: outbox})
    sink = dispatcher._report_sink_for(outbox)
    stream = io.StringIO()
    handler = RepeatCountingHandler(stream)
    handler.setFormatter(JsonFormatter())
    dispatcher_logger = logging.getLogger(DISPATCHER_LOGGER)
    dispatcher_logger.addHandler(handler)
    previous_level = dispatcher_logger.level
    dispatcher_logger.setLevel(logging.INFO)
    try:
        await upgrade_to_head(database)
        for number in range(50):
            await sink(
                DeliveryReport(
                    provider_ref=f"unknown-{number}",
                    status=NotificationStatus.SMS_DELIVERED,
                )
            )
    finally:
        dispatcher_logger.removeHandler(handler)
        dispatcher_logger.setLevel(previous_level)
        # Closing writes the count of the window that is still open.
        handler.close()
        await database.dispose()

    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [entry["event"] for entry in entries] == ["report_unmatched", "log_repeated"]
    assert entries[0]["level"] == "INFO"
    assert entries[0]["report_status"] == "SMS_Delivered"
    assert entries[1]["count"] == 49
    assert entries[1]["repeated_event"] == "report_unmatched"
    assert entries[1]["message"].startswith("previous line repeated 49 more times")


async def test_api_only_warns_once_without_worker(tmp_path: Path) -> None:
    async with postgres_database() as name:
        settings = Settings(
            data_dir=tmp_path / "data", database_url=postgres_url(name), handoff_timeout_s=0.2
        )
        stream = io.StringIO()
        handler = RepeatCountingHandler(stream)
        handler.setFormatter(JsonFormatter())
        dispatcher_logger = logging.getLogger(DISPATCHER_LOGGER)
        dispatcher_logger.addHandler(handler)
        # API only, as `serve --no-workers` runs it: no providers and no worker loop.
        app = create_app(settings, run_workers=False, providers={})
        try:
            async with app.router.lifespan_context(app):
                _record, key = await create_api_key(
                    app.state.services.database,
                    creator="ttd",
                    scopes=(CREATE_SCOPE,),
                    now=datetime.now(UTC),
                )
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://budstikke.test"
                ) as client:
                    statuses = [
                        (
                            await client.post(
                                SMS_PATH,
                                json=sms_order(phone=f"+479999999{number}"),
                                headers={"Authorization": f"Bearer {key}"},
                            )
                        ).status_code
                        for number in range(3)
                    ]
        finally:
            dispatcher_logger.removeHandler(handler)
            handler.close()

    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    warnings = [entry for entry in entries if entry.get("event") == "handoff_not_reported"]
    summaries = [entry for entry in entries if entry.get("event") == "log_repeated"]
    assert statuses == [201, 201, 201]
    assert len(warnings) == 1
    assert warnings[0]["level"] == "WARNING"
    assert "BUDSTIKKE_HANDOFF_TIMEOUT_S (0.2 s)" in warnings[0]["message"]
    assert "`budstikke worker`" in warnings[0]["message"]
    assert "notification_id" in warnings[0]
    assert len(summaries) == 1
    assert summaries[0]["repeated_event"] == "handoff_not_reported"
    assert summaries[0]["count"] == 2


async def test_worker_logs_database_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=DISPATCHER_LOGGER)
    async with postgres_database() as name:
        settings = Settings(
            data_dir=tmp_path / "data", database_url=postgres_url(name), worker_poll_interval_s=0.05
        )
        async with in_process_app(settings):
            await set_allow_connections(name, False)
            # The outage lasts until the worker has seen it, which takes
            # longer than one poll interval on a busy machine.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not events_logged(
                caplog, "worker_database_unavailable"
            ):
                await asyncio.sleep(0.05)
            await set_allow_connections(name, True)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not events_logged(
                caplog, "worker_database_available"
            ):
                await asyncio.sleep(0.05)
            # Further passes after the first good one write no second line.
            await asyncio.sleep(0.3)

    assert len(events_logged(caplog, "worker_database_unavailable")) >= 1
    [back] = events_logged(caplog, "worker_database_available")
    assert back.levelno == logging.INFO
    assert back.getMessage() == "database available again; worker resumes"
    assert back.__dict__["unavailable_s"] > 0


def events_logged(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if getattr(record, "event", None) == event]
