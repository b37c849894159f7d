"""The whoami route: the creator of the credentials, with the same checks as an order."""

from __future__ import annotations

from tests.conftest import API, JwtIssuer, RunningApp

WHOAMI_PATH = f"{API}/whoami"


async def test_whoami_names_key_creator(running_app: RunningApp) -> None:
    response = await running_app.client.get(WHOAMI_PATH, headers=running_app.headers())

    assert response.status_code == 200
    assert response.json() == {"creator": "ttd"}


async def test_whoami_names_jwt_creator(running_app: RunningApp, jwt_issuer: JwtIssuer) -> None:
    token = jwt_issuer.token(
        {"scope": "altinn:serviceowner/notifications.create", "urn:altinn:org": "digdir"}
    )
    response = await running_app.client.get(WHOAMI_PATH, headers=running_app.headers(token))

    assert response.status_code == 200
    assert response.json() == {"creator": "digdir"}


async def test_whoami_without_credentials(running_app: RunningApp) -> None:
    response = await running_app.client.get(WHOAMI_PATH)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_whoami_key_without_scope(running_app: RunningApp) -> None:
    key = await running_app.new_key("ttd", scopes=("some:other/scope",))
    response = await running_app.client.get(WHOAMI_PATH, headers=running_app.headers(key))

    assert response.status_code == 403
