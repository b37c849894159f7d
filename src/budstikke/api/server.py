"""The uvicorn server that `budstikke serve` runs."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from budstikke.gc_tuning import freeze_startup_objects

logger = logging.getLogger(__name__)


class GracefulServer(uvicorn.Server):
    """A uvicorn server that ends with exit status 0 after a SIGINT or SIGTERM.

    uvicorn 0.55 raises the captured signal again once its graceful shutdown
    is done, so SIGTERM would kill the process (status -15) and SIGINT would
    surface as KeyboardInterrupt. A stop that was asked for and finished
    cleanly is a success for a service manager.

    Once the app has started, the objects that exist then are left out of
    later full garbage collections.
    """

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.started:
            return
        freeze_startup_objects()
        # uvicorn names the address only when it binds the socket itself.
        for listener in sockets or ():
            host, port = listener.getsockname()[:2]
            url_host = f"[{host}]" if ":" in host else host
            logger.info(
                "listening on http://%s:%d (Ctrl-C stops the service)",
                url_host,
                port,
                extra={"event": "listening", "host": host, "port": port},
            )

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def open_listening_socket(host: str, port: int) -> socket.socket:
    """Return a TCP socket bound to host and port, as uvicorn would bind it.

    Raises OSError when the address cannot be used, such as a port that
    another process holds.
    """
    family, kind, protocol, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.socket(family, kind, protocol)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError:
        listener.close()
        raise
    return listener
