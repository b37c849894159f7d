"""Routes of the instant order endpoints."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from budstikke.api.body import read_json_body
from budstikke.api.schemas import (
    INSTANT_EMAIL_REQUEST,
    INSTANT_LEGACY_REQUEST,
    INSTANT_SMS_REQUEST,
    ORDER_RESPONSES,
    json_body,
)
from budstikke.api.services import services_of
from budstikke.domain.order_requests import parse_instant_email_order, parse_instant_sms_order
from budstikke.store.records import OrderReceipt

PREFIX = "/notifications/api/v1/future"
router = APIRouter(prefix=PREFIX, tags=["instant orders"])


@router.post(
    "/orders/instant/sms",
    summary="Send an SMS at once",
    status_code=201,
    responses=ORDER_RESPONSES,
    openapi_extra=json_body(INSTANT_SMS_REQUEST),
)
async def create_instant_sms(request: Request) -> Response:
    services = services_of(request)
    principal = await services.authenticate(request)
    body = await read_json_body(request, services.settings.max_request_bytes)
    order = parse_instant_sms_order(body, max_segments=services.settings.sms_max_segments)
    receipt = await services.instant_orders.place_sms(principal.creator, order)
    return order_response(receipt)


@router.post(
    "/orders/instant/email",
    summary="Send an email at once",
    status_code=201,
    responses=ORDER_RESPONSES,
    openapi_extra=json_body(INSTANT_EMAIL_REQUEST),
)
async def create_instant_email(request: Request) -> Response:
    services = services_of(request)
    principal = await services.authenticate(request)
    body = await read_json_body(request, services.settings.max_request_bytes)
    order = parse_instant_email_order(body)
    receipt = await services.instant_orders.place_email(principal.creator, order)
    return order_response(receipt)


@router.post(
    "/orders/instant",
    summary="Send an SMS at once (deprecated nested form)",
    status_code=201,
    deprecated=True,
    responses=ORDER_RESPONSES,
    openapi_extra=json_body(INSTANT_LEGACY_REQUEST),
)
async def create_instant_legacy(request: Request) -> Response:
    services = services_of(request)
    principal = await services.authenticate(request)
    body = await read_json_body(request, services.settings.max_request_bytes)
    order = parse_instant_sms_order(
        body, max_segments=services.settings.sms_max_segments, nested=True
    )
    receipt = await services.instant_orders.place_sms(principal.creator, order)
    return order_response(receipt)


def order_response(receipt: OrderReceipt) -> Response:
    notification: dict[str, Any] = {"shipmentId": str(receipt.shipment_id)}
    if receipt.senders_reference is not None:
        notification["sendersReference"] = receipt.senders_reference
    body = {"notificationOrderId": str(receipt.order_id), "notification": notification}
    if not receipt.created:
        return JSONResponse(body, status_code=200)
    return JSONResponse(
        body,
        status_code=201,
        headers={"Location": f"{PREFIX}/shipment/{receipt.shipment_id}"},
    )
