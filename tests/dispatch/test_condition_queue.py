"""The condition check queue: per-creator slots, waiting orders, round robin and deferral."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from budstikke.dispatch.condition_queue import MAX_DEFER_S, MIN_DEFER_S, ConditionQueue
from budstikke.domain.statuses import Channel
from budstikke.store.regular_orders import DueRegularOrder

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def due_order(creator: str) -> DueRegularOrder:
    return DueRegularOrder(
        order_id=uuid.uuid4(),
        creator=creator,
        channel=Channel.SMS,
        recipient="+4799999999",
        sender="budstikke",
        subject=None,
        body="Reminder",
        content_type=None,
        daytime_only=False,
        requested_send_time=NOW,
        condition_endpoint="https://conditions.example/c",
        condition_attempts=0,
        condition_first_attempt_at=None,
        lease_owner="worker-1",
    )


class HeldChecks:
    """A check function whose calls wait until the test releases them, in call order."""

    def __init__(self) -> None:
        self.started: list[DueRegularOrder] = []
        self.gates: dict[uuid.UUID, asyncio.Event] = {}

    async def __call__(self, order: DueRegularOrder) -> None:
        gate = asyncio.Event()
        self.gates[order.order_id] = gate
        self.started.append(order)
        await gate.wait()

    async def finish(self, order: DueRegularOrder) -> None:
        self.gates[order.order_id].set()
        for _step in range(5):
            await asyncio.sleep(0)

    def creators(self) -> list[str]:
        return [order.creator for order in self.started]


def make_queue(checks: HeldChecks, **limits: int) -> ConditionQueue:
    settings = {"total": 4, "per_creator": 2, "max_waiting": 6, "max_waiting_per_creator": 3}
    settings.update(limits)
    return ConditionQueue(checks, **settings)


async def settle() -> None:
    for _step in range(5):
        await asyncio.sleep(0)


async def finish_and_close(checks: HeldChecks, queue: ConditionQueue) -> list[DueRegularOrder]:
    """Close the queue, let its running checks end, and return the orders that never ran."""
    close = asyncio.create_task(queue.close())
    await settle()
    for order in list(checks.started):
        await checks.finish(order)
    return await close


async def test_creator_gets_at_most_its_slots() -> None:
    checks = HeldChecks()
    queue = make_queue(checks)
    slow = [due_order("slow") for _index in range(5)]
    other = [due_order("other") for _index in range(2)]

    accepted = [queue.submit(order) for order in slow + other]
    await settle()

    assert accepted == [True] * 7
    assert checks.creators() == ["slow", "slow", "other", "other"]
    assert queue.running == 4
    assert queue.waiting == 3
    await finish_and_close(checks, queue)


async def test_full_waiting_list_asks_to_defer() -> None:
    checks = HeldChecks()
    queue = make_queue(checks)

    accepted = [queue.submit(due_order("slow")) for _index in range(7)]

    # Two run and three wait; the sixth and seventh must be released for later.
    assert accepted == [True, True, True, True, True, False, False]
    unchecked = await finish_and_close(checks, queue)
    assert len(unchecked) == 3


async def test_freed_slot_goes_to_the_next_creator() -> None:
    checks = HeldChecks()
    queue = make_queue(checks, total=2, per_creator=2)
    first = [due_order("a"), due_order("a")]
    waiting_a = due_order("a")
    waiting_b = due_order("b")
    for order in [*first, waiting_a, waiting_b]:
        assert queue.submit(order)
    await settle()

    await checks.finish(first[0])

    # "a" still runs one check and "b" none, so the freed slot goes to "b" first.
    assert [order.order_id for order in checks.started[2:]] == [waiting_b.order_id]
    await checks.finish(first[1])
    assert [order.order_id for order in checks.started[3:]] == [waiting_a.order_id]
    await finish_and_close(checks, queue)


async def test_same_order_is_not_checked_twice() -> None:
    checks = HeldChecks()
    queue = make_queue(checks)
    order = due_order("a")

    assert queue.submit(order)
    assert queue.submit(order)
    await settle()

    assert len(checks.started) == 1
    await finish_and_close(checks, queue)


async def test_failing_check_frees_its_slot() -> None:
    calls: list[DueRegularOrder] = []

    async def failing(order: DueRegularOrder) -> None:
        calls.append(order)
        raise RuntimeError("bug in a check")

    queue = ConditionQueue(
        failing, total=1, per_creator=1, max_waiting=2, max_waiting_per_creator=2
    )
    orders = [due_order("a") for _index in range(3)]
    for order in orders:
        assert queue.submit(order)
    await settle()

    assert calls == orders
    assert queue.running == 0
    assert queue.waiting == 0


def test_deferrals_are_spread_and_bounded() -> None:
    queue = ConditionQueue(
        HeldChecks(), total=64, per_creator=8, max_waiting=320, max_waiting_per_creator=40
    )

    times = [queue.defer_until("new-creator", NOW) for _index in range(20_000)]
    other = queue.defer_until("other-creator", NOW)

    assert times[0] >= NOW + timedelta(seconds=MIN_DEFER_S)
    assert times == sorted(times)
    assert times[1] > times[0]
    assert times[-1] == NOW + timedelta(seconds=MAX_DEFER_S)
    # One creator's deferrals do not push back another creator's.
    assert other == times[0]
