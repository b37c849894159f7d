"""JSON schemas of request and response bodies, for the OpenAPI document.

The routes read bodies themselves (case-insensitive names, numeric strings,
every error listed), so these schemas document the contract and drive the
generated docs; they are not what validates.
"""

from __future__ import annotations

from typing import Any

STRING_200 = {"type": "string", "maxLength": 200}
TTL = {"type": "integer", "minimum": 60, "maximum": 172800}
CALLBACK_URL: dict[str, Any] = {
    "type": ["string", "null"],
    "maxLength": 2000,
    "description": "budstikke extension: a URL under one of the creator's webhook endpoints "
    "that also gets this order's status events.",
}

SMS_RECIPIENT: dict[str, Any] = {
    "type": "object",
    "required": ["phoneNumber", "timeToLiveInSeconds", "smsSettings"],
    "properties": {
        "phoneNumber": {"type": "string", "example": "+4799999999"},
        "timeToLiveInSeconds": TTL,
        "smsSettings": {
            "type": "object",
            "required": ["body"],
            "properties": {
                "sender": {"type": ["string", "null"], "maxLength": 15, "example": "Kommune"},
                "body": {"type": "string", "example": "Your code is 482913."},
            },
        },
    },
}

INSTANT_SMS_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["idempotencyId", "recipientSms"],
    "properties": {
        "idempotencyId": {**STRING_200, "minLength": 1},
        "sendersReference": {**STRING_200, "type": ["string", "null"]},
        "callbackUrl": CALLBACK_URL,
        "recipientSms": SMS_RECIPIENT,
    },
}

INSTANT_LEGACY_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["idempotencyId", "recipient"],
    "properties": {
        "idempotencyId": {**STRING_200, "minLength": 1},
        "sendersReference": {**STRING_200, "type": ["string", "null"]},
        "callbackUrl": CALLBACK_URL,
        "recipient": {
            "type": "object",
            "required": ["recipientSms"],
            "properties": {"recipientSms": SMS_RECIPIENT},
        },
    },
}

INSTANT_EMAIL_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["idempotencyId", "recipientEmail"],
    "properties": {
        "idempotencyId": {**STRING_200, "minLength": 1},
        "sendersReference": {**STRING_200, "type": ["string", "null"]},
        "callbackUrl": CALLBACK_URL,
        "recipientEmail": {
            "type": "object",
            "required": ["emailAddress", "emailSettings"],
            "properties": {
                "emailAddress": {"type": "string", "example": "ola.nordmann@example.com"},
                "timeToLiveInSeconds": TTL,
                "emailSettings": {
                    "type": "object",
                    "required": ["subject", "body"],
                    "properties": {
                        "senderEmailAddress": {"type": ["string", "null"]},
                        "subject": {"type": "string", "maxLength": 998},
                        "body": {"type": "string"},
                        "contentType": {"type": "string", "enum": ["Plain", "Html"]},
                    },
                },
            },
        },
    },
}

ORDER_RESPONSE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "notificationOrderId": {"type": "string", "format": "uuid"},
        "notification": {
            "type": "object",
            "properties": {
                "shipmentId": {"type": "string", "format": "uuid"},
                "sendersReference": {"type": "string"},
            },
        },
    },
}

RECIPIENT_STATUS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["SMS", "Email"]},
        "destination": {"type": "string"},
        "status": {"type": "string"},
        "lastUpdate": {"type": "string", "format": "date-time"},
    },
}

SHIPMENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "shipmentId": {"type": "string", "format": "uuid"},
        "sendersReference": {"type": "string"},
        "type": {"type": "string", "enum": ["Instant", "Notification"]},
        "status": {"type": "string"},
        "lastUpdate": {"type": "string", "format": "date-time"},
        "recipients": {"type": "array", "items": RECIPIENT_STATUS},
    },
}

OTP_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["idempotencyId"],
    "description": "Exactly one of recipientSms and recipientEmail.",
    "properties": {
        "idempotencyId": {**STRING_200, "minLength": 1},
        "sendersReference": {**STRING_200, "type": ["string", "null"]},
        "recipientSms": {
            "type": "object",
            "required": ["phoneNumber"],
            "properties": {"phoneNumber": {"type": "string", "example": "+4799999999"}},
        },
        "recipientEmail": {
            "type": "object",
            "required": ["emailAddress"],
            "properties": {
                "emailAddress": {"type": "string", "example": "ola.nordmann@example.com"}
            },
        },
        "codeLength": {"type": "integer", "minimum": 4, "maximum": 10, "default": 6},
        "timeToLiveInSeconds": {"type": "integer", "minimum": 60, "maximum": 900, "default": 300},
        "language": {"type": "string", "enum": ["en", "nb", "nn"], "default": "nb"},
        "template": {
            "type": "string",
            "description": "Own text with {code} exactly once; replaces the built-in text.",
        },
        "sender": {
            "type": ["string", "null"],
            "description": "SMS sender id, or the From address of an email.",
        },
    },
}

OTP_VERIFICATION_RECEIPT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verificationId": {"type": "string", "format": "uuid"},
        "shipmentId": {"type": "string", "format": "uuid"},
        "expiresAt": {"type": "string", "format": "date-time"},
    },
}

OTP_STATUS = {"type": "string", "enum": ["pending", "approved", "expired", "max_attempts_reached"]}

OTP_VERIFICATION: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verificationId": {"type": "string", "format": "uuid"},
        "status": OTP_STATUS,
        "remainingAttempts": {"type": "integer"},
        "resendsLeft": {"type": "integer"},
        "expiresAt": {"type": "string", "format": "date-time"},
        "shipmentId": {"type": "string", "format": "uuid"},
    },
}

OTP_CHECK_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["code"],
    "properties": {"code": {"type": "string", "maxLength": 64, "example": "482913"}},
}

OTP_CHECK_RESPONSE: dict[str, Any] = {
    "type": "object",
    "properties": {"status": OTP_STATUS, "remainingAttempts": {"type": "integer"}},
}

PROBLEM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def json_response(
    description: str, schema: dict[str, Any], media: str = "application/json"
) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}}


def problem_response(description: str) -> dict[str, Any]:
    return json_response(description, PROBLEM, "application/problem+json")


ORDER_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: json_response("Order stored and handed off (or queued for a retry).", ORDER_RESPONSE),
    200: json_response("An order with this idempotencyId exists; its ids.", ORDER_RESPONSE),
    400: problem_response("Invalid body; `errors` lists every invalid field."),
    401: problem_response("No valid bearer token."),
    403: problem_response("The token lacks the scope or names no creator."),
    413: problem_response("The body is larger than the limit."),
    415: problem_response("The body is not JSON."),
    429: problem_response(
        "A rate limit is used up (code BSK-00001); retry after the Retry-After seconds."
    ),
    503: problem_response("The database is unavailable; nothing was stored."),
}
