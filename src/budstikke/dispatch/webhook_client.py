"""The HTTP client of webhooks: one POST, guarded against server-side request forgery.

The guard sits in the connection itself: the network backend resolves the
host, refuses the connection when any resolved address breaks the address
policy, and connects to a checked address. The request keeps the original
host name, so the Host header and the TLS server name (SNI and certificate
check) are the name's, and a DNS answer that changes between the check and
the connection (DNS rebinding) cannot redirect it. httpcore is used without
httpx on purpose: it follows no redirects and reads no proxy settings from
the environment, either of which would bypass the check.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpcore

from budstikke import __version__
from budstikke.domain.webhook_urls import (
    DEFAULT_PORTS,
    AddressPolicy,
    InvalidWebhookUrlError,
    IPAddress,
    parse_webhook_url,
)
from budstikke.errors import BudstikkeError

# A response body is read up to this many bytes and never stored or logged.
MAX_RESPONSE_BYTES = 4096
USER_AGENT = f"budstikke-webhooks/{__version__}"

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


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


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Resolve a host name with the system resolver; an IP literal is returned as is."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise httpcore.ConnectError(f"cannot resolve {host}: {error.strerror}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """A network backend that connects only to addresses the policy allows."""

    def __init__(self, policy: AddressPolicy, resolver: Resolver) -> None:
        self.policy = policy
        self.resolver = resolver
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.resolver(host, port)
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolved to no address")
        # One refused address refuses the host: a name that points at both
        # a public and an internal address is not a receiver to trust.
        refused = self.policy.first_rejected(addresses)
        if refused is not None:
            address, reason = refused
            raise TargetRefusedError(
                f"{host} resolves to {address}, {reason}; the operator can allow it with "
                "BUDSTIKKE_WEBHOOK_ALLOWED_NETWORKS"
            )
        last_error: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefusedError("webhooks do not connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


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
        self.pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            keepalive_expiry=30.0,
            http1=True,
            http2=False,
            retries=0,
            network_backend=GuardedBackend(policy, resolver),
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


async def read_some(response: httpcore.Response, limit: int) -> int:
    """Read at most about `limit` bytes of the body and drop them; return how many were read."""
    read = 0
    async for chunk in response.aiter_stream():
        read += len(chunk)
        if read >= limit:
            break
    return read


def host_header(host: str, port: int, scheme: str) -> str:
    """Return the Host header for a URL: the name, bracketed for IPv6, and a non-default port."""
    name = f"[{host}]" if ":" in host else host
    return name if port == DEFAULT_PORTS[scheme] else f"{name}:{port}"


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
