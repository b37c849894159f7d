"""`budstikke serve` on an address it cannot use stops before it starts anything."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.api.servers import cli_environment, run_cli
from tests.serve_process import serve_process


def test_taken_port_stops_before_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        result = run_cli("serve", "--port", str(port), environment=cli_environment(data_dir))

    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "BUDSTIKKE_PORT" in result.stderr
    assert "service_started" not in result.stderr
    # Nothing ran: no migration created the database.
    assert not (data_dir / "budstikke.db").exists()


def test_foreign_address_names_it(tmp_path: Path) -> None:
    # 192.0.2.1 is a documentation address that no interface here has.
    result = run_cli("serve", "--host", "192.0.2.1", environment=cli_environment(tmp_path / "data"))

    assert result.returncode == 1
    assert "cannot listen on 192.0.2.1:8080" in result.stderr


def test_started_server_names_its_address(tmp_path: Path) -> None:
    with serve_process(tmp_path / "data") as server:
        log = server.log_text()

    assert f"listening on {server.url} " in log
