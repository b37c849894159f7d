"""The worker's metrics listener, in process and in a real `budstikke worker`."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from budstikke.channels.outbox import FileOutbox
from budstikke.domain.statuses import Channel
from budstikke.metrics import Metrics
from budstikke.metrics_server import start_metrics_server
from budstikke.store.database import Database
from budstikke.store.migrate import upgrade_to_head
from tests.serve_process import budstikke_executable, free_port, server_environment


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[str]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'worker.db'}")
    await upgrade_to_head(database)
    providers = {Channel.SMS: FileOutbox(Channel.SMS, tmp_path / "sms.jsonl")}
    server = await start_metrics_server(Metrics(), database, providers, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()
        await database.dispose()


async def test_listener_serves_metrics(listener: str) -> None:
    async with httpx.AsyncClient(base_url=listener) as client:
        response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'budstikke_provider_ready{channel="sms",kind="file"} 1.0' in response.text
    assert "budstikke_database_up 1.0" in response.text


async def test_listener_answers_liveness(listener: str) -> None:
    async with httpx.AsyncClient(base_url=listener) as client:
        response = await client.get("/health/live")

    assert response.status_code == 200
    assert response.json()["status"] == "alive"


async def test_listener_rejects_other_paths_and_methods(listener: str) -> None:
    async with httpx.AsyncClient(base_url=listener) as client:
        unknown = await client.get("/dashboard")
        posted = await client.post("/metrics", content=b"")

    assert unknown.status_code == 404
    assert posted.status_code == 405


def test_worker_process_serves_metrics(tmp_path: Path) -> None:
    port = free_port()
    environment = server_environment(tmp_path / "data", BUDSTIKKE_METRICS_PORT=str(port))
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [budstikke_executable(), "worker"],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline and worker.poll() is None:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                break
            except httpx.HTTPError:
                time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        exit_code = worker.wait(timeout=30)

    assert 'budstikke_provider_ready{channel="email",kind="file"} 1.0' in text, log_path.read_text()
    assert "budstikke_hand_offs_total" in text
    assert exit_code == 0, log_path.read_text()
    assert '"event": "metrics_listening"' in log_path.read_text()
    assert '"event": "providers_configured"' in log_path.read_text()
    assert '"sms_provider": "file"' in log_path.read_text()


def test_metrics_port_in_use_stops_worker(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        environment = server_environment(tmp_path / "data", BUDSTIKKE_METRICS_PORT=str(port))

        result = subprocess.run(
            [budstikke_executable(), "worker"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert result.returncode == 2
    [line] = [line for line in result.stderr.splitlines() if line.startswith("budstikke:")]
    assert f"BUDSTIKKE_METRICS_PORT: cannot listen on 127.0.0.1:{port}" in line
    # It stopped before its loops started, so no work was claimed.
    assert "worker_started" not in result.stderr
