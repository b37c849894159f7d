"""Liveness and readiness checks for process supervisors and load balancers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from alembic.script import ScriptDirectory
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from budstikke import __version__
from budstikke.api.services import services_of
from budstikke.channels.base import Provider
from budstikke.channels.provider_state import ProviderSnapshot, snapshot_provider
from budstikke.domain.statuses import Channel
from budstikke.errors import DatabaseUnavailableError
from budstikke.store.database import Database
from budstikke.store.migrate import alembic_config
from budstikke.store.monitoring import ping_database, read_schema_revision

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/health", tags=["operations"])

# A readiness probe waits at most this long for the database.
DATABASE_CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str


@cache
def migration_head() -> str:
    """Return the newest Alembic revision that this version of budstikke ships."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    return ",".join(sorted(heads))


@cache
def known_revisions() -> frozenset[str]:
    """Return every Alembic revision that this version of budstikke ships."""
    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(revision.revision for revision in script.walk_revisions())


async def check_database(database: Database) -> tuple[Check, Check]:
    """Check that the database answers and that its schema is at the shipped revision."""
    try:
        async with asyncio.timeout(DATABASE_CHECK_TIMEOUT_S):
            await ping_database(database)
            revision = await read_schema_revision(database)
    except TimeoutError:
        reason = f"no answer within {DATABASE_CHECK_TIMEOUT_S:g} s"
        return Check(False, reason), Check(False, "unknown: the database did not answer")
    except DatabaseUnavailableError as error:
        reason = str(error)[:200]
        return Check(False, reason), Check(False, "unknown: the database did not answer")
    head = migration_head()
    if revision == head:
        return Check(True, "answers"), Check(True, f"at revision {head}")
    if revision is not None and revision not in known_revisions():
        # A newer version migrated the database during a rolling upgrade;
        # migrations only add, so this process keeps working until restarted.
        return Check(True, "answers"), Check(
            True, f"at revision {revision}, newer than this version's {head}; upgrade budstikke"
        )
    shown = revision or "none"
    return Check(True, "answers"), Check(
        False, f"at revision {shown}, but this version needs {head}; run `budstikke migrate`"
    )


def describe_provider(snapshot: ProviderSnapshot) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": snapshot.kind,
        "ready": snapshot.ready,
        "detail": snapshot.detail,
    }
    if snapshot.sessions or snapshot.configured_sessions:
        body["sessions"] = [
            {
                "name": session.name,
                "bound": session.bound,
                "windowInUse": session.in_flight,
                "windowSize": session.window_size,
                "waiting": session.waiting,
            }
            for session in snapshot.sessions
        ]
        body["configuredSessions"] = snapshot.configured_sessions
    return body


def readiness_body(
    database: Check, migrations: Check, providers: Mapping[Channel, Provider]
) -> tuple[int, dict[str, Any]]:
    """Return the status code and body of a readiness answer.

    Only the database and the schema decide the status code: with a
    provider down, orders are still stored and retried, so the API stays
    in service and the body says "degraded".
    """
    snapshots = {channel: snapshot_provider(provider) for channel, provider in providers.items()}
    if not (database.ok and migrations.ok):
        status = "not_ready"
    elif all(snapshot.ready for snapshot in snapshots.values()):
        status = "ready"
    else:
        status = "degraded"
    body: dict[str, Any] = {
        "status": status,
        "version": __version__,
        "checks": {
            "database": {"ok": database.ok, "detail": database.detail},
            "migrations": {"ok": migrations.ok, "detail": migrations.detail},
        },
        "providers": {
            channel.value: describe_provider(snapshot) for channel, snapshot in snapshots.items()
        },
    }
    if not providers:
        body["providersDetail"] = "this process hands nothing off; workers run the providers"
    return (503 if status == "not_ready" else 200), body


@router.get("/live", summary="Report that the process is running")
async def read_liveness() -> Response:
    """Answer 200 whenever the process can serve a request; nothing else is checked."""
    return JSONResponse({"status": "alive", "version": __version__})


@router.get(
    "/ready",
    summary="Report whether the service can take orders",
    responses={
        200: {"description": "Ready, or degraded when a provider is not connected."},
        503: {"description": "The database does not answer or its schema is not current."},
    },
)
async def read_readiness(request: Request) -> Response:
    services = services_of(request)
    database, migrations = await check_database(services.database)
    providers = services.dispatcher.providers if services.dispatcher is not None else {}
    status_code, body = readiness_body(database, migrations, providers)
    if status_code != 200:
        failed = database if not database.ok else migrations
        logger.warning(
            "readiness check failed",
            extra={"event": "readiness_failed", "reason": failed.detail},
        )
    return JSONResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})
