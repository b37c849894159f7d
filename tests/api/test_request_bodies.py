"""Hostile request bodies: control characters, unstorable text, size, media type, nesting."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from budstikke.config import Settings
from tests.api.servers import InProcessApp, in_process_app

API = "/notifications/api/v1/future"

SMS_PATH = f"{API}/orders/instant/sms"
EMAIL_PATH = f"{API}/orders/instant/email"
LEGACY_PATH = f"{API}/orders/instant"
SUBJECT_PATH = "recipientEmail.emailSettings.subject"
# A placeholder for an escape sequence while the body is serialised, made of
# letters that json.dumps leaves unchanged.
MARKER = "MARKERxyzMARKER"

SMS_ORDER: dict[str, Any] = {
    "idempotencyId": "bodies-sms",
    "sendersReference": "case-1",
    "recipientSms": {
        "phoneNumber": "+4799999999",
        "timeToLiveInSeconds": 300,
        "smsSettings": {"sender": "Kommune", "body": "Your code is 482913."},
    },
}
EMAIL_ORDER: dict[str, Any] = {
    "idempotencyId": "bodies-email",
    "sendersReference": "case-2",
    "recipientEmail": {
        "emailAddress": "ola.nordmann@example.com",
        "emailSettings": {
            "senderEmailAddress": "noreply@example.com",
            "subject": "Your one-time code",
            "body": "Your code is 482913.",
            "contentType": "Plain",
        },
    },
}
LEGACY_ORDER: dict[str, Any] = {
    "idempotencyId": "bodies-legacy",
    "sendersReference": "case-3",
    "recipient": {"recipientSms": copy.deepcopy(SMS_ORDER["recipientSms"])},
}
ENDPOINTS = [
    pytest.param(SMS_PATH, SMS_ORDER, id="sms"),
    pytest.param(EMAIL_PATH, EMAIL_ORDER, id="email"),
    pytest.param(LEGACY_PATH, LEGACY_ORDER, id="deprecated-nested-sms"),
]


@pytest.fixture
async def api_app(tmp_path: Path) -> AsyncIterator[InProcessApp]:
    async with in_process_app(Settings(data_dir=tmp_path / "data")) as app:
        yield app


def string_paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Return the path of every string in a JSON object, as tuples of property names."""
    if isinstance(value, dict):
        return [path for key, item in value.items() for path in string_paths(item, (*prefix, key))]
    return [prefix] if isinstance(value, str) else []


