"""The route that tells a caller which creator its credentials stand for."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from budstikke.api.schemas import json_response, problem_response
from budstikke.api.services import services_of

PREFIX = "/notifications/api/v1/future"
router = APIRouter(prefix=PREFIX, tags=["credentials"])

WHOAMI: dict[str, Any] = {
    "type": "object",
    "properties": {"creator": {"type": "string", "example": "ttd"}},
}


@router.get(
    "/whoami",
    summary="Show the creator that the presented credentials stand for",
    responses={
        200: json_response("The creator that orders placed with these credentials get.", WHOAMI),
        401: problem_response("No valid bearer token."),
        403: problem_response("The token lacks the scope or names no creator."),
    },
)
async def read_whoami(request: Request) -> Response:
    """Check the credentials exactly as an order would, and touch no order."""
    principal = await services_of(request).authenticate(request)
    return JSONResponse({"creator": principal.creator})
