"""A limit on requests in flight that backs off when the server responds 429."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class RequestThrottle:
    """Requests in flight, shared by the workers of one client.

    A 429 halves the limit (down to one request) and delays every request
    until the wait it requested has passed. Each run of `limit` successes
    in a row raises the limit by one, up to `max_in_flight`.
    """

    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self.limit = max_in_flight
        self.in_flight = 0
        self.successes = 0
        # time.monotonic() before which no request is sent.
        self.resume_at = 0.0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a free slot and for the end of any 429 pause, and hold the slot."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        try:
            # A 429 to another request may move resume_at while this one
            # sleeps, so the time is read again after each sleep.
            while (pause_s := self.resume_at - time.monotonic()) > 0:  # noqa: ASYNC110 - see above
                await asyncio.sleep(pause_s)
            yield
        finally:
            async with self._changed:
                self.in_flight -= 1
                self._changed.notify_all()

    def record_rate_limited(self, wait_s: float) -> None:
        """Hold every request for `wait_s` and halve the limit.

        The limit is halved once per pause: requests sent before the pause
        began may also get a 429, and those do not halve it again.
        """
        now = time.monotonic()
        if now >= self.resume_at:
            self.limit = max(1, self.limit // 2)
        self.resume_at = max(self.resume_at, now + wait_s)
        self.successes = 0

    async def record_success(self) -> None:
        self.successes += 1
        if self.successes < self.limit or self.limit >= self.max_in_flight:
            return
        self.successes = 0
        async with self._changed:
            self.limit += 1
            self._changed.notify_all()