def with_value(order: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(order)
    parent = changed
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return changed


def body_with_escape(order: dict[str, Any], path: tuple[str, ...], escape: str) -> bytes:
    """Serialise the order with the JSON escape `escape` (e.g. \\ud800) inside one string."""
    text = json.dumps(with_value(order, path, f"Kode{MARKER}1"))
    return text.replace(MARKER, escape).encode()


async def post_raw(
    app: InProcessApp, path: str, body: bytes | AsyncIterator[bytes], content_type: str | None
) -> Any:
    headers = app.headers()
    if content_type is not None:
        headers["Content-Type"] = content_type
    return await app.client.post(path, content=body, headers=headers)


def assert_validation_problem(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    errors: dict[str, list[str]] = response.json()["errors"]
    assert errors
    return errors


def assert_nothing_sent(app: InProcessApp) -> None:
    assert app.outbox_lines("sms") == []
    assert app.outbox_lines("email") == []


# --- Control characters in the email subject ----------------------------------------------

SUBJECT_ESCAPES = {
    "crlf-header-injection": r"\r\nBcc: x@example.com",
    "lf": r"\n",
    "cr": r"\r",
    "tab": r"\t",
    "line-separator-u2028": r"\u2028",
    "paragraph-separator-u2029": r"\u2029",
    "next-line-u0085": r"\u0085",
    "escape-u001b": r"\u001b",
    "delete-u007f": r"\u007f",
}


@pytest.mark.parametrize("escape", SUBJECT_ESCAPES.values(), ids=SUBJECT_ESCAPES.keys())
async def test_subject_with_control_character_rejected(api_app: InProcessApp, escape: str) -> None:
    path = ("recipientEmail", "emailSettings", "subject")
    body = body_with_escape(EMAIL_ORDER, path, escape)

    response = await post_raw(api_app, EMAIL_PATH, body, "application/json")

    errors = assert_validation_problem(response)
    assert list(errors) == [SUBJECT_PATH]
    assert_nothing_sent(api_app)


# --- Text that no database column can store -----------------------------------------------

UNSTORABLE_ESCAPES = {
    "lone-high-surrogate": r"\ud800",
    "lone-high-surrogate-upper-case": r"\uD83D",
    "lone-low-surrogate": r"\udc00",
    "swapped-surrogates": r"\ude00\ud83d",
    "nul": r"\u0000",
}


@pytest.mark.parametrize("escape", UNSTORABLE_ESCAPES.values(), ids=UNSTORABLE_ESCAPES.keys())
@pytest.mark.parametrize(("endpoint", "order"), ENDPOINTS)
async def test_unstorable_text_rejected(
    api_app: InProcessApp, endpoint: str, order: dict[str, Any], escape: str
) -> None:
    for field in string_paths(order):
        body = body_with_escape(order, field, escape)

        response = await post_raw(api_app, endpoint, body, "application/json")

        field_path = ".".join(field)
        assert response.status_code == 400, f"{field_path}: {response.text}"
        errors = assert_validation_problem(response)
        assert any(key.endswith(field_path) for key in errors), f"{field_path}: {errors}"
    assert_nothing_sent(api_app)


async def test_escaped_surrogate_pair_accepted(api_app: InProcessApp) -> None:
    path = ("recipientSms", "smsSettings", "body")
    # \ud83d\ude00 is one character (U+1F600) written as a UTF-16 pair.
    body = body_with_escape(SMS_ORDER, path, r"\ud83d\ude00")

    response = await post_raw(api_app, SMS_PATH, body, "application/json")

    assert response.status_code == 201, response.text
    [line] = api_app.outbox_lines("sms")
    assert line["body"] == "Kode\U0001f6001"


async def test_literal_backslash_u_text_accepted(api_app: InProcessApp) -> None:
    path = ("recipientSms", "smsSettings", "body")
    # The JSON text \\ud800 is a backslash followed by "ud800", not an escape.
    body = body_with_escape(SMS_ORDER, path, r"\\ud800")

    response = await post_raw(api_app, SMS_PATH, body, "application/json")

    assert response.status_code == 201, response.text
    [line] = api_app.outbox_lines("sms")
    assert line["body"] == "Kode\\ud8001"


async def test_unstorable_text_error_key_is_field_path(api_app: InProcessApp) -> None:
    path = ("recipientSms", "smsSettings", "body")
    body = body_with_escape(SMS_ORDER, path, r"\u0000")

    response = await post_raw(api_app, SMS_PATH, body, "application/json")

    errors = assert_validation_problem(response)
    assert list(errors) == ["recipientSms.smsSettings.body"]


async def test_legacy_empty_recipient_rejected(api_app: InProcessApp) -> None:
    order = {"idempotencyId": "bodies-legacy-empty", "recipient": {}}

    response = await api_app.client.post(LEGACY_PATH, json=order, headers=api_app.headers())

    errors = assert_validation_problem(response)
    assert list(errors) == ["recipient.recipientSms"]


# --- Size, media type and nesting ---------------------------------------------------------


def oversized_order(settings: Settings) -> bytes:
    order = with_value(SMS_ORDER, ("recipientSms", "smsSettings", "body"), "x")
    order["padding"] = "x" * (settings.max_request_bytes + 1)
    return json.dumps(order).encode()


async def test_body_over_limit_gets_413(api_app: InProcessApp) -> None:
    body = oversized_order(api_app.settings)

    response = await post_raw(api_app, SMS_PATH, body, "application/json")

    assert response.status_code == 413, response.text[:500]
    assert response.headers["content-type"].startswith("application/problem+json")
    assert_nothing_sent(api_app)


async def test_chunked_body_over_limit_gets_413(api_app: InProcessApp) -> None:
    body = oversized_order(api_app.settings)

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit must hold while the body streams in.
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = await post_raw(api_app, SMS_PATH, chunks(), "application/json")

    assert response.status_code == 413, response.text[:500]
    assert_nothing_sent(api_app)


async def test_largest_email_body_fits_limit(api_app: InProcessApp) -> None:
    # 1 MB is the largest email body, and the request limit leaves room for the rest.
    largest = with_value(EMAIL_ORDER, ("recipientEmail", "emailSettings", "body"), "x" * 2**20)

    accepted = await api_app.client.post(EMAIL_PATH, json=largest, headers=api_app.headers())
    too_large = with_value(largest, ("recipientEmail", "emailSettings", "body"), "x" * (2**20 + 1))
    too_large["idempotencyId"] = "bodies-email-too-large"
    rejected = await api_app.client.post(EMAIL_PATH, json=too_large, headers=api_app.headers())

    assert accepted.status_code == 201, accepted.text[:500]
    errors = assert_validation_problem(rejected)
    assert list(errors) == ["recipientEmail.emailSettings.body"]


NOT_JSON = {
    "text-plain": "text/plain",
    "form": "application/x-www-form-urlencoded",
    "multipart": "multipart/form-data; boundary=x",
    "xml": "application/xml",
    "json-lookalike": "application/jsonl",
    "missing": None,
}


@pytest.mark.parametrize("content_type", NOT_JSON.values(), ids=NOT_JSON.keys())
@pytest.mark.parametrize(("endpoint", "order"), ENDPOINTS)
async def test_non_json_media_type_gets_415(
    api_app: InProcessApp, endpoint: str, order: dict[str, Any], content_type: str | None
) -> None:
    response = await post_raw(api_app, endpoint, json.dumps(order).encode(), content_type)

    assert response.status_code == 415, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert_nothing_sent(api_app)


DEPTH = 10_000
DEEP_BODIES = {
    "arrays": "[" * DEPTH + "]" * DEPTH,
    "objects": '{"a":' * DEPTH + "1" + "}" * DEPTH,
    "in-idempotency-id": '{"idempotencyId":' + "[" * DEPTH + "]" * DEPTH + "}",
    "in-unknown-property": json.dumps(SMS_ORDER)[:-1] + ',"x":' + "[" * DEPTH + "]" * DEPTH + "}",
    "just-over-limit": json.dumps(SMS_ORDER)[:-1] + ',"x":' + "[" * 40 + "]" * 40 + "}",
}


@pytest.mark.parametrize("body", DEEP_BODIES.values(), ids=DEEP_BODIES.keys())
@pytest.mark.parametrize("endpoint", [SMS_PATH, EMAIL_PATH, LEGACY_PATH])
async def test_deep_nesting_rejected(api_app: InProcessApp, endpoint: str, body: str) -> None:
    response = await post_raw(api_app, endpoint, body.encode(), "application/json")

    errors = assert_validation_problem(response)
    assert list(errors) == ["$"]
    assert_nothing_sent(api_app)


HUGE_NUMBERS = [
    pytest.param("9" * 5000, id="integer-5000-digits"),
    pytest.param("-" + "9" * 5000, id="negative-integer-5000-digits"),
    pytest.param("9" * 4000, id="integer-4000-digits"),
    pytest.param("1e400", id="float-1e400"),
    pytest.param("0." + "1" * 5000, id="float-5000-digit-fraction"),
]


@pytest.mark.parametrize("number", HUGE_NUMBERS)
async def test_huge_number_literal_rejected(api_app: InProcessApp, number: str) -> None:
    text = json.dumps(SMS_ORDER).replace(
        '"timeToLiveInSeconds": 300', f'"timeToLiveInSeconds": {number}'
    )
    assert number in text

    response = await post_raw(api_app, SMS_PATH, text.encode(), "application/json")

    errors = assert_validation_problem(response)
    assert list(errors) in (["recipientSms.timeToLiveInSeconds"], ["$"])
    assert_nothing_sent(api_app)
