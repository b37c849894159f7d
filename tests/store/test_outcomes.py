"""Hand-off records and delivery reports written many to a transaction, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.exc import IntegrityError

from budstikke.channels.smpp.receipts import reference_keys
from budstikke.domain.statuses import NotificationStatus
from budstikke.store.database import Database
from budstikke.store.feed import read_feed
from budstikke.store.notifications import NotificationStore
from budstikke.store.outcomes import HandOffRecord, PartReference, ReceivedReport
from budstikke.store.records import ClaimedNotification, OrderReceipt
from budstikke.store.retention import prune_unmatched_reports
from budstikke.store.tables import (
    notifications,
    provider_parts,
    unmatched_reports,
    webhook_deliveries,
)
from budstikke.store.webhook_endpoints import create_endpoint
from tests.store.test_notifications import new_order, status_of

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
ACCEPTED = NotificationStatus.SMS_ACCEPTED
DELIVERED = NotificationStatus.SMS_DELIVERED
UNDELIVERED = NotificationStatus.SMS_FAILED_UNDELIVERED


async def claimed_order(
    store: NotificationStore, key: str, *, now: datetime = NOW, worker_id: str = "w"
) -> tuple[OrderReceipt, ClaimedNotification]:
    receipt = await new_order(store.database, key, now=now)
    claimed = await store.claim(
        receipt.notification_ids[0], worker_id=worker_id, now=now, lease_until=now + LEASE
    )
    assert claimed is not None
    return receipt, claimed


def hand_off(claimed: ClaimedNotification, *refs: str) -> HandOffRecord:
    return HandOffRecord(
        claimed, ACCEPTED, tuple(PartReference(ref, (ref.upper(),)) for ref in refs)
    )


def report(key: str, status: NotificationStatus | None, code: str | None = None) -> ReceivedReport:
    return ReceivedReport((key,), status, code)


def count_transactions(database: Database) -> list[str]:
    """Record the BEGIN of every write transaction (SQLite) or every begin (PostgreSQL)."""
    begins: list[str] = []

    def on_begin(_connection: Any) -> None:
        begins.append("begin")

    event.listen(database.engine.sync_engine, "begin", on_begin)
    return begins


async def row_count(database: Database, table: Any) -> int:
    async with database.read() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


async def test_batch_records_hand_offs_and_reports_together(database: Database) -> None:
    store = NotificationStore(database)
    first, first_claimed = await claimed_order(store, "first")
    second, second_claimed = await claimed_order(store, "second")
    third, third_claimed = await claimed_order(store, "third")
    begins = count_transactions(database)

    results = await store.write_outcomes(
        [
            hand_off(first_claimed, "a1"),
            hand_off(second_claimed, "b1", "b2"),
            hand_off(third_claimed, "c1"),
        ],
        [
            report("A1", DELIVERED),
            report("B2", DELIVERED),
            report("B1", DELIVERED),
            report("C1", None),
            report("NOBODY", DELIVERED),
        ],
        now=NOW,
    )

    assert len(begins) == 1
    assert results.recorded == [True, True, True]
    assert results.matched == [
        first.notification_ids[0],
        second.notification_ids[0],
        second.notification_ids[0],
        third.notification_ids[0],
        None,
    ]
    assert await status_of(database, first) == ("Order_Completed", "SMS_Delivered")
    assert await status_of(database, second) == ("Order_Completed", "SMS_Delivered")
    assert await status_of(database, third) == ("Order_Processed", "SMS_Accepted")
    assert await row_count(database, unmatched_reports) == 1
    assert await row_count(database, provider_parts) == 4
    entries = await read_feed(database, creator="ttd", after_seq=0, page_size=10, descending=False)
    completed = {json.loads(entry.entry_json)["shipmentId"] for entry in entries}
    assert completed == {str(first.shipment_id), str(second.shipment_id)}


async def test_batch_applies_reports_to_recorded_parts(database: Database) -> None:
    store = NotificationStore(database)
    receipts = []
    records = []
    for index in range(5):
        receipt, claimed = await claimed_order(store, f"order-{index}")
        receipts.append(receipt)
        records.append(hand_off(claimed, f"m{index}a", f"m{index}b"))
    await store.write_outcomes(records, [], now=NOW)
    begins = count_transactions(database)

    results = await store.write_outcomes(
        [],
        [
            report("M0A", DELIVERED),
            report("M1A", DELIVERED),
            report("M0B", DELIVERED),
            report("M1B", UNDELIVERED, "001"),
            report("M2A", UNDELIVERED, "002"),
            report("M2B", DELIVERED),
            report("M3A", DELIVERED),
            report("M3A", UNDELIVERED, "003"),
        ],
        now=NOW + timedelta(seconds=1),
    )

    assert len(begins) == 1
    assert results.matched[0] == receipts[0].notification_ids[0]
    assert await status_of(database, receipts[0]) == ("Order_Completed", "SMS_Delivered")
    assert await status_of(database, receipts[1]) == ("Order_Completed", "SMS_Failed_Undelivered")
    assert await status_of(database, receipts[2]) == ("Order_Completed", "SMS_Failed_Undelivered")
    # The second report for the same part changes nothing; the other part is still open.
    assert await status_of(database, receipts[3]) == ("Order_Processed", "SMS_Accepted")
    assert await status_of(database, receipts[4]) == ("Order_Processed", "SMS_Accepted")
    entries = await read_feed(database, creator="ttd", after_seq=0, page_size=10, descending=False)
    assert len(entries) == 3
    by_shipment = {
        json.loads(entry.entry_json)["shipmentId"]: json.loads(entry.entry_json)
        for entry in entries
    }
    failed = by_shipment[str(receipts[1].shipment_id)]
    assert failed["status"] == "Order_Completed"
    assert failed["recipients"][0]["status"] == "SMS_Failed_Undelivered"
    assert failed["recipients"][0]["lastUpdate"] == "2026-12-04T10:00:01.000Z"


async def test_batch_applies_reports_kept_before_the_hand_off(database: Database) -> None:
    store = NotificationStore(database)
    early, early_claimed = await claimed_order(store, "early")
    other, other_claimed = await claimed_order(store, "other")
    kept = await store.write_outcomes(
        [], [report("E1", None), report("E1", DELIVERED), report("E2", UNDELIVERED, "009")], now=NOW
    )

    results = await store.write_outcomes(
        [hand_off(early_claimed, "e1"), hand_off(other_claimed, "e2")], [], now=NOW
    )

    assert kept.matched == [None, None, None]
    assert results.recorded == [True, True]
    assert await status_of(database, early) == ("Order_Completed", "SMS_Delivered")
    assert await status_of(database, other) == ("Order_Completed", "SMS_Failed_Undelivered")
    assert await row_count(database, unmatched_reports) == 0


async def test_hand_off_time_is_acceptance(database: Database) -> None:
    store = NotificationStore(database)
    early, early_claimed = await claimed_order(store, "early")
    accepted_at = NOW + timedelta(milliseconds=3)
    written_at = NOW + timedelta(milliseconds=20)

    await store.write_outcomes(
        [replace(hand_off(early_claimed, "a1"), accepted_at=accepted_at)], [], now=written_at
    )

    async with database.read() as connection:
        row = (
            await connection.execute(
                select(notifications.c.handed_off_at, notifications.c.updated_at).where(
                    notifications.c.id == early.notification_ids[0]
                )
            )
        ).one()
    assert row.handed_off_at == accepted_at
    assert row.updated_at == accepted_at


async def test_early_report_applied_once(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    store = NotificationStore(database)
    early, early_claimed = await claimed_order(store, "early")
    keys = reference_keys("00000002")
    await store.write_outcomes([], [ReceivedReport(keys, DELIVERED, None)], now=NOW)
    caplog.set_level(logging.INFO, logger="budstikke.store.outcomes")

    await store.write_outcomes(
        [HandOffRecord(early_claimed, ACCEPTED, (PartReference("00000002", keys),))], [], now=NOW
    )

    assert len(keys) == 2
    assert await status_of(database, early) == ("Order_Completed", "SMS_Delivered")
    events = [getattr(record, "event", None) for record in caplog.records]
    assert "late_report_ignored" not in events
    assert await row_count(database, unmatched_reports) == 0


async def test_legacy_report_rows_apply_separately(database: Database) -> None:
    store = NotificationStore(database)
    early, early_claimed = await claimed_order(store, "early")
    # Rows kept before report_id existed: each row is a report of its own.
    async with database.write() as connection:
        await connection.execute(
            insert(unmatched_reports),
            [
                {"ref_key": "K1", "status": None, "error_code": None, "received_at": NOW},
                {
                    "ref_key": "K1",
                    "status": UNDELIVERED.value,
                    "error_code": "7",
                    "received_at": NOW,
                },
            ],
        )

    await store.write_outcomes([hand_off(early_claimed, "k1")], [], now=NOW)

    assert await status_of(database, early) == ("Order_Completed", "SMS_Failed_Undelivered")
    assert await row_count(database, unmatched_reports) == 0


async def test_early_report_rows_all_removed(database: Database) -> None:
    store = NotificationStore(database)
    early, early_claimed = await claimed_order(store, "early")
    # The receipt writes the id without its leading zeros, so the two ids
    # share one of their keys.
    sent_keys, reported_keys = reference_keys("00000002"), reference_keys("2")
    await store.write_outcomes([], [ReceivedReport(reported_keys, DELIVERED, None)], now=NOW)

    await store.write_outcomes(
        [HandOffRecord(early_claimed, ACCEPTED, (PartReference("00000002", sent_keys),))],
        [],
        now=NOW,
    )

    assert set(sent_keys) & set(reported_keys) == {"hex:2"}
    assert await status_of(database, early) == ("Order_Completed", "SMS_Delivered")
    assert await row_count(database, unmatched_reports) == 0


async def test_report_before_send_not_taken(database: Database) -> None:
    store = NotificationStore(database)
    # The SMSC gave the same id to an earlier message of another system.
    await store.write_outcomes(
        [], [report("R1", UNDELIVERED, "001")], now=NOW - timedelta(hours=23)
    )
    fresh, fresh_claimed = await claimed_order(store, "fresh")

    await store.write_outcomes(
        [replace(hand_off(fresh_claimed, "r1"), sent_at=NOW - timedelta(seconds=1))], [], now=NOW
    )

    assert await status_of(database, fresh) == ("Order_Processed", "SMS_Accepted")
    assert await row_count(database, unmatched_reports) == 1


async def test_report_during_send_taken(database: Database) -> None:
    store = NotificationStore(database)
    sent_at = NOW - timedelta(seconds=1)
    fresh, fresh_claimed = await claimed_order(store, "fresh")
    await store.write_outcomes([], [report("R1", DELIVERED)], now=sent_at)

    await store.write_outcomes(
        [replace(hand_off(fresh_claimed, "r1"), sent_at=sent_at)], [], now=NOW
    )

    assert await status_of(database, fresh) == ("Order_Completed", "SMS_Delivered")


async def test_day_old_unmatched_reports_pruned(database: Database) -> None:
    store = NotificationStore(database)
    stale = [report(f"OLD{index}", DELIVERED) for index in range(3)]
    await store.write_outcomes([], stale, now=NOW - timedelta(days=1, seconds=1))
    await store.write_outcomes([], [report("RECENT", DELIVERED)], now=NOW - timedelta(hours=23))

    first = await prune_unmatched_reports(database, now=NOW, batch=2)
    second = await prune_unmatched_reports(database, now=NOW, batch=2)

    assert (first, second) == (2, 1)
    async with database.read() as connection:
        remaining = (await connection.execute(select(unmatched_reports.c.ref_key))).scalars().all()
    assert remaining == ["RECENT"]


async def test_batch_skips_hand_off_of_lost_lease(database: Database) -> None:
    store = NotificationStore(database)
    later = NOW + LEASE + timedelta(seconds=1)
    lost, lost_claimed = await claimed_order(store, "lost", worker_id="slow")
    kept, kept_claimed = await claimed_order(store, "kept", now=later)
    [taken] = await store.claim_due(worker_id="fast", now=later, lease_until=later + LEASE, limit=5)

    results = await store.write_outcomes(
        [hand_off(lost_claimed, "l1"), hand_off(kept_claimed, "k1"), hand_off(kept_claimed, "k2")],
        [report("L1", DELIVERED)],
        now=later,
    )

    assert taken.id == lost.notification_ids[0]
    assert results.recorded == [False, True, False]
    assert results.matched == [None]
    assert await status_of(database, kept) == ("Order_Processed", "SMS_Accepted")
    assert await status_of(database, lost) == ("Order_Processed", "SMS_Sending")
    async with database.read() as connection:
        refs = (await connection.execute(select(provider_parts.c.provider_ref))).scalars().all()
    assert refs == ["k1"]


async def test_batch_sends_reused_id_to_waiting_message_first(database: Database) -> None:
    store = NotificationStore(database)
    old, old_claimed = await claimed_order(store, "old")
    later = NOW + timedelta(seconds=5)
    new, new_claimed = await claimed_order(store, "new", now=later)
    await store.write_outcomes([hand_off(old_claimed, "dup")], [], now=NOW)
    await store.write_outcomes([hand_off(new_claimed, "dup")], [], now=later)

    results = await store.write_outcomes(
        [], [report("DUP", DELIVERED), report("DUP", UNDELIVERED, "004")], now=later
    )

    # Each report goes to the newest message still waiting for one.
    assert results.matched == [new.notification_ids[0], old.notification_ids[0]]
    assert await status_of(database, new) == ("Order_Completed", "SMS_Delivered")
    assert await status_of(database, old) == ("Order_Completed", "SMS_Failed_Undelivered")


async def test_batch_writes_webhook_events_in_order(database: Database) -> None:
    await create_endpoint(database, creator="ttd", url="https://hooks.example.com/b", now=NOW)
    store = NotificationStore(database)
    first, first_claimed = await claimed_order(store, "first")
    second, second_claimed = await claimed_order(store, "second")

    await store.write_outcomes(
        [hand_off(first_claimed, "w1"), hand_off(second_claimed, "w2")],
        [report("W2", DELIVERED), report("W1", DELIVERED)],
        now=NOW,
    )

    async with database.read() as connection:
        rows = (
            await connection.execute(select(webhook_deliveries).order_by(webhook_deliveries.c.id))
        ).all()
    by_order: dict[str, list[str]] = {}
    for row in rows:
        by_order.setdefault(str(row.order_id), []).append(json.loads(row.payload)["status"])
    for receipt in (first, second):
        assert by_order[str(receipt.order_id)] == [
            "SMS_New",
            "SMS_Sending",
            "SMS_Accepted",
            "SMS_Delivered",
            "Order_Completed",
        ]


async def test_batch_failure_rolls_back_every_item(database: Database) -> None:
    store = NotificationStore(database)
    good, good_claimed = await claimed_order(store, "good")
    bad, bad_claimed = await claimed_order(store, "bad")
    async with database.write() as connection:
        # A part row left over for the bad notification makes its insert fail.
        await connection.execute(
            insert(provider_parts).values(
                notification_id=bad_claimed.id, part_index=0, provider_ref="x", status=None
            )
        )

    with pytest.raises(IntegrityError):
        await store.write_outcomes(
            [hand_off(good_claimed, "g1"), hand_off(bad_claimed, "x")],
            [report("G1", DELIVERED)],
            now=NOW,
        )

    assert await status_of(database, good) == ("Order_Processed", "SMS_Sending")
    assert await status_of(database, bad) == ("Order_Processed", "SMS_Sending")
    assert await row_count(database, unmatched_reports) == 0
