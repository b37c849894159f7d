"""Objects that exist once the service has started are left out of full garbage collections."""

from __future__ import annotations

import asyncio
import gc

import uvicorn
from fastapi import FastAPI

from budstikke.api.server import GracefulServer
from budstikke.gc_tuning import freeze_startup_objects


def test_freeze_moves_live_objects() -> None:
    try:
        freeze_startup_objects()

        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()

    assert frozen > 1000
    assert gc.get_freeze_count() == 0


async def test_server_freezes_after_start_up() -> None:
    config = uvicorn.Config(FastAPI(), host="127.0.0.1", port=0, log_config=None)
    server = GracefulServer(config)
    frozen_before = gc.get_freeze_count()
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                await asyncio.sleep(0.01)
        frozen_after = gc.get_freeze_count()
    finally:
        server.should_exit = True
        await serving
        gc.unfreeze()

    assert frozen_before == 0
    assert frozen_after > 1000
