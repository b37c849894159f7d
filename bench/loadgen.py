"""An open-loop HTTP/1.1 load generator: requests start on a fixed schedule.

Request i is due at start + i / rate, whether or not earlier answers have
come back, and its latency is measured from that due time. A server that
stalls therefore shows the stall in every request that was due during it,
instead of the generator quietly waiting with it (coordinated omission).
Each connection carries one request at a time (keep-alive, no pipelining);
a due request that finds every connection busy waits in a queue, and that
wait counts as latency too.

Run it as its own process and read the JSON it prints:

    python bench/loadgen.py --port 8080 --key KEY --kind sms --rate 500 --duration 10

The JSON has the latency percentiles in milliseconds, the counts by status,
the achieved rate, this process's own CPU use, and with --receipts FILE the
wall-clock time of every 201 with its shipment id, one per line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import resource
import secrets
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

API = "/notifications/api/v1/future"
SMS_BODY = (
    '{{"idempotencyId":"{key}","sendersReference":"bench",'
    '"recipientSms":{{"phoneNumber":"{phone}","timeToLiveInSeconds":300,'
    '"smsSettings":{{"sender":"Bench","body":"Your code is 482913."}}}}}}'
)
EMAIL_BODY = (
    '{{"idempotencyId":"{key}","sendersReference":"bench",'
    '"recipientEmail":{{"emailAddress":"{email}",'
    '"emailSettings":{{"subject":"Your one-time code","body":"Your code is 482913."}}}}}}'
)
SHIPMENT_MARKER = b'"shipmentId":"'
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


@dataclass
class Results:
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    # (wall-clock time of the answer, shipment id) of every 201.
    receipts: list[tuple[float, str]] = field(default_factory=list)
    errors: int = 0


class RequestMaker:
    """Builds the bytes of request i; each order gets its own idempotency id."""

    def __init__(self, kind: str, host: str, port: int, key: str, run_id: str) -> None:
        self.kind = kind
        self.run_id = run_id
        self.head = (
            f"Host: {host}:{port}\r\nAuthorization: Bearer {key}\r\nUser-Agent: budstikke-bench\r\n"
        )
        if kind == "whoami":
            self.fixed = f"GET {API}/whoami HTTP/1.1\r\n{self.head}\r\n".encode()

    def make(self, index: int) -> bytes:
        if self.kind == "whoami":
            return self.fixed
        template, path = (
            (SMS_BODY, f"{API}/orders/instant/sms")
            if self.kind == "sms"
            else (EMAIL_BODY, f"{API}/orders/instant/email")
        )
        # A recipient of its own for each order: the per-recipient limit of a
        # few messages in 10 minutes would refuse a benchmark to one number.
        body = template.format(
            key=f"{self.run_id}-{index}",
            phone=f"+474{index % 10_000_000:07d}",
            email=f"user{index}.{self.run_id}@example.com",
        ).encode()
        return (
            f"POST {path} HTTP/1.1\r\n{self.head}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body


class Connection(asyncio.Protocol):
    """One keep-alive connection that parses responses with a Content-Length."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.due_s = 0.0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check.
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.generator.lost(self)

    def send(self, request: bytes, due_s: float) -> None:
        assert self.transport is not None
        self.due_s = due_s
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        header_end = self.buffer.find(b"\r\n\r\n")
        if header_end < 0:
            return
        head = bytes(self.buffer[:header_end]).lower()
        start = head.find(b"content-length:")
        length = 0
        if start >= 0:
            line_end = head.find(b"\r\n", start)
            length = int(head[start + 15 : line_end if line_end > 0 else None])
        total = header_end + 4 + length
        if len(self.buffer) < total:
            return
        status = int(self.buffer[9:12])
        body = bytes(self.buffer[header_end + 4 : total])
        del self.buffer[:total]
        self.generator.answered(self, status, body)


