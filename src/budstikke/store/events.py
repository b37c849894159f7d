"""Cross-process wake-ups over PostgreSQL LISTEN/NOTIFY.

Two channels: `budstikke_queued` tells workers that instant work is waiting,
so an idle worker claims it at once instead of at its next poll, and
`budstikke_settled` (payload: a notification id) tells an API process that
a worker finished a hand-off it is waiting for. A NOTIFY sent inside a
transaction is delivered only when that transaction commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from uuid import UUID

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

logger = logging.getLogger(__name__)

QUEUED_CHANNEL = "budstikke_queued"
SETTLED_CHANNEL = "budstikke_settled"
RECONNECT_DELAY_S = 1.0
RECONNECT_DELAY_MAX_S = 15.0


async def notify(connection: AsyncConnection, channel: str, payload: str = "") -> None:
    """Queue a notification that PostgreSQL delivers when the transaction commits."""
    await connection.execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
    )


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return (
        make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


class PgEventListener:
    """One LISTEN connection per process, reconnected with backoff when it drops."""

    def __init__(self, sqlalchemy_url: str, *, on_queued: Callable[[], None] | None = None) -> None:
        self.dsn = asyncpg_dsn(sqlalchemy_url)
        self.on_queued = on_queued
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="budstikke-pg-listen")
        # Wait briefly so that a notification sent right after start is not missed.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout=5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_settled(self, notification_id: UUID, timeout_s: float) -> bool:
        """Wait until a worker reports the notification's hand-off; False on timeout."""
        key = str(notification_id)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(future)
        try:
            await asyncio.wait_for(future, timeout=timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            waiters = self._waiters.get(key, [])
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._waiters.pop(key, None)

    async def _listen_forever(self) -> None:
        delay_s = RECONNECT_DELAY_S
        while True:
            try:
                connection = await asyncpg.connect(self.dsn, timeout=10)
            except (OSError, asyncpg.PostgresError, TimeoutError) as error:
                logger.warning(
                    "cannot listen for database events; retrying",
                    extra={
                        "event": "listen_failed",
                        "error": str(error)[:200],
                        "retry_in_s": delay_s,
                    },
                )
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, RECONNECT_DELAY_MAX_S)
                continue
            delay_s = RECONNECT_DELAY_S
            try:
                await self._listen(connection)
            finally:
                self._connected.clear()
                with contextlib.suppress(Exception):
                    await connection.close(timeout=2)

    async def _listen(self, connection: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        await connection.add_listener(QUEUED_CHANNEL, self._on_queued)
        await connection.add_listener(SETTLED_CHANNEL, self._on_settled)
        self._connected.set()
        # A queued notification may have been missed while disconnected.
        if self.on_queued is not None:
            self.on_queued()
        await lost.wait()
        logger.warning("database event connection lost", extra={"event": "listen_lost"})

    def _on_queued(self, _connection: object, _pid: int, _channel: str, _payload: str) -> None:
        if self.on_queued is not None:
            self.on_queued()

    def _on_settled(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        for future in self._waiters.pop(payload, []):
            if not future.done():
                future.set_result(None)
