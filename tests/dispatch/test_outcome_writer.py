"""The outcome writer: hand-off records and reports that arrive together share a transaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from budstikke.dispatch.instant_first import InstantFirst
from budstikke.dispatch.outcome_writer import OutcomeWriter
from budstikke.domain.statuses import NotificationStatus
from budstikke.store.database import Database
from budstikke.store.migrate import upgrade_to_head
from budstikke.store.notifications import NotificationStore
from budstikke.store.outcomes import HandOffRecord, OutcomeResults, PartReference, ReceivedReport
from budstikke.store.tables import provider_parts
from tests.store.test_notifications import status_of
from tests.store.test_outcomes import NOW, claimed_order
from tests.store.test_write_turns import hold_write_connection

ACCEPTED = NotificationStatus.SMS_ACCEPTED
DELIVERED = NotificationStatus.SMS_DELIVERED


class BatchRecordingStore(NotificationStore):
    """The real store, which also records the size of each batch it writes."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.batches: list[tuple[int, int]] = []

    async def write_outcomes(
        self,
        hand_offs: Sequence[HandOffRecord],
        reports: Sequence[ReceivedReport],
        *,
        now: datetime,
        woken: asyncio.Future[None] | None = None,
    ) -> OutcomeResults:
        self.batches.append((len(hand_offs), len(reports)))
        return await super().write_outcomes(hand_offs, reports, now=now, woken=woken)


async def test_items_queued_together_share_one_batch(database: Database) -> None:
    store = BatchRecordingStore(database)
    writer = OutcomeWriter(store, lambda: NOW)
    orders = [await claimed_order(store, f"order-{index}") for index in range(6)]

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


async def test_cancel_during_retry_cancels_callers(database: Database) -> None:
    store = BatchRecordingStore(database)
    writer = OutcomeWriter(store, lambda: NOW)
    single_write_started = asyncio.Event()
    original_write = store.write_outcomes

    async def fail_batch_then_hang(
        hand_offs: Sequence[HandOffRecord],
        reports: Sequence[ReceivedReport],
        *,
        now: datetime,
        woken: asyncio.Future[None] | None = None,
    ) -> OutcomeResults:
        if len(hand_offs) + len(reports) > 1:
            raise IntegrityError("INSERT", {}, Exception("made-up conflict"))
        single_write_started.set()
        await asyncio.Event().wait()
        return await original_write(hand_offs, reports, now=now, woken=woken)

    store.write_outcomes = fail_batch_then_hang  # type: ignore[method-assign]
    callers = [
        asyncio.create_task(writer.apply_report([f"U{index}"], status=DELIVERED, error_code=None))
        for index in range(3)
    ]
    await asyncio.wait_for(single_write_started.wait(), timeout=5)

    # The writer is cancelled, as at shutdown, while it writes the first item alone.
    assert writer._drain_task is not None
    writer._drain_task.cancel()
    await asyncio.wait(callers, timeout=5)

    assert [caller.cancelled() for caller in callers] == [True, True, True]


