"""Regular orders: placing them, and turning each into a notification at its send time.

A worker loop claims the orders whose send time has come, asks their
condition endpoints, and stores a notification at regular priority for each
order that may be sent. An endpoint that gives no clear answer is asked
again with backoff (5 s doubling up to 2 min) for up to 10 minutes after
its first attempt; then the order is sent anyway, and the reason is
stored on the order (`regular_orders.condition_note`) and logged. An
endpoint that the address policy rejects is not asked again: the order is
sent at once, with the reason stored and logged the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncConnection

from budstikke.config import Settings
from budstikke.dispatch.condition_queue import ConditionQueue
from budstikke.dispatch.conditions import (
    ConditionAnswer,
    ConditionChecker,
    condition_address_policy,
    endpoint_host,
)
from budstikke.dispatch.dispatcher import make_worker_id, utc_now
from budstikke.dispatch.instant_first import InstantFirst
from budstikke.domain.creator_limits import DEFAULT_LIMITS, check_regular_order
from budstikke.domain.rate_limits import RateLimitExceededError
from budstikke.domain.recipients import mask_recipient
from budstikke.domain.regular_orders import RegularOrderRequest, RegularSms, ScheduledMessage
from budstikke.domain.statuses import Channel
from budstikke.errors import DatabaseUnavailableError
from budstikke.metrics import Metrics
from budstikke.store.creator_limits import CreatorLimitsSource
from budstikke.store.database import Database
from budstikke.store.rate_limits import take_token
from budstikke.store.regular_orders import (
    DueRegularOrder,
    NewScheduledMessage,
    RegularOrderReceipt,
    RegularOrderStore,
    create_regular_order,
)

logger = logging.getLogger(__name__)

CONDITION_RETRY_WINDOW_S: Final = 600.0
CONDITION_RETRY_FIRST_S: Final = 5.0
CONDITION_RETRY_MAX_S: Final = 120.0
# Orders claimed per pass. On SQLite a statement runs on the event loop's
# thread, so claiming and storing a batch blocks every instant order for as
# long as they take. On a 2-core x86_64 development machine that was about
# 9 and 12 ms of CPU for 200 orders, and 4 and 5 ms for 50. Each step waits
# for instant orders before it starts, but one that has started holds up an
# instant order that arrives meanwhile, so the steps are kept short.
CLAIM_BATCH: Final = 20
# Due orders are turned into notifications only while fewer than this many
# regular notifications wait to be handed off. A backlog of 100,000 due
# orders is expanded as it drains, not all at once, which would hold the
# database's write lock for minutes and make every table scan longer.
QUEUE_AHEAD: Final = 2000
# Condition checks that run at once in a worker, and for one creator. A
# creator whose endpoints are slow fills only its own share, so the checks
# of other creators start at once.
CONDITION_CONCURRENCY: Final = 64
CREATOR_CONDITION_CONCURRENCY: Final = 8
DATABASE_RETRY_S: Final = 0.5
DATABASE_RETRY_MAX_S: Final = 15.0


def condition_retry_at(first_attempt_at: datetime, attempts: int, now: datetime) -> datetime | None:
    """Return when to ask an endpoint again after `attempts` unclear answers.

    Returns None once 10 minutes have passed since the first attempt: the
    order is then sent without an answer. The last retry is moved up to the
    end of the window, so the window is used in full but never exceeded.
    """
    deadline = first_attempt_at + timedelta(seconds=CONDITION_RETRY_WINDOW_S)
    if now >= deadline:
        return None
    delay_s = min(CONDITION_RETRY_FIRST_S * 2 ** max(0, attempts - 1), CONDITION_RETRY_MAX_S)
    return min(now + timedelta(seconds=delay_s), deadline)


class RegularOrders:
    """Places regular orders for the API; the processor picks them up at their send time."""

    def __init__(
        self,
        database: Database,
        *,
        default_sms_sender: str,
        default_email_sender: str,
        clock: Callable[[], datetime] = utc_now,
        on_due: Callable[[], None] | None = None,
        limits: CreatorLimitsSource | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.database = database
        # Without a source every creator gets the built-in default limits, never none.
        self.limits = limits or CreatorLimitsSource(database, DEFAULT_LIMITS)
        self.metrics = metrics or Metrics()
        self.default_sms_sender = default_sms_sender
        self.default_email_sender = default_email_sender
        self.clock = clock
        # Wakes a local processor when an order is due at once.
        self.on_due = on_due

    async def place(self, creator: str, request: RegularOrderRequest) -> RegularOrderReceipt:
        """Check the SMS countries, take a token of the creator's rate, and store the order.

        Raises RequestValidationError or RateLimitExceededError.
        """
        limits = await self.limits.for_creator(creator)
        check_regular_order(request, limits)
        now = self.clock()
        main = self._to_new(request.main)

        async def admit(connection: AsyncConnection) -> None:
            if limits.rate_per_s > 0:
                await take_token(connection, creator=creator, limits=limits, now=now)

        try:
            receipt = await create_regular_order(
                self.database,
                creator=creator,
                idempotency_id=request.idempotency_id,
                main=main,
                reminders=[self._to_new(reminder) for reminder in request.reminders],
                now=now,
                callback_url=request.callback_url,
                admit=admit,
            )
        except RateLimitExceededError as error:
            self.metrics.record_rate_limit_rejection(error.limit)
            # A warning with the limit as its reason, so that a flood is written once and counted.
            logger.warning(
                "regular order rejected by a rate limit",
                extra={
                    "event": "order_rate_limited",
                    "reason": f"{error.limit} limit",
                    "creator": creator,
                    "retry_after_s": error.retry_after_s,
                },
            )
            raise
        logger.info(
            "regular order stored" if receipt.created else "regular order replayed",
            extra={
                "event": "regular_order_stored" if receipt.created else "regular_order_replayed",
                "order_id": str(receipt.order_id),
                "creator": creator,
                "channel": main.channel.value,
                "recipient": mask_recipient(main.channel, main.recipient),
                "reminders": len(receipt.reminders),
                "send_time": main.send_time.isoformat(),
            },
        )
        if receipt.created and main.send_time <= now and self.on_due is not None:
            self.on_due()
        return receipt

    def _to_new(self, message: ScheduledMessage) -> NewScheduledMessage:
        recipient = message.recipient
        if isinstance(recipient, RegularSms):
            return NewScheduledMessage(
                senders_reference=message.senders_reference,
                send_time=message.send_time,
                condition_endpoint=message.condition_endpoint,
                channel=Channel.SMS,
                recipient=recipient.phone_number,
                sender=recipient.sender or self.default_sms_sender,
                body=recipient.body,
                daytime_only=recipient.daytime_only,
            )
        return NewScheduledMessage(
            senders_reference=message.senders_reference,
            send_time=message.send_time,
            condition_endpoint=message.condition_endpoint,
            channel=Channel.EMAIL,
            recipient=recipient.email_address,
            sender=recipient.sender or self.default_email_sender,
            body=recipient.body,
            subject=recipient.subject,
            content_type=recipient.content_type,
        )


class RegularOrderProcessor:
    """The loop that claims due regular orders, asks their conditions and stores notifications."""

    def __init__(
        self,
        store: RegularOrderStore,
        checker: ConditionChecker,
        *,
        lease_s: float,
        poll_interval_s: float,
        clock: Callable[[], datetime] = utc_now,
        on_stored: Callable[[], None] | None = None,
        instant_first: InstantFirst | None = None,
    ) -> None:
        self.store = store
        self.checker = checker
        self.instant_first = instant_first or InstantFirst()
        self.lease_s = lease_s
        self.poll_interval_s = poll_interval_s
        self.clock = clock
        # Wakes the dispatcher, so new notifications are claimed now and not at its next poll.
        self.on_stored = on_stored
        self.worker_id = make_worker_id()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # Rounds of checks an order may wait for in memory. Each round takes
        # up to the checker's timeout, and the wait must end within half the
        # lease, so that no other worker claims the order meanwhile.
        # NOTE: with a lease shorter than two timeouts this still allows one
        # round of waiting, which can outlast the lease.
        rounds = max(1, int(lease_s / 2 / checker.timeout_s) - 1)
        self._conditions = ConditionQueue(
            self._check_and_store,
            total=CONDITION_CONCURRENCY,
            per_creator=CREATOR_CONDITION_CONCURRENCY,
            max_waiting=CONDITION_CONCURRENCY * rounds,
            max_waiting_per_creator=CREATOR_CONDITION_CONCURRENCY * rounds,
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="budstikke-regular-orders")
        logger.info(
            "regular order processor started",
            extra={"event": "regular_processor_started", "worker_id": self.worker_id},
        )

    async def stop(self) -> None:
        """Stop after the current pass and the running condition checks.

        Orders waiting for a check are released at once; other orders this
        worker leased and did not finish are claimed again after their lease.
        """
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        unchecked = await self._conditions.close()
        if unchecked:
            with contextlib.suppress(DatabaseUnavailableError):
                now = self.clock()
                await self.store.release_orders([(order, now) for order in unchecked])
        await self.checker.aclose()
        logger.info("regular order processor stopped", extra={"event": "regular_processor_stopped"})

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        pause_s = DATABASE_RETRY_S
        while not self._stopping:
            # Cleared before the pass, so a wake-up (new work, or stop) that
            # comes during the pass ends the wait below at once.
            self._wake.clear()
            try:
                claimed = await self.run_pass()
                pause_s = DATABASE_RETRY_S
            except DatabaseUnavailableError as error:
                logger.warning(
                    "database unavailable; regular order processor pauses",
                    extra={
                        "event": "regular_processor_database_unavailable",
                        "error": str(error)[:200],
                        "pause_s": pause_s,
                    },
                )
                await asyncio.sleep(pause_s)
                pause_s = min(pause_s * 2, DATABASE_RETRY_MAX_S)
                continue
            except Exception:
                # A bug in one pass must not stop the loop that sends every regular order.
                logger.exception(
                    "regular order pass failed", extra={"event": "regular_processor_crashed"}
                )
                await asyncio.sleep(pause_s)
                pause_s = min(pause_s * 2, DATABASE_RETRY_MAX_S)
                continue
            if claimed == CLAIM_BATCH:
                continue
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)

    async def run_pass(self) -> int:
        """Claim one batch of due orders and process it; returns how many were claimed.

        Each of its steps first lets instant orders being placed go ahead.
        """
        now = self.clock()
        await self.instant_first.wait_turn()
        queued = await self.store.count_claimable_notifications(now=now, limit=QUEUE_AHEAD)
        if queued >= QUEUE_AHEAD:
            return 0
        await self.instant_first.wait_turn()
        claimed = await self.store.claim_due(
            worker_id=self.worker_id,
            now=now,
            lease_until=now + timedelta(seconds=self.lease_s),
            limit=min(CLAIM_BATCH, QUEUE_AHEAD - queued),
        )
        if not claimed:
            return 0
        plain = [(order, None) for order in claimed if order.condition_endpoint is None]
        conditional = [order for order in claimed if order.condition_endpoint is not None]
        # The checks run in the background, so that the pass stores the
        # plain orders now and slow endpoints hold back no other order.
        await self._submit_checks(conditional, now)
        await self.instant_first.wait_turn()
        await self._store(plain)
        return len(claimed)

    async def _submit_checks(self, orders: Sequence[DueRegularOrder], now: datetime) -> None:
        """Hand conditional orders to the check queue, and release those that do not fit."""
        deferred: list[tuple[DueRegularOrder, datetime]] = []
        deferred_per_creator: Counter[str] = Counter()
        for order in orders:
            if self._conditions.submit(order):
                continue
            deferred_per_creator[order.creator] += 1
            deferred.append((order, self._conditions.defer_until(order.creator, now)))
        if not deferred:
            return
        await self.store.release_orders(deferred)
        for creator, count in deferred_per_creator.items():
            logger.info(
                "condition checks deferred: the creator's check slots are full",
                extra={"event": "condition_checks_deferred", "creator": creator, "count": count},
            )

    async def _store(self, items: Sequence[tuple[DueRegularOrder, str | None]]) -> None:
        stored = await self.store.store_notifications(items, now=self.clock())
        if stored:
            logger.info(
                "regular orders processed",
                extra={"event": "regular_orders_processed", "count": len(stored)},
            )
            if self.on_stored is not None:
                self.on_stored()

    async def _check_and_store(self, order: DueRegularOrder) -> None:
        """Ask the order's condition endpoint, act on the answer, and store its notification."""
        assert order.condition_endpoint is not None
        answer = await self.checker.ask(order.condition_endpoint)
        if not answer.rejected:
            # A request was made, so it counts whatever the response was.
            order = replace(order, condition_attempts=order.condition_attempts + 1)
        try:
            send, note = await self._decide(order, answer)
            if send:
                await self._store([(order, note)])
        except DatabaseUnavailableError as error:
            logger.warning(
                "condition outcome not stored: database unavailable; the order is claimed "
                "again after its lease",
                extra={
                    "event": "condition_outcome_lost",
                    "order_id": str(order.order_id),
                    "error": str(error)[:200],
                },
            )

    async def _decide(
        self, order: DueRegularOrder, answer: ConditionAnswer
    ) -> tuple[bool, str | None]:
        """Act on a condition answer; returns whether to send the order now, and why.

        Not sending now means the order ended (a negative answer) or waits
        for another attempt. The note is set when it is sent without an answer.
        """
        now = self.clock()
        context = {
            "order_id": str(order.order_id),
            "creator": order.creator,
            "host": endpoint_host(order.condition_endpoint or ""),
            "reason": answer.reason,
        }
        if answer.send is True:
            logger.info("send condition met", extra={"event": "condition_met", **context})
            return True, None
        if answer.send is False:
            ended = await self.store.end_condition_not_met(order, now=now)
            if ended:
                logger.info(
                    "send condition not met; order ends without sending",
                    extra={"event": "condition_not_met", **context},
                )
            return False, None
        if answer.rejected:
            # Asking again would be rejected the same way. The order is sent
            # now, as it would be after 10 minutes without an answer.
            logger.warning(
                "condition endpoint rejected by the address policy; sending without asking",
                extra={"event": "condition_endpoint_rejected", **context},
            )
            return True, f"sent without asking the condition endpoint: {answer.reason}"[:500]
        attempts = order.condition_attempts
        first_attempt_at = order.condition_first_attempt_at or now
        retry_at = condition_retry_at(first_attempt_at, attempts, now)
        if retry_at is None:
            note = (
                f"sent without an answer from the condition endpoint after {attempts} attempts "
                f"over {CONDITION_RETRY_WINDOW_S / 60:g} minutes; last: {answer.reason}"
            )[:500]
            logger.warning(
                "condition endpoint gave no clear response for 10 minutes; sending anyway",
                extra={"event": "condition_unanswered_sent", "attempts": attempts, **context},
            )
            return True, note
        await self.store.schedule_condition_retry(
            order, retry_at=retry_at, first_attempt_at=first_attempt_at, now=now
        )
        logger.warning(
            "condition endpoint gave no clear response; will ask again",
            extra={
                "event": "condition_retry",
                "attempt": attempts,
                "retry_in_s": round((retry_at - now).total_seconds(), 1),
                **context,
            },
        )
        return False, None


def build_regular_processor(
    settings: Settings,
    database: Database,
    *,
    on_stored: Callable[[], None] | None,
    clock: Callable[[], datetime] = utc_now,
    instant_first: InstantFirst | None = None,
) -> RegularOrderProcessor:
    return RegularOrderProcessor(
        RegularOrderStore(database),
        ConditionChecker(condition_address_policy(settings)),
        lease_s=settings.lease_s,
        poll_interval_s=settings.worker_poll_interval_s,
        clock=clock,
        on_stored=on_stored,
        instant_first=instant_first,
    )
