"""RFC 9457 problem details responses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse

PROBLEM_CONTENT_TYPE = "application/problem+json"
VALIDATION_TITLE = "One or more validation errors occurred."
STATUS_TYPES = {
    400: "https://tools.ietf.org/html/rfc9110#section-15.5.1",
    401: "https://tools.ietf.org/html/rfc9110#section-15.5.2",
    403: "https://tools.ietf.org/html/rfc9110#section-15.5.4",
    404: "https://tools.ietf.org/html/rfc9110#section-15.5.5",
    405: "https://tools.ietf.org/html/rfc9110#section-15.5.6",
    413: "https://tools.ietf.org/html/rfc9110#section-15.5.14",
    415: "https://tools.ietf.org/html/rfc9110#section-15.5.16",
    429: "https://tools.ietf.org/html/rfc6585#section-4",
    500: "https://tools.ietf.org/html/rfc9110#section-15.6.1",
    503: "https://tools.ietf.org/html/rfc9110#section-15.6.4",
}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_CONTENT_TYPE


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    code: str | None = None,
    errors: dict[str, list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": STATUS_TYPES.get(status, "about:blank"),
        "title": title,
        "status": status,
    }
    if detail is not None:
        body["detail"] = detail
    if code is not None:
        body["code"] = code
    if errors is not None:
        body["errors"] = errors
    return ProblemResponse(body, status_code=status, headers=headers)


def validation_problem(errors: dict[str, list[str]]) -> ProblemResponse:
    return problem(400, VALIDATION_TITLE, "See errors for each invalid field.", errors=errors)


def shipment_not_found() -> ProblemResponse:
    return problem(
        404,
        "Shipment not found",
        "No shipment with this id exists for the caller.",
        code="NOT-00003",
    )


def rate_limited(detail: str, retry_after_s: int) -> ProblemResponse:
    return problem(
        429,
        "Too many requests",
        detail,
        code="BSK-00001",
        headers={"Retry-After": str(retry_after_s)},
    )


def database_unavailable() -> ProblemResponse:
    return problem(
        503,
        "Service unavailable",
        "The database is unavailable; nothing was stored. Retry the same request later.",
        code="NOT-00004",
        headers={"Retry-After": "5"},
    )
