"""Regular work on the event loop waits while an instant order is being placed.

An instant order's path (store, hand off, read the provider's response) is a
few short steps, each of which waits for the event loop. When a regular
batch (claiming regular orders, writing hand-off records and receipts)
starts just before one of those steps, the instant order waits for all of
it. So a regular loop calls wait_turn() before each batch: while an
instant order is in flight the batch waits until none is, for at most
MAX_WAIT_S. Only orders placed in the last MAX_WAIT_S count, so an order
that waits for a slow provider does not slow down regular work for as
long as it waits. While instant orders never stop coming, each regular
batch waits the whole MAX_WAIT_S.

The count is per process: it orders work on one event loop, not across
processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

# Maximum time a regular batch waits for instant orders. An instant order
# takes 2 to 5 ms on an idle server (bench/priority.py), so most waits end
# long before this.
MAX_WAIT_S = 0.025


class InstantFirst:
    """Counts the instant orders being placed and lets regular batches wait for them."""

    def __init__(self, max_wait_s: float = MAX_WAIT_S) -> None:
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be 0 or more, not {max_wait_s}")
        self.max_wait_s = max_wait_s
        # Monotonic start time of each order being placed, oldest first.
        self._started: dict[object, float] = {}
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def in_flight(self) -> int:
        return len(self._started)

    @contextlib.contextmanager
    def placing(self) -> Iterator[None]:
        """Count an instant order as in flight while the block runs."""
        order = object()
        self._started[order] = time.monotonic()
        try:
            yield
        finally:
            del self._started[order]
            if self.hold_s() <= 0:
                self._release_waiters()

    async def wait_turn(self, woken: asyncio.Future[None] | None = None) -> None:
        """Wait until no instant order is in flight, for at most `max_wait_s`.

        An order placed more than `max_wait_s` ago (one that waits for a
        slow provider) no longer makes regular work wait. The caller may
        pass `woken`, a future it resolves itself to end the wait early (the
        outcome writer does when an instant hand-off record arrives, which
        must not wait for the order it belongs to).
        """
        hold_s = self.hold_s()
        if hold_s <= 0:
            return
        waiter = woken if woken is not None else asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            # asyncio.wait leaves the future pending when the time is up, so a
            # caller's own `woken` future is never cancelled here.
            await asyncio.wait((waiter,), timeout=hold_s)
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def hold_s(self) -> float:
        """Return the seconds until no order makes regular work wait; 0 or less when none does."""
        if not self._started:
            return 0.0
        newest_s = next(reversed(self._started.values()))
        return newest_s + self.max_wait_s - time.monotonic()

    def _release_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
