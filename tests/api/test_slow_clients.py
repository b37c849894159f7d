"""Slow clients: deadlines for the request head and body, and idle kept-alive connections."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from budstikke.api.app import create_app
from budstikke.api.slow_clients import head_deadline_protocol
from budstikke.config import Settings
from budstikke.store.api_keys import create_api_key
from tests.api.orders import SMS_PATH, sms_order
from tests.api.servers import (
    HOST,
    cli_environment,
    create_api_key_with_cli,
    serve_process,
    uvicorn_server,
)
from tests.conftest import API, CREATE_SCOPE

READ_TIMEOUT_S = 10.0


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Read everything the server sends until it closes the connection."""
    async with asyncio.timeout(READ_TIMEOUT_S):
        return await reader.read()


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with suppress(ConnectionError):
        await writer.wait_closed()


def http_port(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


# --- The request body deadline --------------------------------------------------------------


@dataclass
class ApiServer:
    port: int
    api_key: str


@asynccontextmanager
async def api_server(tmp_path: Path, body_timeout_s: float) -> AsyncIterator[ApiServer]:
    settings = Settings(data_dir=tmp_path / "data", request_body_timeout_s=body_timeout_s)
    app = create_app(settings)
    async with uvicorn_server(app) as base_url:
        _record, key = await create_api_key(
            app.state.services.database,
            creator="ttd",
            scopes=(CREATE_SCOPE,),
            now=datetime.now(UTC),
        )
        yield ApiServer(http_port(base_url), key)


def order_head(server: ApiServer, content_length: int) -> bytes:
    return (
        f"POST {SMS_PATH} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {server.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    ).encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """Read one response with a Content-Length; return its status line and body."""
    async with asyncio.timeout(READ_TIMEOUT_S):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = await reader.readexactly(length)
    return head.split(b"\r\n", 1)[0], body


async def test_slow_body_gets_408_and_close(tmp_path: Path) -> None:
    async with api_server(tmp_path, body_timeout_s=0.5) as server:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        try:
            started = time.monotonic()
            writer.write(order_head(server, 100) + b'{"idempotencyId": "slow"')
            await writer.drain()
            answer = await read_until_closed(reader)
            waited_s = time.monotonic() - started
        finally:
            await close(writer)

    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"connection: close" in answer.lower()
    assert b"application/problem+json" in answer
    assert 0.4 < waited_s < 5


async def test_body_in_pieces_within_deadline(tmp_path: Path) -> None:
    body = json.dumps(sms_order()).encode()
    async with api_server(tmp_path, body_timeout_s=2.0) as server:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        try:
            writer.write(order_head(server, len(body)))
            for start in range(0, len(body), 40):
                writer.write(body[start : start + 40])
                await writer.drain()
                await asyncio.sleep(0.05)
            status_line, _answer = await read_response(reader)
        finally:
            await close(writer)

    assert status_line.startswith(b"HTTP/1.1 201 "), status_line


async def test_requests_without_body_unaffected(tmp_path: Path) -> None:
    async with api_server(tmp_path, body_timeout_s=0.2) as server:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        try:
            for _ in range(2):
                writer.write(f"GET /health/live HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                await writer.drain()
                status_line, answer = await read_response(reader)
                assert status_line.startswith(b"HTTP/1.1 200 "), status_line
                assert b"alive" in answer
                await asyncio.sleep(0.3)
        finally:
            await close(writer)


# --- The request head deadline ----------------------------------------------------------------


async def hello(_request: Request) -> Response:
    return PlainTextResponse("hello")


@asynccontextmanager
async def head_deadline_server(timeout_s: float) -> AsyncIterator[int]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    config = uvicorn.Config(
        Starlette(routes=[Route("/", hello)]),
        log_config=None,
        access_log=False,
        lifespan="off",
        http=head_deadline_protocol(timeout_s),
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        listener.close()


async def test_silent_connection_closed(tmp_path: Path) -> None:
    async with head_deadline_server(0.5) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            started = time.monotonic()
            answer = await read_until_closed(reader)
            waited_s = time.monotonic() - started
        finally:
            await close(writer)

    assert answer == b""
    assert 0.4 < waited_s < 5


async def test_slow_head_closed(tmp_path: Path) -> None:
    async with head_deadline_server(0.5) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            for part in (b"GET / HTTP/1.1\r\n", b"Host: x\r\n", b"X-Slow: 1\r\n"):
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.3)
            answer = await read_until_closed(reader)
        finally:
            await close(writer)

    assert answer == b""


async def test_slow_head_on_kept_alive_connection(tmp_path: Path) -> None:
    async with head_deadline_server(0.5) as port:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(READ_TIMEOUT_S):
                await reader.readuntil(b"hello")
            # Idle longer than the head deadline: only the keep-alive timeout applies.
            await asyncio.sleep(0.8)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(READ_TIMEOUT_S):
                await reader.readuntil(b"hello")
            writer.write(b"GET / HTTP/1.1\r\n")
            await writer.drain()
            answer = await read_until_closed(reader)
        finally:
            await close(writer)

    assert answer == b""


# --- The settings of `budstikke serve` -----------------------------------------------------------


def test_serve_applies_timeouts(tmp_path: Path) -> None:
    environment = cli_environment(
        tmp_path / "data", keep_alive_timeout_s="1", request_head_timeout_s="1"
    )
    create_api_key_with_cli(environment)
    with serve_process(environment, tmp_path) as server:
        with socket.create_connection((HOST, server.port), timeout=READ_TIMEOUT_S) as silent:
            started = time.monotonic()
            assert silent.recv(100) == b""
            silent_closed_s = time.monotonic() - started

        with socket.create_connection((HOST, server.port), timeout=READ_TIMEOUT_S) as idle:
            idle.sendall(f"GET {API}/whoami HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += idle.recv(4096)
            started = time.monotonic()
            while idle.recv(4096):
                pass
            idle_closed_s = time.monotonic() - started

    assert answer.startswith(b"HTTP/1.1 401 ")
    assert 0.8 < silent_closed_s < 5
    assert 0.8 < idle_closed_s < 5
