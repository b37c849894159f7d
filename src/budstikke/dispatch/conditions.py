"""Asking a regular order's condition endpoint whether to send it.

The endpoint gets `GET` with no redirects followed, a 5 s deadline, and at
most 4 KB of its response read. A 2xx response decides when its body is
Altinn's `{"sendNotification": true|false}`, a bare JSON `true`/`false`, or
the text `true`/`false`. Any other response, and any failure, decides nothing.

The service must not become a way to reach internal networks, so every
address the endpoint's host resolves to is checked at connect time: unless
the operator allows it, loopback, private, link-local and other non-public
addresses are refused. Checking where the connection is made, not before,
keeps a DNS answer that changes between check and connect from slipping
through. Proxies from the environment are ignored for the same reason.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import httpcore
import httpx

CONDITION_TIMEOUT_S: Final = 5.0
MAX_ANSWER_BYTES: Final = 4096


@dataclass(frozen=True, slots=True)
class ConditionAnswer:
    """The decision: `send` is True or False when the response was clear, else None."""

    send: bool | None
    reason: str


class NonPublicAddressError(httpcore.ConnectError):
    """The endpoint's host resolved only to addresses that condition endpoints may not use."""


def is_allowed_address(address: str, *, allow_private: bool) -> bool:
    return allow_private or ipaddress.ip_address(address.split("%", 1)[0]).is_global


class AddressCheckingBackend(httpcore.AsyncNetworkBackend):
    """A network backend that connects only to addresses the operator allows."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as error:
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from error
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed = [a for a in addresses if is_allowed_address(a, allow_private=self.allow_private)]
        if not allowed:
            raise NonPublicAddressError(
                f"{host} resolves only to non-public addresses ({', '.join(addresses)}), which "
                "condition endpoints may not use unless "
                "BUDSTIKKE_ALLOW_PRIVATE_CONDITION_ENDPOINTS is set"
            )
        last_error: Exception | None = None
        for address in allowed:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("condition endpoints are never Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class AddressCheckingTransport(httpx.AsyncHTTPTransport):
    def __init__(self, *, allow_private: bool) -> None:
        super().__init__(trust_env=False)
        # NOTE: httpx 0.29 takes no network backend, so the connection pool it
        # built is replaced by one with the checking backend; a newer httpx
        # may rename `_pool`.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(),
            max_connections=32,
            network_backend=AddressCheckingBackend(allow_private=allow_private),
        )


class ConditionChecker:
    """Asks condition endpoints over one shared HTTP client."""

    def __init__(self, *, allow_private: bool, timeout_s: float = CONDITION_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            transport=AddressCheckingTransport(allow_private=allow_private),
            follow_redirects=False,
            timeout=timeout_s,
            headers={"Accept": "application/json", "User-Agent": "budstikke"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def ask(self, url: str) -> ConditionAnswer:
        """Ask one endpoint; never raises for anything the endpoint or the network does."""
        try:
            async with asyncio.timeout(self.timeout_s):
                status, body = await self._fetch(url)
        except TimeoutError:
            return ConditionAnswer(None, f"no response within {self.timeout_s:g} s")
        except httpx.HTTPError as error:
            # A refused address arrives here too, as httpx.ConnectError.
            return ConditionAnswer(None, f"request failed: {type(error).__name__}: {error}"[:300])
        if not 200 <= status < 300:
            kind = "a redirect, which is not followed" if 300 <= status < 400 else "not 2xx"
            return ConditionAnswer(None, f"HTTP {status} ({kind})")
        if body is None:
            return ConditionAnswer(None, f"the response is longer than {MAX_ANSWER_BYTES} bytes")
        send = parse_condition_body(body)
        if send is None:
            return ConditionAnswer(
                None, 'the response is not {"sendNotification": true|false}, true or false'
            )
        return ConditionAnswer(send, f"HTTP {status}, {'true' if send else 'false'}")

    async def _fetch(self, url: str) -> tuple[int, bytes | None]:
        async with self._client.stream("GET", url) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    return response.status_code, None
            return response.status_code, bytes(body)


def parse_condition_body(body: bytes) -> bool | None:
    """Return the decision in the body of a condition response, or None when it has none."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if isinstance(value, dict):
        folded = {str(key).lower(): item for key, item in value.items()}
        value = folded.get("sendnotification")
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def endpoint_host(url: str) -> str:
    """Return the host of an endpoint for logs, which must not show its path or query."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"
