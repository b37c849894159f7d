"""A minimal HTTP listener that serves /metrics for `budstikke worker`, which has no API.

It answers GET /metrics and GET /health/live, one request per connection,
and nothing else. `budstikke serve` does not use it: its app serves both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime

from budstikke import __version__
from budstikke.channels.base import Provider
from budstikke.domain.statuses import Channel
from budstikke.errors import ConfigurationError
from budstikke.metrics import Metrics
from budstikke.store.database import Database

logger = logging.getLogger(__name__)

# A scrape request is one line and a few headers.
MAX_REQUEST_HEAD_BYTES = 8192
REQUEST_TIMEOUT_S = 10.0
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


async def start_metrics_server(
    metrics: Metrics,
    database: Database,
    providers: Mapping[Channel, Provider],
    *,
    host: str,
    port: int,
) -> asyncio.Server:
    """Listen on host:port; close the returned server to stop."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
                status, content_type, body = await answer(head, metrics, database, providers)
                writer.write(response_bytes(status, content_type, body))
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a scraper that sends no complete request gets no answer
        except ConnectionError:
            pass  # the scraper went away
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    try:
        server = await asyncio.start_server(handle, host, port, limit=MAX_REQUEST_HEAD_BYTES)
    except OSError as error:
        raise ConfigurationError(
            "BUDSTIKKE_METRICS_PORT",
            f"cannot listen on {host}:{port}: {error.strerror or error}. Choose a free port "
            "(each worker on a machine needs its own), or 0 to turn the listener off.",
        ) from error
    logger.info(
        "metrics listener started",
        extra={"event": "metrics_listening", "host": host, "port": port},
    )
    return server


async def answer(
    head: bytes, metrics: Metrics, database: Database, providers: Mapping[Channel, Provider]
) -> tuple[int, str, bytes]:
    """Return the status, content type and body for one request head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return 400, "text/plain", b"bad request line\n"
    method, target, _version = parts
    path = target.split("?", 1)[0]
    if path not in ("/metrics", "/health/live"):
        return 404, "text/plain", b"only /metrics and /health/live are served here\n"
    if method != "GET":
        return 405, "text/plain", b"only GET is allowed\n"
    if path == "/health/live":
        body = json.dumps({"status": "alive", "version": __version__}).encode()
        return 200, "application/json", body
    accept = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "accept":
            accept = value.strip()
    await metrics.refresh(database, providers, now_utc())
    body, content_type = metrics.render(accept)
    return 200, content_type, body


def response_bytes(status: int, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def now_utc() -> datetime:
    return datetime.now(UTC)
