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

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from budstikke.api.problems import problem

logger = logging.getLogger(__name__)


class RequestBodyTimeoutError(Exception):
    """The client did not send its whole request body within the deadline."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"the request body did not arrive within {timeout_s:g} s")
        self.timeout_s = timeout_s


class RequestBodyDeadline:
    """Middleware that ends a request whose body takes longer than `timeout_s` to arrive.

    The deadline counts from the moment the request head was complete. A
    late `receive` raises RequestBodyTimeoutError into the route, and the
    handler that `install_body_deadline` registers responds 408. Once the
    body is complete, later `receive` calls (which wait for the client to
    disconnect) have no deadline.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        body_complete = False

        async def receive_before_deadline() -> Message:
            nonlocal body_complete
            if body_complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestBodyTimeoutError(self.timeout_s) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_complete = True
            return message

        await self.app(scope, receive_before_deadline, send)


def install_body_deadline(app: FastAPI, timeout_s: float) -> None:
    """Add the body deadline to the app, with the handler that responds 408."""
    app.add_middleware(RequestBodyDeadline, timeout_s=timeout_s)

    @app.exception_handler(RequestBodyTimeoutError)
    async def on_body_timeout(request: Request, error: RequestBodyTimeoutError) -> Response:
        # A warning with a fixed reason, so that a flood is written once and counted.
        logger.warning(
            "request body not complete in time; connection closed",
            extra={
                "event": "request_body_timeout",
                "reason": "slow body",
                "path": request.url.path,
                "timeout_s": error.timeout_s,
            },
        )
        # The rest of the body may still be on its way, so the connection ends here.
        return problem(
            408,
            "Request timeout",
            f"The request body did not arrive within {error.timeout_s:g} s.",
            headers={"Connection": "close"},
        )


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
