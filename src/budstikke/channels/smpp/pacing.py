"""Spacing of submit_sm on one bind: a configured rate, slowed down by throttling responses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from budstikke.domain.statuses import Priority

# Once throttled, submits on the bind are at least this far apart even
# without a configured rate, and the spacing doubles on each further throttle.
THROTTLED_MIN_INTERVAL_S: Final = 0.01
THROTTLED_MAX_INTERVAL_S: Final = 1.0

# Each accepted submit shortens a throttled spacing by this factor, so the bind
# returns to its configured rate after some tens of accepted messages.
RECOVERY_FACTOR: Final = 0.9

# A regular submit that finds an instant one waiting for the same free slot
# steps back for this long at least, so the instant one goes first.
REGULAR_YIELD_S: Final = 0.001

# Slots follow a schedule, so a submit that wakes up late does not push every
# later one back: up to this much lateness is made up. Spacing each submit
# from its own wake-up time instead held a bind set to 200/s near 150/s on a
# busy event loop. Making up at most one interval held 400/s near 290/s.
CATCH_UP_S: Final = 0.01


class Pacer:
    """Decides when the next submit_sm on a bind may go out.

    `max_rate` is in messages per second (None: no limit). A throttling
    response (ESME_RTHROTTLED, ESME_RMSGQFUL) pauses the bind for `pause_s`,
    which doubles up to `max_pause_s` while throttling continues after each
    pause, and doubles the spacing between submits. Accepted submits undo
    both step by step.

    Instant submits take the next slot ahead of any waiting regular submit.
    Regular submits are also spaced out to at most `1 - instant_share` of
    the current rate, so that share stays free for instant messages. With a
    share kept, an instant submit may also take the next slot up to one
    interval early when a regular submit took the last one, so a full
    regular schedule does not make it wait for a slot. That adds one submit
    to a burst within one interval, and the slots after it move back by one
    interval to keep the rate. Instant submits alone stay one interval apart.
    """

    def __init__(
        self,
        max_rate: float | None,
        *,
        pause_s: float = 0.5,
        max_pause_s: float = 8.0,
        clock: Callable[[], float] = time.monotonic,
        instant_share: float = 0.0,
    ) -> None:
        if not 0 <= instant_share < 1:
            raise ValueError(f"instant_share must be from 0 to below 1; got {instant_share}")
        self._base_interval_s = 1.0 / max_rate if max_rate else 0.0
        self._interval_s = self._base_interval_s
        self._initial_pause_s = pause_s
        self._pause_s = pause_s
        self._max_pause_s = max_pause_s
        self._clock = clock
        self._next_send_at = 0.0
        self._paused_until = 0.0
        self._regular_share = 1.0 - instant_share
        self._next_regular_at = 0.0
        self._last_slot_regular = False
        self._instant_waiting = 0

    @property
    def interval_s(self) -> float:
        return self._interval_s

    @property
    def _throttled(self) -> bool:
        """Whether throttling responses have slowed the bind below its configured rate."""
        return self._interval_s > self._base_interval_s

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def delay_s(self, priority: Priority = Priority.INSTANT) -> float:
        """Return how long the next submit of this priority has to wait from now."""
        now = self._clock()
        next_send_at = self._next_send_at
        if priority > Priority.INSTANT:
            next_send_at = max(next_send_at, self._next_regular_at)
        elif self._may_send_early():
            next_send_at -= self._interval_s
        return max(0.0, next_send_at - now, self._paused_until - now)

    def _may_send_early(self) -> bool:
        """Return whether an instant submit may take the next slot one interval early.

        Only right after a regular submit, while a share is kept for instant
        submits, and not on a throttled bind, because its SMSC has just asked
        for fewer submits.
        """
        return self._last_slot_regular and self._regular_share < 1.0 and not self._throttled

    async def wait(
        self, cancel_event: asyncio.Event | None = None, priority: Priority = Priority.INSTANT
    ) -> None:
        """Wait for the next send slot and take it; return early when `cancel_event` is set."""
        instant = priority <= Priority.INSTANT
        if instant:
            self._instant_waiting += 1
        try:
            while True:
                delay = self.delay_s(priority)
                if delay <= 0 and (instant or self._instant_waiting == 0):
                    self._take_slot(instant)
                    return
                if delay <= 0:
                    delay = max(self._interval_s, REGULAR_YIELD_S)
                if cancel_event is None:
                    await asyncio.sleep(delay)
                    continue
                try:
                    async with asyncio.timeout(delay):
                        await cancel_event.wait()
                except TimeoutError:
                    continue
                return
        finally:
            if instant:
                self._instant_waiting -= 1

    def _take_slot(self, instant: bool) -> None:
        now = self._clock()
        self._last_slot_regular = not instant
        if instant and now < self._next_send_at:
            # Taken early: the slot it took was due later, so the next one
            # follows that slot, not now.
            self._next_send_at += self._interval_s
            return
        self._next_send_at = self._next_slot(self._next_send_at, now, self._interval_s)
        if not instant and self._interval_s > 0:
            regular_interval_s = self._interval_s / self._regular_share
            self._next_regular_at = self._next_slot(self._next_regular_at, now, regular_interval_s)

    def _next_slot(self, due_at: float, now: float, interval_s: float) -> float:
        """Return the slot after the one taken now, which was due at `due_at`.

        A slot taken up to CATCH_UP_S late is followed one interval after it
        was due, so the lateness is made up. Over any span of time the
        submits exceed the rate by at most CATCH_UP_S worth plus one early
        instant submit, sent as a short burst. After an idle spell or a
        later wake-up, and while throttling has slowed the bind, the next
        slot is one interval from now.
        """
        if self._throttled or now - due_at > CATCH_UP_S:
            return now + interval_s
        return due_at + interval_s

    def on_throttled(self) -> float | None:
        """Slow the bind down after a throttling response.

        Returns the new pause in seconds, or None when the bind was already
        paused. Responses that arrive during a pause belong to the same
        overload (submits that were in flight together) and do not slow it further.
        """
        now = self._clock()
        if now < self._paused_until:
            return None
        pause_s = self._pause_s
        self._paused_until = now + pause_s
        self._pause_s = min(self._pause_s * 2, self._max_pause_s)
        ceiling = max(THROTTLED_MAX_INTERVAL_S, self._base_interval_s)
        self._interval_s = min(max(self._interval_s * 2, THROTTLED_MIN_INTERVAL_S), ceiling)
        return pause_s

    def on_accepted(self) -> None:
        self._pause_s = self._initial_pause_s
        if self._interval_s > self._base_interval_s:
            self._interval_s = max(self._base_interval_s, self._interval_s * RECOVERY_FACTOR)
            if self._interval_s < THROTTLED_MIN_INTERVAL_S:
                self._interval_s = self._base_interval_s
