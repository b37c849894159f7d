"""Resident memory of the server and database size per order, over a long run.

    python bench/memory.py --orders 1000000 --provider outbox

Drives the server with wrk in slices of --slice seconds until --orders
orders were answered, and after each slice prints the orders so far, the
server's resident set size (VmRSS), and the database size per order (for
SQLite the file with its write-ahead log; for PostgreSQL
pg_database_size). A resident size that levels off while orders keep
coming means nothing grows per order in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import Any

from harness import Server, postgres_database, rss_bytes, run_wrk, running_server


async def postgres_bytes(url: str) -> int:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        return int(await connection.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await connection.close()


def database_bytes(server: Server) -> int:
    url = server.env.get("BUDSTIKKE_DATABASE_URL", "")
    if url.startswith("postgresql"):
        return asyncio.run(postgres_bytes(url))
    return server.database_bytes()


def measure(server: Server, orders: int, slice_s: float) -> list[dict[str, Any]]:
    samples = [{"orders": 0, "rss_mib": round(rss_bytes(server.pid) / 2**20, 1)}]
    print(json.dumps(samples[0]), flush=True)
    answered = 0
    started = time.monotonic()
    while answered < orders:
        result = run_wrk(server, kind="sms", duration_s=slice_s, connections=32)
        answered += int(result["rate"] * slice_s)
        size = database_bytes(server)
        sample = {
            "orders": answered,
            "elapsed_s": round(time.monotonic() - started),
            "rate": result["rate"],
            "rss_mib": round(rss_bytes(server.pid) / 2**20, 1),
            "database_mib": round(size / 2**20, 1),
            "bytes_per_order": round(size / answered),
        }
        samples.append(sample)
        print(json.dumps(sample), flush=True)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--slice", type=float, default=30.0, help="seconds of load per sample")
    parser.add_argument("--provider", choices=("outbox", "smpp"), default="outbox")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    arguments = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = ""
        if arguments.database == "postgresql":
            url = stack.enter_context(postgres_database())
        server = stack.enter_context(running_server(provider=arguments.provider, database_url=url))
        measure(server, arguments.orders, arguments.slice)


if __name__ == "__main__":
    main()
