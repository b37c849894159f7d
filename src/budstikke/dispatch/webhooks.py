"""The webhook delivery loop: runs in each worker process, beside the dispatcher's loop.

It claims due deliveries from the outbox, signs and posts them, and stores
the outcome. A 2xx deletes the delivery. A URL that the address policy
rejects marks it failed at once. Anything else schedules a retry
(exponential backoff with jitter, for up to 24 hours from the first attempt)
or marks it failed. All state is in the database, so a restart resumes the
retry schedule where it stood. Nothing here runs in an API request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import event
from sqlalchemy.engine import Connection

from budstikke.config import Settings
from budstikke.dispatch.instant_first import InstantFirst
from budstikke.dispatch.webhook_client import (
    TargetRefusedError,
    WebhookCallError,
    WebhookClient,
    WebhookResponse,
)
from budstikke.domain.webhook_retry import next_attempt_at
from budstikke.domain.webhook_signing import webhook_headers
from budstikke.domain.webhook_urls import AddressPolicy, parse_networks
from budstikke.errors import DatabaseUnavailableError
from budstikke.metrics import Metrics
from budstikke.store.database import Database
from budstikke.store.webhook_deliveries import (
    ClaimedDelivery,
    claim_due,
    purge_deliveries,
    record_delivered,
    record_failed_attempt,
)
from budstikke.store.webhook_events import PENDING_EVENTS_KEY, with_sequence_number

logger = logging.getLogger(__name__)

# A claimed delivery stays leased this much longer than a request may take.
LEASE_MARGIN_S = 30.0
PURGE_INTERVAL_S = 600.0
DATABASE_RETRY_S = 0.5
DATABASE_RETRY_MAX_S = 15.0
# A 410 Gone means the receiver wants no more webhooks; Standard Webhooks 1.0.0
# recommends disabling the endpoint then.
GONE = 410


class WebhookDeliveryLoop:
    """Claims and sends due webhook deliveries until stopped.

    Each delivery runs as its own task, at most `concurrency` at once in
    this process. An endpoint gets at most `per_endpoint` of them and a
    creator `per_creator`, counted over all processes, so that a receiver
    that answers slowly cannot take the slots of other creators' endpoints.
    """

    def __init__(
        self,
        database: Database,
        client: WebhookClient,
        *,
        worker_id: str,
        concurrency: int,
        per_endpoint: int | None = None,
        per_creator: int | None = None,
        poll_interval_s: float,
        clock: Callable[[], datetime],
        metrics: Metrics,
        instant_first: InstantFirst | None = None,
    ) -> None:
        self.database = database
        self.client = client
        self.instant_first = instant_first or InstantFirst()
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.per_endpoint = per_endpoint
        self.per_creator = per_creator
        self.poll_interval_s = poll_interval_s
        self.clock = clock
        self.metrics = metrics
        self.lease_s = client.timeout_s + LEASE_MARGIN_S
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._next_purge = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start the loop in the background, woken by every commit that wrote events here."""
        self._loop = asyncio.get_running_loop()
        engine = self.database.engine.sync_engine
        event.listen(engine, "commit", self._on_commit)
        event.listen(engine, "rollback", self._on_rollback)
        self._task = asyncio.create_task(self._run(), name="budstikke-webhooks")
        logger.info(
            "webhook delivery started",
            extra={"event": "webhooks_started", "worker_id": self.worker_id},
        )

    async def stop(self) -> None:
        """Stop claiming, give running requests their timeout to end, then close the client."""
        self._stopping = True
        self._wake.set()
        engine = self.database.engine.sync_engine
        for name, listener in (("commit", self._on_commit), ("rollback", self._on_rollback)):
            if event.contains(engine, name, listener):
                event.remove(engine, name, listener)
        if self._task is not None:
            await self._task
        if self._in_flight:
            _done, pending = await asyncio.wait(
                set(self._in_flight), timeout=self.client.timeout_s + 1
            )
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self.client.aclose()
        logger.info(
            "webhook delivery stopped",
            extra={"event": "webhooks_stopped", "worker_id": self.worker_id},
        )

    def wake(self) -> None:
        """Make the loop look for due deliveries now."""
        self._wake.set()

    def _on_commit(self, connection: Connection) -> None:
        # SQLAlchemy calls this just before the database commits; a pass that
        # starts before the commit is visible finds the events at the next poll.
        if connection.info.pop(PENDING_EVENTS_KEY, False) and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _on_rollback(self, connection: Connection) -> None:
        connection.info.pop(PENDING_EVENTS_KEY, None)

    async def _run(self) -> None:
        pause_s = DATABASE_RETRY_S
        while not self._stopping:
            # Cleared before the pass, so a wake-up (new work, or stop) that
            # comes during the pass ends the wait below at once.
            self._wake.clear()
            await self.instant_first.wait_turn()
            try:
                claimed_all_slots = await self.run_pass()
                pause_s = DATABASE_RETRY_S
            except DatabaseUnavailableError as error:
                logger.warning(
                    "database unavailable; webhook delivery pauses",
                    extra={
                        "event": "webhooks_database_unavailable",
                        "error": str(error)[:200],
                        "pause_s": pause_s,
                    },
                )
                await asyncio.sleep(pause_s)
                pause_s = min(pause_s * 2, DATABASE_RETRY_MAX_S)
                continue
            except Exception:
                # A bug in one pass must not stop the loop that retries deliveries.
                logger.exception("webhook pass failed", extra={"event": "webhooks_pass_crashed"})
                await asyncio.sleep(pause_s)
                pause_s = min(pause_s * 2, DATABASE_RETRY_MAX_S)
                continue
            if claimed_all_slots:
                await asyncio.sleep(0)
                continue
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)

    async def run_pass(self) -> bool:
        """Purge old rows now and then, claim due deliveries and start them.

        Returns whether every free slot got a delivery, so the loop goes on at once.
        """
        now = self.clock()
        if time.monotonic() >= self._next_purge:
            self._next_purge = time.monotonic() + PURGE_INTERVAL_S
            purged = await purge_deliveries(self.database, now=now)
            if purged:
                logger.info(
                    "old webhook deliveries purged",
                    extra={"event": "webhooks_purged", "count": purged},
                )
        free_slots = self.concurrency - len(self._in_flight)
        if free_slots <= 0:
            return False
        claimed = await claim_due(
            self.database,
            worker_id=self.worker_id,
            now=now,
            lease_until=now + timedelta(seconds=self.lease_s),
            limit=free_slots,
            per_endpoint=self.per_endpoint,
            per_creator=self.per_creator,
        )
        for delivery in claimed:
            task = asyncio.create_task(self._deliver_safely(delivery))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return len(claimed) == free_slots

    async def _deliver_safely(self, claimed: ClaimedDelivery) -> None:
        try:
            await self.deliver(claimed)
        except DatabaseUnavailableError as error:
            # The lease runs out and another pass sends the event again, with
            # the same webhook-id, so a receiver can drop the repeat.
            logger.error(
                "webhook outcome not stored: database unavailable",
                extra={
                    "event": "webhook_outcome_lost",
                    "delivery_id": claimed.id,
                    "error": str(error)[:200],
                },
            )
        except Exception:
            logger.exception(
                "webhook delivery crashed",
                extra={"event": "webhook_delivery_crashed", "delivery_id": claimed.id},
            )
        finally:
            # The next event of the same shipment may be due now.
            self.wake()

    async def deliver(self, claimed: ClaimedDelivery) -> None:
        """Send one delivery and store its outcome."""
        context: dict[str, Any] = {
            "delivery_id": claimed.id,
            "endpoint_id": str(claimed.endpoint_id),
            "creator": claimed.creator,
            # The host only: a query string may carry a receiver's token.
            "host": urlsplit(claimed.url).hostname,
            "callback": claimed.is_callback,
            "attempt": claimed.attempts,
        }
        if not claimed.secrets:
            await self._record_failure(
                claimed, "endpoint removed", None, context, reason="other", give_up=True
            )
            return
        body = with_sequence_number(claimed.payload, claimed.id)
        timestamp = int(self.clock().timestamp())
        headers = webhook_headers(claimed.message_id, timestamp, body, list(claimed.secrets))
        started = time.perf_counter()
        try:
            response = await self.client.post(claimed.url, body, headers)
        except TargetRefusedError as error:
            # The address policy or the URL's scheme rejects the target, and
            # a retry would be rejected the same way, so the event fails now.
            await self._record_failure(
                claimed, str(error), None, context, reason=error.reason, give_up=True
            )
            return
        except WebhookCallError as error:
            await self._record_failure(claimed, str(error), None, context, reason=error.reason)
            return
        context["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        if 200 <= response.status_code < 300:
            await self._record_success(claimed, response, context)
            return
        await self._record_http_failure(claimed, response, context)

    async def _record_success(
        self, claimed: ClaimedDelivery, response: WebhookResponse, context: dict[str, Any]
    ) -> None:
        recorded = await record_delivered(self.database, claimed, now=self.clock())
        logger.info(
            "webhook delivered" if recorded else "webhook delivered after the lease was lost",
            extra={
                "event": "webhook_delivered" if recorded else "webhook_lease_lost",
                "status_code": response.status_code,
                **context,
            },
        )

    async def _record_http_failure(
        self, claimed: ClaimedDelivery, response: WebhookResponse, context: dict[str, Any]
    ) -> None:
        status = response.status_code
        error = f"HTTP {status}"
        if 300 <= status < 400:
            error += " (redirects are not followed; register the final URL)"
        gone = status == GONE
        await self._record_failure(
            claimed,
            error,
            status,
            context,
            reason="http_status",
            retry_after_s=response.retry_after_s,
            give_up=gone,
            disable_reason="the receiver answered 410 Gone"
            if gone and not claimed.is_callback
            else None,
        )

    async def _record_failure(
        self,
        claimed: ClaimedDelivery,
        error: str,
        status_code: int | None,
        context: dict[str, Any],
        *,
        reason: str,
        retry_after_s: float | None = None,
        give_up: bool = False,
        disable_reason: str | None = None,
    ) -> None:
        self.metrics.record_webhook_failure(reason)
        now = self.clock()
        retry_at = None
        if not give_up:
            retry_at = next_attempt_at(
                attempts=claimed.attempts,
                first_attempt_at=claimed.first_attempt_at,
                now=now,
                retry_after_s=retry_after_s,
            )
        outcome = await record_failed_attempt(
            self.database,
            claimed,
            error=error,
            status_code=status_code,
            retry_at=retry_at,
            now=now,
            disable_reason=disable_reason,
        )
        if not outcome.recorded:
            logger.warning(
                "webhook attempt failed after the lease was lost",
                extra={"event": "webhook_lease_lost", "reason": error, **context},
            )
            return
        if retry_at is not None:
            logger.warning(
                "webhook attempt failed; will retry",
                extra={
                    "event": "webhook_retry",
                    "reason": error,
                    "retry_in_s": round((retry_at - now).total_seconds(), 1),
                    **context,
                },
            )
        else:
            logger.error(
                "webhook event failed; no more retries",
                extra={"event": "webhook_failed", "reason": error, **context},
            )
        if outcome.endpoint_disabled:
            logger.error(
                "webhook endpoint disabled; re-enable it with `budstikke webhook enable`",
                extra={
                    "event": "webhook_endpoint_disabled",
                    "reason": disable_reason or "failed without a success for 24 hours",
                    **context,
                },
            )
        elif outcome.endpoint_paused_until is not None:
            logger.warning(
                "webhook endpoint paused after repeated failures",
                extra={
                    "event": "webhook_endpoint_paused",
                    "reason": error,
                    "paused_for_s": round((outcome.endpoint_paused_until - now).total_seconds()),
                    **context,
                },
            )


def build_webhook_loop(
    settings: Settings,
    database: Database,
    *,
    worker_id: str,
    clock: Callable[[], datetime],
    metrics: Metrics,
    instant_first: InstantFirst | None = None,
) -> WebhookDeliveryLoop:
    """Build the delivery loop of a worker process from the BUDSTIKKE_WEBHOOK_* settings."""
    client = WebhookClient(
        AddressPolicy(parse_networks(settings.webhook_allowed_networks)),
        allow_http=settings.webhook_allow_http,
        timeout_s=settings.webhook_timeout_s,
        max_connections=settings.webhook_concurrency,
    )
    return WebhookDeliveryLoop(
        database,
        client,
        worker_id=worker_id,
        concurrency=settings.webhook_concurrency,
        per_endpoint=settings.webhook_concurrency_per_endpoint,
        per_creator=settings.webhook_concurrency_per_creator,
        poll_interval_s=settings.worker_poll_interval_s,
        clock=clock,
        metrics=metrics,
        instant_first=instant_first,
    )
