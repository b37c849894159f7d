"""Engines and transactions for SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, Protocol

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from budstikke.errors import DatabaseUnavailableError
from budstikke.store.sqlite_inline import inline_connector

logger = logging.getLogger(__name__)

# How long SQLite waits for another process's write lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 10_000
# How often a background checkpoint copies SQLite's write-ahead log into the database file.
CHECKPOINT_INTERVAL_S = 0.5
# A log this long (16 MB with SQLite's default 4 KB pages) is started over.
RESTART_LOG_FRAMES = 4096


class InstantOrderGate(Protocol):
    """The instant orders a process is placing (dispatch.instant_first.InstantFirst)."""

    def hold_s(self) -> float: ...

    async def wait_turn(self, woken: asyncio.Future[None] | None = None) -> None: ...


class Database:
    """The engines of one database: `write()` for transactions that change rows, `read()` else.

    On SQLite every write transaction starts with BEGIN IMMEDIATE through a
    single pooled connection, so writers queue in the process instead of
    failing with "database is locked" when a read transaction tries to
    upgrade; readers use their own pool and see the last commit (WAL mode).
    """

    def __init__(
        self, url: str, *, pool_size: int = 5, checkpoint_in_background: bool = False
    ) -> None:
        """Open the engines of the database at `url`; nothing connects until first use.

        With `checkpoint_in_background`, a SQLite database's write-ahead log
        is copied into the database file in a worker thread (see
        WalCheckpointer), not by the COMMIT that fills it. The checkpoints
        start with the first write transaction and stop in `dispose()`.
        Long-running services ask for this.
        """
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # Set by the process's dispatcher: on SQLite a write transaction that
        # is not urgent lets the instant orders being placed go first.
        self.instant_first: InstantOrderGate | None = None
        self._checkpointer: WalCheckpointer | None = None
        if self.is_sqlite:
            path = create_sqlite_file(url)
            self._turns: WriteTurns | None = WriteTurns()
            if checkpoint_in_background and path is not None:
                self._checkpointer = WalCheckpointer(path, self._turns)
            self._write_engine = create_sqlite_engine(
                url,
                begin="BEGIN IMMEDIATE",
                pool_size=1,
                autocheckpoint=self._checkpointer is None,
            )
            self._read_engine = create_sqlite_engine(url, begin="BEGIN", pool_size=4)
        else:
            # Each process holds at most 2 x pool_size connections, so many
            # processes fit under PostgreSQL's default of 100 connections.
            engine = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                # Statement errors would otherwise print the bound values
                # (recipients, message bodies) in logged tracebacks.
                hide_parameters=True,
            )
            self._write_engine = engine
            self._read_engine = engine
            self._turns = None

    @property
    def engine(self) -> AsyncEngine:
        return self._write_engine

    @asynccontextmanager
    async def write(
        self, *, urgent: bool = False, woken: asyncio.Future[None] | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """Open a transaction that commits on success and rolls back on any error.

        On SQLite an `urgent` transaction (an instant order, the hand-off
        record of an instant message) gets the write connection before
        waiting transactions that are not urgent. One that is not urgent
        lets instant orders being placed go first (see `_take_turn`), and
        the caller may end that wait early by resolving `woken`.
        """
        if self._turns is None:
            async with translate_connection_errors(), self._write_engine.begin() as connection:
                yield connection
            return
        if self._checkpointer is not None:
            self._checkpointer.start()
        await self._take_turn(self._turns, urgent=urgent, woken=woken)
        try:
            async with translate_connection_errors(), self._write_engine.begin() as connection:
                yield connection
        finally:
            self._turns.release()

    async def _take_turn(
        self, turns: WriteTurns, *, urgent: bool, woken: asyncio.Future[None] | None
    ) -> None:
        """Wait for the write connection's turn.

        SQLite's statements run on the event loop's thread, so a transaction
        that runs while an instant order is being placed delays that order's
        next step. An order may have arrived while a writer that is not
        urgent waited in the queue. Such a writer hands its turn on, waits
        for the order as long as `instant_first` allows, and queues again.
        It does so once, so that steady instant traffic delays each
        transaction by one wait at most.
        """
        timeout_s = SQLITE_BUSY_TIMEOUT_MS / 1000
        await turns.acquire(urgent=urgent, timeout_s=timeout_s)
        gate = self.instant_first
        if urgent or gate is None or gate.hold_s() <= 0:
            return
        turns.release()
        await gate.wait_turn(woken)
        await turns.acquire(urgent=False, timeout_s=timeout_s)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with translate_connection_errors(), self._read_engine.connect() as connection:
            yield connection

    async def dispose(self) -> None:
        await self._write_engine.dispose()
        if self._read_engine is not self._write_engine:
            await self._read_engine.dispose()
        if self._checkpointer is not None:
            await self._checkpointer.stop()


class WalCheckpointer:
    """Copies SQLite's write-ahead log into the database file, off the event loop's thread.

    By default SQLite does this in the COMMIT that grows the log past 1,000
    pages, and that COMMIT waits for the copy and its fsync. Statements run
    on the event loop's thread here, so every request would wait too. With a
    checkpointer the write connection makes no checkpoints. Instead, every
    CHECKPOINT_INTERVAL_S, a thread of the checkpointer's own runs a passive
    checkpoint, which waits for no reader or writer, and sqlite3 releases
    the GIL meanwhile.

    A log that is written without pause is never copied whole that way, so
    it is never started over and grows without limit. Once it contains
    RESTART_LOG_FRAMES pages, a second checkpoint follows in the next write
    turn. It copies only what was written during the first, and as this
    process writes nothing meanwhile, it copies the whole log unless another
    process writes or a reader still reads an older state. Then the next
    transaction writes the log from its start again. That checkpoint delays
    this process's writers by 2 to 10 ms.
    """

    def __init__(self, path: Path, turns: WriteTurns) -> None:
        self.path = path
        self._turns = turns
        self._connection: sqlite3.Connection | None = None
        # A thread of its own: with a write turn taken, a checkpoint must not
        # wait for the default threads, which name lookups can keep busy.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="budstikke-wal-checkpoint"
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the checkpoints in the background unless they run already; needs a running loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="budstikke-wal-checkpoint")

    async def stop(self) -> None:
        """Stop the checkpoints after one last one."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # The executor runs this after a checkpoint that a cancelled wait left running.
        await asyncio.get_running_loop().run_in_executor(self._executor, self._checkpoint_and_close)
        self._executor.shutdown(wait=False)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)
            try:
                frames = await loop.run_in_executor(self._executor, self.checkpoint)
                if frames < RESTART_LOG_FRAMES:
                    continue
                await self._turns.acquire(urgent=False, timeout_s=SQLITE_BUSY_TIMEOUT_MS / 1000)
                try:
                    await loop.run_in_executor(self._executor, self.checkpoint)
                finally:
                    self._turns.release()
            except Exception as error:
                # The checkpoints must go on, or the log grows without limit.
                log_checkpoint_failure(error)

    def checkpoint(self) -> int:
        """Run a passive checkpoint on the calling thread and return the log's length in pages.

        Returns 0 after a failed checkpoint, which is logged.
        """
        try:
            if self._connection is None:
                self._connection = sqlite3.connect(
                    self.path,
                    timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                    isolation_level=None,
                    check_same_thread=False,
                )
            # The row contains: busy (0 or 1), pages in the log, pages copied.
            [(_busy, frames, _copied)] = self._connection.execute(
                "PRAGMA wal_checkpoint(PASSIVE)"
            ).fetchall()
        except sqlite3.Error as error:
            # The next checkpoint copies what this one left, so the log only grows meanwhile.
            log_checkpoint_failure(error)
            return 0
        return int(frames)

    def _checkpoint_and_close(self) -> None:
        self.checkpoint()
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def log_checkpoint_failure(error: BaseException) -> None:
    logger.warning(
        "SQLite checkpoint failed; the next one will try again",
        extra={
            "event": "sqlite_checkpoint_failed",
            "error": f"{type(error).__name__}: {str(error)[:200]}",
        },
    )


