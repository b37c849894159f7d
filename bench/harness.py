"""Pieces the benchmark scripts share: servers in their own processes, and the load tools.

Everything listens on 127.0.0.1. The budstikke server, the test SMSC, the
SMTP sink and the load generators each run as a separate process, so the
CPU time of each is read from the kernel (/proc and wait4) on its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
API = "/notifications/api/v1/future"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POSTGRES_ADMIN_URL = os.environ.get(
    "BUDSTIKKE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) * 1024 if match else 0


def machine() -> dict[str, str]:
    """Return the facts a reader needs to compare figures: cores, memory, versions."""
    import sqlite3

    memory = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    model = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    info = {
        "cpu": model.group(1).strip() if model else platform.machine(),
        "cores": str(os.cpu_count()),
        "memory_gib": f"{int(memory.group(1)) / 1024**2:.1f}" if memory else "?",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }
    psql = shutil.which("psql")
    if psql:
        version = subprocess.run(
            [psql, POSTGRES_ADMIN_URL, "-Atc", "show server_version"],
            capture_output=True,
            text=True,
            check=False,
        )
        info["postgresql"] = version.stdout.strip() or "not reachable"
    wrk = shutil.which("wrk")
    if wrk:
        banner = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        info["wrk"] = (banner.stdout or banner.stderr).split(" [", 1)[0].strip()
    for package in ("uvicorn", "fastapi", "sqlalchemy", "uvloop", "httptools"):
        try:
            from importlib.metadata import version as package_version

            info[package] = package_version(package)
        except Exception:
            info[package] = "not installed"
    return info


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create an empty PostgreSQL database for one run and drop it afterwards."""
    import asyncpg

    name = f"budstikke_bench_{secrets.token_hex(4)}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Server:
    """A running `budstikke serve` and what a load tool needs to reach it."""

    process: subprocess.Popen[bytes]
    port: int
    key: str
    env: dict[str, str]
    data_dir: Path
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # CPU seconds the SMSC or SMTP sink used during the last measured run.
    last_helper_cpu_s: float = 0.0

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def database_url(self) -> str:
        return self.env.get("BUDSTIKKE_DATABASE_URL") or f"sqlite:///{self.data_dir}/budstikke.db"

    def database_bytes(self) -> int:
        """Size of the SQLite database with its write-ahead log (0 on PostgreSQL)."""
        return sum(
            path.stat().st_size for path in self.data_dir.glob("budstikke.db*") if path.is_file()
        )


