"""The webhook endpoint routes: register, list, read, remove, rotate, enable, deliveries,
validation, and that a creator sees only its own endpoints."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from budstikke.config import Settings
from tests.api.orders import SMS_PATH, sms_order
from tests.conftest import API, RunningApp, run_app

WEBHOOKS = f"{API}/webhooks"
# Never resolved or called: the app runs without its delivery loop.
URL = "https://hooks.example.com/budstikke"


@pytest.fixture
async def running_app(settings: Settings) -> AsyncIterator[RunningApp]:
    """The app without worker loops, so no webhook leaves the test."""
    async with run_app(settings, run_workers=False) as app:
        yield app


async def register(app: RunningApp, body: Any, key: str | None = None) -> Any:
    return await app.client.post(WEBHOOKS, json=body, headers=app.headers(key))


async def test_register_shows_secret_once(running_app: RunningApp) -> None:
    created = await register(running_app, {"url": URL})
    endpoint_id = created.json()["id"]
    listed = await running_app.client.get(WEBHOOKS, headers=running_app.headers())
    read = await running_app.client.get(f"{WEBHOOKS}/{endpoint_id}", headers=running_app.headers())

    assert created.status_code == 201
    assert created.headers["location"] == f"{WEBHOOKS}/{endpoint_id}"
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert body["url"] == URL
    assert body["enabled"] is True
    assert body["pendingDeliveries"] == 0
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()] == [endpoint_id]
    assert "secret" not in listed.json()[0]
    assert read.json() == listed.json()[0]
    assert body["secret"] not in listed.text + read.text


async def test_remove_endpoint(running_app: RunningApp) -> None:
    endpoint_id = (await register(running_app, {"url": URL})).json()["id"]

    removed = await running_app.client.delete(
        f"{WEBHOOKS}/{endpoint_id}", headers=running_app.headers()
    )
    again = await running_app.client.delete(
        f"{WEBHOOKS}/{endpoint_id}", headers=running_app.headers()
    )
    read = await running_app.client.get(f"{WEBHOOKS}/{endpoint_id}", headers=running_app.headers())

    assert removed.status_code == 204
    assert again.status_code == 404
    assert read.status_code == 404


async def test_other_creator_sees_nothing(running_app: RunningApp) -> None:
    endpoint_id = (await register(running_app, {"url": URL})).json()["id"]
    other = running_app.headers(await running_app.new_key("other"))

    listed = await running_app.client.get(WEBHOOKS, headers=other)
    answers = [
        await running_app.client.get(f"{WEBHOOKS}/{endpoint_id}", headers=other),
        await running_app.client.delete(f"{WEBHOOKS}/{endpoint_id}", headers=other),
        await running_app.client.post(f"{WEBHOOKS}/{endpoint_id}/rotate-secret", headers=other),
        await running_app.client.post(f"{WEBHOOKS}/{endpoint_id}/enable", headers=other),
        await running_app.client.get(f"{WEBHOOKS}/{endpoint_id}/deliveries", headers=other),
    ]
    still_there = await running_app.client.get(
        f"{WEBHOOKS}/{endpoint_id}", headers=running_app.headers()
    )

    assert listed.json() == []
    assert [answer.status_code for answer in answers] == [404] * 5
    assert all(answer.json()["title"] == "Webhook endpoint not found" for answer in answers)
    assert still_there.status_code == 200


@pytest.mark.parametrize("path", ["/not-a-uuid", "/00000000-0000-0000-0000-000000000000"])
async def test_unknown_id_is_not_found(running_app: RunningApp, path: str) -> None:
    response = await running_app.client.get(f"{WEBHOOKS}{path}", headers=running_app.headers())

    assert response.status_code == 404


async def test_routes_need_credentials(running_app: RunningApp) -> None:
    unauthenticated = [
        await running_app.client.get(WEBHOOKS),
        await running_app.client.post(WEBHOOKS, json={"url": URL}),
    ]
    no_scope = running_app.headers(await running_app.new_key("ttd", scopes=("other",)))
    forbidden = await running_app.client.post(WEBHOOKS, json={"url": URL}, headers=no_scope)

    assert [answer.status_code for answer in unauthenticated] == [401, 401]
    assert forbidden.status_code == 403


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "url is required"),
        ({"url": 5}, "url must be a string"),
        ({"url": "http://hooks.example.com/"}, "only with BUDSTIKKE_WEBHOOK_ALLOW_HTTP=true"),
        ({"url": "https://10.1.2.3/hooks"}, "10.1.2.3 is a private address"),
        ({"url": "https://127.0.0.1/hooks"}, "a loopback address"),
        ({"url": "https://[::1]/hooks"}, "a loopback address"),
        ({"url": "https://localhost/hooks"}, "localhost (127.0.0.1) is a loopback address"),
        ({"url": "https://api.localhost/"}, "api.localhost (127.0.0.1) is a loopback"),
        ({"url": "https://2130706433/"}, "2130706433 (127.0.0.1) is a loopback address"),
        ({"url": "https://0x7f.1/"}, "0x7f.1 (127.0.0.1) is a loopback address"),
        ({"url": "https://127.1/"}, "127.1 (127.0.0.1) is a loopback address"),
        ({"url": "https://0xa.1/hooks"}, "0xa.1 (10.0.0.1) is a private address"),
        ({"url": "https://0251.0376.0251.0376/"}, "a cloud metadata address"),
        ({"url": "https://169.254.169.254/latest"}, "a cloud metadata address"),
        ({"url": "https://user:pw@hooks.example.com/"}, "user name or password"),
        ({"URL": "https://hooks.example.com/a/../b"}, "'..'"),
    ],
)
async def test_register_rejects_bad_url(
    running_app: RunningApp, body: dict[str, Any], message: str
) -> None:
    response = await register(running_app, body)

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == ["url"]
    assert message in errors["url"][0]


async def test_callback_url_on_loopback_rejected(running_app: RunningApp) -> None:
    registered = await register(running_app, {"url": "https://localhost/hooks"})
    order = {**sms_order(), "callbackUrl": "https://localhost/hooks/1"}
    response = await running_app.client.post(SMS_PATH, json=order, headers=running_app.headers())

    assert registered.status_code == 400
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["callbackUrl"]
    assert "registered webhook endpoint" in response.json()["errors"]["callbackUrl"][0]


async def test_register_rejects_non_object(running_app: RunningApp) -> None:
    response = await register(running_app, ["https://hooks.example.com/"])

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["$"]


async def test_register_conflicts(running_app: RunningApp) -> None:
    await register(running_app, {"url": URL})
    duplicate = await register(running_app, {"url": URL})
    for index in range(9):
        assert (await register(running_app, {"url": f"{URL}/{index}"})).status_code == 201
    eleventh = await register(running_app, {"url": f"{URL}/10"})

    assert duplicate.status_code == 409
    assert "already has an endpoint" in duplicate.json()["detail"]
    assert eleventh.status_code == 409
    assert "the maximum" in eleventh.json()["detail"]


async def test_rotate_secret(running_app: RunningApp) -> None:
    created = (await register(running_app, {"url": URL})).json()
    path = f"{WEBHOOKS}/{created['id']}/rotate-secret"

    default = await running_app.client.post(path, headers=running_app.headers())
    immediate = await running_app.client.post(
        path, json={"keepPreviousForSeconds": 0}, headers=running_app.headers()
    )
    invalid = await running_app.client.post(
        path, json={"keepPreviousForSeconds": -1}, headers=running_app.headers()
    )

    assert default.status_code == 200
    assert default.json()["secret"] != created["secret"]
    assert default.json()["previousSecretExpiresAt"] is not None
    assert immediate.json()["previousSecretExpiresAt"] is None
    assert immediate.json()["secret"] not in (created["secret"], default.json()["secret"])
    assert invalid.status_code == 400
    assert list(invalid.json()["errors"]) == ["keepPreviousForSeconds"]


async def test_enable_endpoint(running_app: RunningApp) -> None:
    endpoint_id = (await register(running_app, {"url": URL})).json()["id"]

    enabled = await running_app.client.post(
        f"{WEBHOOKS}/{endpoint_id}/enable", headers=running_app.headers()
    )

    assert enabled.status_code == 200
    assert enabled.json()["enabled"] is True


@pytest.mark.parametrize(
    ("query", "field"),
    [({"state": "delivered"}, "state"), ({"limit": "0"}, "limit"), ({"limit": "x"}, "limit")],
)
async def test_deliveries_query_is_checked(
    running_app: RunningApp, query: dict[str, str], field: str
) -> None:
    endpoint_id = (await register(running_app, {"url": URL})).json()["id"]

    response = await running_app.client.get(
        f"{WEBHOOKS}/{endpoint_id}/deliveries", params=query, headers=running_app.headers()
    )

    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]


async def test_pending_deliveries_are_listed(running_app: RunningApp) -> None:
    endpoint_id = (await register(running_app, {"url": URL})).json()["id"]
    order = {
        "idempotencyId": "with-webhook",
        "recipientSms": {
            "phoneNumber": "+4799999999",
            "timeToLiveInSeconds": 300,
            "smsSettings": {"body": "Hello"},
        },
    }
    await running_app.client.post(
        f"{API}/orders/instant/sms", json=order, headers=running_app.headers()
    )

    pending = await running_app.client.get(
        f"{WEBHOOKS}/{endpoint_id}/deliveries",
        params={"state": "pending"},
        headers=running_app.headers(),
    )

    # The delivery loop does not run here, so the events stay pending.
    assert pending.status_code == 200
    statuses = [item["status"] for item in reversed(pending.json())]
    assert statuses[:2] == ["SMS_Sending", "SMS_Delivered"]
    assert all(item["url"] == URL for item in pending.json())


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=40),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.sampled_from(["url", "URL", "x"]), children, max_size=3)
        ),
        max_leaves=8,
    )
)
async def test_any_body_gets_an_answer(running_app: RunningApp, body: Any) -> None:
    response = await running_app.client.post(
        WEBHOOKS,
        content=json.dumps(body).encode(),
        headers={**running_app.headers(), "Content-Type": "application/json"},
    )

    assert response.status_code in (201, 400, 409), response.text