class WriteTurns:
    """Turns at SQLite's one write connection: urgent writers first, then in arrival order.

    Under a regular backlog several batched writes wait for the connection
    at any time, and an instant order queued behind all of them waited for
    each one's transaction. After MAX_URGENT_IN_A_ROW urgent turns a waiting
    writer that is not urgent gets the next one, so steady instant traffic
    cannot hold up claims, expiry and receipts for good.
    """

    MAX_URGENT_IN_A_ROW: Final = 8

    def __init__(self) -> None:
        self._busy = False
        self._urgent_in_a_row = 0
        self._urgent: collections.deque[asyncio.Future[None]] = collections.deque()
        self._other: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, *, urgent: bool, timeout_s: float | None = None) -> None:
        """Wait for the connection's turn.

        Raises DatabaseUnavailableError after `timeout_s`: the writers ahead
        held the connection that long, as when another process keeps the
        database locked.
        """
        if not self._busy:
            self._busy = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._other
        queue.append(turn)
        try:
            async with asyncio.timeout(timeout_s):
                await turn
        except BaseException as error:
            if turn.done() and not turn.cancelled():
                # The turn was handed over just before the wait ended: pass it on.
                self.release()
            else:
                turn.cancel()
                with contextlib.suppress(ValueError):
                    queue.remove(turn)
            if isinstance(error, TimeoutError):
                raise DatabaseUnavailableError(
                    f"no turn at the SQLite write connection within {timeout_s} s"
                ) from error
            raise

    def release(self) -> None:
        """Hand the connection to the next waiter, or mark it free."""
        queues = (self._urgent, self._other)
        if self._urgent_in_a_row >= self.MAX_URGENT_IN_A_ROW:
            queues = (self._other, self._urgent)
        for queue in queues:
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)
                    self._urgent_in_a_row = (
                        self._urgent_in_a_row + 1 if queue is self._urgent else 0
                    )
                    return
        self._urgent_in_a_row = 0
        self._busy = False


