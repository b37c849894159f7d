"""The queue of condition checks: background tasks with a share of the slots for each creator.

A condition check takes up to the checker's timeout (5 s). If a pass of
the regular order loop waited for its checks, one creator whose endpoints
answer slowly would hold back every other order of the pass, plain ones
included. So each check runs as its own task, at most `per_creator` at once
for one creator and `total` at once in all. An order that finds its
creator's slots taken waits in memory, up to `max_waiting_per_creator` for
one creator and `max_waiting` in all, so the wait stays well within the
order's lease. The caller releases an order that does not fit until the
time `defer_until` returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID

from budstikke.store.regular_orders import DueRegularOrder

logger = logging.getLogger(__name__)

# The expected duration of a creator's first check, before any was measured.
FIRST_CHECK_S: Final = 0.5
# Weight of the newest duration in a creator's moving average.
DURATION_WEIGHT: Final = 0.2
MIN_DEFER_S: Final = 1.0
# A deferral ends within the 10 minutes a condition endpoint may take to
# answer, so an estimate that turns out too long costs at most that.
MAX_DEFER_S: Final = 600.0

CheckOrder = Callable[[DueRegularOrder], Awaitable[None]]


class ConditionQueue:
    """Runs `check` for each submitted order in a task, fairly across creators."""

    def __init__(
        self,
        check: CheckOrder,
        *,
        total: int,
        per_creator: int,
        max_waiting: int,
        max_waiting_per_creator: int,
    ) -> None:
        self.check = check
        self.total = total
        self.per_creator = per_creator
        self.max_waiting = max_waiting
        self.max_waiting_per_creator = max_waiting_per_creator
        self._running: dict[UUID, asyncio.Task[None]] = {}
        self._running_per_creator: Counter[str] = Counter()
        # Insertion order of the creators is the round-robin order in which
        # free slots are handed out.
        self._waiting: dict[str, deque[DueRegularOrder]] = {}
        self._waiting_ids: set[UUID] = set()
        self._duration_s: dict[str, float] = {}
        self._next_deferral: dict[str, datetime] = {}

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting_ids)

    def submit(self, order: DueRegularOrder) -> bool:
        """Start or queue the check of an order; returns False when the caller must defer it.

        An order that is already running or waiting here, because it was
        claimed again, is accepted and not checked twice.
        """
        if order.order_id in self._running or order.order_id in self._waiting_ids:
            return True
        if self._has_free_slot(order.creator):
            self._start(order)
            return True
        queue = self._waiting.get(order.creator)
        queued = 0 if queue is None else len(queue)
        if queued >= self.max_waiting_per_creator or self.waiting >= self.max_waiting:
            return False
        self._waiting.setdefault(order.creator, deque()).append(order)
        self._waiting_ids.add(order.order_id)
        return True

    def defer_until(self, creator: str, now: datetime) -> datetime:
        """Return when an order that did not fit should be claimed again.

        The deferred orders of a creator get consecutive times, spaced by
        the creator's measured check duration divided by its slots, after
        the time its waiting orders need. So a creator with slow endpoints
        gets each order back about when there is room for it, and the
        orders are not claimed and released again and again meanwhile.
        """
        duration_s = self._duration_s.get(creator, FIRST_CHECK_S)
        drain_s = (self.max_waiting_per_creator // self.per_creator + 1) * duration_s
        earliest = now + timedelta(seconds=max(MIN_DEFER_S, drain_s))
        latest = now + timedelta(seconds=MAX_DEFER_S)
        slot = min(max(self._next_deferral.get(creator, earliest), earliest), latest)
        self._next_deferral[creator] = slot + timedelta(seconds=duration_s / self.per_creator)
        return slot

    async def close(self) -> list[DueRegularOrder]:
        """Wait for the running checks; return the orders still waiting, which were not checked."""
        waiting = [order for queue in self._waiting.values() for order in queue]
        self._waiting.clear()
        self._waiting_ids.clear()
        while self._running:
            await asyncio.wait(list(self._running.values()))
        return waiting

    def _has_free_slot(self, creator: str) -> bool:
        return self.running < self.total and self._running_per_creator[creator] < self.per_creator

    def _start(self, order: DueRegularOrder) -> None:
        self._running_per_creator[order.creator] += 1
        task = asyncio.create_task(self._run(order), name=f"budstikke-condition-{order.order_id}")
        self._running[order.order_id] = task

    async def _run(self, order: DueRegularOrder) -> None:
        started = time.monotonic()
        try:
            await self.check(order)
        except Exception:
            # The order keeps its lease until it runs out, and is claimed again then.
            logger.exception(
                "condition check failed",
                extra={"event": "condition_check_crashed", "order_id": str(order.order_id)},
            )
        finally:
            self._finish(order, time.monotonic() - started)

    def _finish(self, order: DueRegularOrder, duration_s: float) -> None:
        del self._running[order.order_id]
        self._running_per_creator[order.creator] -= 1
        if self._running_per_creator[order.creator] <= 0:
            del self._running_per_creator[order.creator]
        average_s = self._duration_s.get(order.creator, duration_s)
        self._duration_s[order.creator] = (
            1 - DURATION_WEIGHT
        ) * average_s + DURATION_WEIGHT * duration_s
        self._start_waiting()

    def _start_waiting(self) -> None:
        """Hand the free slots to waiting orders, first to the creators with the fewest running."""
        while self.running < self.total:
            ready = [
                creator
                for creator in self._waiting
                if self._running_per_creator[creator] < self.per_creator
            ]
            if not ready:
                return
            # min() keeps the first of equals, so ties go round robin.
            creator = min(ready, key=lambda name: self._running_per_creator[name])
            queue = self._waiting.pop(creator)
            order = queue.popleft()
            self._waiting_ids.discard(order.order_id)
            if queue:
                # The creator moves to the end of the round-robin order.
                self._waiting[creator] = queue
            self._start(order)
