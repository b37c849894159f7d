"""Verified API keys are remembered briefly: a revocation reaches a running server in 1 s."""

from __future__ import annotations

from datetime import UTC, datetime

from budstikke.api.key_cache import KEY_CACHE_S, KeyCache
from budstikke.store.api_keys import KeyOwner, list_api_keys, revoke_api_key
from tests.conftest import API, RunningApp

WHOAMI_PATH = f"{API}/whoami"


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


async def test_revoked_key_stops_within_cache_time(running_app: RunningApp) -> None:
    clock = FakeClock()
    running_app.app.state.services.authenticator.key_cache = KeyCache(clock=clock)
    first = await running_app.client.get(WHOAMI_PATH, headers=running_app.headers())
    (record,) = await list_api_keys(running_app.database)
    await revoke_api_key(running_app.database, record.id, datetime.now(UTC))

    clock.now_s += KEY_CACHE_S / 2
    within = await running_app.client.get(WHOAMI_PATH, headers=running_app.headers())
    clock.now_s += KEY_CACHE_S / 2
    after = await running_app.client.get(WHOAMI_PATH, headers=running_app.headers())

    assert first.status_code == 200
    assert within.status_code == 200
    assert after.status_code == 401


async def test_unknown_key_is_not_remembered(running_app: RunningApp) -> None:
    cache = running_app.app.state.services.authenticator.key_cache
    unknown = "bsk_000000000000_" + "x" * 43

    response = await running_app.client.get(WHOAMI_PATH, headers=running_app.headers(unknown))

    assert response.status_code == 401
    assert cache.get(unknown) is None


def test_cache_forgets_after_ttl() -> None:
    clock = FakeClock()
    cache = KeyCache(ttl_s=1.0, clock=clock)
    owner = KeyOwner(creator="ttd", scopes=frozenset())
    cache.remember("k", owner)

    assert cache.get("k") == owner
    clock.now_s += 1.0
    assert cache.get("k") is None


def test_cache_starts_over_when_full() -> None:
    cache = KeyCache(max_size=2, clock=FakeClock())
    owner = KeyOwner(creator="ttd", scopes=frozenset())
    for key in ("a", "b", "c"):
        cache.remember(key, owner)

    assert cache.get("a") is None
    assert cache.get("b") is None
    assert cache.get("c") == owner


def test_zero_ttl_remembers_nothing() -> None:
    cache = KeyCache(ttl_s=0.0, clock=FakeClock())
    cache.remember("k", KeyOwner(creator="ttd", scopes=frozenset()))

    assert cache.get("k") is None
