"""SQLite connections that run each statement on the event loop's own thread.

SQLAlchemy's aiosqlite dialect sends every call (BEGIN, each statement,
each fetch, COMMIT) to a worker thread and waits for the answer through the
event loop. On this service's statements, which take 10 to 100 µs in
SQLite itself, that round trip costs about 350 µs of wall time and 180 µs
of CPU (two thread wake-ups, a self-pipe write and a GIL hand-over), and it
is paid while the single write connection is held, so it bounds the write
rate. These classes offer the subset of aiosqlite's interface that the
dialect uses, but call the sqlite3 module directly, so a statement costs
what SQLite needs for it.

The price is that a statement blocks the event loop while it runs. Within
the process that is fine: writers queue for the one write connection in
asyncio, and WAL readers never wait for a lock. Only a write lock held by
another process (a CLI command writing to the same file) makes a writer
wait here, for at most the busy timeout; such writes are short.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any


class InlineCursor:
    """An aiosqlite-style cursor whose coroutines finish without suspending."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def setinputsizes(self, *sizes: Any) -> None:
        return None

    async def close(self) -> None:
        self._cursor.close()


class InlineCalls:
    """Stands in for aiosqlite's queue to its worker thread: runs each call at once.

    The dialect's isolation_level setter puts (future, function) pairs on
    `connection._tx` directly instead of calling a method.
    """

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except Exception as error:
            if future is None:
                raise
            future.set_exception(error)
            return
        if future is not None:
            future.set_result(result)


class InlineConnection:
    """An aiosqlite-style connection around a sqlite3 connection."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        # The dialect checks `_connection` to tell an open connection from a closed one.
        self._connection: sqlite3.Connection | None = connection
        self._tx = InlineCalls()

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    @property
    def sqlite_connection(self) -> sqlite3.Connection:
        """The sqlite3 connection, for callers that run statements on it directly."""
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Close at once; the dialect calls this to terminate a connection."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def inline_connector(path: str, *, timeout_s: float) -> Callable[[], Any]:
    """Return the `async_creator` for create_async_engine: a new connection to `path`."""

    async def connect() -> InlineConnection:
        # Every call runs on the event loop's thread, but the pool may close a
        # connection from a garbage-collector finaliser on another thread.
        connection = sqlite3.connect(path, timeout=timeout_s, check_same_thread=False)
        return InlineConnection(connection)

    return connect
