"""Fixtures: a test SMSC on 127.0.0.1 port 0 and SMPP providers bound to it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from budstikke.channels.base import DeliveryReport, OutgoingSms
from budstikke.channels.smpp import SmppConfig, SmppProvider
from budstikke.channels.smpp.dev_smsc import DevSmsc, DevSmscOptions

SYSTEM_ID = "budstikke"
PASSWORD = "secret"


def make_sms(
    body: str = "Din kode er 482913",
    *,
    sender: str = "Kommune",
    recipient: str = "+4799999999",
    ttl_s: float = 300.0,
) -> OutgoingSms:
    return OutgoingSms(
        notification_id=uuid.uuid4(),
        recipient=recipient,
        sender=sender,
        body=body,
        expires_at=datetime.now(UTC) + timedelta(seconds=ttl_s),
    )


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


@dataclass
class Harness:
    """A started provider and the delivery reports its sink received."""

    provider: SmppProvider
    reports: list[DeliveryReport] = field(default_factory=list)

    async def wait_for_reports(self, count: int, timeout_s: float = 5.0) -> None:
        await wait_until(lambda: len(self.reports) >= count, timeout_s)

    def reports_for(self, message_id: str) -> list[DeliveryReport]:
        keys = self.provider.reference_keys(message_id)
        return [
            r for r in self.reports if set(self.provider.reference_keys(r.provider_ref)) & set(keys)
        ]


StartProvider = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def smsc() -> AsyncIterator[DevSmsc]:
    async with DevSmsc(DevSmscOptions(port=0, receipt_delay_s=0.05, seed=1)) as server:
        yield server


@pytest.fixture
async def start_provider(smsc: DevSmsc) -> AsyncIterator[StartProvider]:
    harnesses: list[Harness] = []

    async def start(*, wait_bound: bool = True, **overrides: Any) -> Harness:
        settings: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": smsc.port,
            "system_id": SYSTEM_ID,
            "password": PASSWORD,
            "response_timeout_s": 2.0,
            "connect_timeout_s": 2.0,
            "reconnect_initial_s": 0.05,
            "reconnect_max_s": 0.2,
            "bind_wait_s": 2.0,
            "throttle_pause_s": 0.05,
            "throttle_max_pause_s": 0.2,
        }
        settings.update(overrides)
        ssl_context = settings.pop("ssl_context", None)
        harness = Harness(SmppProvider(SmppConfig(**settings), ssl_context=ssl_context))

        async def sink(report: DeliveryReport) -> None:
            harness.reports.append(report)

        await harness.provider.start(sink)
        harnesses.append(harness)
        if wait_bound:
            await wait_until(lambda: harness.provider.is_ready()[0])
        return harness

    yield start
    for harness in harnesses:
        await harness.provider.stop()
