"""Instant messages on an SMPP bind busy with regular ones: the kept share of window and rate."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from budstikke.channels.smpp.config import SmppConfig
from budstikke.channels.smpp.dev_smsc import DevSmsc
from budstikke.channels.smpp.pacing import Pacer
from budstikke.domain.statuses import Priority
from budstikke.errors import ConfigurationError
from tests.channels.smpp.conftest import StartProvider, make_sms

INSTANT, REGULAR = Priority.INSTANT, Priority.REGULAR


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_pacer_spaces_regular_sends_by_their_share() -> None:
    clock = FakeClock()
    pacer = Pacer(100.0, clock=clock, instant_share=0.2)

    await pacer.wait(priority=REGULAR)

    assert pacer.delay_s(REGULAR) == pytest.approx(0.0125)


async def test_instant_takes_next_slot_early() -> None:
    clock = FakeClock()
    pacer = Pacer(100.0, clock=clock, instant_share=0.2)
    await pacer.wait(priority=REGULAR)

    assert pacer.delay_s(INSTANT) == 0.0
    await pacer.wait(priority=INSTANT)

    # The instant submit took the slot due at 10 ms, so the next one is due at 20 ms.
    assert pacer.delay_s(INSTANT) == pytest.approx(0.02)
    assert pacer.delay_s(REGULAR) == pytest.approx(0.02)


async def test_instant_submits_alone_stay_spaced() -> None:
    clock = FakeClock()
    pacer = Pacer(100.0, clock=clock, instant_share=0.2)

    await pacer.wait(priority=INSTANT)

    assert pacer.delay_s(INSTANT) == pytest.approx(0.01)


async def test_early_instant_submits_keep_the_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(100.0, clock=clock, instant_share=0.2)
    sent_at: list[float] = []

    # A full regular schedule with an instant submit at every third turn.
    for turn in range(600):
        priority = INSTANT if turn % 3 == 0 else REGULAR
        clock.now += pacer.delay_s(priority)
        await pacer.wait(priority=priority)
        sent_at.append(clock.now)

    busiest_second = max(
        sum(1 for moment in sent_at if start <= moment < start + 1.0) for start in sent_at
    )
    assert busiest_second <= 100 + 1


async def test_throttled_bind_sends_no_instant_early() -> None:
    clock = FakeClock()
    pacer = Pacer(100.0, clock=clock, instant_share=0.2)
    pacer.on_throttled()
    clock.now = pacer.paused_until
    await pacer.wait(priority=REGULAR)

    assert pacer.delay_s(INSTANT) == pytest.approx(pacer.interval_s)


async def test_pacer_gives_free_slot_to_waiting_instant() -> None:
    pacer = Pacer(50.0, instant_share=0.1)
    await pacer.wait(priority=REGULAR)
    order: list[str] = []

    async def send(name: str, priority: Priority) -> None:
        await pacer.wait(priority=priority)
        order.append(name)

    regular = asyncio.create_task(send("regular", REGULAR))
    await asyncio.sleep(0)
    instant = asyncio.create_task(send("instant", INSTANT))
    await asyncio.wait_for(asyncio.gather(regular, instant), timeout=2)

    assert order == ["instant", "regular"]


async def test_instant_submit_uses_reserved_window(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    # The SMSC answers each submit_sm after 1 s, so regular messages fill
    # their part of the window (3 of 4) and keep it for that second.
    smsc.options.response_delay_s = 1.0
    harness = await start_provider(window=4, instant_share=0.25)
    regular = [
        asyncio.create_task(
            harness.provider.hand_off(dataclasses.replace(make_sms(), priority=REGULAR))
        )
        for _ in range(6)
    ]
    await asyncio.sleep(0.1)
    session = harness.provider.sessions[0]
    assert session.outstanding == 3

    started = time.monotonic()
    receipt = await asyncio.wait_for(harness.provider.hand_off(make_sms()), timeout=5)
    instant_s = time.monotonic() - started

    assert receipt.provider_refs
    # One response delay, not two: it did not queue behind the waiting regular ones.
    assert instant_s < 1.5
    await asyncio.wait_for(asyncio.gather(*regular), timeout=10)


async def test_regular_only_never_exceeds_its_window(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    smsc.options.response_delay_s = 0.2
    harness = await start_provider(window=4, instant_share=0.25)
    await asyncio.gather(
        *(
            harness.provider.hand_off(dataclasses.replace(make_sms(), priority=REGULAR))
            for _ in range(9)
        )
    )

    assert harness.provider.sessions[0].max_outstanding_seen == 3


@pytest.mark.parametrize("value", ["-0.1", "0.95", "many"])
def test_config_rejects_bad_instant_share(value: str) -> None:
    with pytest.raises(ConfigurationError, match="instant_share"):
        SmppConfig.from_url(f"smpp://id:pw@127.0.0.1:2775?instant_share={value}")


def test_config_reads_instant_share() -> None:
    assert SmppConfig.from_url("smpp://id:pw@127.0.0.1?instant_share=0").instant_share == 0.0
    assert SmppConfig.from_url("smpp://id:pw@127.0.0.1").instant_share == 0.05
