"""Asking a regular order's condition endpoint whether to send it.

The endpoint gets `GET` with no redirects followed, a 5 s deadline, and at
most 4 KB of its response read. A 2xx response decides when its body is
Altinn's `{"sendNotification": true|false}` or a bare `true`/`false`, with a
JSON boolean as the value. Any other response, a string such as "true"
included, and any failure decides nothing.

The service must not become a way to reach internal networks, so the
requests go through the same address guard as webhooks (`address_guard`):
every address the endpoint's host resolves to is checked against the
address policy at connect time, and the connection goes to a checked
address. For an endpoint that the policy rejects, `ask` returns a
ConditionAnswer with `rejected` set, because asking again would be
rejected the same way.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import ssl
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import httpcore
import httpx

from budstikke import __version__
from budstikke.config import Settings
from budstikke.dispatch.address_guard import (
    AddressRejectedError,
    Resolver,
    guarded_pool,
    host_header,
    read_some,
    resolve_host,
)
from budstikke.domain.webhook_urls import DEFAULT_PORTS, AddressPolicy, parse_networks

CONDITION_TIMEOUT_S: Final = 5.0
MAX_ANSWER_BYTES: Final = 4096
# Open connections to condition endpoints per worker process.
MAX_CONNECTIONS: Final = 64
ALLOW_SETTING: Final = "BUDSTIKKE_CONDITION_ALLOWED_NETWORKS"
USER_AGENT: Final = f"budstikke/{__version__}"
EVERY_NETWORK: Final = (ipaddress.IPv4Network("0.0.0.0/0"), ipaddress.IPv6Network("::/0"))


@dataclass(frozen=True, slots=True)
class ConditionAnswer:
    """The decision: `send` is True or False when the response was clear, else None.

    `rejected` is True when the endpoint was not asked because the address
    policy or the URL's syntax rules it out, so that asking again cannot help.
    """

    send: bool | None
    reason: str
    rejected: bool = False


def condition_address_policy(settings: Settings) -> AddressPolicy:
    """Return the address policy of condition endpoints from the settings."""
    if settings.allow_private_condition_endpoints:
        return AddressPolicy(EVERY_NETWORK)
    return AddressPolicy(parse_networks(settings.condition_allowed_networks))


class ConditionChecker:
    """Asks condition endpoints over one guarded connection pool; closed with `aclose`."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        timeout_s: float = CONDITION_TIMEOUT_S,
        ssl_context: ssl.SSLContext | None = None,
        resolver: Resolver = resolve_host,
    ) -> None:
        self.timeout_s = timeout_s
        self._pool = guarded_pool(
            policy,
            allow_setting=ALLOW_SETTING,
            max_connections=MAX_CONNECTIONS,
            ssl_context=ssl_context or ssl.create_default_context(),
            resolver=resolver,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def ask(self, url: str) -> ConditionAnswer:
        """Ask one endpoint; never raises for anything the endpoint or the network does."""
        try:
            request = build_request(url, self.timeout_s)
        except ValueError as error:
            return ConditionAnswer(None, f"the URL cannot be requested: {error}", rejected=True)
        try:
            async with asyncio.timeout(self.timeout_s):
                status, body = await self._fetch(request)
        except AddressRejectedError as error:
            return ConditionAnswer(None, str(error), rejected=True)
        except (TimeoutError, httpcore.TimeoutException):
            return ConditionAnswer(None, f"no response within {self.timeout_s:g} s")
        except (
            httpcore.NetworkError,
            httpcore.ProtocolError,
            httpcore.UnsupportedProtocol,
            OSError,
        ) as error:
            return ConditionAnswer(None, f"request failed: {type(error).__name__}: {error}"[:300])
        if not 200 <= status < 300:
            kind = "a redirect, which is not followed" if 300 <= status < 400 else "not 2xx"
            return ConditionAnswer(None, f"HTTP {status} ({kind})")
        if len(body) > MAX_ANSWER_BYTES:
            return ConditionAnswer(None, f"the response is longer than {MAX_ANSWER_BYTES} bytes")
        send = parse_condition_body(body)
        if send is None:
            return ConditionAnswer(
                None,
                'the response is not {"sendNotification": true|false}, true or false '
                "with a JSON boolean as the value",
            )
        return ConditionAnswer(send, f"HTTP {status}, {'true' if send else 'false'}")

    async def _fetch(self, request: httpcore.Request) -> tuple[int, bytes]:
        response = await self._pool.handle_async_request(request)
        try:
            body = await read_some(response, MAX_ANSWER_BYTES)
        finally:
            await response.aclose()
        return response.status, body


def build_request(url: str, timeout_s: float) -> httpcore.Request:
    """Build the GET of a condition endpoint; raises ValueError when the URL cannot be requested.

    httpx's URL parser encodes an international domain name in punycode and
    percent-encodes the path, as a browser would, and drops any fragment. A
    user name and password in the URL are sent as HTTP Basic credentials,
    as httpx's client sends them.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ValueError(str(error)) from None
    scheme = parsed.scheme
    host = parsed.raw_host.decode("ascii")
    if scheme not in DEFAULT_PORTS or not host:
        raise ValueError("only absolute http:// and https:// URLs are requested")
    port = parsed.port or DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise ValueError(f"the port must be a number from 1 to 65535; got {port}")
    headers = [
        ("Host", host_header(host, port, scheme)),
        ("Accept", "application/json"),
        ("User-Agent", USER_AGENT),
    ]
    if parsed.username or parsed.password:
        credentials = f"{parsed.username}:{parsed.password}".encode()
        headers.append(("Authorization", f"Basic {base64.b64encode(credentials).decode()}"))
    return httpcore.Request(
        "GET",
        httpcore.URL(scheme=scheme, host=host, port=port, target=parsed.raw_path),
        headers=headers,
        extensions={"timeout": dict.fromkeys(("connect", "read", "write", "pool"), timeout_s)},
    )


def parse_condition_body(body: bytes) -> bool | None:
    """Return the decision in the body of a condition response, or None when it has none.

    Only a JSON boolean decides. A string such as "true", a number or any
    other value is not a clear answer, because a receiver that sends one
    may mean something else by it.
    """
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if isinstance(value, dict):
        folded = {str(key).lower(): item for key, item in value.items()}
        value = folded.get("sendnotification")
    if isinstance(value, bool):
        return value
    return None


def endpoint_host(url: str) -> str:
    """Return the host of an endpoint for logs, which must not show its path or query."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"
