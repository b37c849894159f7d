"""Webhook deliveries end to end: orders through the API, events to a real HTTP receiver on
loopback (allow-listed), signed, in order, retried, surviving a restart, on both databases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from budstikke.config import Settings
from budstikke.store.webhook_endpoints import create_endpoint
from tests.api.orders import EMAIL_PATH, SMS_PATH, email_order, sms_order
from tests.api.regular import ORDERS_PATH, regular_order
from tests.api.regular import place as place_regular
from tests.conftest import API, FakeClock, RunningApp, run_app, wait_for
from tests.webhook_receiver import ReceivedRequest, Receiver, Reply, verify_signature

WEBHOOKS = f"{API}/webhooks"
# The statuses a file-outbox SMS goes through: stored claimed, delivered, order completed.
SMS_STATUSES = ["SMS_Sending", "SMS_Delivered", "Order_Completed"]


def webhook_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(
        update={
            "webhook_allow_http": True,
            "webhook_allowed_networks": "127.0.0.1/32",
            # Generous, so that a loaded test machine causes no spurious timeouts.
            "webhook_timeout_s": 3.0,
            "worker_poll_interval_s": 0.05,
            **changes,
        }
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as running:
        yield running


async def register(app: RunningApp, url: str, key: str | None = None) -> tuple[str, str]:
    response = await app.client.post(WEBHOOKS, json={"url": url}, headers=app.headers(key))
    assert response.status_code == 201, response.text
    body = response.json()
    return body["id"], body["secret"]


async def place_sms(app: RunningApp, **fields: Any) -> str:
    order = sms_order()
    order.update(fields)
    response = await app.client.post(SMS_PATH, json=order, headers=app.headers())
    assert response.status_code == 201, response.text
    return str(response.json()["notification"]["shipmentId"])


async def deliveries(app: RunningApp, endpoint_id: str, state: str) -> list[dict[str, Any]]:
    response = await app.client.get(
        f"{WEBHOOKS}/{endpoint_id}/deliveries", params={"state": state}, headers=app.headers()
    )
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


async def wait_for_pending_attempt(app: RunningApp, endpoint_id: str, attempts: int) -> None:
    async def recorded() -> bool:
        pending = await deliveries(app, endpoint_id, "pending")
        return any(item["attempts"] >= attempts and item["lastError"] for item in pending)

    await wait_for(recorded)


def wake_webhooks(app: RunningApp) -> None:
    dispatcher = app.app.state.services.dispatcher
    assert dispatcher.webhooks is not None
    dispatcher.webhooks.wake()


def failure_count(app: RunningApp, reason: str) -> float | None:
    registry = app.app.state.metrics.registry
    value: float | None = registry.get_sample_value(
        "budstikke_webhook_failures_total", {"reason": reason}
    )
    return value


def statuses(requests: list[ReceivedRequest]) -> list[str]:
    return [request.json()["status"] for request in requests]


async def test_events_are_signed_and_in_order(settings: Settings, receiver: Receiver) -> None:
    async with run_app(webhook_settings(settings)) as app:
        _endpoint_id, secret = await register(app, receiver.url())
        shipment_id = await place_sms(app, sendersReference="case-1")

        requests = await receiver.wait_for_requests(3)

    assert statuses(requests) == SMS_STATUSES
    first = requests[0].json()
    assert list(first) == [
        "type",
        "shipmentId",
        "sendersReference",
        "status",
        "recipient",
        "lastUpdate",
        "sequenceNumber",
    ]
    assert first["type"] == "notification.status_changed"
    assert first["shipmentId"] == shipment_id
    assert first["sendersReference"] == "case-1"
    assert first["recipient"] == {"type": "SMS", "destination": "+4799999999"}
    assert first["lastUpdate"].endswith("Z")
    last = requests[2].json()
    assert last["type"] == "order.status_changed"
    assert last["recipient"] == {"type": "SMS", "destination": "+4799999999"}
    sequence_numbers = [request.json()["sequenceNumber"] for request in requests]
    assert sequence_numbers == sorted(sequence_numbers)
    assert len(set(sequence_numbers)) == 3
    assert len({request.headers["webhook-id"] for request in requests}) == 3
    for request in requests:
        assert verify_signature(request, secret)
        assert request.headers["content-type"] == "application/json"
        assert request.headers["webhook-timestamp"].isdigit()


async def test_event_carries_no_secret_or_body(settings: Settings, receiver: Receiver) -> None:
    async with run_app(webhook_settings(settings)) as app:
        _endpoint_id, secret = await register(app, receiver.url())
        order = email_order(body="Your code is 482913.", subject="Code 482913")
        response = await app.client.post(EMAIL_PATH, json=order, headers=app.headers())
        assert response.status_code == 201

        requests = await receiver.wait_for_requests(3)

    for request in requests:
        text = request.body.decode()
        assert "482913" not in text
        assert secret.removeprefix("whsec_") not in text
        assert secret.removeprefix("whsec_") not in json.dumps(request.headers)
    assert requests[0].json()["recipient"] == {
        "type": "Email",
        "destination": "ola.nordmann@example.com",
    }


async def test_no_events_without_endpoint(settings: Settings, receiver: Receiver) -> None:
    async with run_app(webhook_settings(settings)) as app:
        await place_sms(app)
        other_key = await app.new_key("other")
        await register(app, receiver.url(), key=other_key)
        await place_sms(app)
        endpoints = await app.client.get(WEBHOOKS, headers=app.headers(other_key))

    assert receiver.requests == []
    assert endpoints.json()[0]["pendingDeliveries"] == 0


async def test_server_error_is_retried_in_order(settings: Settings, receiver: Receiver) -> None:
    receiver.reply(Reply(status=500))
    clock = FakeClock()
    async with run_app(webhook_settings(settings), clock=clock) as app:
        endpoint_id, secret = await register(app, receiver.url())
        await place_sms(app)
        await wait_for_pending_attempt(app, endpoint_id, 1)
        pending = await deliveries(app, endpoint_id, "pending")

        # The later events of the shipment wait behind the failed one.
        assert len(receiver.requests) == 1
        clock.advance(10)
        wake_webhooks(app)
        requests = await receiver.wait_for_requests(4)
        failures = failure_count(app, "http_status")

    assert failures == 1
    failed = [item for item in pending if item["lastError"]]
    assert failed[0]["lastError"] == "HTTP 500"
    assert failed[0]["lastStatusCode"] == 500
    assert failed[0]["attempts"] == 1
    assert statuses(requests) == [SMS_STATUSES[0], *SMS_STATUSES]
    assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"]
    assert requests[0].body == requests[1].body
    assert int(requests[1].headers["webhook-timestamp"]) >= (
        int(requests[0].headers["webhook-timestamp"]) + 10
    )
    assert all(verify_signature(request, secret) for request in requests)


async def test_timeout_is_retried(settings: Settings, receiver: Receiver) -> None:
    receiver.reply(Reply(delay_s=2.0))
    clock = FakeClock()
    async with run_app(webhook_settings(settings, webhook_timeout_s=0.5), clock=clock) as app:
        endpoint_id, _secret = await register(app, receiver.url())
        await place_sms(app)
        await wait_for_pending_attempt(app, endpoint_id, 1)
        pending = await deliveries(app, endpoint_id, "pending")
        # On a busy machine a retry can also outlast the 0.5 s limit, so the
        # clock moves on until the retries have gone through.
        for _ in range(20):
            clock.advance(10)
            wake_webhooks(app)
            with contextlib.suppress(AssertionError):
                await receiver.wait_for_requests(4, timeout_s=0.5)
                break
        requests = await receiver.wait_for_requests(4)
        failures = failure_count(app, "timeout")

    assert failures >= 1
    assert [item["lastError"] for item in pending if item["lastError"]] == ["timed out after 0.5 s"]
    assert statuses(requests) == [SMS_STATUSES[0], *SMS_STATUSES]


async def test_retry_schedule_survives_restart(settings: Settings, receiver: Receiver) -> None:
    receiver.reply(Reply(status=503))
    configured = webhook_settings(settings)
    clock = FakeClock()
    async with run_app(configured, clock=clock) as app:
        endpoint_id, secret = await register(app, receiver.url())
        await place_sms(app)
        await wait_for_pending_attempt(app, endpoint_id, 1)
    assert len(receiver.requests) == 1

    clock.advance(10)
    async with run_app(configured, clock=clock) as app:
        requests = await receiver.wait_for_requests(4)
        left = await deliveries(app, endpoint_id, "pending")

    assert statuses(requests) == [SMS_STATUSES[0], *SMS_STATUSES]
    assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"]
    assert all(verify_signature(request, secret) for request in requests)
    assert left == []


async def test_rotation_signs_with_both_secrets(settings: Settings, receiver: Receiver) -> None:
    async with run_app(webhook_settings(settings)) as app:
        endpoint_id, old_secret = await register(app, receiver.url())
        rotated = await app.client.post(
            f"{WEBHOOKS}/{endpoint_id}/rotate-secret",
            json={"keepPreviousForSeconds": 3600},
            headers=app.headers(),
        )
        new_secret = rotated.json()["secret"]
        await place_sms(app)
        requests = await receiver.wait_for_requests(3)

    assert rotated.status_code == 200
    assert rotated.json()["previousSecretExpiresAt"] is not None
    assert new_secret != old_secret
    for request in requests:
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        assert verify_signature(request, new_secret)
        assert verify_signature(request, old_secret)


async def test_rotation_without_grace_drops_old_secret(
    settings: Settings, receiver: Receiver
) -> None:
    async with run_app(webhook_settings(settings)) as app:
        endpoint_id, old_secret = await register(app, receiver.url())
        rotated = await app.client.post(
            f"{WEBHOOKS}/{endpoint_id}/rotate-secret",
            json={"keepPreviousForSeconds": 0},
            headers=app.headers(),
        )
        new_secret = rotated.json()["secret"]
        await place_sms(app)
        requests = await receiver.wait_for_requests(3)

    assert rotated.json()["previousSecretExpiresAt"] is None
    for request in requests:
        assert len(request.headers["webhook-signature"].split(" ")) == 1
        assert verify_signature(request, new_secret)
        assert not verify_signature(request, old_secret)


async def test_previous_secret_expires(settings: Settings, receiver: Receiver) -> None:
    clock = FakeClock()
    async with run_app(webhook_settings(settings), clock=clock) as app:
        endpoint_id, old_secret = await register(app, receiver.url())
        await app.client.post(
            f"{WEBHOOKS}/{endpoint_id}/rotate-secret",
            json={"keepPreviousForSeconds": 60},
            headers=app.headers(),
        )
        # The API's rotation uses the wall clock; the delivery loop's clock is
        # moved past the previous secret's end.
        clock.advance(3600)
        await place_sms(app)
        requests = await receiver.wait_for_requests(3)

    for request in requests:
        assert len(request.headers["webhook-signature"].split(" ")) == 1
        assert not verify_signature(request, old_secret)


async def test_rejected_address_fails_event_at_once(settings: Settings, receiver: Receiver) -> None:
    configured = webhook_settings(settings, webhook_allowed_networks="10.99.0.0/16")
    async with run_app(configured) as app:
        # Registration rejects localhost, so the endpoint is stored directly,
        # as a name whose DNS answer changed after registration would be.
        endpoint, _secret = await create_endpoint(
            app.database, creator="ttd", url=receiver.url(host="localhost"), now=datetime.now(UTC)
        )
        endpoint_id = str(endpoint.id)
        shipment_id = await place_sms(app)

        async def all_failed() -> bool:
            return len(await deliveries(app, endpoint_id, "failed")) == len(SMS_STATUSES)

        await wait_for(all_failed)
        failed = await deliveries(app, endpoint_id, "failed")
        pending = await deliveries(app, endpoint_id, "pending")
        rejections = failure_count(app, "refused")

    # Each event failed on its first attempt: a rejected address is not retried.
    assert pending == []
    assert [item["shipmentId"] for item in failed] == [shipment_id] * len(SMS_STATUSES)
    assert [item["attempts"] for item in failed] == [1] * len(SMS_STATUSES)
    assert all(item["failedAt"] for item in failed)
    assert all("localhost resolves to" in item["lastError"] for item in failed)
    assert all("a loopback address" in item["lastError"] for item in failed)
    assert all("BUDSTIKKE_WEBHOOK_ALLOWED_NETWORKS" in item["lastError"] for item in failed)
    assert rejections == len(SMS_STATUSES)
    assert receiver.connections == 0


async def test_failing_for_a_day_fails_events_and_disables(
    settings: Settings, receiver: Receiver
) -> None:
    receiver.reply(*[Reply(status=500)] * 200)
    clock = FakeClock()
    async with run_app(webhook_settings(settings), clock=clock) as app:
        endpoint_id, _secret = await register(app, receiver.url())
        shipment_id = await place_sms(app)
        await wait_for_pending_attempt(app, endpoint_id, 1)
        attempts = 1
        for _step in range(30):
            clock.advance(3600)
            wake_webhooks(app)
            attempts += 1

            async def attempted(count: int = attempts) -> bool:
                endpoint = (
                    await app.client.get(f"{WEBHOOKS}/{endpoint_id}", headers=app.headers())
                ).json()
                if not endpoint["enabled"]:
                    return True
                # Claiming counts the attempt; a later retry time shows its failure was stored.
                pending = await deliveries(app, endpoint_id, "pending")
                return any(
                    item["attempts"] >= count
                    and datetime.fromisoformat(item["nextAttemptAt"]) > clock.now
                    for item in pending
                )

            await wait_for(attempted)
            endpoint = (
                await app.client.get(f"{WEBHOOKS}/{endpoint_id}", headers=app.headers())
            ).json()
            if not endpoint["enabled"]:
                break
        failed = await deliveries(app, endpoint_id, "failed")
        pending = await deliveries(app, endpoint_id, "pending")
        enabled = await app.client.post(f"{WEBHOOKS}/{endpoint_id}/enable", headers=app.headers())
        receiver.replies.clear()
        before = len(receiver.requests)
        await place_sms(app)
        requests_after = await receiver.wait_for_requests(before + 3)

    assert not endpoint["enabled"]
    assert endpoint["disabledReason"] == "failed without a success for 24 hours"
    assert pending == []
    assert [item["shipmentId"] for item in failed] == [shipment_id] * 3
    assert failed[-1]["status"] == "SMS_Sending"
    assert failed[-1]["attempts"] >= 20
    assert {item["lastError"] for item in failed[:-1]} == {"endpoint disabled"}
    assert enabled.status_code == 200
    assert enabled.json()["enabled"] is True
    assert statuses(requests_after[-3:]) == SMS_STATUSES


async def test_gone_disables_endpoint(settings: Settings, receiver: Receiver) -> None:
    receiver.reply(Reply(status=410))
    async with run_app(webhook_settings(settings)) as app:
        endpoint_id, _secret = await register(app, receiver.url())
        await place_sms(app)

        async def disabled() -> bool:
            response = await app.client.get(f"{WEBHOOKS}/{endpoint_id}", headers=app.headers())
            return response.json()["enabled"] is False

        await wait_for(disabled)
        endpoint = (await app.client.get(f"{WEBHOOKS}/{endpoint_id}", headers=app.headers())).json()
        failed = await deliveries(app, endpoint_id, "failed")

    assert endpoint["disabledReason"] == "the receiver answered 410 Gone"
    assert len(receiver.requests) == 1
    assert failed[-1]["lastError"] == "HTTP 410"


async def test_redirect_counts_as_failure(settings: Settings, receiver: Receiver) -> None:
    receiver.reply(Reply(status=307, headers=[("Location", receiver.url("/elsewhere"))]))
    async with run_app(webhook_settings(settings), clock=FakeClock()) as app:
        endpoint_id, _secret = await register(app, receiver.url())
        await place_sms(app)
        await wait_for_pending_attempt(app, endpoint_id, 1)
        pending = await deliveries(app, endpoint_id, "pending")

    assert [request.path for request in receiver.requests] == ["/hooks"]
    assert pending[-1]["lastError"].startswith("HTTP 307 (redirects are not followed")


async def test_callback_url_gets_the_order_events(settings: Settings, receiver: Receiver) -> None:
    async with run_app(webhook_settings(settings)) as app:
        _endpoint_id, secret = await register(app, receiver.url("/hooks"))
        shipment_id = await place_sms(app, callbackUrl=receiver.url("/hooks/login/7?x=1"))
        requests = await receiver.wait_for_requests(6)

    by_path: dict[str, list[ReceivedRequest]] = {}
    for request in requests:
        by_path.setdefault(request.path, []).append(request)
    assert statuses(by_path["/hooks"]) == SMS_STATUSES
    assert statuses(by_path["/hooks/login/7?x=1"]) == SMS_STATUSES
    assert all(request.json()["shipmentId"] == shipment_id for request in requests)
    assert all(verify_signature(request, secret) for request in requests)


@pytest.mark.parametrize("path", ["/other", "/hooks-other/x", "/hooks/../admin"])
async def test_callback_url_outside_endpoints_rejected(
    settings: Settings, receiver: Receiver, path: str
) -> None:
    async with run_app(webhook_settings(settings)) as app:
        await register(app, receiver.url("/hooks"))
        order = sms_order()
        order["callbackUrl"] = receiver.url(path)
        response = await app.client.post(SMS_PATH, json=order, headers=app.headers())
        without_callback = await app.client.post(SMS_PATH, json=sms_order(), headers=app.headers())

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["callbackUrl"]
    assert without_callback.status_code == 201


async def test_callback_url_needs_an_endpoint(settings: Settings, receiver: Receiver) -> None:
    async with run_app(webhook_settings(settings)) as app:
        order = sms_order()
        order["callbackUrl"] = receiver.url("/hooks/1")
        response = await app.client.post(SMS_PATH, json=order, headers=app.headers())
        other_key = await app.new_key("other")
        await register(app, receiver.url("/hooks"), key=other_key)
        again = await app.client.post(SMS_PATH, json=order, headers=app.headers())

    assert response.status_code == 400
    assert "registered webhook endpoint" in response.json()["errors"]["callbackUrl"][0]
    assert again.status_code == 400
    assert receiver.requests == []


async def test_regular_order_events_reach_callback(settings: Settings, receiver: Receiver) -> None:
    async with run_app(webhook_settings(settings)) as app:
        _endpoint_id, secret = await register(app, receiver.url("/hooks"))
        placed = await place_regular(
            app, regular_order(callbackUrl=receiver.url("/hooks/regular/1"))
        )
        requests = await receiver.wait_for_requests(8)

    by_path: dict[str, list[ReceivedRequest]] = {}
    for request in requests:
        by_path.setdefault(request.path, []).append(request)
    expected = ["SMS_New", "SMS_Sending", "SMS_Delivered", "Order_Completed"]
    assert statuses(by_path["/hooks"]) == expected
    assert statuses(by_path["/hooks/regular/1"]) == expected
    shipment_id = placed["notification"]["shipmentId"]
    assert {request.json()["shipmentId"] for request in requests} == {shipment_id}
    assert all(verify_signature(request, secret) for request in requests)


async def test_regular_order_callback_is_checked(settings: Settings, receiver: Receiver) -> None:
    async with run_app(webhook_settings(settings)) as app:
        await register(app, receiver.url("/hooks"))
        response = await app.client.post(
            ORDERS_PATH,
            json=regular_order(callbackUrl=receiver.url("/elsewhere")),
            headers=app.headers(),
        )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["callbackUrl"]


async def test_slow_endpoint_does_not_delay_others(settings: Settings) -> None:
    timeout_s = 3.0
    per_endpoint = 4
    async with (
        Receiver() as slow,
        Receiver() as fast,
        run_app(
            webhook_settings(
                settings, webhook_timeout_s=timeout_s, webhook_concurrency_per_endpoint=per_endpoint
            )
        ) as app,
    ):
        # Every request to the slow receiver outlasts the timeout.
        slow.reply(*[Reply(delay_s=timeout_s + 1) for _ in range(200)])
        await register(app, slow.url("/hooks"))
        for number in range(20):
            # Distinct recipients stay under the per-recipient limit.
            order = sms_order(phone=f"+479900{number:04d}")
            placed = await app.client.post(SMS_PATH, json=order, headers=app.headers())
            assert placed.status_code == 201, placed.text
        await slow.wait_for_requests(per_endpoint)
        other_key = await app.new_key("other")
        await register(app, fast.url("/hooks"), key=other_key)

        placed_at = time.monotonic()
        response = await app.client.post(SMS_PATH, json=sms_order(), headers=app.headers(other_key))
        assert response.status_code == 201, response.text
        [first, *_] = await fast.wait_for_requests(1)
        arrived_after_s = first.received_at - placed_at
        fast_requests = await fast.wait_for_requests(3)
        slow_requests = list(slow.requests)

    # Without a share per endpoint, the slow receiver's requests take every
    # slot, and the other creator's event waits for them to time out.
    assert arrived_after_s < timeout_s / 2
    assert statuses(fast_requests) == SMS_STATUSES
    first_slow = slow_requests[0].received_at
    before_timeout = [r for r in slow_requests if r.received_at < first_slow + timeout_s - 0.5]
    assert len(before_timeout) <= per_endpoint


async def test_deliveries_wait_for_instant_order(settings: Settings, receiver: Receiver) -> None:
    async with run_app(webhook_settings(settings)) as app:
        await register(app, receiver.url())
        instant_first = app.app.state.services.dispatcher.instant_first
        # Far longer than the test, so only the end of the instant order ends the wait.
        instant_first.max_wait_s = 60
        with instant_first.placing():
            # The order placed over the API goes through, but its events wait.
            await place_sms(app, sendersReference="case-1")
            wake_webhooks(app)
            await asyncio.sleep(0.5)

            assert receiver.requests == []

        requests = await receiver.wait_for_requests(3)

    assert statuses(requests) == SMS_STATUSES
