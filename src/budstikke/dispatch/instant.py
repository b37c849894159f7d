"""Placing instant orders: store the order, then hand its notification off at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from budstikke.dispatch.dispatcher import Dispatcher, utc_now
from budstikke.domain.creator_limits import (
    DEFAULT_LIMITS,
    CreatorLimits,
    check_instant_email_order,
    check_instant_sms_order,
)
from budstikke.domain.order_requests import InstantEmailOrder, InstantSmsOrder
from budstikke.domain.rate_limits import RateLimitExceededError, recipient_key
from budstikke.domain.recipients import mask_recipient
from budstikke.domain.statuses import Channel, Priority
from budstikke.metrics import Metrics
from budstikke.store.creator_limits import CreatorLimitsSource
from budstikke.store.database import Database
from budstikke.store.order_batches import OrderBatcher
from budstikke.store.rate_limits import take_order_allowance
from budstikke.store.records import NewNotification, OrderReceipt

logger = logging.getLogger(__name__)


class InstantOrders:
    def __init__(
        self,
        database: Database,
        dispatcher: Dispatcher | None,
        *,
        default_sms_sender: str,
        default_email_sender: str,
        clock: Callable[[], datetime] = utc_now,
        metrics: Metrics | None = None,
        limits: CreatorLimitsSource | None = None,
    ) -> None:
        self.database = database
        # Orders placed together share one transaction on SQLite (group commit).
        self.orders = OrderBatcher(database)
        self.dispatcher = dispatcher
        # Without a source every creator gets the built-in default limits, never none.
        self.limits = limits or CreatorLimitsSource(database, DEFAULT_LIMITS)
        self.metrics = metrics or Metrics()
        self.default_sms_sender = default_sms_sender
        self.default_email_sender = default_email_sender
        self.clock = clock

    async def place_sms(self, creator: str, order: InstantSmsOrder) -> OrderReceipt:
        """Check the order against the creator's limits, store it, and hand it off.

        Raises RequestValidationError for a country or content rule and
        RateLimitExceededError for a rate limit.
        """
        with self._placing():
            return await self._place_sms(creator, order)

    async def place_email(self, creator: str, order: InstantEmailOrder) -> OrderReceipt:
        """Check the order against the creator's limits, store it, and hand it off."""
        with self._placing():
            return await self._place_email(creator, order)

    def _placing(self) -> contextlib.AbstractContextManager[None]:
        # Regular work of this process waits while the order is placed.
        if self.dispatcher is None:
            return contextlib.nullcontext()
        return self.dispatcher.instant_first.placing()

    async def _place_sms(self, creator: str, order: InstantSmsOrder) -> OrderReceipt:
        limits = await self.limits.for_creator(creator)
        check_instant_sms_order(order, limits)
        notification = NewNotification(
            channel=Channel.SMS,
            recipient=order.phone_number,
            sender=order.sender or self.default_sms_sender,
            body=order.body,
            ttl_s=order.ttl_s,
            priority=Priority.INSTANT,
        )
        return await self._place(
            creator,
            order.idempotency_id,
            order.senders_reference,
            notification,
            limits,
            callback_url=order.callback_url,
        )

    async def _place_email(self, creator: str, order: InstantEmailOrder) -> OrderReceipt:
        limits = await self.limits.for_creator(creator)
        check_instant_email_order(order, limits)
        notification = NewNotification(
            channel=Channel.EMAIL,
            recipient=order.email_address,
            sender=order.sender or self.default_email_sender,
            subject=order.subject,
            body=order.body,
            content_type=order.content_type,
            ttl_s=order.ttl_s,
            priority=Priority.INSTANT,
        )
        return await self._place(
            creator,
            order.idempotency_id,
            order.senders_reference,
            notification,
            limits,
            callback_url=order.callback_url,
        )

    async def _place(
        self,
        creator: str,
        idempotency_id: str,
        senders_reference: str | None,
        notification: NewNotification,
        limits: CreatorLimits,
        *,
        callback_url: str | None = None,
    ) -> OrderReceipt:
        hands_off_here = self.dispatcher is not None and self.dispatcher.hands_off_locally
        now = self.clock()
        key = recipient_key(notification.channel, notification.recipient)

        async def admit(connection: AsyncConnection) -> None:
            await take_order_allowance(
                connection, creator=creator, recipient_key=key, limits=limits, now=now
            )

        hand_off: asyncio.Task[None] | None = None

        def start_hand_off(receipt: OrderReceipt) -> None:
            nonlocal hand_off
            if receipt.claimed is not None and self.dispatcher is not None:
                hand_off = self.dispatcher.start_hand_off(receipt.claimed)

        try:
            receipt = await self.orders.create(
                creator=creator,
                idempotency_id=idempotency_id,
                senders_reference=senders_reference,
                notification=notification,
                now=now,
                # Workers in other processes must hand off what this process will not.
                notify_workers=not hands_off_here,
                # Stored already claimed by this process, which hands it off next.
                lease=self.dispatcher.lease() if hands_off_here and self.dispatcher else None,
                callback_url=callback_url,
                admit=admit,
                # On SQLite the batch writer starts the hand-off at the commit,
                # before this task runs again.
                on_stored=start_hand_off,
            )
        except RateLimitExceededError as error:
            self.log_rate_limited(creator, notification, error)
            raise
        self.metrics.record_order(notification.channel, created=receipt.created)
        logger.info(
            "instant order stored" if receipt.created else "instant order replayed",
            extra={
                "event": "order_stored" if receipt.created else "order_replayed",
                "order_id": str(receipt.order_id),
                "creator": creator,
                "channel": notification.channel.value,
                "recipient": mask_recipient(notification.channel, notification.recipient),
            },
        )
        if hand_off is not None and self.dispatcher is not None:
            await self.dispatcher.wait_for_hand_off(hand_off)
        elif receipt.created and self.dispatcher is not None:
            await self.dispatcher.hand_off_new(receipt.notification_ids[0])
        return receipt

    def log_rate_limited(
        self, creator: str, notification: NewNotification, error: RateLimitExceededError
    ) -> None:
        self.metrics.record_rate_limit_rejection(error.limit)
        # A warning with the limit as its reason, so that a flood of rejections
        # is written once and then counted by the log handler.
        logger.warning(
            "instant order rejected by a rate limit",
            extra={
                "event": "order_rate_limited",
                "reason": f"{error.limit} limit",
                "creator": creator,
                "retry_after_s": error.retry_after_s,
                "channel": notification.channel.value,
                "recipient": mask_recipient(notification.channel, notification.recipient),
            },
        )