def start_helper(arguments: list[str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, *arguments, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, 15, process)
    return process


@contextmanager
def running_server(
    *, provider: str = "outbox", database_url: str = "", extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Start budstikke with the given SMS/email provider: outbox, smpp or smtp."""
    data_dir = Path(tempfile.mkdtemp(prefix="budstikke-bench-"))
    helpers: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "BUDSTIKKE_DATA_DIR": str(data_dir),
        "BUDSTIKKE_LOG_LEVEL": "INFO",
        # The creator's token bucket stays in the path, but so large that it
        # never refuses: the benchmark measures capacity, not the limit.
        "BUDSTIKKE_RATE_LIMIT_PER_S": "1000000",
        "BUDSTIKKE_RATE_LIMIT_BURST": "1000000",
    }
    if database_url:
        env["BUDSTIKKE_DATABASE_URL"] = database_url
    if provider == "smpp":
        smsc_port = free_port()
        helpers.append(start_helper([str(BENCH / "smsc.py")], smsc_port))
        env["BUDSTIKKE_SMS_URL"] = f"smpp://bench:secret@127.0.0.1:{smsc_port}?window=100"
    elif provider == "smtp":
        smtp_port = free_port()
        helpers.append(start_helper([str(BENCH / "smtp_sink.py")], smtp_port))
        env["BUDSTIKKE_EMAIL_URL"] = f"smtp://127.0.0.1:{smtp_port}?tls=none"
    env.update(extra_env or {})
    key = subprocess.run(
        [str(BIN / "budstikke"), "apikey", "create", "--creator", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    port = free_port()
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "budstikke"), "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        wait_for_port(port, 30, process)
        yield Server(process, port, key, env, data_dir, helpers)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for helper in helpers:
            helper.terminate()
            helper.wait(timeout=10)
        log.close()
        if not os.environ.get("BUDSTIKKE_BENCH_KEEP"):
            shutil.rmtree(data_dir, ignore_errors=True)


def run_measured(command: list[str], server: Server) -> tuple[str, float, float, float]:
    """Run a load tool to its end; return its output, its CPU, the server's CPU, and wall time."""
    server_cpu_before = cpu_seconds(server.pid)
    helper_cpu_before = sum(cpu_seconds(helper.pid) for helper in server.helpers)
    started = time.perf_counter()
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        _pid, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall_s = time.perf_counter() - started
        output.seek(0)
        text = output.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({process.returncode}): {text[-2000:]}")
    tool_cpu_s = usage.ru_utime + usage.ru_stime
    server_cpu_s = cpu_seconds(server.pid) - server_cpu_before
    server.last_helper_cpu_s = (
        sum(cpu_seconds(helper.pid) for helper in server.helpers) - helper_cpu_before
    )
    return text, tool_cpu_s, server_cpu_s, wall_s


def run_wrk(
    server: Server, *, kind: str, duration_s: float, connections: int = 64
) -> dict[str, Any]:
    """Closed-loop maximum throughput with wrk; its latency figures are not used."""
    target = f"{server.url}{API}/whoami"
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--timeout", "5s"]
    if kind == "whoami":
        command += ["-H", f"Authorization: Bearer {server.key}", target]
    else:
        run_id = secrets.token_hex(4)
        command += ["-s", str(BENCH / "orders.lua"), server.url, "--", run_id, server.key, kind]
    text, tool_cpu_s, server_cpu_s, wall_s = run_measured(command, server)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    socket_errors = re.search(r"Socket errors: (.+)", text)
    return {
        "rate": float(rate.group(1)) if rate else 0.0,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
        "wrk_cpu_percent": round(100 * tool_cpu_s / wall_s, 1),
        "server_cpu_percent": round(100 * server_cpu_s / wall_s, 1),
        "helper_cpu_percent": round(100 * server.last_helper_cpu_s / wall_s, 1),
        "connections": connections,
    }


def run_open_loop(
    server: Server,
    *,
    kind: str,
    rate: float,
    duration_s: float,
    receipts: Path | None = None,
    connections: int = 128,
    drain_s: float | None = None,
) -> dict[str, Any]:
    """Requests on a fixed schedule, latency measured from the scheduled time."""
    command = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        "--port",
        str(server.port),
        "--key",
        server.key,
        "--kind",
        kind,
        "--rate",
        f"{rate:.1f}",
        "--duration",
        f"{duration_s:g}",
        "--connections",
        str(connections),
    ]
    if receipts is not None:
        command += ["--receipts", str(receipts)]
    if drain_s is not None:
        command += ["--drain", f"{drain_s:g}"]
    text, _tool_cpu_s, server_cpu_s, wall_s = run_measured(command, server)
    summary: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    summary["server_cpu_percent"] = round(100 * server_cpu_s / wall_s, 1)
    summary["helper_cpu_percent"] = round(100 * server.last_helper_cpu_s / wall_s, 1)  # type: ignore[attr-defined]
    return summary


# An email's last status that budstikke sets itself is Email_Succeeded (the
# SMTP server's 250): a bounce may follow much later, so the benchmark stops
# the clock there. An SMS is followed to its delivery receipt.
SETTLED_AFTER_HAND_OFF = ("Email_Succeeded",)


async def final_times(database_url: str, wait_s: float) -> dict[str, tuple[str, datetime]]:
    """Wait until every notification is settled; map shipment id to (status, time).

    Settled means final, or Email_Succeeded for an email.
    """
    from sqlalchemy import func, select

    from budstikke.config import normalise_database_url
    from budstikke.domain.statuses import NotificationStatus
    from budstikke.store.database import Database
    from budstikke.store.tables import notifications, orders

    final = [status.value for status in NotificationStatus if status.is_final]
    final += SETTLED_AFTER_HAND_OFF
    database = Database(normalise_database_url(database_url))
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            async with database.read() as connection:
                open_count = (
                    await connection.execute(
                        select(func.count())
                        .select_from(notifications)
                        .where(notifications.c.status.not_in(final))
                    )
                ).scalar_one()
            if open_count == 0:
                break
            await asyncio.sleep(0.2)
        async with database.read() as connection:
            rows = await connection.execute(
                select(orders.c.shipment_id, notifications.c.status, notifications.c.updated_at)
                .join(orders, orders.c.id == notifications.c.order_id)
                .where(notifications.c.status.in_(final))
            )
            return {
                str(row.shipment_id): (row.status, row.updated_at.astimezone(UTC)) for row in rows
            }
    finally:
        await database.dispose()


def delivery_times(server: Server, receipts: Path, wait_s: float = 60.0) -> dict[str, Any]:
    """Time from each 201 (as the client saw it) until the notification was settled."""
    finals = asyncio.run(final_times(server.database_url(), wait_s))
    delays_ms: list[float] = []
    statuses: dict[str, int] = {}
    missing = 0
    for line in receipts.read_text().splitlines():
        moment, shipment_id = line.split()
        found = finals.get(shipment_id)
        if found is None:
            missing += 1
            continue
        status, final_at = found
        statuses[status] = statuses.get(status, 0) + 1
        delays_ms.append((final_at.timestamp() - float(moment)) * 1000)
    delays_ms.sort()

    def at(percent: float) -> float:
        if not delays_ms:
            return float("nan")
        rank = min(len(delays_ms) - 1, max(0, round(percent / 100 * len(delays_ms)) - 1))
        return round(delays_ms[rank], 2)

    return {
        "count": len(delays_ms),
        "not_final": missing,
        "statuses": statuses,
        "ms": {"p50": at(50), "p90": at(90), "p99": at(99), "max": at(100)},
    }
