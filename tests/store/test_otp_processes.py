"""OTP checks from several operating-system processes at once, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import budstikke
from budstikke.domain.otp import OtpStatus, code_digest
from budstikke.domain.statuses import Channel
from budstikke.store.database import Database
from budstikke.store.otp import NewVerification, OtpStore

KEY = bytes(32)
PROCESSES = 4

# Each process waits for a common start time, then checks one digest `count` times.
CHECKER = """
import asyncio, json, sys, time, uuid
from datetime import UTC, datetime
from budstikke.store.database import Database
from budstikke.store.otp import OtpStore

async def main(url, verification_id, digest, count, start_at):
    database = Database(url)
    store = OtpStore(database)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    results = []
    for _ in range(count):
        outcome = await store.check(
            "ttd", uuid.UUID(verification_id), submitted_digest=digest,
            failed_check_limit=1000, now=datetime.now(UTC),
        )
        results.append([outcome.counted, outcome.approved, outcome.verification.attempts])
    await database.dispose()
    print(json.dumps(results))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
"""


async def new_verification(database: Database) -> uuid.UUID:
    now = datetime.now(UTC)
    verification_id = uuid.uuid4()
    new = NewVerification(
        id=verification_id,
        creator="ttd",
        idempotency_id=str(verification_id),
        channel=Channel.SMS,
        recipient="+4799999999",
        sender=None,
        senders_reference=None,
        language="nb",
        template=None,
        code_length=6,
        code_digest=code_digest(KEY, verification_id, "482913"),
        expires_at=now + timedelta(seconds=300),
    )
    await OtpStore(database).create(new, recipient_limit=100, now=now)
    return verification_id


async def run_checkers(
    database: Database, verification_id: uuid.UUID, code: str, count: int
) -> list[list[object]]:
    environment = {**os.environ, "PYTHONPATH": str(Path(budstikke.__file__).parents[1])}
    digest = code_digest(KEY, verification_id, code)
    start_at = time.time() + 2.0
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHECKER,
            database.url,
            str(verification_id),
            digest,
            str(count),
            str(start_at),
            stdout=asyncio.subprocess.PIPE,
            env=environment,
        )
        for _ in range(PROCESSES)
    ]
    results: list[list[object]] = []
    for process in processes:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 0
        results.extend(json.loads(output))
    return results


@pytest.mark.slow
async def test_right_code_from_four_processes_is_approved_once(database: Database) -> None:
    verification_id = await new_verification(database)

    results = await run_checkers(database, verification_id, "482913", count=1)

    assert Counter(approved for _counted, approved, _attempts in results) == {True: 1, False: 3}
    stored = await OtpStore(database).get("ttd", verification_id)
    assert stored is not None
    assert stored.status is OtpStatus.APPROVED
    assert stored.attempts == 1


@pytest.mark.slow
async def test_wrong_codes_from_four_processes_are_counted_exactly(database: Database) -> None:
    verification_id = await new_verification(database)

    results = await run_checkers(database, verification_id, "000000", count=3)

    counted_attempts = sorted(attempts for counted, _approved, attempts in results if counted)
    assert counted_attempts == [1, 2, 3, 4, 5]
    assert len(results) == 12
    stored = await OtpStore(database).get("ttd", verification_id)
    assert stored is not None
    assert stored.status is OtpStatus.MAX_ATTEMPTS_REACHED
    assert stored.attempts == 5
