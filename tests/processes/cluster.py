"""Several budstikke processes on one PostgreSQL database: API-only servers and workers."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

BUDSTIKKE = Path(sys.executable).parent / "budstikke"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Process:
    """One `budstikke` process with its stderr in a file."""

    args: list[str]
    environment: dict[str, str]
    log_path: Path
    port: int | None = None
    popen: subprocess.Popen[bytes] = field(init=False)
    _log: IO[bytes] = field(init=False)

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [str(BUDSTIKKE), *self.args],
            env=self.environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def wait_listening(self, timeout_s: float = 60.0) -> None:
        assert self.port is not None
        deadline = time.monotonic() + timeout_s
        while not port_answers(self.port):
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.args} exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.args} did not listen in {timeout_s} s")
            time.sleep(0.05)

    def kill_hard(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        self._log.close()
        return self.popen.returncode

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


@dataclass
class Cluster:
    data_dir: Path
    environment: dict[str, str]
    processes: list[Process] = field(default_factory=list)

    def api(self) -> Process:
        port = free_port()
        process = Process(
            ["serve", "--no-workers", "--host", HOST, "--port", str(port)],
            self.environment,
            self.data_dir / f"api-{port}.log",
            port=port,
        )
        process.start()
        self.processes.append(process)
        process.wait_listening()
        return process

    def worker(self, name: str) -> Process:
        process = Process(["worker"], self.environment, self.data_dir / f"worker-{name}.log")
        process.start()
        self.processes.append(process)
        return process

    def outbox_lines(self, channel: str) -> list[dict[str, Any]]:
        """Return the messages the workers wrote to a channel's file outbox, one per line."""
        path = self.data_dir / "outbox" / f"{channel}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def stop_all(self) -> dict[str, int]:
        return {" ".join(process.args): process.stop() for process in self.processes}


def children_cpu_s() -> float:
    """Return the CPU seconds, user and system, of this process's children that have exited."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cluster_environment(data_dir: Path, database_url: str, **settings: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BUDSTIKKE_")}
    environment.update(
        {
            "BUDSTIKKE_DATA_DIR": str(data_dir),
            "BUDSTIKKE_DATABASE_URL": database_url,
            "BUDSTIKKE_LOG_LEVEL": "WARNING",
            # Five processes must stay well under PostgreSQL's 100 connections.
            "BUDSTIKKE_DATABASE_POOL_SIZE": "3",
        }
    )
    environment.update({f"BUDSTIKKE_{name.upper()}": value for name, value in settings.items()})
    return environment


@contextmanager
def running_cluster(data_dir: Path, database_url: str, **settings: str) -> Iterator[Cluster]:
    data_dir.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(data_dir, cluster_environment(data_dir, database_url, **settings))
    try:
        yield cluster
    finally:
        cluster.stop_all()
