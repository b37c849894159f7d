"""Placing instant orders: store the order, then hand its notification off at once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from budstikke.dispatch.dispatcher import Dispatcher, utc_now
from budstikke.domain.order_requests import InstantEmailOrder, InstantSmsOrder
from budstikke.domain.recipients import mask_recipient
from budstikke.domain.statuses import Channel, Priority
from budstikke.metrics import Metrics
from budstikke.store.database import Database
from budstikke.store.orders import create_instant_order
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
    ) -> None:
        self.database = database
        self.dispatcher = dispatcher
        self.metrics = metrics or Metrics()
        self.default_sms_sender = default_sms_sender
        self.default_email_sender = default_email_sender
        self.clock = clock

    async def place_sms(self, creator: str, order: InstantSmsOrder) -> OrderReceipt:
        notification = NewNotification(
            channel=Channel.SMS,
            recipient=order.phone_number,
            sender=order.sender or self.default_sms_sender,
            body=order.body,
            ttl_s=order.ttl_s,
            priority=Priority.INSTANT,
        )
        return await self._place(
            creator, order.idempotency_id, order.senders_reference, notification
        )

    async def place_email(self, creator: str, order: InstantEmailOrder) -> OrderReceipt:
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
            creator, order.idempotency_id, order.senders_reference, notification
        )

    async def _place(
        self,
        creator: str,
        idempotency_id: str,
        senders_reference: str | None,
        notification: NewNotification,
    ) -> OrderReceipt:
        hands_off_here = self.dispatcher is not None and self.dispatcher.hands_off_locally
        receipt = await create_instant_order(
            self.database,
            creator=creator,
            idempotency_id=idempotency_id,
            senders_reference=senders_reference,
            notification=notification,
            now=self.clock(),
            # Workers in other processes must hand off what this process will not.
            notify_workers=not hands_off_here,
            # Stored already claimed by this process, which hands it off next.
            lease=self.dispatcher.lease() if hands_off_here and self.dispatcher else None,
        )
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
        if receipt.claimed is not None and self.dispatcher is not None:
            await self.dispatcher.hand_off_claimed(receipt.claimed)
        elif receipt.created and self.dispatcher is not None:
            await self.dispatcher.hand_off_new(receipt.notification_ids[0])
        return receipt
