"""Regular work on the event loop waits while an instant order is being placed.

An instant order's path (store, hand off, read the provider's response) is a
few short steps, each of which waits for the event loop. When a regular
batch (claiming regular orders, writing hand-off records and receipts)
starts just before one of those steps, the instant order waits for all of
it. So a regular loop asks for its turn before each batch: while an
instant order is in flight the batch waits until none is, for at most
MAX_WAIT_S. The bound keeps regular work moving when instant orders are
slow (a provider that responds late) or never stop coming.

The count is per process: it orders work on one event loop, not across
processes.
"""

from __future__ import annotations

import asyncio
import contextlib
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
        self._in_flight = 0
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @contextlib.contextmanager
    def placing(self) -> Iterator[None]:
        """Count an instant order as in flight while the block runs."""
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._release_waiters()

    async def wait_turn(self, woken: asyncio.Future[None] | None = None) -> None:
        """Wait until no instant order is in flight, for at most `max_wait_s`.

        The caller may pass `woken`, a future it resolves itself to end the
        wait early (the outcome writer does when an instant hand-off record
        arrives, which must not wait for the order it belongs to).
        """
        if self._in_flight == 0:
            return
        waiter = woken if woken is not None else asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.max_wait_s):
                await waiter
        except TimeoutError:
            pass
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _release_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
