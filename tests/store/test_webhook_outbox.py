"""The webhook outbox on SQLite and PostgreSQL: one event row per status change and target,
claims in shipment order under a lease, failures, disabling and the purge."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from budstikke.domain.request_fields import RequestValidationError
from budstikke.domain.statuses import Channel, NotificationStatus
from budstikke.store.database import Database
from budstikke.store.notifications import NotificationStore, PartReference
from budstikke.store.orders import create_instant_order
from budstikke.store.records import NewNotification, OrderReceipt
from budstikke.store.tables import order_callbacks, webhook_deliveries, webhook_endpoints
from budstikke.store.webhook_deliveries import (
    claim_due,
    list_deliveries,
    purge_deliveries,
    record_delivered,
    record_failed_attempt,
)
from budstikke.store.webhook_endpoints import (
    WebhookEndpointConflictError,
    create_endpoint,
    enable_endpoint,
    get_endpoint,
    list_endpoints,
    remove_endpoint,
    rotate_secret,
)
from budstikke.store.webhook_events import forget_creator, with_sequence_number

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
URL = "https://hooks.example.com/budstikke"


async def new_order(
    database: Database, key: str, *, creator: str = "ttd", callback_url: str | None = None
) -> OrderReceipt:
    return await create_instant_order(
        database,
        creator=creator,
        idempotency_id=key,
        senders_reference="ref-" + key,
        notification=NewNotification(
            channel=Channel.SMS,
            recipient="+4799999999",
            sender="Kommune",
            body="Kode 1234",
            ttl_s=300,
        ),
        now=NOW,
        callback_url=callback_url,
    )


async def events(database: Database) -> list[dict[str, Any]]:
    async with database.read() as connection:
        rows = (
            await connection.execute(select(webhook_deliveries).order_by(webhook_deliveries.c.id))
        ).all()
    return [{**row._asdict(), "body": json.loads(row.payload)} for row in rows]


async def test_each_change_writes_one_event(database: Database) -> None:
    await create_endpoint(database, creator="ttd", url=URL, now=NOW)
    store = NotificationStore(database)
    receipt = await new_order(database, "a")
    notification_id = receipt.notification_ids[0]

    claimed = await store.claim(notification_id, worker_id="w", now=NOW, lease_until=NOW + LEASE)
    assert claimed is not None
    await store.reschedule(claimed, due_at=NOW, error="busy", outcome_unknown=False, now=NOW)
    [again] = await store.claim_due(worker_id="w", now=NOW, lease_until=NOW + LEASE, limit=5)
    await store.record_hand_off(
        again,
        status=NotificationStatus.SMS_ACCEPTED,
        parts=[PartReference(provider_ref="ref-1", keys=("ref-1",))],
        now=NOW,
    )
    await store.apply_report(
        ["ref-1"], status=NotificationStatus.SMS_DELIVERED, error_code=None, now=NOW
    )

    stored = await events(database)
    assert [row["body"]["status"] for row in stored] == [
        "SMS_New",
        "SMS_Sending",
        "SMS_New",
        "SMS_Sending",
        "SMS_Accepted",
        "SMS_Delivered",
        "Order_Completed",
    ]
    assert [row["body"]["type"] for row in stored][-2:] == [
        "notification.status_changed",
        "order.status_changed",
    ]
    assert {row["body"]["shipmentId"] for row in stored} == {str(receipt.shipment_id)}
    assert {row["body"]["sendersReference"] for row in stored} == {"ref-a"}
    assert all(row["state"] == "pending" and row["url"] == URL for row in stored)
    assert len({row["message_id"] for row in stored}) == len(stored)


async def test_failure_and_expiry_write_events(database: Database) -> None:
    await create_endpoint(database, creator="ttd", url=URL, now=NOW)
    store = NotificationStore(database)
    failed = await new_order(database, "failed")
    expired = await new_order(database, "expired")

    claimed = await store.claim(
        failed.notification_ids[0], worker_id="w", now=NOW, lease_until=NOW + LEASE
    )
    assert claimed is not None
    await store.fail(
        claimed, status=NotificationStatus.SMS_FAILED_INVALID_RECIPIENT, error="bad", now=NOW
    )
    await store.expire_overdue(NOW + timedelta(seconds=301))

    by_shipment: dict[str, list[str]] = {}
    for row in await events(database):
        by_shipment.setdefault(row["body"]["shipmentId"], []).append(row["body"]["status"])
    assert by_shipment[str(failed.shipment_id)] == [
        "SMS_New",
        "SMS_Sending",
        "SMS_Failed_InvalidRecipient",
        "Order_Completed",
    ]
    assert by_shipment[str(expired.shipment_id)] == ["SMS_New", "SMS_Failed_TTL", "Order_Completed"]


async def test_no_event_without_enabled_endpoint(database: Database) -> None:
    await new_order(database, "none")
    endpoint, _secret = await create_endpoint(database, creator="other", url=URL, now=NOW)
    await new_order(database, "still-none")
    async with database.write() as connection:
        await connection.execute(
            update(webhook_endpoints)
            .where(webhook_endpoints.c.id == endpoint.id)
            .values(enabled=False, creator="ttd")
        )
    forget_creator(database.engine, "ttd")
    await new_order(database, "disabled")

    assert await events(database) == []


async def test_one_row_per_endpoint_and_callback(database: Database) -> None:
    first, _ = await create_endpoint(database, creator="ttd", url=URL, now=NOW)
    second, _ = await create_endpoint(
        database, creator="ttd", url="https://other.example.com/x", now=NOW
    )

    await new_order(database, "a", callback_url=URL + "/orders/a")

    stored = await events(database)
    assert sorted((row["endpoint_id"], row["url"], row["is_callback"]) for row in stored) == sorted(
        [
            (first.id, URL, False),
            (second.id, "https://other.example.com/x", False),
            (first.id, URL + "/orders/a", True),
        ]
    )


async def test_callback_picks_the_longest_endpoint_path(database: Database) -> None:
    await create_endpoint(database, creator="ttd", url="https://hooks.example.com", now=NOW)
    deeper, _ = await create_endpoint(database, creator="ttd", url=URL, now=NOW)

    receipt = await new_order(database, "a", callback_url=URL + "/x")

    async with database.read() as connection:
        row = (
            await connection.execute(
                select(order_callbacks).where(order_callbacks.c.order_id == receipt.order_id)
            )
        ).one()
    assert row.endpoint_id == deeper.id


async def test_unmatched_callback_stores_nothing(database: Database) -> None:
    await create_endpoint(database, creator="other", url=URL, now=NOW)

    with pytest.raises(RequestValidationError) as raised:
        await new_order(database, "a", callback_url=URL + "/x")

    assert list(raised.value.errors) == ["callbackUrl"]
    assert await events(database) == []
    async with database.read() as connection:
        assert (await connection.execute(select(order_callbacks))).all() == []


async def test_claim_waits_for_earlier_event_of_shipment(database: Database) -> None:
    await create_endpoint(database, creator="ttd", url=URL, now=NOW)
    store = NotificationStore(database)
    first = await new_order(database, "a")
    second = await new_order(database, "b")
    await store.claim(first.notification_ids[0], worker_id="w", now=NOW, lease_until=NOW + LEASE)

    claimed = await claim_due(database, worker_id="d1", now=NOW, lease_until=NOW + LEASE, limit=10)
    again = await claim_due(database, worker_id="d2", now=NOW, lease_until=NOW + LEASE, limit=10)
    delivered = await record_delivered(database, claimed[0], now=NOW)
    after_first = await claim_due(
        database, worker_id="d2", now=NOW, lease_until=NOW + LEASE, limit=10
    )

    # One event per shipment at a time: shipment a's New, shipment b's New.
    assert [json.loads(item.payload)["shipmentId"] for item in claimed] == [
        str(first.shipment_id),
        str(second.shipment_id),
    ]
    assert again == []
    assert delivered
    assert [json.loads(item.payload)["status"] for item in after_first] == ["SMS_Sending"]


async def test_claim_keeps_endpoint_and_creator_shares(database: Database) -> None:
    first_endpoint, _ = await create_endpoint(database, creator="ttd", url=URL, now=NOW)
    second_endpoint, _ = await create_endpoint(
        database, creator="ttd", url=URL + "/second", now=NOW
    )
    other_endpoint, _ = await create_endpoint(database, creator="nav", url=URL, now=NOW)
    for key in "abcd":
        await new_order(database, key)
    await new_order(database, "other", creator="nav")

    def claim(worker_id: str) -> Any:
        return claim_due(
            database,
            worker_id=worker_id,
            now=NOW,
            lease_until=NOW + LEASE,
            limit=10,
            per_endpoint=3,
            per_creator=3,
        )

    first = await claim("d1")
    second = await claim("d2")
    delivered = await record_delivered(database, first[0], now=NOW)
    after_delivery = await claim("d2")

    # Events of both ttd endpoints alternate by id, so the creator's share ends at 2 and 1.
    per_endpoint = [item.endpoint_id for item in first]
    assert per_endpoint.count(first_endpoint.id) == 2
    assert per_endpoint.count(second_endpoint.id) == 1
    assert per_endpoint.count(other_endpoint.id) == 1
    assert second == []
    assert delivered
    assert [item.creator for item in after_delivery] == ["ttd"]


async def test_claim_per_endpoint_limit_alone(database: Database) -> None:
    first_endpoint, _ = await create_endpoint(database, creator="ttd", url=URL, now=NOW)
    second_endpoint, _ = await create_endpoint(
        database, creator="ttd", url=URL + "/second", now=NOW
    )
    for key in "abcd":
        await new_order(database, key)

    claimed = await claim_due(
        database, worker_id="w", now=NOW, lease_until=NOW + LEASE, limit=10, per_endpoint=2
    )

    per_endpoint = [item.endpoint_id for item in claimed]
    assert per_endpoint.count(first_endpoint.id) == 2
    assert per_endpoint.count(second_endpoint.id) == 2


async def test_claim_shares_apply_per_call(database: Database) -> None:
    endpoint, _ = await create_endpoint(database, creator="ttd", url=URL, now=NOW)
    for key in "abcd":
        await new_order(database, key)

    first = await claim_due(
        database, worker_id="w1", now=NOW, lease_until=NOW + LEASE, limit=10, per_endpoint=1
    )
    # One delivery is in flight, so a share of 3 leaves room for two more.
    second = await claim_due(
        database, worker_id="w2", now=NOW, lease_until=NOW + LEASE, limit=10, per_endpoint=3
    )

    assert [item.endpoint_id for item in first] == [endpoint.id]
    assert [item.endpoint_id for item in second] == [endpoint.id, endpoint.id]


async def test_claim_takes_at_most_the_limit(database: Database) -> None:
    await create_endpoint(database, creator="ttd", url=URL, now=NOW)
    for key in "abcd":
        await new_order(database, key)

    first = await claim_due(database, worker_id="w", now=NOW, lease_until=NOW + LEASE, limit=3)
    second = await claim_due(database, worker_id="w", now=NOW, lease_until=NOW + LEASE, limit=3)

    assert len(first) == 3
    assert len(second) == 1


async def test_expired_lease_is_claimed_again(database: Database) -> None:
    await create_endpoint(database, creator="ttd", url=URL, now=NOW)
    await new_order(database, "a")
    [claimed] = await claim_due(
        database, worker_id="dead", now=NOW, lease_until=NOW + LEASE, limit=1
    )

    later = NOW + LEASE + timedelta(seconds=1)
    [again] = await claim_due(
        database, worker_id="d2", now=later, lease_until=later + LEASE, limit=1
    )
    late = await record_delivered(database, claimed, now=later)

    assert again.id == claimed.id
    assert again.attempts == 2
    assert again.first_attempt_at == NOW
    assert late is False


async def test_claim_carries_valid_secrets(database: Database) -> None:
    endpoint, old_secret = await create_endpoint(database, creator="ttd", url=URL, now=NOW)
    rotated = await rotate_secret(database, endpoint.id, creator="ttd", keep_previous_s=60, now=NOW)
    assert rotated is not None
    _endpoint, new_secret = rotated
    await new_order(database, "a")
    await new_order(database, "b")

    [during, *_] = await claim_due(
        database, worker_id="w", now=NOW, lease_until=NOW + LEASE, limit=1
    )
    later = NOW + timedelta(seconds=61)
    [after] = await claim_due(
        database, worker_id="w", now=later, lease_until=later + LEASE, limit=1
    )

    assert during.secrets == (new_secret, old_secret)
    assert after.secrets == (new_secret,)


async def test_failure_schedules_retry_and_pauses(database: Database) -> None:
    endpoint, _ = await create_endpoint(database, creator="ttd", url=URL, now=NOW)
    for key in "abcde":
        await new_order(database, key)
    claimed = await claim_due(database, worker_id="w", now=NOW, lease_until=NOW + LEASE, limit=5)

    outcomes = [
        await record_failed_attempt(
            database,
            item,
            error="HTTP 500",
            status_code=500,
            retry_at=NOW + timedelta(seconds=5),
            now=NOW,
        )
        for item in claimed
    ]
    paused = await claim_due(
        database,
        worker_id="w",
        now=NOW + timedelta(seconds=5),
        lease_until=NOW + LEASE,
        limit=5,
    )
    stored = await get_endpoint(database, endpoint.id, creator="ttd", now=NOW)

    assert [outcome.endpoint_paused_until for outcome in outcomes[:4]] == [None] * 4
    assert outcomes[4].endpoint_paused_until == NOW + timedelta(seconds=5)
    assert paused == [] or all(item.attempts == 2 for item in paused)
    assert stored is not None
    assert stored.failing_since == NOW
    assert stored.pending_deliveries == 5


async def test_failing_a_day_disables_and_fails_pending(database: Database) -> None:
    endpoint, _ = await create_endpoint(database, creator="ttd", url=URL, now=NOW)
    store = NotificationStore(database)
    receipt = await new_order(database, "a")
    await store.claim(receipt.notification_ids[0], worker_id="w", now=NOW, lease_until=NOW + LEASE)
    [first] = await claim_due(database, worker_id="w", now=NOW, lease_until=NOW + LEASE, limit=5)
    await record_failed_attempt(
        database, first, error="HTTP 500", status_code=500, retry_at=NOW, now=NOW
    )

    day = NOW + timedelta(hours=24)
    [retried] = await claim_due(database, worker_id="w", now=day, lease_until=day + LEASE, limit=5)
    outcome = await record_failed_attempt(
        database, retried, error="HTTP 500", status_code=500, retry_at=None, now=day
    )
    failed = await list_deliveries(database, endpoint.id, state="failed", limit=10)
    stored = await get_endpoint(database, endpoint.id, creator="ttd", now=day)
    await new_order(database, "after")

    assert outcome.endpoint_disabled
    assert [item.last_error for item in failed] == ["endpoint disabled", "HTTP 500"]
    assert [item.status for item in failed] == ["SMS_Sending", "SMS_New"]
    assert stored is not None
    assert not stored.enabled
    assert stored.disabled_reason == "failed without a success for 24 hours"
    assert len(await events(database)) == 2

    enabled = await enable_endpoint(database, endpoint.id, creator="ttd", now=day)
    await new_order(database, "enabled")

    assert enabled is not None
    assert enabled.enabled
    assert enabled.failing_since is None
    assert len(await events(database)) == 3


async def test_endpoints_belong_to_their_creator(database: Database) -> None:
    endpoint, _ = await create_endpoint(database, creator="ttd", url=URL, now=NOW)

    assert await get_endpoint(database, endpoint.id, creator="other", now=NOW) is None
    assert await list_endpoints(database, creator="other", now=NOW) == []
    assert await enable_endpoint(database, endpoint.id, creator="other", now=NOW) is None
    assert (
        await rotate_secret(database, endpoint.id, creator="other", keep_previous_s=0, now=NOW)
        is None
    )
    assert not await remove_endpoint(database, endpoint.id, creator="other")
    assert await remove_endpoint(database, endpoint.id, creator="ttd")
    assert await get_endpoint(database, endpoint.id, creator=None, now=NOW) is None


async def test_duplicate_and_too_many_endpoints(database: Database) -> None:
    await create_endpoint(database, creator="ttd", url=URL, now=NOW)

    with pytest.raises(WebhookEndpointConflictError, match="already has an endpoint"):
        await create_endpoint(database, creator="ttd", url=URL, now=NOW)
    for index in range(9):
        await create_endpoint(database, creator="ttd", url=f"{URL}/{index}", now=NOW)
    with pytest.raises(WebhookEndpointConflictError, match="the maximum"):
        await create_endpoint(database, creator="ttd", url=f"{URL}/10", now=NOW)
    await create_endpoint(database, creator="other", url=URL, now=NOW)


async def test_remove_deletes_deliveries(database: Database) -> None:
    endpoint, _ = await create_endpoint(database, creator="ttd", url=URL, now=NOW)
    await new_order(database, "a")

    await remove_endpoint(database, endpoint.id, creator=None)

    assert await events(database) == []


async def test_purge_drops_old_failures_and_orphans(database: Database) -> None:
    endpoint, _ = await create_endpoint(database, creator="ttd", url=URL, now=NOW)
    await new_order(database, "old")
    await new_order(database, "recent")
    await new_order(database, "orphan")
    rows = await events(database)
    async with database.write() as connection:
        await connection.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == rows[0]["id"])
            .values(state="failed", failed_at=NOW - timedelta(days=31))
        )
        await connection.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == rows[1]["id"])
            .values(state="failed", failed_at=NOW - timedelta(days=29))
        )
        await connection.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == rows[2]["id"])
            .values(endpoint_id=uuid.uuid4())
        )

    purged = await purge_deliveries(database, now=NOW)

    assert purged == 2
    assert [row["id"] for row in await events(database)] == [rows[1]["id"]]
    assert endpoint.id == rows[1]["endpoint_id"]


def test_sequence_number_is_appended_last() -> None:
    body = with_sequence_number('{"type":"x","status":"SMS_New"}', 42)

    assert body == b'{"type":"x","status":"SMS_New","sequenceNumber":42}'


async def test_sequence_numbers_never_repeat_after_delivery(database: Database) -> None:
    # A delivered event's row is deleted, so an emptied table must not hand
    # its numbers out again.
    await create_endpoint(database, creator="ttd", url=URL, now=NOW)
    await new_order(database, "first")
    first_ids = [row["id"] for row in await events(database)]
    for claimed in await claim_due(
        database, worker_id="w", now=NOW, lease_until=NOW + LEASE, limit=10
    ):
        assert await record_delivered(database, claimed, now=NOW)
    assert await events(database) == []

    await new_order(database, "second")
    second_ids = [row["id"] for row in await events(database)]

    assert first_ids
    assert min(second_ids) > max(first_ids)
