"""A webhook receiver for tests: a real HTTP/1.1 server on loopback, with scripted replies.

It records every request it reads (headers, raw body, TLS server name) and
replies to each from a queue of `Reply` objects, or with 204 when the queue
is empty. A reply can delay, redirect, send a huge or stalled body, or close
the connection without answering. It can serve TLS and verify Standard
Webhooks signatures the way a receiver should.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import h11

HOST = "127.0.0.1"


@dataclass
class Reply:
    status: int = 204
    delay_s: float = 0.0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    # Declare this body length, send `stall_after` bytes of it, then stop sending.
    stalled_length: int | None = None
    stall_after: int = 0
    # Close the connection without a response.
    drop: bool = False
    # Send these bytes as the response, unchecked, then close the connection.
    raw: bytes | None = None


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    server_name: str | None
    received_at: float

    def json(self) -> Any:
        return json.loads(self.body)


def verify_signature(request: ReceivedRequest, secret: str) -> bool:
    """Verify a request the way the README shows receivers, without budstikke's code."""
    message_id = request.headers["webhook-id"]
    timestamp = request.headers["webhook-timestamp"]
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{message_id}.{timestamp}.".encode() + request.body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    for candidate in request.headers["webhook-signature"].split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return True
    return False


class Receiver:
    """Serve on a loopback port until `stop`; `url(path)` gives the address to register."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.requests: list[ReceivedRequest] = []
        self.replies: deque[Reply] = deque()
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._server_names: dict[int, str | None] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._arrived = asyncio.Condition()
        if ssl_context is not None:
            ssl_context.sni_callback = self._remember_server_name

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, HOST, 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(set(self._handlers))
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Receiver:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def url(self, path: str = "/hooks", *, host: str = HOST) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def reply(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def wait_for_requests(self, count: int, timeout_s: float = 10.0) -> list[ReceivedRequest]:
        """Wait until `count` requests arrived; fail with what did arrive on timeout."""
        async with self._arrived:
            try:
                await asyncio.wait_for(
                    self._arrived.wait_for(lambda: len(self.requests) >= count), timeout_s
                )
            except TimeoutError:
                raise AssertionError(
                    f"expected {count} webhook requests within {timeout_s} s; got "
                    f"{len(self.requests)}: {[r.body[:200] for r in self.requests]}"
                ) from None
        return list(self.requests)

    def _remember_server_name(
        self, ssl_object: ssl.SSLObject, server_name: str | None, _context: ssl.SSLContext
    ) -> None:
        self._server_names[id(ssl_object)] = server_name

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        ssl_object = writer.get_extra_info("ssl_object")
        server_name = self._server_names.get(id(ssl_object)) if ssl_object else None
        try:
            await self._serve_connection(reader, writer, server_name)
        except (ConnectionError, h11.RemoteProtocolError, asyncio.IncompleteReadError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server_name: str | None
    ) -> None:
        connection = h11.Connection(h11.SERVER)
        while True:
            request = await self._read_request(connection, reader, server_name)
            if request is None:
                return
            async with self._arrived:
                self.requests.append(request)
                self._arrived.notify_all()
            reply = self.replies.popleft() if self.replies else Reply()
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            if reply.drop:
                return
            if reply.raw is not None:
                writer.write(reply.raw)
                await writer.drain()
                return
            await self._answer(connection, writer, reply)
            if reply.stalled_length is not None:
                # Keep the connection open without sending the rest of the body.
                await asyncio.sleep(3600)
            if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                return
            connection.start_next_cycle()

    async def _read_request(
        self, connection: h11.Connection, reader: asyncio.StreamReader, server_name: str | None
    ) -> ReceivedRequest | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                connection.receive_data(data)
                if not data and head is None:
                    return None
                continue
            if isinstance(event, h11.ConnectionClosed):
                return None
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body.extend(event.data)
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return ReceivedRequest(
                    method=head.method.decode(),
                    path=head.target.decode(),
                    headers={name.decode().lower(): value.decode() for name, value in head.headers},
                    body=bytes(body),
                    server_name=server_name,
                    received_at=time.monotonic(),
                )

    async def _answer(
        self, connection: h11.Connection, writer: asyncio.StreamWriter, reply: Reply
    ) -> None:
        headers = list(reply.headers)
        length = reply.stalled_length if reply.stalled_length is not None else len(reply.body)
        headers.append(("Content-Length", str(length)))
        writer.write(connection.send(h11.Response(status_code=reply.status, headers=headers)))
        if reply.stalled_length is not None:
            writer.write(connection.send(h11.Data(data=b"x" * reply.stall_after)))
            await writer.drain()
            return
        if reply.body:
            writer.write(connection.send(h11.Data(data=reply.body)))
        writer.write(connection.send(h11.EndOfMessage()))
        await writer.drain()
