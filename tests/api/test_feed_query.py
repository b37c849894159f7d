"""The seq query parameter of the status feed: its range and its error message."""

from __future__ import annotations

import pytest

from tests.conftest import API, RunningApp

FEED_PATH = f"{API}/shipment/feed"


@pytest.mark.parametrize("seq", ["-1", "99999999999999999999", "9223372036854775808", "x"])
async def test_invalid_seq_states_range(running_app: RunningApp, seq: str) -> None:
    response = await running_app.client.get(
        FEED_PATH, params={"seq": seq}, headers=running_app.headers()
    )

    assert response.status_code == 400
    [message] = response.json()["errors"]["seq"]
    assert message == f"seq must be an integer from 0 to 9223372036854775807; got {seq!r}."


async def test_largest_seq_accepted(running_app: RunningApp) -> None:
    response = await running_app.client.get(
        FEED_PATH, params={"seq": "9223372036854775807"}, headers=running_app.headers()
    )

    assert response.status_code == 200
    assert response.json() == []
