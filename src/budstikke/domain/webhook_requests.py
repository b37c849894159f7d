"""Validation of webhook requests: registering an endpoint, rotating its secret, callbackUrl."""

from __future__ import annotations

from typing import Any

from budstikke.domain.request_fields import (
    FieldErrors,
    JsonObject,
    fold_keys,
    json_type,
    read_integer,
    read_string,
)
from budstikke.domain.webhook_urls import (
    MAX_URL_LENGTH,
    AddressPolicy,
    InvalidWebhookUrlError,
    describe_host,
    find_rejected_host_address,
    parse_webhook_url,
)

DEFAULT_KEEP_PREVIOUS_S = 24 * 3600
MAX_KEEP_PREVIOUS_S = 7 * 24 * 3600
DELIVERY_STATES = ("failed", "pending")
MAX_DELIVERY_PAGE = 500


def read_body_object(body: Any, errors: FieldErrors) -> JsonObject:
    if not isinstance(body, dict):
        errors.add("$", f"The request body must be a JSON object; got {json_type(body)}.")
        errors.raise_if_any()
    return fold_keys(body)


def check_endpoint_url(url: str, *, allow_http: bool, policy: AddressPolicy) -> str:
    """Check an endpoint URL as registration does; raises InvalidWebhookUrlError.

    A host that resolves without DNS (an IP literal, a numeric IPv4 form
    such as 2130706433, or `localhost`) is checked against the address
    policy at once, because a send to it would be rejected every time. A
    DNS name is checked at each send, against what it resolves to then.
    """
    parsed = parse_webhook_url(url, allow_http=allow_http)
    rejected = find_rejected_host_address(parsed.host, policy)
    if rejected is not None:
        address, reason = rejected
        raise InvalidWebhookUrlError(
            f"the host {describe_host(parsed.host, address)} is {reason}; use a public "
            "address, or the operator can allow it with BUDSTIKKE_WEBHOOK_ALLOWED_NETWORKS"
        )
    return parsed.text


def parse_endpoint_request(body: Any, *, allow_http: bool, policy: AddressPolicy) -> str:
    """Validate `{"url": ...}` and return the URL; raises RequestValidationError."""
    errors = FieldErrors()
    source = read_body_object(body, errors)
    url = read_string(source, "url", "", errors, required=True, max_length=MAX_URL_LENGTH)
    if url is not None:
        try:
            url = check_endpoint_url(url, allow_http=allow_http, policy=policy)
        except InvalidWebhookUrlError as error:
            errors.add("url", f"url is invalid: {error}.")
    errors.raise_if_any()
    assert url is not None
    return url


def parse_rotate_request(body: Any) -> int:
    """Validate `{"keepPreviousForSeconds": n}` (optional) and return n.

    0 stops the old secret at once; the default keeps it for a day, so
    receivers can switch to the new one without rejecting requests.
    """
    errors = FieldErrors()
    if body is None:
        return DEFAULT_KEEP_PREVIOUS_S
    source = read_body_object(body, errors)
    keep_s = read_integer(
        source,
        "keepPreviousForSeconds",
        "",
        errors,
        required=False,
        minimum=0,
        maximum=MAX_KEEP_PREVIOUS_S,
    )
    errors.raise_if_any()
    return DEFAULT_KEEP_PREVIOUS_S if keep_s is None else keep_s


def read_callback_url(source: JsonObject, errors: FieldErrors) -> str | None:
    """Read an order's optional `callbackUrl` and check its syntax.

    Whether it lies under one of the creator's registered endpoints is
    checked when the order is stored. Its host then equals the endpoint's,
    which registration checked against the address policy.
    """
    url = read_string(source, "callbackUrl", "", errors, required=False, max_length=MAX_URL_LENGTH)
    if url is None or not url.strip():
        return None
    try:
        parse_webhook_url(url, allow_http=True)
    except InvalidWebhookUrlError as error:
        errors.add("callbackUrl", f"callbackUrl is invalid: {error}.")
        return None
    return url
