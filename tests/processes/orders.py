"""Orders for the multi-process tests: request bodies, placing them and reading the status feed."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import API

# The kinds take turns by index, so each is a quarter of the orders and the
# concurrent clients place them mixed.
KINDS = ("instant/sms", "instant/email", "regular/sms", "regular/email")
DELIVERED = {"sms": "SMS_Delivered", "email": "Email_Delivered"}
SHIPMENT_TYPE = {"instant": "Instant", "regular": "Notification"}
FEED_PAGE_SIZE = 500
# Responses that mean nothing was stored. The client sends the same request
# again after a pause, as the API's Retry-After header asks.
RETRIED_STATUSES = frozenset({429, 503})
RETRY_PAUSE_S = 1.0
MAX_ATTEMPTS = 10


@dataclass(frozen=True)
class Order:
    """One order to place: its kind, its only recipient and its request."""

    index: int
    kind: str
    recipient: str
    path: str
    body: dict[str, Any]

    @property
    def channel(self) -> str:
        return self.kind.split("/")[1]


@dataclass
class Placed:
    """The response to an order: the status of its last attempt and its shipment id."""

    order: Order
    status: int
    shipment_id: str | None
    retried: Counter[int]


def build_order(index: int) -> Order:
    """Build the order with this index; every order has its own recipient and idempotency id."""
    kind = KINDS[index % len(KINDS)]
    idempotency_id = f"load-{index}"
    # Distinct recipients stay under the per-recipient limits.
    phone = f"+4790{index:06d}"
    address = f"user{index}@example.com"
    text = f"Your code is {index:06d}."

    if kind == "instant/sms":
        body = {
            "idempotencyId": idempotency_id,
            "recipientSms": {
                "phoneNumber": phone,
                "timeToLiveInSeconds": 600,
                "smsSettings": {"body": text},
            },
        }
        return Order(index, kind, phone, f"{API}/orders/instant/sms", body)

    if kind == "instant/email":
        body = {
            "idempotencyId": idempotency_id,
            "recipientEmail": {
                "emailAddress": address,
                "emailSettings": {"subject": "Code", "body": text},
            },
        }
        return Order(index, kind, address, f"{API}/orders/instant/email", body)

    if kind == "regular/sms":
        # Anytime, because a Daytime SMS placed outside 09:00-17:00 Oslo time
        # would wait for the next morning. No requestedSendTime means now.
        sms = {"body": text, "sendingTimePolicy": "Anytime"}
        body = {
            "idempotencyId": idempotency_id,
            "sendersReference": idempotency_id,
            "recipient": {"recipientSms": {"phoneNumber": phone, "smsSettings": sms}},
        }
        return Order(index, kind, phone, f"{API}/orders", body)

    email = {"subject": "Reminder", "body": text}
    body = {
        "idempotencyId": idempotency_id,
        "sendersReference": idempotency_id,
        "recipient": {"recipientEmail": {"emailAddress": address, "emailSettings": email}},
    }
    return Order(index, kind, address, f"{API}/orders", body)


def api_client(base_url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


async def place_one(client: httpx.AsyncClient, order: Order) -> Placed:
    """Post one order, sending it again while the response says nothing was stored."""
    retried: Counter[int] = Counter()
    for _attempt in range(MAX_ATTEMPTS):
        response = await client.post(order.path, json=order.body)
        if response.status_code not in RETRIED_STATUSES:
            break
        retried[response.status_code] += 1
        await asyncio.sleep(RETRY_PAUSE_S)
    shipment_id = None
    if response.status_code in (200, 201):
        shipment_id = response.json()["notification"]["shipmentId"]
    return Placed(order, response.status_code, shipment_id, retried)


async def place_orders(
    base_urls: list[str], key: str, orders: list[Order], *, concurrency: int = 48
) -> list[Placed]:
    """Post the orders from `concurrency` clients spread over the servers.

    Returns the results in the order of `orders`.
    """
    pending = iter(orders)
    placed: list[Placed] = []
    clients = [api_client(url, key) for url in base_urls]

    async def post_some(client: httpx.AsyncClient) -> None:
        for order in pending:
            placed.append(await place_one(client, order))

    try:
        await asyncio.gather(
            *(
                post_some(client)
                for client in itertools.islice(itertools.cycle(clients), concurrency)
            )
        )
    finally:
        for client in clients:
            await client.aclose()
    return sorted(placed, key=lambda item: item.order.index)


async def wait_for_feed(
    base_url: str,
    key: str,
    shipment_ids: set[str],
    *,
    timeout_s: float,
    describe_progress: Callable[[], Awaitable[object]],
) -> dict[str, list[dict[str, Any]]]:
    """Read the status feed until every shipment has an entry; returns the entries by shipment.

    The feed has one entry per order that reached its final status, so it
    shows both when the work is done and the final status of each order and
    recipient. Each poll reads only the entries after the last one seen.
    """
    entries: dict[str, list[dict[str, Any]]] = defaultdict(list)
    last_seq = 0
    deadline = time.monotonic() + timeout_s
    async with api_client(base_url, key) as client:
        while True:
            response = await client.get(
                f"{API}/shipment/feed", params={"seq": last_seq, "pageSize": FEED_PAGE_SIZE}
            )
            assert response.status_code == 200, response.text
            page = response.json()
            for entry in page:
                entries[entry["shipmentId"]].append(entry)
                last_seq = entry["sequenceNumber"]
            if len(page) == FEED_PAGE_SIZE:
                continue
            if shipment_ids <= entries.keys():
                return entries
            if time.monotonic() > deadline:
                missing = len(shipment_ids - entries.keys())
                progress = await describe_progress()
                raise AssertionError(
                    f"{missing} of {len(shipment_ids)} orders not final within {timeout_s} s; "
                    f"notification statuses: {progress}"
                )
            await asyncio.sleep(0.5)


def final_outcome(order: Order, entries: list[dict[str, Any]]) -> tuple[object, ...]:
    """Summarise an order's feed entries as (kind, entries, type, status, recipients)."""
    if len(entries) != 1:
        return (order.kind, len(entries))
    entry = entries[0]
    recipients = tuple((item["destination"], item["status"]) for item in entry["recipients"])
    return (order.kind, 1, entry["type"], entry["status"], recipients)


def expected_outcome(order: Order) -> tuple[object, ...]:
    """Return the summary of one feed entry of a delivered order, as final_outcome builds it."""
    kind = order.kind.split("/")[0]
    recipients = ((order.recipient, DELIVERED[order.channel]),)
    return (order.kind, 1, SHIPMENT_TYPE[kind], "Order_Completed", recipients)
