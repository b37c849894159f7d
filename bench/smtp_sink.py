"""An SMTP server for benchmarks that accepts every message and keeps none.

`python bench/smtp_sink.py --port 2525` serves plain SMTP (no TLS, no auth)
on 127.0.0.1 with aiosmtpd until it is terminated, and counts messages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from aiosmtpd.smtp import SMTP, Envelope, Session


class CountingHandler:
    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages += 1
        return "250 OK"


async def serve(port: int) -> None:
    handler = CountingHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bench.localhost"), "127.0.0.1", port
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=2525, help="TCP port on 127.0.0.1")
    arguments = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(arguments.port))


if __name__ == "__main__":
    main()
