"""Creator isolation: another creator's ids get 404 exactly as missing ones, on every route.

`ID_ROUTES` lists how to call each route that takes an id in its path.
`test_every_id_route_is_covered` fails when a route is added to the API
without an entry there, so new endpoints join this suite.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from budstikke.config import Settings
from tests.api.orders import EMAIL_PATH, LEGACY_PATH, SMS_PATH, email_order, sms_order
from tests.api.regular import ORDERS_PATH, regular_order, sms_recipient
from tests.conftest import API, RunningApp, run_app

WEBHOOKS = f"{API}/webhooks"
OTP_PATH = f"{API}/otp"
# Never called: the app runs without its worker loops, so no webhook is sent.
WEBHOOK_URL = "https://hooks.example.com/budstikke"


@dataclass(frozen=True)
class IdRoute:
    method: str
    path: str  # under API, with {name} for each id
    body: dict[str, Any] | None = None


ID_ROUTES = [
    IdRoute("GET", "/shipment/{shipment_id}"),
    IdRoute("GET", "/webhooks/{endpoint_id}"),
    IdRoute("DELETE", "/webhooks/{endpoint_id}"),
    IdRoute("POST", "/webhooks/{endpoint_id}/rotate-secret", {"keepPreviousForSeconds": 0}),
    IdRoute("POST", "/webhooks/{endpoint_id}/enable"),
    IdRoute("GET", "/webhooks/{endpoint_id}/deliveries"),
    IdRoute("GET", "/otp/{verification_id}"),
    IdRoute("POST", "/otp/{verification_id}/check", {"code": "000000"}),
    IdRoute("POST", "/otp/{verification_id}/resend"),
]


@dataclass
class Victim:
    """What creator ttd stored, which creator digdir must not reach."""

    ids: dict[str, list[str]]
    instant_key: str
    regular_key: str
    endpoint: dict[str, Any]


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[RunningApp]:
    async with run_app(settings, run_workers=False) as running:
        yield running


async def store_victim_data(app: RunningApp) -> Victim:
    instant_key, regular_key = "ttd-login-1", "ttd-reminder-1"
    sms = await app.client.post(
        SMS_PATH, json=sms_order(idempotency_id=instant_key), headers=app.headers()
    )
    email = await app.client.post(EMAIL_PATH, json=email_order(), headers=app.headers())
    regular = await app.client.post(
        ORDERS_PATH,
        json=regular_order(
            idempotency_id=regular_key,
            reminders=[{"delayDays": 1, "recipient": sms_recipient()}],
        ),
        headers=app.headers(),
    )
    endpoint = await app.client.post(WEBHOOKS, json={"url": WEBHOOK_URL}, headers=app.headers())
    verification = await app.client.post(
        OTP_PATH,
        json={"idempotencyId": "ttd-otp-1", "recipientSms": {"phoneNumber": "+4798888888"}},
        headers=app.headers(),
    )
    for response in (sms, email, regular, endpoint, verification):
        assert response.status_code == 201, response.text
    shipments = [
        sms.json()["notification"]["shipmentId"],
        email.json()["notification"]["shipmentId"],
        regular.json()["notification"]["shipmentId"],
        regular.json()["notification"]["reminders"][0]["shipmentId"],
    ]
    return Victim(
        ids={
            "shipment_id": [*shipments, verification.json()["shipmentId"]],
            "endpoint_id": [endpoint.json()["id"]],
            "verification_id": [verification.json()["verificationId"]],
        },
        instant_key=instant_key,
        regular_key=regular_key,
        endpoint=endpoint.json(),
    )


async def call(app: RunningApp, route: IdRoute, ids: dict[str, str], key: str) -> Any:
    path = API + route.path.format(**ids)
    return await app.client.request(route.method, path, json=route.body, headers=app.headers(key))


def id_names(route: IdRoute) -> list[str]:
    return [part[1:-1] for part in route.path.split("/") if part.startswith("{")]


def test_every_id_route_is_covered(settings: Settings) -> None:
    from budstikke.api.app import create_app

    covered = {(route.method, route.path) for route in ID_ROUTES}
    # The OpenAPI document lists every route of every included router.
    paths = create_app(settings).openapi()["paths"]
    routes = {
        (method.upper(), path[len(API) :])
        for path, operations in paths.items()
        if path.startswith(API) and "{" in path
        for method in operations
    }

    assert routes, "no route with an id found; the OpenAPI document changed shape"
    missing = routes - covered
    assert not missing, f"add these routes to ID_ROUTES in {__name__}: {sorted(missing)}"


@pytest.mark.parametrize("route", ID_ROUTES, ids=lambda route: f"{route.method} {route.path}")
async def test_other_creators_id_is_missing(app: RunningApp, route: IdRoute) -> None:
    victim = await store_victim_data(app)
    intruder = await app.new_key("digdir")
    names = id_names(route)
    missing = await call(app, route, {name: str(uuid.uuid4()) for name in names}, intruder)

    for value in victim.ids[names[0]]:
        response = await call(app, route, {names[0]: value}, intruder)

        assert response.status_code == 404, response.text
        assert response.json() == missing.json()
        assert value not in response.text


async def test_victim_data_unchanged_after_attempts(app: RunningApp) -> None:
    victim = await store_victim_data(app)
    intruder = await app.new_key("digdir")
    for route in ID_ROUTES:
        for value in victim.ids[id_names(route)[0]]:
            await call(app, route, {id_names(route)[0]: value}, intruder)

    endpoint = await app.client.get(f"{WEBHOOKS}/{victim.endpoint['id']}", headers=app.headers())
    shipments = [
        await app.client.get(f"{API}/shipment/{value}", headers=app.headers())
        for value in victim.ids["shipment_id"]
    ]
    [verification_id] = victim.ids["verification_id"]
    verification = await app.client.get(f"{OTP_PATH}/{verification_id}", headers=app.headers())

    assert endpoint.status_code == 200
    assert endpoint.json()["previousSecretExpiresAt"] is None
    assert [response.status_code for response in shipments] == [200] * 5
    assert verification.status_code == 200
    # The intruder's wrong code and resend did not touch the verification.
    assert verification.json()["remainingAttempts"] == 5
    assert verification.json()["resendsLeft"] == 3
    assert verification.json()["shipmentId"] == victim.ids["shipment_id"][-1]


async def test_lists_show_only_own_rows(app: RunningApp) -> None:
    victim = await store_victim_data(app)
    intruder = await app.new_key("digdir")
    own = await app.client.post(SMS_PATH, json=sms_order(), headers=app.headers(intruder))

    feed = await app.client.get(f"{API}/shipment/feed", headers=app.headers(intruder))
    feed_desc = await app.client.get(
        f"{API}/shipment/feed", params={"orderBy": "desc"}, headers=app.headers(intruder)
    )
    endpoints = await app.client.get(WEBHOOKS, headers=app.headers(intruder))

    own_shipment = own.json()["notification"]["shipmentId"]
    assert [entry["shipmentId"] for entry in feed.json()] == [own_shipment]
    assert [entry["shipmentId"] for entry in feed_desc.json()] == [own_shipment]
    assert endpoints.json() == []
    for value in victim.ids["shipment_id"]:
        assert value not in feed.text + feed_desc.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (SMS_PATH, sms_order(idempotency_id="ttd-login-1")),
        (
            LEGACY_PATH,
            {
                "idempotencyId": "ttd-login-1",
                "recipient": {"recipientSms": sms_order()["recipientSms"]},
            },
        ),
        (EMAIL_PATH, email_order(idempotency_id="ttd-login-1")),
        (ORDERS_PATH, regular_order(idempotency_id="ttd-reminder-1")),
    ],
    ids=["sms", "deprecated-sms", "email", "regular"],
)
async def test_idempotency_keys_are_per_creator(
    app: RunningApp, path: str, body: dict[str, Any]
) -> None:
    victim = await store_victim_data(app)
    intruder = await app.new_key("digdir")

    response = await app.client.post(path, json=body, headers=app.headers(intruder))

    assert response.status_code == 201, response.text
    assert response.json()["notification"]["shipmentId"] not in victim.ids["shipment_id"]


async def test_otp_idempotency_keys_are_per_creator(app: RunningApp) -> None:
    victim = await store_victim_data(app)
    intruder = await app.new_key("digdir")
    body = {"idempotencyId": "ttd-otp-1", "recipientSms": {"phoneNumber": "+4798888888"}}

    response = await app.client.post(OTP_PATH, json=body, headers=app.headers(intruder))

    assert response.status_code == 201, response.text
    assert response.json()["verificationId"] not in victim.ids["verification_id"]
    assert response.json()["shipmentId"] not in victim.ids["shipment_id"]
