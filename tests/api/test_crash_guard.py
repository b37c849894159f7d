"""An unexpected exception in a route: one 500 problem, one log line, a usable connection."""

from __future__ import annotations

import logging

import pytest

from tests.api.orders import EMAIL_PATH, SMS_PATH, email_order, sms_order
from tests.conftest import RunningApp


async def test_crash_answers_500_problem_once_logged(
    running_app: RunningApp, caplog: pytest.LogCaptureFixture
) -> None:
    async def crash() -> None:
        raise RuntimeError("route bug")

    running_app.app.add_api_route("/crash-for-test", crash)

    with caplog.at_level(logging.ERROR):
        first = await running_app.client.get("/crash-for-test")
        second = await running_app.client.get("/crash-for-test")

    assert first.status_code == 500
    assert first.headers["content-type"] == "application/problem+json"
    assert first.json()["title"] == "Internal server error"
    assert second.status_code == 500
    crashes = [
        record for record in caplog.records if getattr(record, "event", "") == "request_crashed"
    ]
    assert len(crashes) == 2


async def test_trailing_slash_is_not_redirected(running_app: RunningApp) -> None:
    response = await running_app.client.post(
        "/notifications/api/v1/future/orders/instant/sms/",
        headers={**running_app.headers(), "Host": "evil.example"},
        json={},
    )
    assert response.status_code == 404
    assert "location" not in response.headers


@pytest.mark.parametrize("cookie", ["\u00b2.abc", "9" * 5000 + ".abc", ".", "x"])
async def test_bad_dashboard_cookie_is_not_a_session(running_app: RunningApp, cookie: str) -> None:
    from budstikke.api.dashboard import session_is_valid

    assert session_is_valid("operator-key-for-tests", cookie, 0.0) is False


async def test_sms_sender_with_00_stays_international(running_app: RunningApp) -> None:
    response = await running_app.client.post(
        SMS_PATH, headers=running_app.headers(), json=sms_order(sender="0047")
    )
    assert response.status_code == 201
    assert running_app.outbox_lines("sms")[-1]["sender"] == "+47"


@pytest.mark.parametrize(
    "subject", ["=?utf-8?q?x=0D=0ABcc:_victim@example.com?=", "=?utf-8?b?eA0KQmNjOiB4?="]
)
async def test_encoded_line_break_in_subject_is_400(running_app: RunningApp, subject: str) -> None:
    response = await running_app.client.post(
        EMAIL_PATH, headers=running_app.headers(), json=email_order(subject=subject)
    )
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["recipientEmail.emailSettings.subject"]


async def test_nan_is_not_json(running_app: RunningApp) -> None:
    body = b'{"idempotencyId": "nan", "recipientSms": {"timeToLiveInSeconds": NaN}}'
    response = await running_app.client.post(
        SMS_PATH,
        headers={**running_app.headers(), "Content-Type": "application/json"},
        content=body,
    )
    assert response.status_code == 400
    assert "NaN" in response.json()["errors"]["$"][0]


async def test_feed_accepts_largest_sequence_number(running_app: RunningApp) -> None:
    response = await running_app.client.get(
        "/notifications/api/v1/future/shipment/feed?seq=9223372036854775807",
        headers=running_app.headers(),
    )
    assert response.status_code == 200
    assert response.json() == []
