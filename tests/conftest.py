"""Shared fixtures: settings in a temporary folder, a running app, API keys and JWTs."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from budstikke.api.app import create_app
from budstikke.config import Settings
from budstikke.store.api_keys import create_api_key
from budstikke.store.database import Database
from budstikke.store.migrate import upgrade_to_head

pytest_plugins = ["tests.channels.smtp_server"]

T = TypeVar("T")

CREATE_SCOPE = "altinn:serviceowner/notifications.create"
API = "/notifications/api/v1/future"


@dataclass
class JwtIssuer:
    """Mints RS256 tokens with a key that the app's JWKS file lists."""

    private_key: rsa.RSAPrivateKey
    kid: str

    def token(self, claims: dict[str, Any], *, expires_in_s: int = 300) -> str:
        payload = {"exp": int(time.time()) + expires_in_s, **claims}
        return jwt.encode(payload, self.private_key, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture(scope="session")
def jwt_issuer() -> JwtIssuer:
    return JwtIssuer(rsa.generate_private_key(public_exponent=65537, key_size=2048), "test-key")


def write_jwks(path: Path, issuer: JwtIssuer) -> None:
    public = jwt.algorithms.RSAAlgorithm.to_jwk(issuer.private_key.public_key(), as_dict=True)
    public.update({"kid": issuer.kid, "use": "sig", "alg": "RS256"})
    path.write_text(json.dumps({"keys": [public]}))


@pytest.fixture(params=["sqlite", "postgresql"])
async def settings(
    request: pytest.FixtureRequest, tmp_path: Path, jwt_issuer: JwtIssuer
) -> AsyncIterator[Settings]:
    """Settings for an app on each database backend, with file outboxes in a temporary folder."""
    jwks_path = tmp_path / "jwks.json"
    write_jwks(jwks_path, jwt_issuer)
    base = Settings(
        data_dir=tmp_path / "data",
        jwks_url=f"file:{jwks_path}",
        default_sms_sender="Budstikke",
        default_email_sender="noreply@budstikke.example.com",
    )
    if request.param == "sqlite":
        yield base
        return
    # One migrated database serves every app test; emptying its tables is
    # much faster than creating a database per test.
    name = request.getfixturevalue("postgres_app_database")
    await empty_tables(name)
    yield base.model_copy(update={"database_url": postgres_url(name)})


def postgres_url(name: str) -> str:
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)


async def empty_tables(name: str) -> None:
    """Delete every row of every table (but Alembic's version) in a PostgreSQL database."""
    connection = await asyncpg.connect(postgres_url(name).replace("+asyncpg", ""))
    try:
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"
        )
        names = ", ".join(f'"{row["tablename"]}"' for row in tables)
        if names:
            await connection.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()


@dataclass
class RunningApp:
    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings
    database: Database
    api_key: str  # creator ttd with the create scope

    async def new_key(self, creator: str, scopes: tuple[str, ...] = (CREATE_SCOPE,)) -> str:
        _record, key = await create_api_key(
            self.database, creator=creator, scopes=scopes, now=datetime.now(UTC)
        )
        return key

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}

    def outbox_lines(self, channel: str) -> list[dict[str, Any]]:
        path = self.settings.data_dir / "outbox" / f"{channel}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
async def running_app(settings: Settings) -> AsyncIterator[RunningApp]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        services = app.state.services
        _record, key = await create_api_key(
            services.database, creator="ttd", scopes=(CREATE_SCOPE,), now=datetime.now(UTC)
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://budstikke.test"
        ) as client:
            yield RunningApp(app, client, settings, services.database, key)


POSTGRES_ADMIN_URL = os.environ.get(
    "BUDSTIKKE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def postgres_answers() -> bool:
    try:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


@asynccontextmanager
async def fresh_postgres_database(template: str | None = None) -> AsyncIterator[str]:
    """Create a PostgreSQL database for one test, as a copy of `template` or empty."""
    name = f"budstikke_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        copy_of = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{copy_of}')
    finally:
        await admin.close()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
    finally:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty database on each backend."""
    if request.param == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
        await upgrade_to_head(database)
        yield database
        await database.dispose()
        return
    if not await postgres_answers():
        pytest.skip(f"PostgreSQL does not answer at {POSTGRES_ADMIN_URL}")
    async with fresh_postgres_database() as url:
        database = Database(url)
        await upgrade_to_head(database)
        yield database
        await database.dispose()


class FakeClock:
    """A clock that only moves when a test moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def wait_for(condition: Callable[[], Awaitable[bool]], *, timeout_s: float = 10.0) -> None:
    """Poll an async condition until it holds; fail the test when the timeout passes."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def run_app(settings: Settings, **options: Any) -> AsyncIterator[RunningApp]:
    """Start an app with custom options (providers, clock) and a ttd API key."""
    app = create_app(settings, **options)
    async with app.router.lifespan_context(app):
        services = app.state.services
        _record, key = await create_api_key(
            services.database, creator="ttd", scopes=(CREATE_SCOPE,), now=datetime.now(UTC)
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://budstikke.test"
        ) as client:
            yield RunningApp(app, client, settings, services.database, key)


async def shipment_status(app: RunningApp, shipment_id: str) -> tuple[str, str]:
    """Return the order status and the first recipient's status of a shipment."""
    response = await app.client.get(f"{API}/shipment/{shipment_id}", headers=app.headers())
    body = response.json()
    return body["status"], body["recipients"][0]["status"]


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated database that each PostgreSQL test copies, which is faster than migrating."""
    if not run_outside_loop(postgres_answers):
        pytest.skip(f"PostgreSQL does not answer at {POSTGRES_ADMIN_URL}")
    name = f"budstikke_template_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
        database = Database(f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1))
        await upgrade_to_head(database)
        await database.dispose()

    async def drop() -> None:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    run_outside_loop(create)
    yield name
    run_outside_loop(drop)


def run_outside_loop(function: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine function to completion in a new event loop on another thread.

    Session fixtures may be first requested from inside a test's running loop,
    where asyncio.run cannot be called.
    """

    async def main() -> T:
        return await function()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


@pytest.fixture(scope="session")
def postgres_app_database(postgres_template: str) -> Iterator[str]:
    """A migrated database shared by the app tests, which empty it before each test.

    It is a copy of the template, because a database that has connections
    cannot serve as a template for the tests that need a database of their own.
    """
    name = f"budstikke_apps_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
        finally:
            await admin.close()

    async def drop() -> None:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    run_outside_loop(create)
    yield name
    run_outside_loop(drop)
