"""A condition endpoint on 127.0.0.1 for tests: answers GET with a body the test sets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from tests.conftest import wait_for


@dataclass
class ConditionServer:
    port: int
    status: int = 200
    body: bytes = b'{"sendNotification": true}'
    paths: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    # Set: requests are answered; cleared by `hold`, they wait until `release`.
    open_gate: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    max_in_flight: int = 0

    def url(self, path: str = "/condition") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, body: bytes, status: int = 200) -> None:
        self.body, self.status = body, status

    def hold(self) -> None:
        """Keep every request open without a response until `release`."""
        self.open_gate.clear()

    def release(self) -> None:
        self.open_gate.set()

    async def wait_for_in_flight(self, count: int) -> None:
        async def reached() -> bool:
            return self.in_flight >= count

        await wait_for(reached)


@asynccontextmanager
async def condition_server() -> AsyncIterator[ConditionServer]:
    """Serve HTTP/1.1 on a free loopback port, one request per connection."""
    state = ConditionServer(port=0)
    state.release()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await reader.readline()
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _colon, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "host":
                    state.hosts.append(value.strip())
                if name.strip().lower() == "authorization":
                    state.authorizations.append(value.strip())
            state.paths.append(request_line.decode().split(" ")[1])
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                await state.open_gate.wait()
            finally:
                state.in_flight -= 1
            head = (
                f"HTTP/1.1 {state.status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(state.body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + state.body)
            await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    """Return a loopback port on which nothing listens."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
