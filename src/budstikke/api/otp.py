"""Routes of OTP verification: create and send a code, check it, resend, read the status."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from budstikke.api.body import read_json_body
from budstikke.api.problems import ProblemResponse, problem, rate_limited
from budstikke.api.schemas import (
    OTP_CHECK_REQUEST,
    OTP_CHECK_RESPONSE,
    OTP_REQUEST,
    OTP_VERIFICATION,
    OTP_VERIFICATION_RECEIPT,
    json_body,
    json_response,
    problem_response,
)
from budstikke.api.services import Services, services_of
from budstikke.dispatch.otp import (
    OtpVerifications,
    ResendRejectedError,
    ResendRejection,
    VerificationState,
)
from budstikke.domain.otp_requests import parse_check_request, parse_otp_request
from budstikke.domain.rate_limits import OTP_LIMITS, RateLimitExceededError
from budstikke.store.feed import format_time

PREFIX = "/notifications/api/v1/future/otp"
router = APIRouter(prefix=PREFIX, tags=["OTP verification"])

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: problem_response("No valid bearer token."),
    403: problem_response("The token lacks the scope or names no creator."),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: problem_response("No such verification for this creator (code OTP-00001).")
}
TOO_MANY: dict[int | str, dict[str, Any]] = {
    429: problem_response("A limit is exhausted (code BSK-00001); see Retry-After.")
}
# Routes that read a JSON body can also reject it whole.
BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: problem_response("The body is larger than the limit."),
    415: problem_response("The body is not JSON."),
}
# Problem codes of the reasons a resend is rejected.
RESEND_CODES = {
    ResendRejection.CLOSED: "OTP-00002",
    ResendRejection.NO_RESENDS_LEFT: "OTP-00003",
    ResendRejection.EXPIRES_SOON: "OTP-00004",
}


def verifications_of(services: Services) -> OtpVerifications:
    if services.otp is None:
        raise RuntimeError("OTP verification was not set up; start the app with start_services")
    return services.otp


def verification_not_found() -> ProblemResponse:
    return problem(
        404,
        "Verification not found",
        "No verification with this id exists for the caller.",
        code="OTP-00001",
    )


def refuse_over_limit(services: Services, error: RateLimitExceededError) -> ProblemResponse:
    # OTP limits are counted here, in the same metric as the order limits. An
    # order limit hit while sending the code was already counted by the order.
    if error.limit in OTP_LIMITS:
        services.instant_orders.metrics.record_rate_limit_rejection(error.limit)
    return rate_limited(error.detail, error.retry_after_s)


def parse_id(verification_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(verification_id)
    except ValueError:
        return None


@router.post(
    "",
    summary="Create a verification and send its one-time code",
    status_code=201,
    responses={
        201: json_response(
            "Verification created and its code handed off.", OTP_VERIFICATION_RECEIPT
        ),
        200: json_response(
            "A verification with this idempotencyId exists; nothing was sent.",
            OTP_VERIFICATION_RECEIPT,
        ),
        400: problem_response("Invalid body; `errors` lists every invalid field."),
        **BODY_RESPONSES,
        **AUTH_RESPONSES,
        **TOO_MANY,
    },
    openapi_extra=json_body(OTP_REQUEST),
)
async def create_verification(request: Request) -> Response:
    services = services_of(request)
    principal = await services.authenticate(request)
    body = await read_json_body(request, services.settings.max_request_bytes)
    otp_request = parse_otp_request(body, max_segments=services.settings.sms_max_segments)
    try:
        state, created = await verifications_of(services).create(principal.creator, otp_request)
    except RateLimitExceededError as error:
        return refuse_over_limit(services, error)
    verification = state.verification
    receipt = {
        "verificationId": str(verification.id),
        "shipmentId": none_or_text(verification.shipment_id),
        "expiresAt": format_time(verification.expires_at),
    }
    if not created:
        return JSONResponse(receipt, status_code=200)
    return JSONResponse(
        receipt, status_code=201, headers={"Location": f"{PREFIX}/{verification.id}"}
    )


@router.post(
    "/{verification_id}/check",
    summary="Check a code; a code is approved at most once",
    responses={
        200: json_response("The verification's status after this check.", OTP_CHECK_RESPONSE),
        400: problem_response("Invalid body."),
        **BODY_RESPONSES,
        **AUTH_RESPONSES,
        **NOT_FOUND,
        **TOO_MANY,
    },
    openapi_extra=json_body(OTP_CHECK_REQUEST),
)
async def check_code(verification_id: str, request: Request) -> Response:
    services = services_of(request)
    principal = await services.authenticate(request)
    body = await read_json_body(request, services.settings.max_request_bytes)
    code = parse_check_request(body)
    parsed = parse_id(verification_id)
    if parsed is None:
        return verification_not_found()
    try:
        result = await verifications_of(services).check(principal.creator, parsed, code)
    except RateLimitExceededError as error:
        return refuse_over_limit(services, error)
    if result is None:
        return verification_not_found()
    return JSONResponse(
        {"status": result.status.value, "remainingAttempts": result.remaining_attempts}
    )


@router.post(
    "/{verification_id}/resend",
    summary="Send a new code; the current one stops working",
    responses={
        200: json_response("The new code was handed off.", OTP_VERIFICATION),
        **AUTH_RESPONSES,
        **NOT_FOUND,
        409: problem_response(
            "No new code can be sent: the verification is over (OTP-00002), had every "
            "resend (OTP-00003) or expires within a minute (OTP-00004)."
        ),
        429: problem_response("The 30 s cooldown since the last code runs (code BSK-00001)."),
    },
)
async def resend_code(verification_id: str, request: Request) -> Response:
    services = services_of(request)
    principal = await services.authenticate(request)
    parsed = parse_id(verification_id)
    if parsed is None:
        return verification_not_found()
    try:
        state = await verifications_of(services).resend(principal.creator, parsed)
    except RateLimitExceededError as error:
        return refuse_over_limit(services, error)
    except ResendRejectedError as error:
        return problem(409, "No new code can be sent", str(error), code=RESEND_CODES[error.reason])
    if state is None:
        return verification_not_found()
    return JSONResponse(render_state(state))


@router.get(
    "/{verification_id}",
    summary="Read the status of a verification (never its code)",
    responses={
        200: json_response("The verification's status.", OTP_VERIFICATION),
        **AUTH_RESPONSES,
        **NOT_FOUND,
    },
)
async def read_verification(verification_id: str, request: Request) -> Response:
    services = services_of(request)
    principal = await services.authenticate(request)
    parsed = parse_id(verification_id)
    if parsed is None:
        return verification_not_found()
    state = await verifications_of(services).get(principal.creator, parsed)
    if state is None:
        return verification_not_found()
    return JSONResponse(render_state(state))


def render_state(state: VerificationState) -> dict[str, Any]:
    verification = state.verification
    return {
        "verificationId": str(verification.id),
        "status": state.status.value,
        "remainingAttempts": state.remaining_attempts,
        "resendsLeft": state.resends_left,
        "expiresAt": format_time(verification.expires_at),
        "shipmentId": none_or_text(verification.shipment_id),
    }


def none_or_text(value: uuid.UUID | None) -> str | None:
    """Return the id as text, or None (JSON null) while the order for the code is missing."""
    return None if value is None else str(value)
