"""Deadlines for slow clients: one for the request head, one for the request body.

A client that sends its request a few bytes at a time keeps a connection
and a slot of uvicorn's `limit_concurrency` for as long as it likes, so a
few thousand such clients shut everyone else out. uvicorn 0.55 closes only
idle kept-alive connections (`timeout_keep_alive`); it sets no deadline on
a request head that is still arriving, and none on a body.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from budstikke.api.problems import problem

logger = logging.getLogger(__name__)


class RequestBodyTimeoutError(Exception):
    """The client did not send its whole request body within the deadline."""


class RequestBodyDeadline:
    """Middleware that responds 408 and closes the connection when a body takes over `timeout_s`.

    The deadline counts from the moment the request head was complete. Once
    the body is complete, later `receive` calls (which wait for the client
    to disconnect) have no deadline.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        body_complete = False
        response_started = False

        async def receive_before_deadline() -> Message:
            nonlocal body_complete
            if body_complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestBodyTimeoutError from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_complete = True
            return message

        async def send_watching(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive_before_deadline, send_watching)
        except RequestBodyTimeoutError:
            if response_started:
                raise
            # A warning with a fixed reason, so that a flood is written once and counted.
            logger.warning(
                "request body not complete in time; connection closed",
                extra={
                    "event": "request_body_timeout",
                    "reason": "slow body",
                    "path": scope.get("path", ""),
                    "timeout_s": self.timeout_s,
                },
            )
            response = problem(
                408,
                "Request timeout",
                f"The request body did not arrive within {self.timeout_s:g} s.",
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)


class HeadDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request head is late.

    The deadline starts when the connection opens and again with the first
    bytes of each later request on it, and ends when the head is complete.
    Set `head_timeout_s` on a subclass (see `head_deadline_protocol`).
    """

    head_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_deadline()

    def data_received(self, data: bytes) -> None:
        between_requests = self.cycle is None or self.cycle.response_complete
        if self._head_deadline is None and between_requests:
            self._start_head_deadline()
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._cancel_head_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def _start_head_deadline(self) -> None:
        self._head_deadline = self.loop.call_later(self.head_timeout_s, self._close_late_head)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _close_late_head(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            logger.warning(
                "request head not complete in time; connection closed",
                extra={
                    "event": "request_head_timeout",
                    "reason": "slow head",
                    "timeout_s": self.head_timeout_s,
                },
            )
            self.transport.close()


def head_deadline_protocol(timeout_s: float) -> type[HeadDeadlineProtocol]:
    """Return the protocol class for uvicorn's `http` setting with this head deadline."""
    return type("HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"head_timeout_s": timeout_s})
