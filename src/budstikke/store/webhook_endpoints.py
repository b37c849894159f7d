"""Webhook endpoints: register, list, remove, rotate the secret, re-enable.

Every function that takes a `creator` acts only on that creator's endpoints,
so another creator's endpoint id behaves exactly like a missing one. The CLI
passes None to act on any creator's endpoint.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from budstikke.domain.webhook_signing import new_secret
from budstikke.errors import BudstikkeError
from budstikke.store.database import Database
from budstikke.store.tables import webhook_deliveries, webhook_endpoints
from budstikke.store.webhook_events import forget_creator

# Each event goes to every endpoint of its creator, so the number of
# endpoints bounds how many requests one status change causes.
MAX_ENDPOINTS_PER_CREATOR = 10
# How long the secret before a rotation still signs requests, by default.
DEFAULT_PREVIOUS_SECRET_S = 24 * 3600
MAX_PREVIOUS_SECRET_S = 7 * 24 * 3600


class WebhookEndpointConflictError(BudstikkeError):
    """The creator already has an endpoint with this URL, or has too many endpoints."""


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """A registered endpoint as the CLI and the API show it; never carries a secret."""

    id: UUID
    creator: str
    url: str
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    failing_since: datetime | None
    last_success_at: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    failed_deliveries: int
    pending_deliveries: int


def select_endpoints() -> Select[Any]:
    failed = (
        select(func.count())
        .where(
            webhook_deliveries.c.endpoint_id == webhook_endpoints.c.id,
            webhook_deliveries.c.state == "failed",
        )
        .scalar_subquery()
    )
    pending = (
        select(func.count())
        .where(
            webhook_deliveries.c.endpoint_id == webhook_endpoints.c.id,
            webhook_deliveries.c.state == "pending",
        )
        .scalar_subquery()
    )
    return select(
        webhook_endpoints.c.id,
        webhook_endpoints.c.creator,
        webhook_endpoints.c.url,
        webhook_endpoints.c.enabled,
        webhook_endpoints.c.disabled_at,
        webhook_endpoints.c.disabled_reason,
        webhook_endpoints.c.failing_since,
        webhook_endpoints.c.last_success_at,
        webhook_endpoints.c.previous_secret,
        webhook_endpoints.c.previous_secret_expires_at,
        webhook_endpoints.c.created_at,
        failed.label("failed_deliveries"),
        pending.label("pending_deliveries"),
    )


def to_endpoint(row: Row[Any], now: datetime) -> WebhookEndpoint:
    expires_at = row.previous_secret_expires_at
    previous_valid = row.previous_secret is not None and expires_at is not None and expires_at > now
    return WebhookEndpoint(
        id=row.id,
        creator=row.creator,
        url=row.url,
        enabled=row.enabled,
        disabled_at=row.disabled_at,
        disabled_reason=row.disabled_reason,
        failing_since=row.failing_since,
        last_success_at=row.last_success_at,
        previous_secret_expires_at=expires_at if previous_valid else None,
        created_at=row.created_at,
        failed_deliveries=row.failed_deliveries,
        pending_deliveries=row.pending_deliveries,
    )


async def create_endpoint(
    database: Database, *, creator: str, url: str, now: datetime
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint and return it with its signing secret, which is shown only now.

    The URL must already be checked (parse_webhook_url). Raises
    WebhookEndpointConflictError for a URL the creator registered before or
    past MAX_ENDPOINTS_PER_CREATOR.
    """
    secret = new_secret()
    endpoint_id = uuid.uuid4()
    async with database.write() as connection:
        urls = (
            await connection.execute(
                select(webhook_endpoints.c.url).where(webhook_endpoints.c.creator == creator)
            )
        ).scalars()
        existing = list(urls)
        if url in existing:
            raise WebhookEndpointConflictError(
                f"creator {creator} already has an endpoint for this URL; rotate its "
                "secret instead of adding it again"
            )
        if len(existing) >= MAX_ENDPOINTS_PER_CREATOR:
            raise WebhookEndpointConflictError(
                f"creator {creator} has {len(existing)} endpoints, the maximum; remove one first"
            )
        await connection.execute(
            insert(webhook_endpoints).values(
                id=endpoint_id,
                creator=creator,
                url=url,
                secret=secret,
                enabled=True,
                consecutive_failures=0,
                created_at=now,
                updated_at=now,
            )
        )
        row = (
            await connection.execute(
                select_endpoints().where(webhook_endpoints.c.id == endpoint_id)
            )
        ).one()
    forget_creator(database.engine, creator)
    return to_endpoint(row, now), secret


