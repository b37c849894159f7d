"""OTP races between two app instances on one database, as between two processes.

Each instance has its own engine and connection pool, so the database gets
requests from two independent clients. The `settings` fixture runs each test
on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from budstikke.config import Settings
from budstikke.store.tables import otp_failed_checks, otp_verifications
from tests.api.otp_support import (
    FrozenClock,
    check,
    create,
    last_code,
    otp_app,
    resend,
    wrong_code,
)
from tests.conftest import RunningApp


@asynccontextmanager
async def running_pair(settings: Settings) -> AsyncIterator[tuple[RunningApp, RunningApp]]:
    """Run two app instances on one database, sharing one clock and one creator."""
    clock = FrozenClock(datetime(2026, 12, 4, 10, 0, tzinfo=UTC))
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(otp_app(settings, clock))
        second = await stack.enter_async_context(otp_app(settings, clock))
        second.api_key = first.api_key
        yield first, second


@pytest.fixture
async def two_apps(settings: Settings) -> AsyncIterator[tuple[RunningApp, RunningApp]]:
    async with running_pair(settings) as pair:
        yield pair


async def counted(app: RunningApp, table: Any) -> int:
    async with app.database.read() as connection:
        return int(
            (await connection.execute(select(func.count()).select_from(table))).scalar() or 0
        )


async def test_concurrent_right_codes_approve_exactly_once(
    two_apps: tuple[RunningApp, RunningApp],
) -> None:
    first, second = two_apps
    for round_number in range(5):
        created = await create(first, idempotency_id=f"race-{round_number}")
        verification_id, code = created.json()["verificationId"], last_code(first)

        answers = await asyncio.gather(
            *(check(app, verification_id, code) for app in (first, second, first, second))
        )

        statuses = Counter(answer.json()["status"] for answer in answers)
        assert statuses == Counter({"approved": 1, "expired": 3}), round_number


async def test_concurrent_wrong_codes_are_counted_exactly(
    two_apps: tuple[RunningApp, RunningApp],
) -> None:
    first, second = two_apps
    created = await create(first, idempotency_id="wrong-race")
    verification_id, code = created.json()["verificationId"], last_code(first)
    wrong = wrong_code(code)

    answers = await asyncio.gather(
        *(check(app, verification_id, wrong) for app in (first, second) * 5)
    )

    bodies = [answer.json() for answer in answers]
    remaining = sorted(body["remainingAttempts"] for body in bodies)
    assert remaining == [0, 0, 0, 0, 0, 0, 1, 2, 3, 4]
    assert Counter(body["status"] for body in bodies) == Counter(
        {"pending": 4, "max_attempts_reached": 6}
    )
    assert await counted(first, otp_failed_checks) == 5
    assert (await check(second, verification_id, code)).json()["status"] == "max_attempts_reached"


async def test_concurrent_wrong_codes_respect_the_recipient_limit(settings: Settings) -> None:
    limited = settings.model_copy(update={"otp_failed_check_limit_per_hour": 3})
    async with running_pair(limited) as (first, second):
        verifications = []
        for number in range(2):
            created = await create(first, idempotency_id=f"limit-race-{number}")
            verifications.append((created.json()["verificationId"], last_code(first)))

        answers = await asyncio.gather(
            *(
                check(app, verification_id, wrong_code(code))
                for app in (first, second)
                for verification_id, code in verifications * 3
            )
        )
        failures = await counted(first, otp_failed_checks)

    assert sorted(answer.status_code for answer in answers) == [200] * 3 + [429] * 9
    assert failures == 3


async def test_concurrent_creates_with_one_key_make_one_verification(
    two_apps: tuple[RunningApp, RunningApp],
) -> None:
    first, second = two_apps

    answers = await asyncio.gather(
        *(create(app, idempotency_id="login-once") for app in (first, second) * 5)
    )

    assert sorted(answer.status_code for answer in answers) == [200] * 9 + [201]
    assert len({answer.json()["verificationId"] for answer in answers}) == 1
    assert await counted(first, otp_verifications) == 1
    assert len(first.outbox_lines("sms")) == 1


async def test_concurrent_replays_at_the_limit_are_not_refused(settings: Settings) -> None:
    limited = settings.model_copy(update={"otp_recipient_limit_per_hour": 1})
    async with running_pair(limited) as (first, second):
        answers = await asyncio.gather(
            *(create(app, idempotency_id="login-full") for app in (first, second) * 5)
        )

    assert sorted(answer.status_code for answer in answers) == [200] * 9 + [201]


async def test_concurrent_creates_respect_the_recipient_limit(
    two_apps: tuple[RunningApp, RunningApp],
) -> None:
    first, second = two_apps

    answers = await asyncio.gather(
        *(
            create(app, idempotency_id=f"pump-{number}")
            for number, app in enumerate((first, second) * 6)
        )
    )

    assert sorted(answer.status_code for answer in answers) == [201] * 10 + [429] * 2
    assert len(first.outbox_lines("sms")) == 10


async def test_concurrent_resends_send_one_code(two_apps: tuple[RunningApp, RunningApp]) -> None:
    first, second = two_apps
    created = await create(first, idempotency_id="resend-race")
    verification_id = created.json()["verificationId"]
    clock = first.app.state.services.otp.clock
    clock.advance(30)

    answers = await asyncio.gather(
        *(resend(app, verification_id) for app in (first, second, first, second))
    )

    assert sorted(answer.status_code for answer in answers) == [200, 429, 429, 429]
    assert len(first.outbox_lines("sms")) == 2
    new_code = last_code(first)
    assert (await check(second, verification_id, new_code)).json()["status"] == "approved"