def create_sqlite_file(url: str) -> Path | None:
    """Create the database file with mode 0600, and its folder with 0700 if it is missing.

    The file contains recipients, message bodies and webhook signing secrets.
    SQLite gives the -wal and -shm files the mode of the database file. An
    existing file keeps its mode, with a warning when other users can read it.
    Returns the file's path, or None for an in-memory database.
    """
    database = make_url(url).database
    if not database or database == ":memory:":
        return None
    path = Path(database)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        # An empty file is an empty SQLite database.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        warn_if_readable_by_others(path)
    return path


def warn_if_readable_by_others(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "SQLite database file is readable by other users; restrict it with chmod 600 "
            "(and its -wal and -shm files)",
            extra={"event": "database_file_open", "path": str(path), "mode": oct(mode & 0o777)},
        )


def create_sqlite_engine(
    url: str, *, begin: str, pool_size: int, autocheckpoint: bool = True
) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
        hide_parameters=True,
        async_creator=inline_connector(
            make_url(url).database or ":memory:", timeout_s=SQLITE_BUSY_TIMEOUT_MS / 1000
        ),
    )

    @event.listens_for(engine.sync_engine, "connect")
    def configure_connection(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event, not the sqlite3 module, open transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode keeps the database consistent after a crash; a power
        # loss can lose the last commits, which FULL would keep at the cost of an
        # fsync per commit.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def begin_transaction(connection: Any) -> None:
        # BEGIN runs on the sqlite3 connection directly, because exec_driver_sql
        # costs an execution context: 30 of the 150 µs of an empty transaction.
        sqlite_connection = connection.connection.driver_connection.sqlite_connection
        try:
            sqlite_connection.execute(begin)
        except sqlite3.Error as error:
            # "database is locked" must reach translate_connection_errors as
            # SQLAlchemy's OperationalError, as exec_driver_sql raised it.
            raise DBAPIError.instance(begin, (), error, sqlite3.Error) from error

    return engine


@asynccontextmanager
async def translate_connection_errors() -> AsyncIterator[None]:
    """Turn driver errors that mean "no usable database" into DatabaseUnavailableError."""
    try:
        yield
    except OperationalError as error:
        raise DatabaseUnavailableError(str(error.orig)) from error
    except PoolTimeoutError as error:
        # Every pooled connection stayed busy for the pool timeout: the
        # database is overloaded, which the caller handles like an outage.
        raise DatabaseUnavailableError(f"no free database connection: {error}") from error
    except DBAPIError as error:
        # asyncpg reports a refused login or a missing database at connect time
        # as these; a statement error on a live connection is re-raised as is.
        if error.connection_invalidated or is_connect_failure(error):
            raise DatabaseUnavailableError(str(error.orig)) from error
        raise
    except (OSError, ConnectionError) as error:
        raise DatabaseUnavailableError(str(error)) from error


def is_connect_failure(error: DBAPIError) -> bool:
    """Tell whether a driver error means no connection could be made or kept.

    PostgreSQL's SQLSTATE classes say so: 08 connection exception, 28 invalid
    authorisation, 3D000 missing database, 53 insufficient resources (too many
    connections), 57P operator intervention (shutdown, cannot connect now) and
    55000 for a database that does not accept connections.
    """
    if isinstance(error, InterfaceError):
        return True
    # SQLAlchemy wraps asyncpg's exception in an adapter error; the original
    # asyncpg exception is that error's cause.
    cause = error.orig.__cause__ if error.orig is not None else None
    sqlstate = str(getattr(cause, "sqlstate", "") or getattr(error.orig, "sqlstate", "") or "")
    if sqlstate.startswith(("08", "28", "53", "57P")) or sqlstate in ("3D000", "55000"):
        return True
    return type(cause).__name__ in {"ConnectionDoesNotExistError", "InternalClientError"}
