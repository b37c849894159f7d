"""A scripted `POST /orders` on 127.0.0.1 for tests of `budstikke orders import`.

The real server cannot be made to return a 429 on cue or to report how many
requests were in flight, so these tests post to this stub instead.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class StubReply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


# Receives the 0-based index of the request and its JSON body.
ReplyFunction = Callable[[int, dict[str, Any]], StubReply]


@dataclass
class OrderApiStub:
    url: str = ""
    # Monotonic time and idempotencyId of each request, in arrival order.
    requests: list[tuple[float, str]] = field(default_factory=list)
    # Requests in flight when each request arrived, itself included.
    in_flight_at_arrival: list[int] = field(default_factory=list)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def order_api_stub(reply: ReplyFunction, *, delay_s: float = 0.0) -> Iterator[OrderApiStub]:
    """Serve on a free loopback port; each request waits `delay_s` before its reply."""
    stub = OrderApiStub()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length))
            with stub.lock:
                index = len(stub.requests)
                stub.requests.append((time.monotonic(), str(body.get("idempotencyId"))))
                stub.in_flight += 1
                stub.in_flight_at_arrival.append(stub.in_flight)
            time.sleep(delay_s)
            scripted = reply(index, body)
            with stub.lock:
                stub.in_flight -= 1
            payload = json.dumps(scripted.body).encode()
            self.send_response(scripted.status)
            for name, value in scripted.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/problem+json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stub.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