class Generator:
    def __init__(
        self, maker: RequestMaker, host: str, port: int, rate: float, total: int, connections: int
    ) -> None:
        self.maker = maker
        self.host = host
        self.port = port
        self.rate = rate
        self.total = total
        self.connection_count = connections
        self.idle: deque[Connection] = deque()
        self.backlog: deque[tuple[int, float]] = deque()
        self.results = Results()
        self.outstanding = 0
        self.finished = asyncio.get_running_loop().create_future()
        self.issued = 0
        self.late_s = 0.0

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.connection_count):
            _transport, protocol = await loop.create_connection(
                lambda: Connection(self), self.host, self.port
            )
            self.idle.append(protocol)

    async def run(self, drain_s: float | None) -> float:
        """Issue every request on schedule; return the wall time of the whole run.

        After the last request is due, answers are awaited for at most
        `drain_s` seconds (None: until every answer came).
        """
        started = time.perf_counter()
        interval = 1.0 / self.rate
        index = 0
        while index < self.total:
            now = time.perf_counter()
            due = started + index * interval
            if due > now:
                await asyncio.sleep(due - now)
                continue
            while index < self.total and started + index * interval <= now:
                due_s = started + index * interval
                self.late_s += now - due_s
                self.issue(index, due_s)
                index += 1
        self.issued = index
        if self.outstanding:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.finished), drain_s)
        return time.perf_counter() - started

    def issue(self, index: int, due_s: float) -> None:
        self.outstanding += 1
        if self.idle:
            self.idle.popleft().send(self.maker.make(index), due_s)
        else:
            self.backlog.append((index, due_s))

    def answered(self, connection: Connection, status: int, body: bytes) -> None:
        now = time.perf_counter()
        results = self.results
        results.latencies_s.append(now - connection.due_s)
        results.statuses[status] += 1
        if status == 201:
            start = body.find(SHIPMENT_MARKER) + len(SHIPMENT_MARKER)
            results.receipts.append((time.time(), body[start : start + 36].decode()))
        self.outstanding -= 1
        if self.backlog:
            index, due_s = self.backlog.popleft()
            connection.send(self.maker.make(index), due_s)
        else:
            self.idle.append(connection)
        if self.outstanding == 0 and self.issued and not self.finished.done():
            self.finished.set_result(None)

    def lost(self, connection: Connection) -> None:
        if connection in self.idle:
            self.idle.remove(connection)
        elif not self.finished.done():
            # An answer that never came: count it and stop waiting for it.
            self.results.errors += 1
            self.outstanding -= 1
            if self.outstanding == 0 and self.issued:
                self.finished.set_result(None)


def milliseconds(seconds: float) -> float | None:
    return None if math.isinf(seconds) else round(seconds * 1000, 2)


def percentile(sorted_values: list[float], percent: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = min(len(sorted_values) - 1, max(0, round(percent / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


def summarise(
    results: Results, wall_s: float, cpu_s: float, rate: float, late_s: float, unanswered: int
) -> dict:
    latencies = sorted(results.latencies_s)
    answered = len(latencies)
    # A request still unanswered at the end counts as slower than any answer,
    # so a percentile that falls among them is reported as None (not known).
    ranked = latencies + [math.inf] * unanswered
    summary: dict[str, object] = {
        "target_rate": rate,
        "answered": answered,
        "achieved_rate": round(answered / wall_s, 1) if wall_s else 0.0,
        "statuses": {str(code): count for code, count in sorted(results.statuses.items())},
        "errors": results.errors,
        "unanswered": unanswered,
        "latency_ms": {
            f"p{value:g}": milliseconds(percentile(ranked, value)) for value in PERCENTILES
        },
        "max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
        "generator_cpu_percent": round(100 * cpu_s / wall_s, 1) if wall_s else 0.0,
        "generator_mean_lateness_ms": round(1000 * late_s / answered, 3) if answered else 0.0,
        "wall_s": round(wall_s, 2),
    }
    return summary


async def generate(arguments: argparse.Namespace) -> tuple[dict, list[tuple[float, str]]]:
    maker = RequestMaker(
        arguments.kind, arguments.host, arguments.port, arguments.key, arguments.run_id
    )
    total = int(arguments.rate * arguments.duration)
    generator = Generator(
        maker, arguments.host, arguments.port, arguments.rate, total, arguments.connections
    )
    await generator.connect()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    wall_s = await generator.run(arguments.drain)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = usage.ru_utime + usage.ru_stime - cpu_before
    summary = summarise(
        generator.results,
        wall_s,
        cpu_s,
        arguments.rate,
        generator.late_s,
        generator.outstanding,
    )
    return summary, generator.results.receipts


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1", help="server address (loopback)")
    parser.add_argument("--port", type=int, default=8080, help="server port")
    parser.add_argument("--key", required=True, help="API key sent as the bearer token")
    parser.add_argument("--kind", choices=("sms", "email", "whoami"), default="sms")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    parser.add_argument("--connections", type=int, default=128, help="keep-alive connections")
    parser.add_argument(
        "--run-id", default=secrets.token_hex(4), help="prefix of the idempotency ids"
    )
    parser.add_argument("--receipts", help="file for the time and shipment id of each 201")
    parser.add_argument(
        "--drain",
        type=float,
        help="seconds to wait for answers after the last request is due (default: all)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    try:
        import uvloop  # the generator's own overhead is lower with it; optional

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    summary, receipts = runner(generate(arguments))
    if arguments.receipts:
        lines = (f"{moment:.6f} {shipment}\n" for moment, shipment in receipts)
        Path(arguments.receipts).write_text("".join(lines))
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
