"""Write hand-off records and delivery reports in batches, one transaction per batch.

Each caller waits for its own item's result, as if the item were written
alone. One task drains the queue: whatever arrived while the previous
transaction ran goes into the next, up to MAX_BATCH_ITEMS. Under load one
transaction serves many items, so its fixed cost (begin, commit, the
statements that read and write the batch) is shared among them.

An item that finds the writer idle, with no write in the last LINGER_S,
is written at once. Right after a write, a batch of fewer than
LINGER_ITEMS regular items waits up to LINGER_S for more. Without that
pause, a steady stream of hand-offs and receipts is written two or three
items per transaction, and the fixed cost of those transactions takes
much of the event loop's time. The hand-off of an instant message ends
the pause at once.

A batch of regular items also waits while an instant order is being
placed in this process (InstantFirst), so that its steps do not wait for
the batch. The instant order's own hand-off record ends that wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from budstikke.dispatch.instant_first import InstantFirst
from budstikke.domain.statuses import NotificationStatus, Priority
from budstikke.errors import DatabaseUnavailableError
from budstikke.store.notifications import NotificationStore
from budstikke.store.outcomes import HandOffRecord, PartReference, ReceivedReport
from budstikke.store.records import ClaimedNotification

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Caps the time one transaction holds the write lock (SQLite's single writer,
# the row and advisory locks on PostgreSQL), so order inserts are not held up
# behind a long backlog of receipts.
MAX_BATCH_ITEMS = 200
# A batch with the hand-off of an instant message is kept this small.
URGENT_BATCH_ITEMS = 32
# After a write, regular items wait up to LINGER_S for the batch to reach
# LINGER_ITEMS. Their callers (a hand-off task, a receipt's response to the
# SMSC) wait that much longer, and their timestamps are that much later.
# With 16 rather than 32 an instant hand-off waits less behind a regular
# write (docs/benchmarks.md, change 27).
LINGER_ITEMS = 16
LINGER_S = 0.01


@dataclass(slots=True)
class _QueuedHandOff:
    record: HandOffRecord
    result: asyncio.Future[bool]


@dataclass(slots=True)
class _QueuedReport:
    report: ReceivedReport
    result: asyncio.Future[UUID | None]


_Queued = _QueuedHandOff | _QueuedReport


class OutcomeWriter:
    """The queue of hand-off records and delivery reports of one process, and its drain task."""

    def __init__(
        self,
        store: NotificationStore,
        clock: Callable[[], datetime],
        *,
        instant_first: InstantFirst | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.instant_first = instant_first or InstantFirst()
        # Resolved when an instant hand-off arrives while regular items wait for instant orders.
        self._instant_arrived: asyncio.Future[None] | None = None
        # Hand-offs of instant messages go in the next batch, which other items
        # fill up to URGENT_BATCH_ITEMS only. While other items wait, every
        # other batch is theirs, so a burst of instant messages cannot hold up
        # delivery receipts until the SMSC gives up on its deliver_sm.
        self._instant: list[_Queued] = []
        self._last_batch_urgent = False
        # Set when the queued items should be written without waiting longer.
        self._flush = asyncio.Event()
        self._queue: list[_Queued] = []
        self._drain_task: asyncio.Task[None] | None = None

    async def record_hand_off(
        self,
        claimed: ClaimedNotification,
        *,
        status: NotificationStatus,
        parts: Sequence[PartReference],
        accepted_at: datetime | None = None,
        sent_at: datetime | None = None,
    ) -> bool:
        """Store the provider's acceptance at `accepted_at`; returns False if the lease was lost.

        Without `accepted_at` the hand-off gets the time its batch is written.
        `sent_at`, when the hand-off began, keeps older reports for the same
        provider id from being applied to it. Raises DatabaseUnavailableError
        when the batch could not be written.
        """
        result: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        record = HandOffRecord(claimed, status, tuple(parts), accepted_at, sent_at)
        self._enqueue(_QueuedHandOff(record, result))
        return await result

    async def apply_report(
        self, keys: Sequence[str], *, status: NotificationStatus | None, error_code: str | None
    ) -> UUID | None:
        """Apply a delivery report; returns its notification, or None when it was kept unmatched.

        Raises DatabaseUnavailableError when the batch could not be written.
        """
        result: asyncio.Future[UUID | None] = asyncio.get_running_loop().create_future()
        self._enqueue(_QueuedReport(ReceivedReport(tuple(keys), status, error_code), result))
        return await result

    async def wait_idle(self) -> None:
        """Wait until every queued item is written."""
        while self._drain_task is not None and not self._drain_task.done():
            await asyncio.wait({self._drain_task})

    def _enqueue(self, item: _Queued) -> None:
        # An item stays queued and is written even when its caller is
        # cancelled, because the hand-off or the report happened all the same.
        if is_instant_hand_off(item):
            self._instant.append(item)
            if self._instant_arrived is not None and not self._instant_arrived.done():
                self._instant_arrived.set_result(None)
        else:
            self._queue.append(item)
        if self._batch_is_ready():
            self._flush.set()
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.create_task(self._drain(), name="budstikke-outcome-writer")

    async def _drain(self) -> None:
        try:
            written = False
            while True:
                if written and not self._batch_is_ready():
                    await self._linger()
                if self._queue and not self._instant:
                    await self._wait_for_instant_orders()
                if not (self._instant or self._queue):
                    break
                others_turn = self._last_batch_urgent and bool(self._queue)
                self._last_batch_urgent = bool(self._instant) and not others_turn
                if self._last_batch_urgent:
                    # Other items fill up the batch to a small size, which
                    # saves a transaction without making it much longer.
                    batch = self._instant[:MAX_BATCH_ITEMS]
                    del self._instant[: len(batch)]
                    room = max(0, URGENT_BATCH_ITEMS - len(batch))
                else:
                    batch, room = [], MAX_BATCH_ITEMS
                batch += self._queue[:room]
                del self._queue[:room]
                await self._write(batch)
                written = True
        except asyncio.CancelledError:
            cancel_callers(self._instant + self._queue)
            self._instant.clear()
            self._queue.clear()
            raise

    def _batch_is_ready(self) -> bool:
        return bool(self._instant) or len(self._queue) >= LINGER_ITEMS

    async def _linger(self) -> None:
        """Wait up to LINGER_S for an instant hand-off or a full batch."""
        self._flush.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flush.wait(), LINGER_S)

    async def _wait_for_instant_orders(self) -> None:
        """Wait while instant orders are placed, until one's hand-off record arrives."""
        if self.instant_first.hold_s() <= 0:
            return
        with self._woken_by_instant_hand_off() as woken:
            await self.instant_first.wait_turn(woken)

    @contextlib.contextmanager
    def _woken_by_instant_hand_off(self) -> Iterator[asyncio.Future[None]]:
        """Make a future that the next instant hand-off record resolves.

        The future is resolved at once when an instant record is queued
        already: that record's order waits for it, and so for this batch.
        """
        self._instant_arrived = asyncio.get_running_loop().create_future()
        if self._instant:
            self._instant_arrived.set_result(None)
        try:
            yield self._instant_arrived
        finally:
            self._instant_arrived = None

    async def _write(self, batch: list[_Queued]) -> None:
        hand_offs = [item for item in batch if isinstance(item, _QueuedHandOff)]
        reports = [item for item in batch if isinstance(item, _QueuedReport)]
        try:
            # A regular batch may wait for instant orders again when it gets
            # the write connection. An instant hand-off record ends that
            # wait, because its order waits for it.
            with self._woken_by_instant_hand_off() as woken:
                results = await self.store.write_outcomes(
                    [item.record for item in hand_offs],
                    [item.report for item in reports],
                    now=self.clock(),
                    woken=woken,
                )
        except DatabaseUnavailableError as error:
            # Writing the items one by one would fail the same way, so each
            # caller handles the outage as it would for an item written alone.
            for item in batch:
                _set_exception(item.result, DatabaseUnavailableError(str(error)))
            return
        except Exception as error:
            if len(batch) == 1:
                _set_exception(batch[0].result, error)
                return
            # One bad item must not fail the others. This also covers a deadlock
            # that PostgreSQL ended by aborting this transaction.
            logger.warning(
                "writing a batch of hand-off records and reports failed; writing them one by one",
                extra={
                    "event": "outcome_batch_failed",
                    "items": len(batch),
                    "error": f"{type(error).__name__}: {str(error)[:200]}",
                },
            )
            for index, item in enumerate(batch):
                try:
                    await self._write([item])
                except BaseException:
                    # The items not yet written have already left the queues,
                    # so nothing else would cancel them for their callers.
                    cancel_callers(batch[index + 1 :])
                    raise
            return
        except BaseException:
            cancel_callers(batch)
            raise
        for hand_off, recorded in zip(hand_offs, results.recorded, strict=True):
            _set_result(hand_off.result, recorded)
        for report, matched in zip(reports, results.matched, strict=True):
            _set_result(report.result, matched)


def cancel_callers(items: Sequence[_Queued]) -> None:
    for item in items:
        item.result.cancel()


def _set_result(result: asyncio.Future[T], value: T) -> None:
    if not result.done():
        result.set_result(value)


def _set_exception(result: asyncio.Future[Any], error: BaseException) -> None:
    if not result.done():
        result.set_exception(error)


def is_instant_hand_off(item: _Queued) -> bool:
    return isinstance(item, _QueuedHandOff) and item.record.claimed.priority == Priority.INSTANT