async def test_instant_hand_off_goes_in_a_small_batch(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("budstikke.dispatch.outcome_writer.URGENT_BATCH_ITEMS", 2)
    store = BatchRecordingStore(database)
    writer = OutcomeWriter(store, lambda: NOW)
    _receipt, claimed = await claimed_order(store, "instant")

    # Three receipts for unknown messages are queued before the instant hand-off.
    await asyncio.gather(
        *(
            writer.apply_report([f"U{index}"], status=DELIVERED, error_code=None)
            for index in range(3)
        ),
        writer.record_hand_off(claimed, status=ACCEPTED, parts=[PartReference("i", ("I",))]),
    )

    assert store.batches == [(1, 1), (0, 2)]


async def test_receipts_get_every_other_batch_in_a_burst(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("budstikke.dispatch.outcome_writer.URGENT_BATCH_ITEMS", 2)
    monkeypatch.setattr("budstikke.dispatch.outcome_writer.MAX_BATCH_ITEMS", 2)
    store = BatchRecordingStore(database)
    writer = OutcomeWriter(store, lambda: NOW)
    orders = [await claimed_order(store, f"burst-{index}") for index in range(6)]

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

    assert store.batches == [(2, 0), (0, 2), (2, 0), (2, 0)]


async def test_items_after_write_wait_for_batch(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Far longer than any write, so a wait that ends early ended for its reason.
    monkeypatch.setattr("budstikke.dispatch.outcome_writer.LINGER_S", 60.0)
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
    assert waited_s < 20


async def test_instant_hand_off_ends_the_wait(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("budstikke.dispatch.outcome_writer.LINGER_S", 60.0)
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
    assert store.batches == [(0, 1), (1, 1)]
    assert waited_s < 20


async def test_regular_items_wait_for_instant_order(database: Database) -> None:
    store = BatchRecordingStore(database)
    instant_first = InstantFirst(max_wait_s=60)
    writer = OutcomeWriter(store, lambda: NOW, instant_first=instant_first)

    with instant_first.placing():
        report = asyncio.create_task(writer.apply_report(["U0"], status=DELIVERED, error_code=None))
        await asyncio.sleep(0.05)
        assert store.batches == []

    await asyncio.wait_for(report, timeout=20)
    assert store.batches == [(0, 1)]


async def test_instant_record_skips_the_wait(
    database: Database,
) -> None:
    store = BatchRecordingStore(database)
    instant_first = InstantFirst(max_wait_s=60)
    writer = OutcomeWriter(store, lambda: NOW, instant_first=instant_first)
    _receipt, claimed = await claimed_order(store, "instant")

    with instant_first.placing():
        report = asyncio.create_task(writer.apply_report(["U0"], status=DELIVERED, error_code=None))
        await asyncio.sleep(0.05)
        # The order's own hand-off record must not wait for the order to end.
        recorded = await asyncio.wait_for(
            writer.record_hand_off(claimed, status=ACCEPTED, parts=[PartReference("i", ("I",))]),
            timeout=20,
        )
        await report

    assert recorded is True
    assert store.batches == [(1, 1)]


async def writer_on_sqlite(tmp_path: Path) -> tuple[Database, BatchRecordingStore, OutcomeWriter]:
    """Return a SQLite database whose regular writes wait 60 s for instant orders, and a writer."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await upgrade_to_head(database)
    store = BatchRecordingStore(database)
    database.instant_first = instant_first = InstantFirst(max_wait_s=60)
    writer = OutcomeWriter(store, lambda: NOW, instant_first=instant_first)
    return database, store, writer


async def test_instant_record_ends_turn_wait(tmp_path: Path) -> None:
    database, store, writer = await writer_on_sqlite(tmp_path)
    instant_first = writer.instant_first
    _receipt, claimed = await claimed_order(store, "instant")

    holder, release = await hold_write_connection(database)
    report = asyncio.create_task(writer.apply_report(["U0"], status=DELIVERED, error_code=None))
    await asyncio.sleep(0.01)
    with instant_first.placing():
        # The report's batch gets the write connection while the order is in
        # flight and waits for the order, which waits for its own record.
        release.set()
        await asyncio.sleep(0.05)
        assert not report.done()

        recorded = await asyncio.wait_for(
            writer.record_hand_off(claimed, status=ACCEPTED, parts=[PartReference("i", ("I",))]),
            timeout=20,
        )
        await asyncio.wait_for(asyncio.gather(holder, report), timeout=20)
    await database.dispose()

    assert recorded is True
    assert store.batches == [(0, 1), (1, 0)]


async def test_queued_instant_record_skips_turn_wait(tmp_path: Path) -> None:
    database, store, writer = await writer_on_sqlite(tmp_path)
    instant_first = writer.instant_first
    _receipt, first = await claimed_order(store, "first")
    _receipt, second = await claimed_order(store, "second")
    parts = [PartReference("i", ("I",))]

    holder, release = await hold_write_connection(database)
    first_record = asyncio.create_task(writer.record_hand_off(first, status=ACCEPTED, parts=parts))
    await asyncio.sleep(0.01)
    with instant_first.placing():
        # After the first record's batch, the report's batch has its turn. The
        # second order's record is queued behind it before the batch starts.
        report = asyncio.create_task(writer.apply_report(["U0"], status=DELIVERED, error_code=None))
        second_record = asyncio.create_task(
            writer.record_hand_off(second, status=ACCEPTED, parts=parts)
        )
        await asyncio.sleep(0.01)
        release.set()

        await asyncio.wait_for(second_record, timeout=20)
    await asyncio.wait_for(asyncio.gather(holder, first_record, report), timeout=20)
    await database.dispose()

    assert store.batches == [(1, 0), (0, 1), (1, 0)]
