"""The dispatcher: hands notifications to providers at once, and runs the worker loop.

Instant orders call `hand_off_new` right after their commit. The worker loop
claims whatever is due (retries, hand-offs that missed the API deadline, work
left over by a dead process), instant work first, and ends expired work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from uuid import UUID

from budstikke.channels.base import DeliveryReport, HandOffReceipt, Provider, ReportSink
from budstikke.dispatch.instant_first import InstantFirst
from budstikke.dispatch.messages import build_message
from budstikke.dispatch.outcome_writer import OutcomeWriter
from budstikke.dispatch.retention import RetentionPass
from budstikke.dispatch.retry import GiveUp, RetryAt, decide_retry
from budstikke.dispatch.webhooks import WebhookDeliveryLoop
from budstikke.domain.recipients import mask_recipient
from budstikke.domain.statuses import FAILED_TTL_STATUS, Channel, Priority
from budstikke.errors import DatabaseUnavailableError, HandOffError
from budstikke.metrics import Metrics
from budstikke.store.events import PgEventListener
from budstikke.store.notifications import NotificationStore
from budstikke.store.orders import Lease
from budstikke.store.outcomes import PartReference
from budstikke.store.records import ClaimedNotification

logger = logging.getLogger(__name__)

# How long `stop` waits for running hand-offs; the rest stay leased and are
# claimed again when their lease ends.
STOP_GRACE_S = 10.0
# Pause of the worker loop after a database error, doubled up to the maximum.
DATABASE_RETRY_S = 0.5
DATABASE_RETRY_MAX_S = 15.0
# A hand-off may take at most this share of the lease. A provider still busy
# then is stopped before another worker could claim the message and send it too.
HAND_OFF_LEASE_SHARE = 0.8


def utc_now() -> datetime:
    return datetime.now(UTC)


def make_worker_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"


def log_handoff_not_reported(notification_id: UUID, timeout_s: float) -> None:
    # A warning with a fixed reason, so that the log handler writes it once
    # and counts the repeats while no worker runs.
    logger.warning(
        "no worker reported the hand-off within BUDSTIKKE_HANDOFF_TIMEOUT_S (%g s); the "
        "notification stays queued, so check that a `budstikke worker` process runs",
        timeout_s,
        extra={
            "event": "handoff_not_reported",
            "reason": "no worker report",
            "notification_id": str(notification_id),
        },
    )


def log_database_back(worker_id: str, unavailable_s: float) -> None:
    logger.info(
        "database available again; worker resumes",
        extra={
            "event": "worker_database_available",
            "worker_id": worker_id,
            "unavailable_s": round(unavailable_s, 1),
        },
    )


def log_report_unmatched(report_status: str | None) -> None:
    # An SMSC can send any number of receipts for unknown message ids. With
    # `count_repeats`, the CLI's RepeatFilter writes the first line and then
    # one count per window.
    logger.info(
        "delivery report kept unmatched",
        extra={
            "event": "report_unmatched",
            "report_status": report_status,
            "count_repeats": True,
        },
    )


class Dispatcher:
    def __init__(
        self,
        store: NotificationStore,
        providers: Mapping[Channel, Provider],
        *,
        handoff_timeout_s: float,
        lease_s: float,
        poll_interval_s: float,
        concurrency: int,
        clock: Callable[[], datetime] = utc_now,
        events: PgEventListener | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.events = events
        self.metrics = metrics or Metrics()
        self.providers = dict(providers)
        self.handoff_timeout_s = handoff_timeout_s
        self.lease_s = lease_s
        self.poll_interval_s = poll_interval_s
        self.concurrency = concurrency
        self.clock = clock
        # Counts the instant orders being placed. Regular batches wait for
        # them, and so do SQLite write transactions that are not urgent.
        self.instant_first = InstantFirst()
        store.database.instant_first = self.instant_first
        # Hand-off records and delivery reports are written in batches.
        self.outcomes = OutcomeWriter(store, clock, instant_first=self.instant_first)
        self.worker_id = make_worker_id()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        # Expiry scans every new notification, so the busy loop runs it once per
        # poll interval. The pace is kept in monotonic seconds, not by `clock`: a
        # clock that stands still (tests) must not stop expiry.
        self._next_expiry_at = 0.0
        # Started and stopped with the worker loop; None where webhooks are not sent.
        self.webhooks: WebhookDeliveryLoop | None = None
        # Erases message bodies past their retention; None where nothing is erased.
        self.retention: RetentionPass | None = None

    async def start_providers(self) -> None:
        """Start the providers, and the database event listener where there is one."""
        if self.events is not None:
            self.events.on_queued = self.wake
            await self.events.start()
        for provider in self.providers.values():
            await provider.start(self._report_sink_for(provider))

    def start_worker(self) -> None:
        """Start the worker loop in the background."""
        self._loop_task = asyncio.create_task(self._run_worker(), name="budstikke-worker")
        if self.webhooks is not None:
            self.webhooks.start()
        logger.info(
            "worker started", extra={"event": "worker_started", "worker_id": self.worker_id}
        )

    async def stop(self) -> None:
        """Stop claiming, let running hand-offs finish for a while, then stop the providers."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self._in_flight:
            _done, pending = await asyncio.wait(set(self._in_flight), timeout=STOP_GRACE_S)
            for task in pending:
                task.cancel()
            if pending:
                logger.warning(
                    "hand-offs still running at stop; their notifications stay leased",
                    extra={"event": "stop_left_leased", "count": len(pending)},
                )
        for provider in self.providers.values():
            await provider.stop()
        await self.outcomes.wait_idle()
        if self.events is not None:
            await self.events.stop()
        logger.info(
            "worker stopped", extra={"event": "worker_stopped", "worker_id": self.worker_id}
        )

    async def hand_off_new(self, notification_id: UUID) -> None:
        """Hand a just-stored notification to its provider, waiting at most the hand-off timeout.

        The hand-off goes on in the background when the timeout ends first;
        it records its own result, and a worker finishes the notification if
        this process dies meanwhile. A process without providers (API only)
        waits instead for a worker to report the hand-off over the database.
        """
        if not self.providers:
            if self.events is not None:
                reported = await self.events.wait_settled(notification_id, self.handoff_timeout_s)
                if not reported:
                    log_handoff_not_reported(notification_id, self.handoff_timeout_s)
            return
        task = self._spawn(self._claim_and_hand_off(notification_id))
        await asyncio.wait({task}, timeout=self.handoff_timeout_s)

    def start_hand_off(self, claimed: ClaimedNotification) -> asyncio.Task[None]:
        """Start handing off a notification stored already claimed under `lease`."""
        return self._spawn(self._hand_off(claimed))

    async def wait_for_hand_off(self, task: asyncio.Task[None]) -> None:
        """Wait for a started hand-off for at most the hand-off timeout. It goes on after that."""
        await asyncio.wait({task}, timeout=self.handoff_timeout_s)

    def lease(self) -> Lease:
        """A claim for this dispatcher on a notification about to be stored."""
        return Lease(self.worker_id, self.clock() + timedelta(seconds=self.lease_s))

    @property
    def hands_off_locally(self) -> bool:
        return bool(self.providers)

    def wake(self) -> None:
        """Make the worker loop scan for due work now."""
        self._wake.set()

    def _spawn(self, coroutine: object) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coroutine)  # type: ignore[arg-type]
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    async def _claim_and_hand_off(self, notification_id: UUID) -> None:
        now = self.clock()
        claimed = await self.store.claim(
            notification_id,
            worker_id=self.worker_id,
            now=now,
            lease_until=now + timedelta(seconds=self.lease_s),
        )
        if claimed is not None:
            await self._hand_off(claimed)

    async def _run_worker(self) -> None:
        database_pause_s = DATABASE_RETRY_S
        # Monotonic time of the first failed pass of an outage; None while the database is up.
        database_down_since: float | None = None
        while not self._stopping:
            # Cleared before the pass, so a wake-up (new work, or stop) that
            # comes during the pass ends the wait below at once.
            self._wake.clear()
            await self.instant_first.wait_turn()
            try:
                expire = time.monotonic() >= self._next_expiry_at
                if expire:
                    self._next_expiry_at = time.monotonic() + self.poll_interval_s
                claimed_all_slots = await self.run_pass(expire=expire)
                database_pause_s = DATABASE_RETRY_S
                if database_down_since is not None:
                    log_database_back(self.worker_id, time.monotonic() - database_down_since)
                    database_down_since = None
            except DatabaseUnavailableError as error:
                if database_down_since is None:
                    database_down_since = time.monotonic()
                logger.warning(
                    "database unavailable; worker pauses",
                    extra={
                        "event": "worker_database_unavailable",
                        "error": str(error)[:200],
                        "pause_s": database_pause_s,
                    },
                )
                await asyncio.sleep(database_pause_s)
                database_pause_s = min(database_pause_s * 2, DATABASE_RETRY_MAX_S)
                continue
            except Exception:
                # A bug in one pass must not stop the loop that retries and expires work.
                logger.exception("worker pass failed", extra={"event": "worker_pass_crashed"})
                await asyncio.sleep(database_pause_s)
                database_pause_s = min(database_pause_s * 2, DATABASE_RETRY_MAX_S)
                continue
            if claimed_all_slots:
                await asyncio.sleep(0)
                continue
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)

    async def run_pass(self, *, expire: bool = True) -> bool:
        """Run one pass of the worker loop: end overdue work, then claim and start due work.

        `expire` False skips the expiry sweep. Returns whether every free slot
        got work, so the loop goes on at once.
        """
        now = self.clock()
        if expire:
            expired = await self.store.expire_overdue(now)
            self.metrics.record_expired(len(expired))
            for notification_id in expired:
                logger.info(
                    "notification expired",
                    extra={
                        "event": "notification_expired",
                        "notification_id": str(notification_id),
                    },
                )
        if self.retention is not None:
            await self.retention.run_if_due(now)
        free_slots = self.concurrency - len(self._in_flight)
        if free_slots <= 0:
            return False
        claimed = await self.store.claim_due(
            worker_id=self.worker_id,
            now=now,
            lease_until=now + timedelta(seconds=self.lease_s),
            limit=free_slots,
        )
        for item in claimed:
            task = self._spawn(self._hand_off(item))
            task.add_done_callback(self._wake_when_slots_free)
        return len(claimed) == free_slots

    def _wake_when_slots_free(self, _task: asyncio.Task[None]) -> None:
        # Finished hand-offs free slots: claim more now, not at the next poll, or
        # a backlog drains at only `concurrency` messages per poll interval. A
        # quarter of the slots are claimed together, to save claim transactions.
        if self.concurrency - len(self._in_flight) >= max(1, self.concurrency // 4):
            self._wake.set()

    async def _hand_off(self, claimed: ClaimedNotification) -> None:
        provider = self.providers[claimed.channel]
        if claimed.priority != Priority.INSTANT:
            await self.instant_first.wait_turn()
        started = time.perf_counter()
        sent_at = self.clock()
        log_context: dict[str, object] = {
            "notification_id": str(claimed.id),
            "order_id": str(claimed.order_id),
            "creator": claimed.creator,
            "channel": claimed.channel.value,
            "recipient": mask_recipient(claimed.channel, claimed.recipient),
            "attempt": claimed.attempts,
        }
        try:
            receipt = await self._call_provider(provider, claimed)
        except HandOffError as error:
            duration_s = time.perf_counter() - started
            await self._handle_failure(claimed, error, log_context, duration_s=duration_s)
            return
        except Exception as error:  # a provider bug must not lose the notification
            logger.exception(
                "provider raised an unexpected error",
                extra={"event": "hand_off_crashed", **log_context},
            )
            await self._handle_failure(
                claimed,
                HandOffError(f"unexpected {type(error).__name__}"),
                log_context,
                duration_s=time.perf_counter() - started,
            )
            return
        duration_s = time.perf_counter() - started
        parts = [
            PartReference(provider_ref=ref, keys=provider.reference_keys(ref))
            for ref in receipt.provider_refs
        ]
        recorded_at = self.clock()
        recorded = await self._persist(
            claimed,
            lambda: self.outcomes.record_hand_off(
                claimed,
                status=receipt.status,
                parts=parts,
                accepted_at=recorded_at,
                sent_at=sent_at,
            ),
        )
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        if recorded:
            self.metrics.record_hand_off_accepted(
                claimed.channel,
                claimed.priority,
                duration_s=duration_s,
                time_to_hand_off_s=(recorded_at - claimed.created_at).total_seconds(),
                status=receipt.status,
            )
            logger.info(
                "hand-off accepted",
                extra={
                    "event": "hand_off_accepted",
                    "status": receipt.status.value,
                    "latency_ms": latency_ms,
                    "parts": len(parts),
                    "provider_refs": list(receipt.provider_refs),
                    **log_context,
                },
            )
        else:
            self.metrics.record_lease_lost(claimed.channel, claimed.priority)
            # The ids let an operator trace the second send and its receipts.
            logger.warning(
                "hand-off accepted after the lease was lost; another worker owns it now",
                extra={
                    "event": "hand_off_lease_lost",
                    "provider_refs": list(receipt.provider_refs),
                    **log_context,
                },
            )

    async def _call_provider(
        self, provider: Provider, claimed: ClaimedNotification
    ) -> HandOffReceipt:
        """Hand the message to the provider within HAND_OFF_LEASE_SHARE of the lease.

        A provider still busy then (a slow SMTP server, an SMSC that keeps
        throttling) is stopped, and the attempt fails with an unknown outcome,
        because the message may have reached the provider. The TTL is left to
        the providers, which stop waiting when it ends.
        """
        time_limit_s = self.lease_s * HAND_OFF_LEASE_SHARE
        deadline = asyncio.timeout(time_limit_s)
        try:
            async with deadline:
                return await provider.hand_off(build_message(claimed))
        except TimeoutError as error:
            if not deadline.expired():
                raise
            raise HandOffError(
                f"the provider did not finish the hand-off within {time_limit_s:.1f} s, "
                f"{HAND_OFF_LEASE_SHARE:.0%} of the lease (BUDSTIKKE_LEASE_S)",
                outcome_unknown=True,
            ) from error

    async def _persist(
        self, claimed: ClaimedNotification, write: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Store the outcome of a hand-off, retrying while the database is unavailable.

        The message already left, so losing its outcome would send it again
        once the lease ends. Retries stop when the lease ends, because another
        worker may own the notification then; returns False in that case.
        """
        deadline = time.monotonic() + self.lease_s
        pause_s = DATABASE_RETRY_S
        while True:
            try:
                return await write()
            except DatabaseUnavailableError as error:
                if time.monotonic() + pause_s >= deadline:
                    logger.error(
                        "outcome of a hand-off not stored: database unavailable until the "
                        "lease ended",
                        extra={
                            "event": "outcome_lost",
                            "notification_id": str(claimed.id),
                            "error": str(error)[:200],
                        },
                    )
                    return False
                logger.warning(
                    "database unavailable; retrying to store a hand-off outcome",
                    extra={
                        "event": "outcome_store_retry",
                        "notification_id": str(claimed.id),
                        "retry_in_s": pause_s,
                    },
                )
                await asyncio.sleep(pause_s)
                pause_s = min(pause_s * 2, DATABASE_RETRY_MAX_S)

    async def _handle_failure(
        self,
        claimed: ClaimedNotification,
        error: HandOffError,
        log_context: dict[str, object],
        *,
        duration_s: float,
    ) -> None:
        now = self.clock()
        decision = decide_retry(
            error, attempts=claimed.attempts, now=now, expires_at=claimed.expires_at
        )
        final_status = decision.status if isinstance(decision, GiveUp) else None
        self.metrics.record_hand_off_failed(
            claimed.channel,
            claimed.priority,
            error,
            duration_s=duration_s,
            final_status=final_status,
        )
        if isinstance(decision, GiveUp):
            await self._persist(
                claimed,
                lambda: self.store.fail(
                    claimed, status=decision.status, error=error.reason, now=now
                ),
            )
            logger.error(
                "hand-off failed permanently",
                extra={
                    "event": "hand_off_failed",
                    "status": decision.status.value,
                    "reason": error.reason,
                    **log_context,
                },
            )
            return
        assert isinstance(decision, RetryAt)
        retry_at = decision.when
        await self._persist(
            claimed,
            lambda: self.store.reschedule(
                claimed,
                due_at=retry_at,
                error=error.reason,
                outcome_unknown=error.outcome_unknown,
                now=now,
            ),
        )
        if decision.when >= claimed.expires_at:
            logger.warning(
                "hand-off failed; no retry fits before the TTL ends",
                extra={
                    "event": "hand_off_retry_too_late",
                    "reason": error.reason,
                    "final_status": FAILED_TTL_STATUS[claimed.channel].value,
                    **log_context,
                },
            )
        else:
            logger.warning(
                "hand-off failed; will retry",
                extra={
                    "event": "hand_off_retry",
                    "reason": error.reason,
                    "retry_in_s": round((decision.when - now).total_seconds(), 2),
                    "outcome_unknown": error.outcome_unknown,
                    **log_context,
                },
            )

    def _report_sink_for(self, provider: Provider) -> ReportSink:
        async def apply(report: DeliveryReport) -> None:
            keys = provider.reference_keys(report.provider_ref)
            try:
                notification_id = await self.outcomes.apply_report(
                    keys, status=report.status, error_code=report.error_code
                )
            except DatabaseUnavailableError as error:
                # Re-raised, so the SMPP session responds with a temporary
                # error and the SMSC delivers the report again later.
                logger.error(
                    "delivery report not stored: database unavailable",
                    extra={"event": "report_deferred", "error": str(error)[:200]},
                )
                raise
            self.metrics.record_delivery_report(
                provider.channel, report.status, matched=notification_id is not None
            )
            report_status = report.status.value if report.status else None
            if notification_id is None:
                log_report_unmatched(report_status)
                return
            logger.info(
                "delivery report applied",
                extra={
                    "event": "report_applied",
                    "notification_id": str(notification_id),
                    "report_status": report_status,
                },
            )

        return apply
