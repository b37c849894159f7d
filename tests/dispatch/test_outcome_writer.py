"""The outcome writer: hand-off records and reports that arrive together share a transaction."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from datetime import datetime

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from budstikke.dispatch.outcome_writer import OutcomeWriter
from budstikke.domain.statuses import NotificationStatus, Priority
from budstikke.store.database import Database
from budstikke.store.notifications import NotificationStore
from budstikke.store.outcomes import HandOffRecord, OutcomeResults, PartReference, ReceivedReport
from budstikke.store.records import ClaimedNotification
from budstikke.store.tables import provider_parts
from tests.store.test_notifications import status_of
from tests.store.test_outcomes import NOW, claimed_order

ACCEPTED = NotificationStatus.SMS_ACCEPTED
DELIVERED = NotificationStatus.SMS_DELIVERED


class BatchRecordingStore(NotificationStore):
    """The real store, which also records the size of each batch it writes.

    While `hold_regular` is set to an unset event, batches without an
    instant hand-off wait for it.
    """

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.batches: list[tuple[int, int]] = []
        self.hold_regular: asyncio.Event | None = None

    async def write_outcomes(
        self,
        hand_offs: Sequence[HandOffRecord],
        reports: Sequence[ReceivedReport],
        *,
        now: datetime,
    ) -> OutcomeResults:
        is_regular = all(record.claimed.priority == Priority.REGULAR for record in hand_offs)
        if self.hold_regular is not None and is_regular:
            await self.hold_regular.wait()
        self.batches.append((len(hand_offs), len(reports)))
        return await super().write_outcomes(hand_offs, reports, now=now)


def as_regular(claimed: ClaimedNotification) -> ClaimedNotification:
    """The claimed notification of an instant order, presented as a regular one."""
    return dataclasses.replace(claimed, priority=Priority.REGULAR)


async def test_items_queued_together_share_one_batch(database: Database) -> None:
    store = BatchRecordingStore(database)
    writer = OutcomeWriter(store, lambda: NOW)
    orders = [
        (receipt, as_regular(claimed))
        for receipt, claimed in [await claimed_order(store, f"order-{i}") for i in range(6)]
    ]

    results = await asyncio.gather(
        *(
            writer.record_hand_off(
                claimed, status=ACCEPTED, parts=[PartReference(f"m{index}", (f"M{index}",))]
            )
            for index, (_receipt, claimed) in enumerate(orders)
        ),
        *(
            writer.apply_report([f"M{index}"], status=DELIVERED, error_code=None)
            for index in range(6)
        ),
    )

    assert store.batches == [(6, 6)]
    assert results[:6] == [True] * 6
    assert results[6:] == [receipt.notification_ids[0] for receipt, _claimed in orders]
    for receipt, _claimed in orders:
        assert await status_of(database, receipt) == ("Order_Completed", "SMS_Delivered")


async def test_failed_item_does_not_fail_the_others(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    store = BatchRecordingStore(database)
    writer = OutcomeWriter(store, lambda: NOW)
    good, good_claimed = await claimed_order(store, "good")
    bad, bad_claimed = await claimed_order(store, "bad")
    good_claimed, bad_claimed = as_regular(good_claimed), as_regular(bad_claimed)
    async with database.write() as connection:
        # A part row left over for the bad notification makes its insert fail.
        await connection.execute(
            insert(provider_parts).values(
                notification_id=bad_claimed.id, part_index=0, provider_ref="x", status=None
            )
        )

    with caplog.at_level(logging.WARNING, logger="budstikke.dispatch.outcome_writer"):
        results = await asyncio.gather(
            writer.record_hand_off(
                good_claimed, status=ACCEPTED, parts=[PartReference("g", ("G",))]
            ),
            writer.record_hand_off(
                bad_claimed, status=ACCEPTED, parts=[PartReference("x", ("X",))]
            ),
            writer.apply_report(["G"], status=DELIVERED, error_code=None),
            return_exceptions=True,
        )

    assert store.batches == [(2, 1), (1, 0), (1, 0), (0, 1)]
    assert results[0] is True
    assert isinstance(results[1], IntegrityError)
    assert results[2] == good.notification_ids[0]
    assert await status_of(database, good) == ("Order_Completed", "SMS_Delivered")
    assert await status_of(database, bad) == ("Order_Processed", "SMS_Sending")
    events = [record.__dict__.get("event") for record in caplog.records]
    assert events == ["outcome_batch_failed"]


async def test_instant_hand_off_skips_held_batch(database: Database) -> None:
    store = BatchRecordingStore(database)
    store.hold_regular = asyncio.Event()
    writer = OutcomeWriter(store, lambda: NOW)
    _receipt, claimed = await claimed_order(store, "instant")
    reports = [
        asyncio.create_task(writer.apply_report([f"U{index}"], status=DELIVERED, error_code=None))
        for index in range(3)
    ]
    await asyncio.sleep(0.05)

    # The receipts' batch is still held when the instant hand-off is written.
    recorded = await asyncio.wait_for(
        writer.record_hand_off(claimed, status=ACCEPTED, parts=[PartReference("i", ("I",))]),
        timeout=5,
    )
    reports_still_held = not any(task.done() for task in reports)
    store.hold_regular.set()
    await asyncio.gather(*reports)

    assert recorded is True
    assert reports_still_held
    assert store.batches == [(1, 0), (0, 3)]


async def test_instant_hand_offs_go_in_small_batches(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("budstikke.dispatch.outcome_writer.URGENT_BATCH_ITEMS", 2)
    store = BatchRecordingStore(database)
    writer = OutcomeWriter(store, lambda: NOW)
    orders = [await claimed_order(store, f"burst-{index}") for index in range(5)]

    await asyncio.gather(
        *(
            writer.record_hand_off(
                claimed, status=ACCEPTED, parts=[PartReference(f"b{index}", (f"B{index}",))]
            )
            for index, (_receipt, claimed) in enumerate(orders)
        )
    )

    assert store.batches == [(2, 0), (2, 0), (1, 0)]


async def test_receipts_are_written_during_a_burst(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("budstikke.dispatch.outcome_writer.URGENT_BATCH_ITEMS", 1)
    store = BatchRecordingStore(database)
    writer = OutcomeWriter(store, lambda: NOW)
    orders = [await claimed_order(store, f"burst-{index}") for index in range(12)]

    await asyncio.gather(
        *(
            writer.record_hand_off(
                claimed, status=ACCEPTED, parts=[PartReference(f"b{index}", (f"B{index}",))]
            )
            for index, (_receipt, claimed) in enumerate(orders)
        ),
        *(
            writer.apply_report([f"U{index}"], status=DELIVERED, error_code=None)
            for index in range(2)
        ),
    )

    # Twelve urgent transactions are queued at once, and the receipts do not wait for all of them.
    assert store.batches.index((0, 2)) < len(store.batches) - 1


async def test_items_after_write_wait_for_batch(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("budstikke.dispatch.outcome_writer.LINGER_S", 0.5)
    monkeypatch.setattr("budstikke.dispatch.outcome_writer.LINGER_ITEMS", 3)
    store = BatchRecordingStore(database)
    writer = OutcomeWriter(store, lambda: NOW)

    # The first report finds the writer idle. The next ones come while it waits.
    await writer.apply_report(["U0"], status=DELIVERED, error_code=None)
    second = asyncio.create_task(writer.apply_report(["U1"], status=DELIVERED, error_code=None))
    await asyncio.sleep(0.05)
    rest = [
        asyncio.create_task(writer.apply_report([key], status=DELIVERED, error_code=None))
        for key in ("U2", "U3")
    ]
    started = asyncio.get_running_loop().time()
    await asyncio.gather(second, *rest)
    waited_s = asyncio.get_running_loop().time() - started

    assert store.batches == [(0, 1), (0, 3)]
    # The third item filled the batch, which ended the wait.
    assert waited_s < 0.4


async def test_regular_items_still_wait_for_batch(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("budstikke.dispatch.outcome_writer.LINGER_S", 0.5)
    store = BatchRecordingStore(database)
    writer = OutcomeWriter(store, lambda: NOW)
    _receipt, claimed = await claimed_order(store, "instant")
    await writer.apply_report(["U0"], status=DELIVERED, error_code=None)
    waiting = asyncio.create_task(writer.apply_report(["U1"], status=DELIVERED, error_code=None))
    await asyncio.sleep(0.05)

    started = asyncio.get_running_loop().time()
    recorded = await writer.record_hand_off(
        claimed, status=ACCEPTED, parts=[PartReference("i", ("I",))]
    )
    waited_s = asyncio.get_running_loop().time() - started
    await waiting

    assert recorded is True
    assert waited_s < 0.4
    assert store.batches == [(0, 1), (1, 0), (0, 1)]
