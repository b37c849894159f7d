"""Event-loop headroom: regular submits wait while the loop lags, instant ones never."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from budstikke.channels.loop_headroom import LAG_DECAY, LoopHeadroom
from budstikke.channels.smpp.config import SmppConfig
from budstikke.channels.smpp.dev_smsc import DevSmsc
from budstikke.channels.smpp.pdu import SubmitSm
from budstikke.domain.statuses import Priority
from budstikke.errors import ConfigurationError
from tests.channels.smpp.conftest import StartProvider, make_sms


async def test_wait_returns_at_once_with_headroom() -> None:
    headroom = LoopHeadroom(target_s=0.005, max_wait_s=5.0)
    headroom.record_lag(0.001)

    await asyncio.wait_for(headroom.wait(), timeout=1)

    assert headroom.lag_s == 0.001


async def test_wait_lasts_until_lag_is_low() -> None:
    headroom = LoopHeadroom(target_s=0.005, max_wait_s=5.0)
    headroom.record_lag(0.040)
    waiter = asyncio.create_task(headroom.wait())

    # One low probe only halves the lag, which is still above the target.
    headroom.record_lag(0.0)
    await asyncio.sleep(0.05)
    still_waiting = not waiter.done()
    for _ in range(4):
        headroom.record_lag(0.0)
    await asyncio.wait_for(waiter, timeout=1)

    assert still_waiting
    assert headroom.lag_s == 0.040 * LAG_DECAY**5


async def test_wait_gives_up_after_max_wait() -> None:
    headroom = LoopHeadroom(target_s=0.005, max_wait_s=0.2)
    headroom.record_lag(1.0)

    started = time.monotonic()
    await asyncio.wait_for(headroom.wait(), timeout=2)
    waited_s = time.monotonic() - started

    assert waited_s >= 0.15


async def test_probe_measures_blocked_loop() -> None:
    headroom = LoopHeadroom(target_s=0.005, probe_interval_s=0.01)
    probe = asyncio.create_task(headroom.run_probe())
    await asyncio.sleep(0.05)
    idle_lag_s = headroom.lag_s

    await asyncio.sleep(0.001)
    # Blocks the loop as CPU-bound work on it does.
    time.sleep(0.1)
    await asyncio.sleep(0.001)
    probe.cancel()

    assert idle_lag_s < 0.1
    assert headroom.lag_s >= 0.05


async def test_regular_submit_waits_while_loop_lags(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider(max_loop_lag_ms=5.0)
    headroom = harness.provider.sessions[0].headroom
    assert headroom is not None
    lagging = True

    async def block_loop() -> None:
        while lagging:
            time.sleep(0.02)
            await asyncio.sleep(0)

    blocker = asyncio.create_task(block_loop())
    await asyncio.sleep(0.2)
    lag_before_s = headroom.lag_s
    regular_sms = dataclasses.replace(make_sms("regular"), priority=Priority.REGULAR)
    regular = asyncio.create_task(harness.provider.hand_off(regular_sms))
    await asyncio.sleep(0)
    await asyncio.wait_for(harness.provider.hand_off(make_sms("instant")), timeout=5)
    lagging = False
    await blocker
    await asyncio.wait_for(regular, timeout=5)
    bodies = [item.pdu.short_message for item in smsc.received if isinstance(item.pdu, SubmitSm)]

    assert lag_before_s > headroom.target_s
    assert len(bodies) == 2
    assert b"instant" in bodies[0]
    assert b"regular" in bodies[1]


async def test_url_sets_the_lag_target(smsc: DevSmsc, start_provider: StartProvider) -> None:
    harness = await start_provider(max_loop_lag_ms=5.0)
    headroom = harness.provider.sessions[0].headroom

    assert headroom is not None
    assert headroom.target_s == 0.005


async def test_lag_wait_is_off_by_default(smsc: DevSmsc, start_provider: StartProvider) -> None:
    harness = await start_provider()

    assert harness.provider.sessions[0].headroom is None


def test_url_reads_lag_target() -> None:
    config = SmppConfig.from_url("smpp://budstikke:secret@127.0.0.1:2775?max_loop_lag_ms=2.5")

    assert config.max_loop_lag_ms == 2.5


@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_url_rejects_bad_lag(value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        SmppConfig.from_url(f"smpp://budstikke:secret@127.0.0.1:2775?max_loop_lag_ms={value}")

    assert "max_loop_lag_ms" in str(caught.value)
    assert repr(value) in str(caught.value)
