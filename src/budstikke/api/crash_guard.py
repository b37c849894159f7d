"""Turning an unexpected exception into one logged 500 answer."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from budstikke.api.problems import problem

logger = logging.getLogger(__name__)


class CrashGuard:
    """ASGI middleware that answers 500 problem details for an exception no handler took.

    Starlette's outermost error middleware answers such a request too, but
    then raises the exception again, so uvicorn logs a second traceback and
    closes the connection, and the client's next keep-alive request fails.
    Here the error is logged once and the connection stays usable.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def send_tracked(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception:
            logger.exception(
                "unexpected error", extra={"event": "request_crashed", "path": scope.get("path")}
            )
            if response_started:
                # Part of an answer went out; closing the connection is all that is left.
                raise
            response = problem(500, "Internal server error", "The error was logged.")
            await response(scope, receive, send)
