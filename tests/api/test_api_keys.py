"""API keys: stored as hashes, listed by prefix, and revoked across processes within a second."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import select

from budstikke.api.key_cache import KEY_CACHE_S
from budstikke.config import Settings
from budstikke.store.api_keys import list_api_keys, revoke_api_key
from budstikke.store.tables import api_keys
from tests.api.servers import cli_environment, create_api_key_with_cli, run_cli, serve_process
from tests.conftest import API, RunningApp, run_app

WHOAMI_PATH = f"{API}/whoami"
# Time allowed beyond the cache lifetime for the requests themselves.
SLACK_S = 1.0


async def status_of(app: RunningApp, key: str) -> int:
    response = await app.client.get(WHOAMI_PATH, headers=app.headers(key))
    return response.status_code


async def test_only_hash_of_key_stored(running_app: RunningApp) -> None:
    async with running_app.database.read() as connection:
        rows = (await connection.execute(select(api_keys))).all()

    [row] = rows
    _marker, prefix, secret = running_app.api_key.split("_", 2)
    assert row.prefix == prefix
    assert row.secret_hash == hashlib.sha256(running_app.api_key.encode()).hexdigest()
    assert all(secret not in str(value) for value in row)


async def test_right_prefix_wrong_secret_rejected(running_app: RunningApp) -> None:
    marker, prefix, secret = running_app.api_key.split("_", 2)
    forged = f"{marker}_{prefix}_{'A' * len(secret)}"

    assert await status_of(running_app, forged) == 401
    assert await status_of(running_app, running_app.api_key) == 200


async def test_revocation_reaches_both_apps(settings: Settings) -> None:
    """Two app instances on one database, as two processes: both stop taking the key."""
    async with run_app(settings) as first, run_app(settings) as second:
        key = first.api_key
        # Both apps have just found the key valid and remember it.
        assert await status_of(first, key) == 200
        assert await status_of(second, key) == 200
        prefix = key.split("_", 2)[1]
        [record] = [item for item in await list_api_keys(first.database) if item.prefix == prefix]
        await revoke_api_key(first.database, record.id, datetime.now(UTC))
        revoked_at = time.monotonic()

        stopped_after_s = {}
        while len(stopped_after_s) < 2 and time.monotonic() - revoked_at < 5:
            for name, app in (("first", first), ("second", second)):
                if name not in stopped_after_s and await status_of(app, key) == 401:
                    stopped_after_s[name] = time.monotonic() - revoked_at
            await asyncio.sleep(0.05)

    assert set(stopped_after_s) == {"first", "second"}
    assert max(stopped_after_s.values()) <= KEY_CACHE_S + SLACK_S


def test_cli_revoke_stops_running_server(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path / "data")
    key = create_api_key_with_cli(environment)
    listing = run_cli("apikey", "list", environment=environment)
    key_id = listing.stdout.splitlines()[1].split()[0]
    with serve_process(environment, tmp_path) as server:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as client:
            before = client.get(WHOAMI_PATH).status_code
            revoke = run_cli("apikey", "revoke", key_id, environment=environment)
            revoked_at = time.monotonic()
            after = before
            while after == 200 and time.monotonic() - revoked_at < 5:
                after = client.get(WHOAMI_PATH).status_code
            stopped_after_s = time.monotonic() - revoked_at

    assert before == 200
    assert revoke.returncode == 0, revoke.stderr
    assert after == 401
    assert stopped_after_s <= KEY_CACHE_S + SLACK_S
    _marker, prefix, secret = key.split("_", 2)
    assert prefix in listing.stdout
    assert secret not in listing.stdout + listing.stderr
