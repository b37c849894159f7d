"""Building the dispatcher for a process, and running a worker process without HTTP."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Mapping
from datetime import datetime
from urllib.parse import urlsplit

from budstikke.channels.base import Provider
from budstikke.channels.registry import build_email_provider, build_sms_provider
from budstikke.config import Settings
from budstikke.dispatch.dispatcher import Dispatcher, utc_now
from budstikke.dispatch.regular import RegularOrderProcessor, build_regular_processor
from budstikke.dispatch.retention import RetentionPass, retention_periods
from budstikke.dispatch.webhooks import build_webhook_loop
from budstikke.domain.statuses import Channel
from budstikke.gc_tuning import freeze_startup_objects
from budstikke.metrics import Metrics
from budstikke.metrics_server import start_metrics_server
from budstikke.store.database import Database
from budstikke.store.events import PgEventListener
from budstikke.store.migrate import upgrade_to_head
from budstikke.store.notifications import NotificationStore

logger = logging.getLogger(__name__)


def build_providers(settings: Settings) -> dict[Channel, Provider]:
    return {
        Channel.SMS: build_sms_provider(settings.resolved_sms_url),
        Channel.EMAIL: build_email_provider(settings.resolved_email_url),
    }


def build_dispatcher(
    settings: Settings,
    database: Database,
    providers: Mapping[Channel, Provider],
    *,
    clock: Callable[[], datetime] = utc_now,
    metrics: Metrics | None = None,
) -> Dispatcher:
    """Build a dispatcher; on PostgreSQL it listens for work queued by other processes."""
    events = None if database.is_sqlite else PgEventListener(settings.resolved_database_url)
    dispatcher = Dispatcher(
        NotificationStore(database),
        providers,
        handoff_timeout_s=settings.handoff_timeout_s,
        lease_s=settings.lease_s,
        poll_interval_s=settings.worker_poll_interval_s,
        concurrency=settings.worker_concurrency,
        clock=clock,
        events=events,
        metrics=metrics,
    )
    # Runs only where the worker loop runs (start_worker).
    dispatcher.webhooks = build_webhook_loop(
        settings,
        database,
        worker_id=dispatcher.worker_id,
        clock=clock,
        metrics=dispatcher.metrics,
        instant_first=dispatcher.instant_first,
    )
    instant_retention, regular_retention = retention_periods(settings)
    dispatcher.retention = RetentionPass(
        database, instant_retention=instant_retention, regular_retention=regular_retention
    )
    return dispatcher


def log_providers(settings: Settings, database: Database) -> None:
    """Log which kind of provider takes each channel, and warn of a file outbox on PostgreSQL."""
    schemes = {
        Channel.SMS: ("BUDSTIKKE_SMS_URL", urlsplit(settings.resolved_sms_url).scheme),
        Channel.EMAIL: ("BUDSTIKKE_EMAIL_URL", urlsplit(settings.resolved_email_url).scheme),
    }
    logger.info(
        "providers configured",
        extra={
            "event": "providers_configured",
            **{f"{channel.value}_provider": scheme for channel, (_, scheme) in schemes.items()},
        },
    )
    for channel, (variable, scheme) in schemes.items():
        if scheme == "file" and not database.is_sqlite:
            # A file outbox reports every message delivered, so a missing
            # provider URL in a production deployment would go unnoticed.
            logger.warning(
                "messages go to a file outbox while the database is PostgreSQL",
                extra={
                    "event": "file_outbox_in_production",
                    "channel": channel.value,
                    "reason": f"{variable} is not set",
                },
            )


async def run_worker(settings: Settings, providers: Mapping[Channel, Provider]) -> None:
    """Run the dispatch workers until SIGINT or SIGTERM."""
    database = Database(
        settings.resolved_database_url,
        pool_size=settings.database_pool_size,
        checkpoint_in_background=True,
    )
    await upgrade_to_head(database)
    metrics = Metrics()
    dispatcher = build_dispatcher(settings, database, providers, metrics=metrics)
    metrics_server: asyncio.Server | None = None
    regular_processor: RegularOrderProcessor | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    try:
        # Listening first: a port in use stops the worker before it claims any work.
        if settings.metrics_port:
            metrics_server = await start_metrics_server(
                metrics,
                database,
                dispatcher.providers,
                host=settings.metrics_host,
                port=settings.metrics_port,
            )
        log_providers(settings, database)
        await dispatcher.start_providers()
        dispatcher.start_worker()
        regular_processor = build_regular_processor(
            settings,
            database,
            on_stored=dispatcher.wake,
            instant_first=dispatcher.instant_first,
        )
        regular_processor.start()
        freeze_startup_objects()
        await stop.wait()
        logger.info("stop signal received", extra={"event": "stop_requested"})
    finally:
        if metrics_server is not None:
            metrics_server.close()
            await metrics_server.wait_closed()
        if regular_processor is not None:
            await regular_processor.stop()
        await dispatcher.stop()
        await database.dispose()
