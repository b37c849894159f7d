"""The HTTP client of webhooks: one POST, guarded against server-side request forgery.

Every connection goes through the address guard of `address_guard`, which
resolves the host, rejects addresses the policy does not allow, and
connects to a checked address while the Host header and the TLS server
name stay the URL's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

import httpcore

from budstikke import __version__
from budstikke.dispatch.address_guard import (
    AddressRejectedError,
    Resolver,
    guarded_pool,
    host_header,
    read_some,
    resolve_host,
)
from budstikke.domain.webhook_urls import AddressPolicy, InvalidWebhookUrlError, parse_webhook_url
from budstikke.errors import BudstikkeError

# A response body is read up to this many bytes and never stored or logged.
MAX_RESPONSE_BYTES = 4096
USER_AGENT = f"budstikke-webhooks/{__version__}"
ALLOW_SETTING = "BUDSTIKKE_WEBHOOK_ALLOWED_NETWORKS"


class WebhookCallError(BudstikkeError):
    """A webhook request failed before a response came; `reason` is the metric label."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class TargetRefusedError(WebhookCallError):
    """The URL's scheme or a resolved address is not allowed by the operator's settings."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="refused")


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    status_code: int
    retry_after_s: float | None


class WebhookClient:
    """Posts signed webhook bodies; one client per worker process, closed with `aclose`."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        allow_http: bool,
        timeout_s: float,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
        resolver: Resolver = resolve_host,
    ) -> None:
        self.allow_http = allow_http
        self.timeout_s = timeout_s
        self.pool = guarded_pool(
            policy,
            allow_setting=ALLOW_SETTING,
            max_connections=max_connections,
            ssl_context=ssl_context,
            resolver=resolver,
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> WebhookResponse:
        """POST the body and return the response status; raises WebhookCallError.

        The status must arrive within the timeout, DNS and connection
        included. Then the body is read, within what is left of the timeout
        and only up to MAX_RESPONSE_BYTES; a longer or slower body closes the
        connection but does not change the outcome.
        """
        try:
            target = parse_webhook_url(url, allow_http=self.allow_http)
        except InvalidWebhookUrlError as error:
            raise TargetRefusedError(f"the URL is not allowed: {error}") from None
        request = httpcore.Request(
            "POST",
            url,
            headers=[
                ("Host", host_header(target.host, target.port, target.scheme)),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("User-Agent", USER_AGENT),
                *headers.items(),
            ],
            content=body,
            extensions={
                "timeout": dict.fromkeys(("connect", "read", "write", "pool"), self.timeout_s)
            },
        )
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                response = await self.pool.handle_async_request(request)
        except AddressRejectedError as error:
            raise TargetRefusedError(str(error)) from None
        except (TimeoutError, httpcore.TimeoutException):
            raise WebhookCallError(
                f"timed out after {self.timeout_s:g} s", reason="timeout"
            ) from None
        except (httpcore.ConnectError, httpcore.NetworkError, OSError) as error:
            raise WebhookCallError(
                f"connection failed: {describe_error(error)}", reason="connection"
            ) from None
        except httpcore.ProtocolError as error:
            # The parser's message can quote the receiver's bytes, which are
            # not stored or logged; the error's class says enough.
            raise WebhookCallError(
                f"invalid HTTP response ({type(error).__name__})", reason="invalid_response"
            ) from None
        try:
            # The status decides the outcome; the body is only drained so the
            # connection can be reused.
            with contextlib.suppress(
                TimeoutError,
                httpcore.TimeoutException,
                httpcore.NetworkError,
                httpcore.ProtocolError,
                OSError,
            ):
                async with asyncio.timeout_at(deadline):
                    await read_some(response, MAX_RESPONSE_BYTES)
        finally:
            with contextlib.suppress(httpcore.NetworkError, OSError):
                await response.aclose()
        return WebhookResponse(
            status_code=response.status, retry_after_s=parse_retry_after(response.headers)
        )

    async def aclose(self) -> None:
        await self.pool.aclose()


def parse_retry_after(headers: list[tuple[bytes, bytes]]) -> float | None:
    """Return a Retry-After given in seconds; an HTTP date or a bad value gives None."""
    for name, value in headers:
        if name.lower() == b"retry-after":
            text = value.decode("latin-1").strip()
            if text.isdigit() and len(text) <= 9:
                return float(text)
    return None


def describe_error(error: BaseException) -> str:
    """Return a short, printable error text for the delivery's last_error and the log."""
    text = str(error) or type(error).__name__
    printable = "".join(character if " " <= character <= "~" else "?" for character in text)
    return printable[:150]
