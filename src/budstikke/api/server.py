"""The uvicorn server that `budstikke serve` runs."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn

from budstikke.gc_tuning import freeze_startup_objects


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
        if self.started:
            freeze_startup_objects()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()
