"""Slots of an SMPP window or SMTP connections kept for instant messages."""

from __future__ import annotations

import asyncio

import pytest

from budstikke.channels.priority_slots import PrioritySlots, reserved_slots
from budstikke.domain.statuses import Priority

INSTANT, REGULAR = Priority.INSTANT, Priority.REGULAR


@pytest.mark.parametrize(
    ("size", "share", "reserved"),
    [
        (10, 0.05, 1),
        (10, 0.1, 1),
        (10, 0.25, 3),
        (100, 0.05, 5),
        (4, 0.05, 1),
        (1, 0.5, 0),
        (2, 0.9, 1),
        (10, 0.0, 0),
    ],
)
def test_reserved_slots(size: int, share: float, reserved: int) -> None:
    assert reserved_slots(size, share) == reserved


async def test_regular_leaves_reserved_slots_free() -> None:
    slots = PrioritySlots(3, reserved=1)
    await slots.acquire(REGULAR)
    await slots.acquire(REGULAR)
    third = asyncio.create_task(slots.acquire(REGULAR))
    await asyncio.sleep(0)
    assert not third.done()
    await asyncio.wait_for(slots.acquire(INSTANT), timeout=1)
    assert slots.in_use == 3
    slots.release(REGULAR)
    await asyncio.wait_for(third, timeout=1)
    assert slots.regular_in_use == 2


async def test_freed_slot_goes_to_instant_first() -> None:
    slots = PrioritySlots(2, reserved=1)
    await slots.acquire(REGULAR)
    await slots.acquire(INSTANT)
    regular = asyncio.create_task(slots.acquire(REGULAR))
    await asyncio.sleep(0)
    instant = asyncio.create_task(slots.acquire(INSTANT))
    await asyncio.sleep(0)
    slots.release(REGULAR)
    await asyncio.sleep(0)
    assert instant.done()
    assert not regular.done()
    slots.release(INSTANT)
    await asyncio.wait_for(regular, timeout=1)


async def test_cancelled_waiter_gives_its_slot_back() -> None:
    slots = PrioritySlots(1)
    await slots.acquire(INSTANT)
    waiter = asyncio.create_task(slots.acquire(REGULAR))
    await asyncio.sleep(0)
    slots.release(INSTANT)  # hands the slot to the waiter ...
    waiter.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.in_use == 0
    await asyncio.wait_for(slots.acquire(REGULAR), timeout=1)


async def test_close_lets_waiters_through() -> None:
    slots = PrioritySlots(1)
    await slots.acquire(REGULAR)
    waiters = [asyncio.create_task(slots.acquire(priority)) for priority in (INSTANT, REGULAR)]
    await asyncio.sleep(0)
    slots.close()
    await asyncio.wait_for(asyncio.gather(*waiters), timeout=1)


def test_invalid_reservation_is_rejected() -> None:
    with pytest.raises(ValueError, match="reserved < size"):
        PrioritySlots(2, reserved=2)
