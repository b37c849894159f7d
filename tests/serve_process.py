"""Real `budstikke serve` and test SMSC processes on free loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

OPERATOR_KEY = "operator-key-for-tests-0123456789"
START_TIMEOUT_S = 30.0


def budstikke_executable() -> str:
    """Return the `budstikke` script installed next to the running Python."""
    found = shutil.which("budstikke", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError(f"no budstikke script next to {sys.executable}; run `make install`")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_environment(data_dir: Path, **extra: str) -> dict[str, str]:
    """Return the environment without the caller's BUDSTIKKE_* settings, plus the given ones."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BUDSTIKKE_")}
    environment.update(
        BUDSTIKKE_DATA_DIR=str(data_dir),
        BUDSTIKKE_OPERATOR_KEY=OPERATOR_KEY,
        BUDSTIKKE_WORKER_POLL_INTERVAL_S="0.2",
        BUDSTIKKE_LOG_FORMAT="json",
    )
    environment.update(extra)
    return environment


@dataclass
class ServeProcess:
    url: str
    data_dir: Path
    environment: dict[str, str]
    log_path: Path

    def run_cli(
        self, *args: str, input_text: str | None = None, timeout_s: float = 60, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run `budstikke ARGS` against this server and return the finished process."""
        environment = {**self.environment, "BUDSTIKKE_API_URL": self.url, **env}
        return subprocess.run(
            [budstikke_executable(), *args],
            env=environment,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def create_api_key(self, creator: str = "ttd") -> str:
        result = self.run_cli("apikey", "create", "--creator", creator)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def serve_process(data_dir: Path, **extra_env: str) -> Iterator[ServeProcess]:
    """Start `budstikke serve`, wait until it answers, and stop it with SIGTERM afterwards."""
    port = free_port()
    environment = server_environment(data_dir, **extra_env)
    log_path = data_dir.parent / f"serve-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [budstikke_executable(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ServeProcess(f"http://127.0.0.1:{port}", data_dir, environment, log_path)
    try:
        wait_until_live(server, process)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def wait_until_live(server: ServeProcess, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"budstikke serve exited with {process.returncode}:\n{server.log_text()}"
            )
        try:
            if httpx.get(f"{server.url}/health/live", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"budstikke serve did not answer within {START_TIMEOUT_S} s:\n{server.log_text()}"
    )


@contextmanager
def dev_smsc_process(log_dir: Path, *, receipt_delay_s: float) -> Iterator[int]:
    """Run budstikke's test SMSC as a process on a free port; yields the port."""
    port = free_port()
    log_path = log_dir / f"smsc-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "budstikke.channels.smpp.dev_smsc",
                "--port",
                str(port),
                "--receipt-delay",
                str(receipt_delay_s),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"test SMSC exited:\n{log_path.read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("test SMSC did not listen in time") from None
                time.sleep(0.1)
        yield port
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
