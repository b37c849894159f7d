"""Liveness and readiness: database, schema revision and each provider with its reason."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
from sqlalchemy import text

from budstikke.api.app import create_app
from budstikke.api.health import check_database, migration_head
from budstikke.channels.base import Provider
from budstikke.channels.outbox import FileOutbox
from budstikke.channels.smpp import SmppProvider
from budstikke.channels.smtp import SmtpProvider
from budstikke.config import Settings
from budstikke.domain.statuses import Channel
from budstikke.store.api_keys import create_api_key
from budstikke.store.database import Database
from tests.api.orders import EMAIL_PATH, email_order
from tests.conftest import CREATE_SCOPE, RunningApp
from tests.serve_process import free_port


@asynccontextmanager
async def client_for(
    settings: Settings, providers: Mapping[Channel, Provider] | None = None, **options: object
) -> AsyncIterator[tuple[httpx.AsyncClient, Database]]:
    app = create_app(settings, providers=providers, **options)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        database = app.state.services.database
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://budstikke.test"
        ) as client:
            yield client, database


async def test_live_answers_without_checks(running_app: RunningApp) -> None:
    response = await running_app.client.get("/health/live")

    assert response.status_code == 200
    assert response.json()["status"] == "alive"


async def test_ready_with_file_providers(running_app: RunningApp) -> None:
    response = await running_app.client.get("/health/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == {"ok": True, "detail": "answers"}
    assert body["checks"]["migrations"] == {
        "ok": True,
        "detail": f"at revision {migration_head()}",
    }
    assert body["providers"]["sms"]["kind"] == "file"
    assert body["providers"]["sms"]["ready"] is True
    assert body["providers"]["email"]["ready"] is True


@asynccontextmanager
async def schema_revision_set_to(database: Database, revision: str) -> AsyncIterator[None]:
    """Pretend the schema is at `revision`, and put the real one back afterwards.

    The PostgreSQL app tests share one database and keep its alembic_version,
    so a revision left behind would make the next app migrate again.
    """
    update = text("UPDATE alembic_version SET version_num = :revision")
    async with database.write() as connection:
        real = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        await connection.execute(update, {"revision": revision})
    try:
        yield
    finally:
        async with database.write() as connection:
            await connection.execute(update, {"revision": real})


async def test_ready_fails_when_schema_is_behind(running_app: RunningApp) -> None:
    async with schema_revision_set_to(running_app.database, "0001"):
        response = await running_app.client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["migrations"]["ok"] is False
    assert "at revision 0001" in body["checks"]["migrations"]["detail"]
    assert "budstikke migrate" in body["checks"]["migrations"]["detail"]


async def test_newer_schema_keeps_old_process_ready(running_app: RunningApp) -> None:
    async with schema_revision_set_to(running_app.database, "ffff"):
        response = await running_app.client.get("/health/ready")

    assert response.status_code == 200
    migrations = response.json()["checks"]["migrations"]
    assert migrations["ok"] is True
    assert "newer than this version" in migrations["detail"]


async def test_database_check_reports_refused_connection() -> None:
    database = Database(f"postgresql+asyncpg://budstikke@127.0.0.1:{free_port()}/none")
    try:
        reachable, migrations = await check_database(database)
    finally:
        await database.dispose()

    assert reachable.ok is False
    assert reachable.detail
    assert migrations.ok is False
    assert "did not answer" in migrations.detail


async def test_unbound_smpp_is_degraded_with_reason(settings: Settings) -> None:
    closed_port = free_port()
    providers: Mapping[Channel, Provider] = {
        Channel.SMS: SmppProvider.from_url(f"smpp://budstikke:secret@127.0.0.1:{closed_port}"),
        Channel.EMAIL: FileOutbox(Channel.EMAIL, settings.data_dir / "outbox" / "email.jsonl"),
    }
    async with client_for(settings, providers) as (client, _database):
        response = await client.get("/health/ready")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    sms = body["providers"]["sms"]
    assert sms["kind"] == "smpp"
    assert sms["ready"] is False
    assert sms["detail"].startswith("no SMPP session is bound")
    assert sms["configuredSessions"] == 1
    assert body["providers"]["email"]["ready"] is True


async def test_failed_smtp_is_degraded_with_reason(settings: Settings) -> None:
    providers: Mapping[Channel, Provider] = {
        Channel.SMS: FileOutbox(Channel.SMS, settings.data_dir / "outbox" / "sms.jsonl"),
        Channel.EMAIL: SmtpProvider.from_url(f"smtp://127.0.0.1:{free_port()}?tls=none"),
    }
    async with client_for(settings, providers) as (client, database):
        _record, key = await create_api_key(
            database, creator="ttd", scopes=(CREATE_SCOPE,), now=datetime.now(UTC)
        )
        await client.post(
            EMAIL_PATH,
            headers={"Authorization": f"Bearer {key}"},
            json=email_order(address="kari.nordmann@example.com"),
        )
        response = await client.get("/health/ready")

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "degraded"
    email = body["providers"]["email"]
    assert email["kind"] == "smtp"
    assert email["ready"] is False
    assert "127.0.0.1" in email["detail"] or "connect" in email["detail"].lower()
    assert "kari.nordmann" not in response.text


async def test_api_only_process_names_no_providers(settings: Settings) -> None:
    async with client_for(settings, {}, run_workers=False) as (client, _database):
        response = await client.get("/health/ready")

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "ready"
    assert body["providers"] == {}
    assert "workers run the providers" in body["providersDetail"]
