"""Event-loop headroom: regular submits wait while the event loop runs late.

One process runs the API, the instant hand-offs and the regular backlog on
one event loop. Once regular hand-offs and their receipts use the whole
CPU, each step of an instant order waits behind the regular work that is
ready at that moment. The steps are reading the request, storing it and
writing its submit_sm, so its latency grows with the backlog. A probe
measures the loop's lag: how late a timer fires. Regular submits wait while the lag is above a
target, so the regular drain slows to what the process can do with the
loop still responsive, and instant submits never wait here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Final

# How often the probe measures the lag. Each probe costs one timer callback.
PROBE_INTERVAL_S: Final = 0.01
# Regular submits wait while the lag is above this. NOTE: chosen against an
# idle instant hand-off p99 of about 10 ms on a development machine, not
# tuned on production hardware.
LAG_TARGET_S: Final = 0.005
# Each probe keeps this share of the previous lag when the new one is lower,
# so one quiet probe does not release every waiting regular submit at once.
LAG_DECAY: Final = 0.5
# A regular submit waits at most this long for headroom and then goes on, so
# a process that is slow for other reasons still drains its backlog.
MAX_WAIT_S: Final = 0.5


class LoopHeadroom:
    """The lag of the running event loop, and a wait for regular work until the lag is low."""

    def __init__(
        self,
        *,
        target_s: float = LAG_TARGET_S,
        probe_interval_s: float = PROBE_INTERVAL_S,
        max_wait_s: float = MAX_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target_s = target_s
        self.probe_interval_s = probe_interval_s
        self.max_wait_s = max_wait_s
        self.clock = clock
        self.lag_s = 0.0
        # Set while the lag is at or below the target.
        self._headroom = asyncio.Event()
        self._headroom.set()

    async def run_probe(self) -> None:
        """Measure the lag every `probe_interval_s` until the task running this is cancelled."""
        while True:
            started = self.clock()
            await asyncio.sleep(self.probe_interval_s)
            lag_s = max(0.0, self.clock() - started - self.probe_interval_s)
            self.record_lag(lag_s)

    def record_lag(self, lag_s: float) -> None:
        """Record one lag measurement, in seconds."""
        self.lag_s = max(lag_s, self.lag_s * LAG_DECAY)
        if self.lag_s > self.target_s:
            self._headroom.clear()
        else:
            self._headroom.set()

    async def wait(self) -> None:
        """Wait until the lag is at or below the target, for at most `max_wait_s`."""
        if self._headroom.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.max_wait_s):
                await self._headroom.wait()
