"""Servers for the API tests: the `budstikke` command as a subprocess, the app in
uvicorn on a loopback socket, and throwaway PostgreSQL databases."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from budstikke.api.app import create_app
from budstikke.config import Settings
from budstikke.store.api_keys import create_api_key
from budstikke.store.database import Database

# The console script installed next to the interpreter that runs the tests.
BUDSTIKKE = Path(sys.executable).with_name("budstikke")
HOST = "127.0.0.1"
CREATE_SCOPE = "altinn:serviceowner/notifications.create"
# The PostgreSQL server of the test suite, which trusts the postgres user (no password).
POSTGRES_HOST = "127.0.0.1"
CREATE_SCOPE = "altinn:serviceowner/notifications.create"
POSTGRES_PORT = 5432
POSTGRES_USER = "postgres"
CLI_TIMEOUT_S = 30.0
START_TIMEOUT_S = 60.0


def cli_environment(data_dir: Path, **settings: str) -> dict[str, str]:
    """Return this process's environment without BUDSTIKKE_* variables, plus the given ones.

    `settings` maps the variable name without its BUDSTIKKE_ prefix, in any
    case, to its value: `cli_environment(path, sms_url="file:/tmp/sms.jsonl")`.
    """
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("BUDSTIKKE_")
    }
    environment["BUDSTIKKE_DATA_DIR"] = str(data_dir)
    for name, value in settings.items():
        environment[f"BUDSTIKKE_{name.upper()}"] = value
    return environment


def run_cli(
    *args: str, environment: Mapping[str, str], timeout_s: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run `budstikke ARGS` and return its result.

    Raises subprocess.TimeoutExpired, after killing the process, when it runs
    longer than timeout_s.
    """
    return subprocess.run(
        [str(BUDSTIKKE), *args],
        env=dict(environment),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def create_api_key_with_cli(environment: Mapping[str, str], creator: str = "ttd") -> str:
    """Create an API key with `budstikke apikey create` and return the key it prints."""
    result = run_cli("apikey", "create", "--creator", creator, environment=environment)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key, f"apikey create printed no key; stderr: {result.stderr}"
    return key


def free_port() -> int:
    """Return a TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


class ServeProcess:
    """`budstikke serve` on a free loopback port, with its stderr kept in a file."""

    def __init__(self, environment: Mapping[str, str], log_dir: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.stderr_path = log_dir / f"serve-{self.port}.stderr"
        self._stderr: IO[bytes] = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [str(BUDSTIKKE), "serve", "--host", HOST, "--port", str(self.port)],
            env=dict(environment),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def wait_until_listening(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"budstikke serve exited with {self.process.returncode} before listening:\n"
                    f"{self.stderr()}"
                )
            if port_answers(self.port):
                return
            time.sleep(0.05)
        pytest.fail(f"budstikke serve did not listen on {self.port} in {timeout_s} s")

    def stop(self, stop_signal: signal.Signals, timeout_s: float) -> int:
        """Send a signal and return the exit status, or raise TimeoutExpired if it does not stop.

        A negative status is the number of the signal that killed the process.
        """
        self.process.send_signal(stop_signal)
        return self.process.wait(timeout=timeout_s)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        """Stop the process if it still runs (SIGTERM, then SIGKILL), and release its file."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait(timeout=CLI_TIMEOUT_S)
        self._stderr.close()


@contextmanager
def serve_process(environment: Mapping[str, str], log_dir: Path) -> Iterator[ServeProcess]:
    """Run `budstikke serve` until the block ends, waiting until its port accepts connections."""
    server = ServeProcess(environment, log_dir)
    try:
        server.wait_until_listening()
        yield server
    finally:
        server.close()


@asynccontextmanager
async def uvicorn_server(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` over TCP on a loopback port in this event loop, and yield the base URL.

    The lifespan runs as in production. The socket is bound before the server
    starts, so no other process can take the port in between.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            if task.done():
                task.result()
                pytest.fail("uvicorn stopped before it started serving")
            await asyncio.sleep(0.01)
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        await task
        listener.close()


@dataclass
class InProcessApp:
    """The app with its lifespan running, an httpx client over ASGI, and a key of creator ttd."""

    client: httpx.AsyncClient
    settings: Settings
    database: Database
    api_key: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def outbox_lines(self, channel: str) -> list[dict[str, Any]]:
        path = self.settings.data_dir / "outbox" / f"{channel}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


@asynccontextmanager
async def in_process_app(
    settings: Settings,
    *,
    run_workers: bool = True,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> AsyncIterator[InProcessApp]:
    """Run the app from `settings` in this event loop and yield a client for it.

    Unexpected errors reach the client as the 500 response a real server would
    send, not as exceptions.
    """
    app = create_app(settings, run_workers=run_workers, clock=clock)
    async with app.router.lifespan_context(app):
        database: Database = app.state.services.database
        _record, key = await create_api_key(
            database, creator="ttd", scopes=(CREATE_SCOPE,), now=datetime.now(UTC)
        )
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://budstikke.test"
        ) as client:
            yield InProcessApp(client, settings, database, key)


async def connect_postgres(database: str = "postgres") -> asyncpg.Connection:
    return await asyncpg.connect(
        host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER, database=database
    )


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """Create an empty PostgreSQL database with a random name, yield its name, then drop it.

    Skips the test when no PostgreSQL server accepts connections on 127.0.0.1:5432.
    """
    try:
        admin = await connect_postgres()
    except (OSError, asyncpg.PostgresError) as error:
        pytest.skip(f"PostgreSQL does not answer at {POSTGRES_HOST}:{POSTGRES_PORT}: {error}")
    name = f"budstikke_test_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            # FORCE ends the connections the app may still hold (PostgreSQL 13+).
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def postgres_url(database: str) -> str:
    return f"postgresql://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{database}"


async def set_allow_connections(database: str, allowed: bool) -> None:
    """Let PostgreSQL accept or refuse new connections to `database`.

    Refusing also ends the connections that are open, so the app's pool finds
    every connection dead and cannot open a new one.
    """
    admin = await connect_postgres()
    try:
        await admin.execute(
            f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {"true" if allowed else "false"}'
        )
        if not allowed:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                database,
            )
    finally:
        await admin.close()
