"""Routes that let a creator manage its webhook endpoints and see failed deliveries.

Every route acts on the caller's own endpoints only: another creator's
endpoint id gets 404 exactly as a missing one does.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from budstikke.api.body import read_json_body
from budstikke.api.problems import problem
from budstikke.api.schemas import json_body, json_response, problem_response
from budstikke.api.services import Services, services_of
from budstikke.domain.request_fields import FieldErrors, to_integer
from budstikke.domain.webhook_requests import (
    DELIVERY_STATES,
    MAX_DELIVERY_PAGE,
    parse_endpoint_request,
    parse_rotate_request,
)
from budstikke.domain.webhook_urls import AddressPolicy, parse_networks
from budstikke.store.webhook_deliveries import DeliveryRecord, list_deliveries
from budstikke.store.webhook_endpoints import (
    WebhookEndpoint,
    WebhookEndpointConflictError,
    create_endpoint,
    enable_endpoint,
    get_endpoint,
    list_endpoints,
    remove_endpoint,
    rotate_secret,
)

PREFIX = "/notifications/api/v1/future/webhooks"
router = APIRouter(prefix=PREFIX, tags=["webhooks"])

NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
ENDPOINT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "url": {"type": "string", "example": "https://app.example.com/budstikke-events"},
        "enabled": {"type": "boolean"},
        "disabledAt": NULLABLE_TIME,
        "disabledReason": {"type": ["string", "null"]},
        "failingSince": NULLABLE_TIME,
        "lastSuccessAt": NULLABLE_TIME,
        "previousSecretExpiresAt": NULLABLE_TIME,
        "createdAt": {"type": "string", "format": "date-time"},
        "pendingDeliveries": {"type": "integer"},
        "failedDeliveries": {"type": "integer"},
    },
}
ENDPOINT_WITH_SECRET: dict[str, Any] = {
    **ENDPOINT,
    "properties": {
        **ENDPOINT["properties"],
        "secret": {"type": "string", "description": "whsec_ signing secret, shown only here."},
    },
}
DELIVERY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sequenceNumber": {"type": "integer"},
        "webhookId": {"type": "string"},
        "url": {"type": "string"},
        "isCallback": {"type": "boolean"},
        "type": {"type": "string"},
        "shipmentId": {"type": "string", "format": "uuid"},
        "status": {"type": "string"},
        "state": {"type": "string", "enum": list(DELIVERY_STATES)},
        "attempts": {"type": "integer"},
        "lastError": {"type": ["string", "null"]},
        "lastStatusCode": {"type": ["integer", "null"]},
        "createdAt": {"type": "string", "format": "date-time"},
        "nextAttemptAt": NULLABLE_TIME,
        "failedAt": NULLABLE_TIME,
    },
}
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: problem_response("No valid bearer token."),
    403: problem_response("The token lacks the scope or names no creator."),
}
# Routes that read a JSON body can also reject it whole.
BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: problem_response("The body is larger than the limit."),
    415: problem_response("The body is not JSON."),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: problem_response("No such endpoint for this creator.")
}


def format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_endpoint(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": str(endpoint.id),
        "url": endpoint.url,
        "enabled": endpoint.enabled,
        "disabledAt": format_time(endpoint.disabled_at),
        "disabledReason": endpoint.disabled_reason,
        "failingSince": format_time(endpoint.failing_since),
        "lastSuccessAt": format_time(endpoint.last_success_at),
        "previousSecretExpiresAt": format_time(endpoint.previous_secret_expires_at),
        "createdAt": format_time(endpoint.created_at),
        "pendingDeliveries": endpoint.pending_deliveries,
        "failedDeliveries": endpoint.failed_deliveries,
    }


def render_delivery(delivery: DeliveryRecord) -> dict[str, Any]:
    return {
        "sequenceNumber": delivery.sequence_number,
        "webhookId": delivery.message_id,
        "url": delivery.url,
        "isCallback": delivery.is_callback,
        "type": delivery.event_type,
        "shipmentId": delivery.shipment_id,
        "status": delivery.status,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "lastError": delivery.last_error,
        "lastStatusCode": delivery.last_status_code,
        "createdAt": format_time(delivery.created_at),
        "nextAttemptAt": format_time(delivery.next_attempt_at),
        "failedAt": format_time(delivery.failed_at),
    }


def endpoint_not_found() -> Response:
    return problem(
        404,
        "Webhook endpoint not found",
        "No webhook endpoint with this id exists for the caller.",
    )


def parse_endpoint_id(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def address_policy(services: Services) -> AddressPolicy:
    return AddressPolicy(parse_networks(services.settings.webhook_allowed_networks))


def now() -> datetime:
    return datetime.now(UTC)


@router.post(
    "",
    summary="Register a webhook endpoint; the answer shows its signing secret once",
    status_code=201,
    responses={
        201: json_response("The endpoint, with its secret.", ENDPOINT_WITH_SECRET),
        400: problem_response("Invalid body; `errors` names the invalid field."),
        409: problem_response("The URL is registered already, or the creator has too many."),
        **BODY_RESPONSES,
        **COMMON_RESPONSES,
    },
    openapi_extra=json_body(
        {
            "type": "object",
            "required": ["url"],
            "properties": {"url": ENDPOINT["properties"]["url"]},
        }
    ),
)
async def register_endpoint(request: Request) -> Response:
    services = services_of(request)
    principal = await services.authenticate(request)
    body = await read_json_body(request, services.settings.max_request_bytes)
    url = parse_endpoint_request(
        body, allow_http=services.settings.webhook_allow_http, policy=address_policy(services)
    )
    try:
        endpoint, secret = await create_endpoint(
            services.database, creator=principal.creator, url=url, now=now()
        )
    except WebhookEndpointConflictError as error:
        return problem(409, "Conflict", str(error))
    return JSONResponse(
        {**render_endpoint(endpoint), "secret": secret},
        status_code=201,
        headers={"Location": f"{PREFIX}/{endpoint.id}"},
    )


@router.get(
    "",
    summary="List the caller's webhook endpoints",
    responses={
        200: json_response("The endpoints.", {"type": "array", "items": ENDPOINT}),
        **COMMON_RESPONSES,
    },
)
async def read_endpoints(request: Request) -> Response:
    services = services_of(request)
    principal = await services.authenticate(request)
    endpoints = await list_endpoints(services.database, creator=principal.creator, now=now())
    return JSONResponse([render_endpoint(endpoint) for endpoint in endpoints])


@router.get(
    "/{endpoint_id}",
    summary="Read one webhook endpoint",
    responses={
        200: json_response("The endpoint.", ENDPOINT),
        **NOT_FOUND,
        **COMMON_RESPONSES,
    },
)
async def read_endpoint(endpoint_id: str, request: Request) -> Response:
    services = services_of(request)
    principal = await services.authenticate(request)
    parsed = parse_endpoint_id(endpoint_id)
    endpoint = None
    if parsed is not None:
        endpoint = await get_endpoint(
            services.database, parsed, creator=principal.creator, now=now()
        )
    if endpoint is None:
        return endpoint_not_found()
    return JSONResponse(render_endpoint(endpoint))


@router.delete(
    "/{endpoint_id}",
    summary="Remove a webhook endpoint with its pending and failed deliveries",
    status_code=204,
    responses={204: {"description": "Removed."}, **NOT_FOUND, **COMMON_RESPONSES},
)
async def delete_endpoint(endpoint_id: str, request: Request) -> Response:
    services = services_of(request)
    principal = await services.authenticate(request)
    parsed = parse_endpoint_id(endpoint_id)
    removed = parsed is not None and await remove_endpoint(
        services.database, parsed, creator=principal.creator
    )
    if not removed:
        return endpoint_not_found()
    return Response(status_code=204)


@router.post(
    "/{endpoint_id}/rotate-secret",
    summary="Give the endpoint a new signing secret; the old one signs for a while longer",
    responses={
        200: json_response("The endpoint, with its new secret.", ENDPOINT_WITH_SECRET),
        400: problem_response("Invalid body; `errors` names the invalid field."),
        **BODY_RESPONSES,
        **NOT_FOUND,
        **COMMON_RESPONSES,
    },
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "keepPreviousForSeconds": {
                                "type": "integer",
                                "minimum": 0,
                                "maximum": 604800,
                                "default": 86400,
                                "description": "How long requests also carry a signature "
                                "with the old secret; 0 stops it at once.",
                            }
                        },
                    }
                }
            },
        }
    },
)
async def rotate_endpoint_secret(endpoint_id: str, request: Request) -> Response:
    services = services_of(request)
    principal = await services.authenticate(request)
    body = None
    if request.headers.get("content-length", "0") != "0" or "content-type" in request.headers:
        body = await read_json_body(request, services.settings.max_request_bytes)
    keep_previous_s = parse_rotate_request(body)
    parsed = parse_endpoint_id(endpoint_id)
    rotated = None
    if parsed is not None:
        rotated = await rotate_secret(
            services.database,
            parsed,
            creator=principal.creator,
            keep_previous_s=keep_previous_s,
            now=now(),
        )
    if rotated is None:
        return endpoint_not_found()
    endpoint, secret = rotated
    return JSONResponse({**render_endpoint(endpoint), "secret": secret})


@router.post(
    "/{endpoint_id}/enable",
    summary="Enable an endpoint that was disabled after failing",
    responses={
        200: json_response("The endpoint.", ENDPOINT),
        **NOT_FOUND,
        **COMMON_RESPONSES,
    },
)
async def enable_disabled_endpoint(endpoint_id: str, request: Request) -> Response:
    services = services_of(request)
    principal = await services.authenticate(request)
    parsed = parse_endpoint_id(endpoint_id)
    endpoint = None
    if parsed is not None:
        endpoint = await enable_endpoint(
            services.database, parsed, creator=principal.creator, now=now()
        )
    if endpoint is None:
        return endpoint_not_found()
    return JSONResponse(render_endpoint(endpoint))


@router.get(
    "/{endpoint_id}/deliveries",
    summary="List an endpoint's failed (or pending) deliveries, newest first",
    responses={
        200: json_response("The deliveries.", {"type": "array", "items": DELIVERY}),
        400: problem_response("Invalid query parameter."),
        **NOT_FOUND,
        **COMMON_RESPONSES,
    },
)
async def read_deliveries(endpoint_id: str, request: Request) -> Response:
    services = services_of(request)
    principal = await services.authenticate(request)
    state, limit = parse_delivery_query(request)
    parsed = parse_endpoint_id(endpoint_id)
    endpoint = None
    if parsed is not None:
        endpoint = await get_endpoint(
            services.database, parsed, creator=principal.creator, now=now()
        )
    if endpoint is None:
        return endpoint_not_found()
    deliveries = await list_deliveries(services.database, endpoint.id, state=state, limit=limit)
    return JSONResponse([render_delivery(delivery) for delivery in deliveries])


def parse_delivery_query(request: Request) -> tuple[str, int]:
    """Read `state` (failed or pending, default failed) and `limit` (1 to 500, default 100)."""
    params = {key.lower(): value for key, value in request.query_params.items()}
    errors = FieldErrors()
    state = params.get("state", "failed").lower()
    if state not in DELIVERY_STATES:
        errors.add("state", f"state must be failed or pending; got {params['state'][:40]!r}.")
    limit = 100
    if "limit" in params:
        value = to_integer(params["limit"])
        if value is None or not 1 <= value <= MAX_DELIVERY_PAGE:
            errors.add(
                "limit",
                f"limit must be an integer from 1 to {MAX_DELIVERY_PAGE}; "
                f"got {params['limit'][:40]!r}.",
            )
        else:
            limit = value
    errors.raise_if_any()
    return state, limit
