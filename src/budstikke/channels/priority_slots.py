"""A pool of slots (an SMPP window, SMTP connections) with some kept for instant messages."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from budstikke.domain.statuses import Priority


def reserved_slots(size: int, instant_share: float) -> int:
    """Return how many of `size` slots to keep for instant messages.

    The share is rounded up so that any share above 0 keeps at least one
    slot, but regular messages always keep one: a pool of one slot keeps none.
    """
    if instant_share <= 0 or size < 2:
        return 0
    return min(size - 1, math.ceil(size * instant_share))


class PrioritySlots:
    """A counting semaphore that serves instant waiters first and keeps `reserved` slots for them.

    Regular holders never hold more than `size - reserved` slots, so that
    many are free for instant messages however long the regular queue is.
    A slot that becomes free goes to the oldest instant waiter, else to the
    oldest regular waiter that may take it. After `close` every acquire
    returns at once, and the caller checks its own state to fail.
    """

    def __init__(self, size: int, reserved: int = 0) -> None:
        if size < 1 or not 0 <= reserved < size:
            raise ValueError(f"need size >= 1 and 0 <= reserved < size; got {size} and {reserved}")
        self.size = size
        self.reserved = reserved
        self.in_use = 0
        self.regular_in_use = 0
        self._closed = False
        self._waiters: dict[bool, deque[asyncio.Future[None]]] = {True: deque(), False: deque()}

    @property
    def waiting(self) -> int:
        return sum(1 for queue in self._waiters.values() for f in queue if not f.done())

    def _is_instant(self, priority: Priority) -> bool:
        return priority <= Priority.INSTANT

    def _can_take(self, instant: bool) -> bool:
        if self._closed:
            return True
        if self.in_use >= self.size:
            return False
        return instant or self.regular_in_use < self.size - self.reserved

    def _take(self, instant: bool) -> None:
        self.in_use += 1
        if not instant:
            self.regular_in_use += 1

    async def acquire(self, priority: Priority) -> None:
        instant = self._is_instant(priority)
        # A newcomer does not jump ahead of waiters of its own class or, for a
        # regular message, of any instant waiter.
        queued_ahead = self._waiters[True] or (not instant and self._waiters[False])
        if self._can_take(instant) and not queued_ahead:
            self._take(instant)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[instant].append(future)
        try:
            await future
        except asyncio.CancelledError:
            # The slot may have been handed over just before the cancellation.
            if future.done() and not future.cancelled():
                self.release(priority)
            raise
        finally:
            if future in self._waiters[instant]:
                self._waiters[instant].remove(future)

    def release(self, priority: Priority) -> None:
        instant = self._is_instant(priority)
        self.in_use = max(0, self.in_use - 1)
        if not instant:
            self.regular_in_use = max(0, self.regular_in_use - 1)
        self._hand_over()

    def close(self) -> None:
        """Let every waiter and every later acquire through at once."""
        self._closed = True
        self._hand_over()

    def _hand_over(self) -> None:
        for instant in (True, False):
            queue = self._waiters[instant]
            while queue and self._can_take(instant):
                future = queue.popleft()
                if future.done():
                    continue
                self._take(instant)
                future.set_result(None)

    @asynccontextmanager
    async def hold(self, priority: Priority) -> AsyncIterator[None]:
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release(priority)