async def list_endpoints(
    database: Database, *, creator: str | None, now: datetime
) -> list[WebhookEndpoint]:
    query = select_endpoints().order_by(webhook_endpoints.c.creator, webhook_endpoints.c.created_at)
    if creator is not None:
        query = query.where(webhook_endpoints.c.creator == creator)
    async with database.read() as connection:
        rows = await connection.execute(query)
        return [to_endpoint(row, now) for row in rows]


async def get_endpoint(
    database: Database, endpoint_id: UUID, *, creator: str | None, now: datetime
) -> WebhookEndpoint | None:
    async with database.read() as connection:
        return await load_endpoint(connection, endpoint_id, creator=creator, now=now)


async def load_endpoint(
    connection: AsyncConnection, endpoint_id: UUID, *, creator: str | None, now: datetime
) -> WebhookEndpoint | None:
    query = select_endpoints().where(webhook_endpoints.c.id == endpoint_id)
    if creator is not None:
        query = query.where(webhook_endpoints.c.creator == creator)
    row = (await connection.execute(query)).first()
    return None if row is None else to_endpoint(row, now)


async def remove_endpoint(database: Database, endpoint_id: UUID, *, creator: str | None) -> bool:
    """Remove an endpoint with its pending and failed deliveries; False if there is none."""
    condition = [webhook_endpoints.c.id == endpoint_id]
    if creator is not None:
        condition.append(webhook_endpoints.c.creator == creator)
    async with database.write() as connection:
        result = await connection.execute(delete(webhook_endpoints).where(*condition))
        if result.rowcount != 1:
            return False
        await connection.execute(
            delete(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id)
        )
    return True


async def rotate_secret(
    database: Database,
    endpoint_id: UUID,
    *,
    creator: str | None,
    keep_previous_s: int,
    now: datetime,
) -> tuple[WebhookEndpoint, str] | None:
    """Give the endpoint a new secret; the old one still signs for `keep_previous_s` seconds.

    With `keep_previous_s` 0 the old secret stops at once, which is what a
    leaked secret needs. Returns None when there is no such endpoint.
    """
    secret = new_secret()
    condition = [webhook_endpoints.c.id == endpoint_id]
    if creator is not None:
        condition.append(webhook_endpoints.c.creator == creator)
    keep = keep_previous_s > 0
    async with database.write() as connection:
        result = await connection.execute(
            update(webhook_endpoints)
            .where(*condition)
            .values(
                secret=secret,
                previous_secret=webhook_endpoints.c.secret if keep else None,
                previous_secret_expires_at=now + timedelta(seconds=keep_previous_s)
                if keep
                else None,
                updated_at=now,
            )
        )
        if result.rowcount != 1:
            return None
        endpoint = await load_endpoint(connection, endpoint_id, creator=None, now=now)
    assert endpoint is not None
    return endpoint, secret


async def enable_endpoint(
    database: Database, endpoint_id: UUID, *, creator: str | None, now: datetime
) -> WebhookEndpoint | None:
    """Enable a disabled endpoint and forget its failures; None when there is no such endpoint.

    Events that failed while it was disabled stay failed; new events go to it again.
    """
    condition = [webhook_endpoints.c.id == endpoint_id]
    if creator is not None:
        condition.append(webhook_endpoints.c.creator == creator)
    async with database.write() as connection:
        result = await connection.execute(
            update(webhook_endpoints)
            .where(*condition)
            .values(
                enabled=True,
                disabled_at=None,
                disabled_reason=None,
                failing_since=None,
                consecutive_failures=0,
                paused_until=None,
                updated_at=now,
            )
        )
        if result.rowcount != 1:
            return None
        endpoint = await load_endpoint(connection, endpoint_id, creator=None, now=now)
    assert endpoint is not None
    forget_creator(database.engine, endpoint.creator)
    return endpoint
