"""Helpers for OTP tests: a clock the test moves, an app on it, and codes read from the outbox."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from budstikke.api.app import create_app
from budstikke.channels.base import Provider
from budstikke.config import Settings
from budstikke.domain.statuses import Channel
from budstikke.store.api_keys import create_api_key
from tests.conftest import API, CREATE_SCOPE, RunningApp

OTP_PATH = f"{API}/otp"
CODE = re.compile(r"\b(\d{4,10})\b")


class FrozenClock:
    """A clock that does not move until the test advances it."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@asynccontextmanager
async def otp_app(
    settings: Settings,
    clock: FrozenClock,
    *,
    providers: Mapping[Channel, Provider] | None = None,
    run_workers: bool = False,
    general_recipient_limits: bool = False,
) -> AsyncIterator[RunningApp]:
    """Run the app on `clock`; without workers only the instant hand-off sends.

    The creator's general per-recipient limits are off unless asked for, so
    that a test sees the OTP limits alone.
    """
    if not general_recipient_limits:
        settings = settings.model_copy(
            update={"recipient_limit_10min": 0, "recipient_limit_day": 0}
        )
    app = create_app(settings, run_workers=run_workers, providers=providers, clock=clock)
    async with app.router.lifespan_context(app):
        services = app.state.services
        _record, key = await create_api_key(
            services.database, creator="ttd", scopes=(CREATE_SCOPE,), now=clock()
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://budstikke.test"
        ) as client:
            yield RunningApp(app, client, settings, services.database, key)


def otp_request(
    *,
    phone: str | None = "+4799999999",
    email: str | None = None,
    idempotency_id: str,
    **fields: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"idempotencyId": idempotency_id, **fields}
    if phone is not None and email is None:
        body["recipientSms"] = {"phoneNumber": phone}
    if email is not None:
        body["recipientEmail"] = {"emailAddress": email}
    return body


async def create(app: RunningApp, key: str | None = None, **fields: Any) -> httpx.Response:
    return await app.client.post(OTP_PATH, headers=app.headers(key), json=otp_request(**fields))


async def check(
    app: RunningApp, verification_id: str, code: Any, key: str | None = None
) -> httpx.Response:
    return await app.client.post(
        f"{OTP_PATH}/{verification_id}/check", headers=app.headers(key), json={"code": code}
    )


async def resend(app: RunningApp, verification_id: str, key: str | None = None) -> httpx.Response:
    return await app.client.post(f"{OTP_PATH}/{verification_id}/resend", headers=app.headers(key))


async def status(app: RunningApp, verification_id: str, key: str | None = None) -> httpx.Response:
    return await app.client.get(f"{OTP_PATH}/{verification_id}", headers=app.headers(key))


def last_code(app: RunningApp, channel: str = "sms") -> str:
    """Return the code of the newest message in the file outbox, as the recipient reads it."""
    lines = app.outbox_lines(channel)
    assert lines, f"no {channel} in the outbox"
    return code_in(lines[-1]["body"])


def code_in(text: str) -> str:
    found = CODE.findall(text)
    assert len(found) == 1, text
    return str(found[0])


def fix_codes(monkeypatch: pytest.MonkeyPatch, *codes: str) -> None:
    """Make the next verifications and resends draw these codes, in this order."""
    queue = iter(codes)
    monkeypatch.setattr("budstikke.dispatch.otp.generate_code", lambda _length: next(queue))


def wrong_code(code: str) -> str:
    """Return another code of the same length."""
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
