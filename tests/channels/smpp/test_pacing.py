"""Spacing of submit_sm on one bind under a rate limit and throttling responses."""

from __future__ import annotations

import asyncio

import pytest

from budstikke.channels.smpp.pacing import THROTTLED_MIN_INTERVAL_S, Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_rate_means_no_delay() -> None:
    pacer = Pacer(None, clock=FakeClock())

    assert pacer.delay_s() == 0.0
    assert pacer.interval_s == 0.0


async def test_rate_spaces_sends() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock)

    await pacer.wait()

    assert pacer.delay_s() == pytest.approx(0.1)


def test_throttle_pauses_and_doubles() -> None:
    clock = FakeClock()
    pacer = Pacer(None, pause_s=0.5, max_pause_s=1.5, clock=clock)

    pauses = []
    for _ in range(4):
        pauses.append(pacer.on_throttled())
        clock.now = pacer.paused_until

    assert pauses == [0.5, 1.0, 1.5, 1.5]
    assert pacer.interval_s == THROTTLED_MIN_INTERVAL_S * 8


def test_throttles_during_pause_do_not_compound() -> None:
    clock = FakeClock()
    pacer = Pacer(None, pause_s=0.5, clock=clock)

    assert pacer.on_throttled() == 0.5
    clock.now += 0.2
    assert pacer.on_throttled() is None
    assert pacer.interval_s == THROTTLED_MIN_INTERVAL_S
    assert pacer.delay_s() == pytest.approx(0.3)


def test_accepted_submits_recover_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(None, pause_s=0.5, clock=clock)
    pacer.on_throttled()
    clock.now = pacer.paused_until
    pacer.on_throttled()
    clock.now = pacer.paused_until

    for _ in range(50):
        pacer.on_accepted()

    assert pacer.interval_s == 0.0
    assert pacer.on_throttled() == 0.5


def test_recovery_stops_at_configured_rate() -> None:
    pacer = Pacer(2.0, clock=FakeClock())
    pacer.on_throttled()

    for _ in range(100):
        pacer.on_accepted()

    assert pacer.interval_s == 0.5


async def test_wait_returns_when_cancel_event_set() -> None:
    pacer = Pacer(None, pause_s=30.0)
    pacer.on_throttled()
    event = asyncio.Event()
    event.set()

    async with asyncio.timeout(1):
        await pacer.wait(event)


async def test_late_wake_up_is_made_up() -> None:
    clock = FakeClock()
    pacer = Pacer(200.0, clock=clock)
    await pacer.wait()

    # Each submit wakes up 2 ms after its slot, as on a busy event loop.
    for _ in range(100):
        clock.now += pacer.delay_s() + 0.002
        await pacer.wait()

    # 101 submits at 200/s take 0.5 s plus the last lateness, not 0.7 s.
    assert clock.now - 100.0 == pytest.approx(0.502)


async def test_idle_spell_gives_no_burst() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock)
    await pacer.wait()

    clock.now += 5.0
    await pacer.wait()

    assert pacer.delay_s() == pytest.approx(0.1)


async def test_catch_up_is_bounded() -> None:
    clock = FakeClock()
    pacer = Pacer(1000.0, clock=clock)
    await pacer.wait()

    # A wake-up 30 ms late is past the catch-up bound: nothing is made up.
    clock.now += 0.030
    await pacer.wait()

    assert pacer.delay_s() == pytest.approx(0.001)


async def test_throttled_bind_makes_nothing_up() -> None:
    clock = FakeClock()
    pacer = Pacer(200.0, clock=clock)
    await pacer.wait()
    pacer.on_throttled()
    clock.now += pacer.delay_s()
    await pacer.wait()

    # The next submit wakes up 2 ms late; the slowed bind does not make that up.
    clock.now += pacer.delay_s() + 0.002
    await pacer.wait()

    assert pacer.delay_s() == pytest.approx(pacer.interval_s)
