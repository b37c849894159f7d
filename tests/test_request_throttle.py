"""RequestThrottle: the limit on requests in flight after 429 responses."""

from __future__ import annotations

import asyncio
import time

from budstikke.request_throttle import RequestThrottle


def test_429_halves_limit_once_per_pause() -> None:
    throttle = RequestThrottle(8)

    throttle.record_rate_limited(60)
    throttle.record_rate_limited(60)

    assert throttle.limit == 4


def test_limit_never_below_one() -> None:
    throttle = RequestThrottle(2)

    for _ in range(3):
        throttle.resume_at = 0.0
        throttle.record_rate_limited(0)

    assert throttle.limit == 1


async def test_successes_raise_limit_to_max() -> None:
    throttle = RequestThrottle(3)
    throttle.record_rate_limited(0)
    assert throttle.limit == 1

    for _ in range(1 + 2 + 3):
        await throttle.record_success()

    assert throttle.limit == 3


async def test_slot_waits_out_pause() -> None:
    throttle = RequestThrottle(4)
    throttle.record_rate_limited(0.3)
    started = time.monotonic()

    async with throttle.slot():
        waited_s = time.monotonic() - started

    assert waited_s >= 0.3
    assert throttle.in_flight == 0


async def test_slot_holds_requests_over_limit() -> None:
    throttle = RequestThrottle(2)
    throttle.record_rate_limited(0)
    max_in_flight_seen = 0

    async def request() -> None:
        nonlocal max_in_flight_seen
        async with throttle.slot():
            max_in_flight_seen = max(max_in_flight_seen, throttle.in_flight)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(request() for _ in range(5)))

    assert max_in_flight_seen == 1
