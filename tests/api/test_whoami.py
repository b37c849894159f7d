"""The whoami route: the creator of the credentials, with the same checks as an order."""

from __future__ import annotations

import shlex

import pytest
from click.testing import CliRunner

from budstikke.cli import main
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


def key_command_in(detail: str) -> list[str]:
    """Return the arguments of the `budstikke ...` command quoted in a problem detail."""
    _before, _tick, rest = detail.partition("`budstikke ")
    command, tick, _after = rest.partition("`")
    assert tick, f"no `budstikke ...` command in {detail!r}"
    return shlex.split(command)


@pytest.mark.parametrize(
    ("case", "headers"),
    [
        ("missing", {}),
        ("unknown", {"Authorization": "Bearer bsk_0000000000_unknownsecret"}),
    ],
)
async def test_unauthorized_detail_names_key_command(
    running_app: RunningApp, case: str, headers: dict[str, str]
) -> None:
    response = await running_app.client.get(WHOAMI_PATH, headers=headers)

    assert response.status_code == 401, case
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail"}
    assert body["type"] == "https://tools.ietf.org/html/rfc9110#section-15.5.2"
    assert body["title"] == "Unauthorized"
    assert body["status"] == 401
    assert "`budstikke apikey create --creator ORG`" in body["detail"]
    # The command in the detail must be one the CLI accepts.
    arguments = key_command_in(body["detail"])
    result = CliRunner().invoke(main, [*arguments, "--help"])
    assert result.exit_code == 0, result.output
    assert "--creator" in result.output


async def test_whoami_key_without_scope(running_app: RunningApp) -> None:
    key = await running_app.new_key("ttd", scopes=("some:other/scope",))
    response = await running_app.client.get(WHOAMI_PATH, headers=running_app.headers(key))

    assert response.status_code == 403
