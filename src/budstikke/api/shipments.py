"""Routes of the shipment status and the status feed."""

from __future__ import annotations

import json
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from budstikke.api.problems import shipment_not_found
from budstikke.api.schemas import SHIPMENT, json_response, problem_response
from budstikke.api.services import services_of
from budstikke.domain.request_fields import INT64_MAX, FieldErrors, to_integer
from budstikke.store.feed import FEED_PAGE_MAX, read_feed, render_shipment
from budstikke.store.orders import get_shipment

PREFIX = "/notifications/api/v1/future"
router = APIRouter(prefix=PREFIX, tags=["shipments"])


class FeedQuery:
    def __init__(self, seq: int, page_size: int, descending: bool) -> None:
        self.seq = seq
        self.page_size = page_size
        self.descending = descending


def parse_feed_query(request: Request) -> FeedQuery:
    """Read seq, pageSize and orderBy; parameter names match case-insensitively."""
    params = {key.lower(): value for key, value in request.query_params.items()}
    errors = FieldErrors()
    seq = 0
    if "seq" in params:
        value = to_integer(params["seq"])
        if value is None or value < 0:
            errors.add(
                "seq",
                f"seq must be an integer from 0 to {INT64_MAX}; got {params['seq'][:40]!r}.",
            )
        else:
            seq = value
    page_size = FEED_PAGE_MAX
    if "pagesize" in params:
        value = to_integer(params["pagesize"])
        if value is None:
            errors.add("pageSize", f"pageSize must be an integer; got {params['pagesize'][:40]!r}.")
        else:
            page_size = max(1, min(FEED_PAGE_MAX, value))
    order_by = params.get("orderby", "asc").lower()
    if order_by not in ("asc", "desc"):
        errors.add("orderBy", f"orderBy must be asc or desc; got {params['orderby'][:40]!r}.")
    errors.raise_if_any()
    return FeedQuery(seq=seq, page_size=page_size, descending=order_by == "desc")


@router.get(
    "/shipment/feed",
    summary="Read the status feed of orders that reached a final status",
    responses={
        200: json_response(
            "Entries after seq (or before it with orderBy=desc).",
            {"type": "array", "items": SHIPMENT},
        ),
        400: problem_response("Invalid query parameter."),
        401: problem_response("No valid bearer token."),
        403: problem_response("The token lacks the scope or names no creator."),
    },
)
async def read_status_feed(request: Request) -> Response:
    services = services_of(request)
    principal = await services.authenticate(request)
    query = parse_feed_query(request)
    entries = await read_feed(
        services.database,
        creator=principal.creator,
        after_seq=query.seq,
        page_size=query.page_size,
        descending=query.descending,
    )
    # Entries are stored as JSON text; the sequence number is spliced in
    # rather than parsing and serialising every entry again.
    body = ",".join(f'{{"sequenceNumber":{entry.seq},{entry.entry_json[1:]}' for entry in entries)
    return Response(f"[{body}]", media_type="application/json")


@router.get(
    "/shipment/{shipment_id}",
    summary="Read the status of a shipment",
    responses={
        200: json_response("The shipment with the status of each recipient.", SHIPMENT),
        401: problem_response("No valid bearer token."),
        403: problem_response("The token lacks the scope or names no creator."),
        404: problem_response("No such shipment for this creator (code NOT-00003)."),
    },
)
async def read_shipment(shipment_id: str, request: Request) -> Response:
    services = services_of(request)
    principal = await services.authenticate(request)
    try:
        parsed = uuid.UUID(shipment_id)
    except ValueError:
        return shipment_not_found()
    shipment = await get_shipment(services.database, principal.creator, parsed)
    if shipment is None:
        return shipment_not_found()
    return Response(
        json.dumps(render_shipment(shipment), ensure_ascii=False), media_type="application/json"
    )
