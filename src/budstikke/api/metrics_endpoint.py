"""The /metrics endpoint, and the middleware that counts rejected requests."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from budstikke.api.services import services_of
from budstikke.dispatch.dispatcher import utc_now
from budstikke.metrics import Metrics

API_PREFIX = "/notifications/api/v1/future"
router = APIRouter()

# The rejection reason of each status code that a client or an outage causes.
REJECTION_REASONS = {
    400: "validation",
    401: "auth",
    403: "forbidden",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


def metrics_of(request: Request) -> Metrics:
    return cast(Metrics, request.app.state.metrics)


@router.get("/metrics", include_in_schema=False)
async def read_metrics(request: Request) -> Response:
    """Return every metric in the Prometheus text format, the queue read from the database now."""
    metrics = metrics_of(request)
    services = services_of(request)
    providers = services.dispatcher.providers if services.dispatcher is not None else {}
    await metrics.refresh(services.database, providers, utc_now())
    body, content_type = metrics.render(request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})


def endpoint_of(path: str) -> str:
    """Return the endpoint label of a request path: order, shipment, feed, dashboard or other."""
    if path.startswith(f"{API_PREFIX}/orders"):
        return "order"
    if path.startswith(f"{API_PREFIX}/shipment/feed"):
        return "feed"
    if path.startswith(f"{API_PREFIX}/shipment"):
        return "shipment"
    if path.startswith("/dashboard"):
        return "dashboard"
    return "other"


class RejectionCounter:
    """Count responses with a rejection status by endpoint and reason.

    It reads the status code that the error handlers chose, so every handler,
    present or future, is counted the same way.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))

        async def send_counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                reason = REJECTION_REASONS.get(int(message["status"]))
                if reason is not None:
                    self.metrics.record_rejection(endpoint_of(path), reason)
            await send(message)

        await self.app(scope, receive, send_counting)
