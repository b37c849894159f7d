"""Route of regular (scheduled) orders, `POST /notifications/api/v1/future/orders`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from budstikke.api.body import read_json_body
from budstikke.api.schemas import CALLBACK_URL, ORDER_RESPONSES, json_body, json_response
from budstikke.api.services import services_of
from budstikke.dispatch.conditions import condition_address_policy
from budstikke.dispatch.regular import RegularOrders
from budstikke.domain.regular_orders import parse_regular_order
from budstikke.store.regular_orders import RegularOrderReceipt, ShipmentReference

PREFIX = "/notifications/api/v1/future"
router = APIRouter(prefix=PREFIX, tags=["regular orders"])

SEND_TIME = {"type": "string", "format": "date-time", "example": "2026-12-07T09:30:00+01:00"}
CONDITION_ENDPOINT = {"type": ["string", "null"], "format": "uri", "maxLength": 2000}
POLICY = {"type": "string", "enum": ["Anytime", "Daytime"]}
RECIPIENT: dict[str, Any] = {
    "type": "object",
    "description": "Exactly one of recipientSms or recipientEmail.",
    "properties": {
        "recipientSms": {
            "type": "object",
            "required": ["phoneNumber", "smsSettings"],
            "properties": {
                "phoneNumber": {"type": "string", "example": "+4799999999"},
                "smsSettings": {
                    "type": "object",
                    "required": ["body"],
                    "properties": {
                        "sender": {"type": ["string", "null"], "maxLength": 15},
                        "body": {"type": "string"},
                        "sendingTimePolicy": {**POLICY, "default": "Daytime"},
                    },
                },
            },
        },
        "recipientEmail": {
            "type": "object",
            "required": ["emailAddress", "emailSettings"],
            "properties": {
                "emailAddress": {"type": "string", "example": "ola.nordmann@example.com"},
                "emailSettings": {
                    "type": "object",
                    "required": ["subject", "body"],
                    "properties": {
                        "senderEmailAddress": {"type": ["string", "null"]},
                        "subject": {"type": "string", "maxLength": 998},
                        "body": {"type": "string"},
                        "contentType": {"type": "string", "enum": ["Plain", "Html"]},
                        "sendingTimePolicy": {"type": "string", "enum": ["Anytime"]},
                    },
                },
            },
        },
    },
}
REGULAR_ORDER_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["idempotencyId", "recipient"],
    "properties": {
        "idempotencyId": {"type": "string", "minLength": 1, "maxLength": 200},
        "sendersReference": {"type": ["string", "null"], "maxLength": 200},
        "requestedSendTime": {**SEND_TIME, "description": "With an offset; default now."},
        "conditionEndpoint": CONDITION_ENDPOINT,
        "callbackUrl": CALLBACK_URL,
        "recipient": RECIPIENT,
        "reminders": {
            "type": "array",
            "maxItems": 20,
            "items": {
                "type": "object",
                "required": ["recipient"],
                "description": "Exactly one of delayDays or requestedSendTime.",
                "properties": {
                    "sendersReference": {"type": ["string", "null"], "maxLength": 200},
                    "delayDays": {"type": "integer", "minimum": 1, "maximum": 365},
                    "requestedSendTime": SEND_TIME,
                    "conditionEndpoint": CONDITION_ENDPOINT,
                    "recipient": RECIPIENT,
                },
            },
        },
    },
}
SHIPMENT_REFERENCE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "shipmentId": {"type": "string", "format": "uuid"},
        "sendersReference": {"type": "string"},
    },
}
REGULAR_ORDER_RESPONSE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "notificationOrderId": {"type": "string", "format": "uuid"},
        "notification": {
            "type": "object",
            "properties": {
                **SHIPMENT_REFERENCE["properties"],
                "reminders": {"type": "array", "items": SHIPMENT_REFERENCE},
            },
        },
    },
}
RESPONSES = {
    **ORDER_RESPONSES,
    201: json_response("Order stored; it is sent at its send time.", REGULAR_ORDER_RESPONSE),
    200: json_response("An order with this idempotencyId exists; its ids.", REGULAR_ORDER_RESPONSE),
}


@router.post(
    "/orders",
    summary="Send an SMS or email at a given time, with optional reminders",
    status_code=201,
    responses=RESPONSES,
    openapi_extra=json_body(REGULAR_ORDER_REQUEST),
)
async def create_regular_order(request: Request) -> Response:
    services = services_of(request)
    principal = await services.authenticate(request)
    body = await read_json_body(request, services.settings.max_request_bytes)
    regular_orders: RegularOrders = services.regular_orders
    order = parse_regular_order(
        body,
        now=regular_orders.clock(),
        max_segments=services.settings.sms_max_segments,
        address_policy=condition_address_policy(services.settings),
    )
    receipt = await regular_orders.place(principal.creator, order)
    return regular_order_response(receipt)


def shipment_reference(reference: ShipmentReference) -> dict[str, Any]:
    body: dict[str, Any] = {"shipmentId": str(reference.shipment_id)}
    if reference.senders_reference is not None:
        body["sendersReference"] = reference.senders_reference
    return body


def regular_order_response(receipt: RegularOrderReceipt) -> Response:
    notification = shipment_reference(
        ShipmentReference(receipt.shipment_id, receipt.senders_reference)
    )
    if receipt.reminders:
        notification["reminders"] = [shipment_reference(item) for item in receipt.reminders]
    body = {"notificationOrderId": str(receipt.order_id), "notification": notification}
    if not receipt.created:
        return JSONResponse(body, status_code=200)
    return JSONResponse(
        body, status_code=201, headers={"Location": f"{PREFIX}/shipment/{receipt.shipment_id}"}
    )
