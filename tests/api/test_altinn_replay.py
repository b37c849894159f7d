"""Every replayable recorded Altinn case, run against budstikke with its expectations."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.replay import CASES, CASES_BY_ID, Replay, check_case
from tests.conftest import API, JwtIssuer, RunningApp

REPLAYABLE = [case for case in CASES if case["replayable"]]


def with_dependencies(case: dict[str, Any]) -> list[dict[str, Any]]:
    chain: list[dict[str, Any]] = []
    for dependency in case.get("depends_on", []):
        chain.extend(with_dependencies(CASES_BY_ID[dependency]))
    return [*chain, case]


async def seed_feed(app: RunningApp) -> None:
    """Complete orders of the caller's creator and of another, so feed checks see data."""
    other = await app.new_key("xyz")
    for index in range(3):
        for key, reference in ((app.api_key, f"seed-{index}"), (other, "other-creator")):
            response = await app.client.post(
                f"{API}/orders/instant/sms",
                headers=app.headers(key),
                json={
                    "idempotencyId": f"seed-{index}",
                    "sendersReference": reference,
                    "recipientSms": {
                        "phoneNumber": "+4799999999",
                        "timeToLiveInSeconds": 300,
                        "smsSettings": {"body": "seed"},
                    },
                },
            )
            assert response.status_code == 201


@pytest.mark.parametrize("case", REPLAYABLE, ids=[case["id"] for case in REPLAYABLE])
async def test_recorded_case(
    case: dict[str, Any], running_app: RunningApp, jwt_issuer: JwtIssuer
) -> None:
    replay = Replay(running_app, jwt_issuer)
    if "/shipment/feed" in case["path"]:
        await seed_feed(running_app)
    for step in with_dependencies(case):
        await check_case(replay, step)


async def test_feed_is_empty_on_fresh_system(running_app: RunningApp) -> None:
    response = await running_app.client.get(
        f"{API}/shipment/feed?seq=0", headers=running_app.headers()
    )
    assert response.status_code == 200
    assert response.json() == []
