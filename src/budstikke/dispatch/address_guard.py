"""The connection guard of requests to creators' URLs: webhooks and condition endpoints.

The guard sits in the connection itself: the network backend resolves the
host, rejects the connection when any resolved address breaks the address
policy, and connects to a checked address. The request keeps the original
host name, so the Host header and the TLS server name (SNI and certificate
check) are the name's, and a DNS answer that changes between the check and
the connection (DNS rebinding) cannot redirect it. The clients use httpcore
without httpx on purpose: it follows no redirects and reads no proxy
settings from the environment, either of which would bypass the check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore

from budstikke.domain.webhook_urls import DEFAULT_PORTS, AddressPolicy, IPAddress
from budstikke.errors import BudstikkeError

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


class AddressRejectedError(BudstikkeError):
    """A host resolves to an address that the policy rejects.

    The rejection is permanent for the URL, so a caller gives up at once
    instead of retrying: the same name is expected to resolve the same way.
    """


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
    """A network backend that connects only to addresses the policy allows.

    `allow_setting` is the environment variable that the rejection message
    names, so an operator reads which setting would allow the address.
    """

    def __init__(self, policy: AddressPolicy, resolver: Resolver, *, allow_setting: str) -> None:
        self.policy = policy
        self.resolver = resolver
        self.allow_setting = allow_setting
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
        # One rejected address rejects the host: a name that points at both
        # a public and an internal address is not a receiver to trust.
        rejected = self.policy.first_rejected(addresses)
        if rejected is not None:
            address, reason = rejected
            raise AddressRejectedError(
                f"{host} resolves to {address}, {reason}; the operator can allow it with "
                f"{self.allow_setting}"
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
        raise AddressRejectedError("requests to creators' URLs never use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def guarded_pool(
    policy: AddressPolicy,
    *,
    allow_setting: str,
    max_connections: int,
    ssl_context: ssl.SSLContext | None = None,
    resolver: Resolver = resolve_host,
) -> httpcore.AsyncConnectionPool:
    """Build an HTTP/1.1 connection pool whose every connection goes through GuardedBackend."""
    return httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=max_connections,
        keepalive_expiry=30.0,
        http1=True,
        http2=False,
        retries=0,
        network_backend=GuardedBackend(policy, resolver, allow_setting=allow_setting),
    )


def host_header(host: str, port: int, scheme: str) -> str:
    """Return the Host header for a URL: the name, bracketed for IPv6, and a non-default port."""
    name = f"[{host}]" if ":" in host else host
    return name if port == DEFAULT_PORTS[scheme] else f"{name}:{port}"


async def read_some(response: httpcore.Response, limit: int) -> bytes:
    """Read the body until it passes `limit` bytes or ends; return what was read."""
    body = bytearray()
    async for chunk in response.aiter_stream():
        body += chunk
        if len(body) > limit:
            break
    return bytes(body)
