"""`budstikke webhook` as a subprocess on a SQLite database in a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import update

from budstikke.domain.statuses import Channel
from budstikke.store.database import Database
from budstikke.store.migrate import upgrade_to_head
from budstikke.store.orders import create_instant_order
from budstikke.store.records import NewNotification
from budstikke.store.tables import webhook_deliveries

BUDSTIKKE = Path(sys.executable).with_name("budstikke")
URL = "https://hooks.example.com/budstikke"


def run_cli(data_dir: Path, *arguments: str, **settings: str) -> subprocess.CompletedProcess[str]:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("BUDSTIKKE_")
    }
    environment["BUDSTIKKE_DATA_DIR"] = str(data_dir)
    for name, value in settings.items():
        environment[f"BUDSTIKKE_{name.upper()}"] = value
    return subprocess.run(
        [str(BUDSTIKKE), "webhook", *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def endpoint_id_of(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.split("id:", 1)[1].split()[0]


def test_add_list_rotate_remove(tmp_path: Path) -> None:
    added = run_cli(tmp_path, "add", "--creator", "ttd", URL)
    endpoint_id = endpoint_id_of(added)
    listed = run_cli(tmp_path, "list")
    rotated = run_cli(tmp_path, "rotate-secret", endpoint_id, "--keep-previous-for", "0")
    removed = run_cli(tmp_path, "remove", endpoint_id)
    removed_again = run_cli(tmp_path, "remove", endpoint_id)

    assert added.returncode == 0, added.stderr
    secret = added.stdout.strip()
    assert secret.startswith("whsec_")
    assert listed.returncode == 0
    assert endpoint_id in listed.stdout
    assert URL in listed.stdout
    assert "enabled" in listed.stdout
    assert secret not in listed.stdout + listed.stderr
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.strip().startswith("whsec_")
    assert rotated.stdout.strip() != secret
    assert "no longer signs" in rotated.stderr
    assert removed.returncode == 0
    assert removed_again.returncode == 1
    assert f"no webhook endpoint with id {endpoint_id}" in removed_again.stderr


def test_add_checks_the_url(tmp_path: Path) -> None:
    http = run_cli(tmp_path, "add", "--creator", "ttd", "http://hooks.example.com/")
    private = run_cli(tmp_path, "add", "--creator", "ttd", "https://10.0.0.5/hooks")
    allowed = run_cli(
        tmp_path,
        "add",
        "--creator",
        "ttd",
        "https://10.0.0.5/hooks",
        webhook_allowed_networks="10.0.0.0/24",
    )
    duplicate = run_cli(
        tmp_path,
        "add",
        "--creator",
        "ttd",
        "https://10.0.0.5/hooks",
        webhook_allowed_networks="10.0.0.0/24",
    )

    assert http.returncode == 2
    assert "http is allowed only with BUDSTIKKE_WEBHOOK_ALLOW_HTTP=true" in http.stderr
    assert private.returncode == 2
    assert "10.0.0.5 is a private address" in private.stderr
    assert allowed.returncode == 0, allowed.stderr
    assert duplicate.returncode == 1
    assert "already has an endpoint" in duplicate.stderr


def test_bad_allowed_network_names_the_variable(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "list", webhook_allowed_networks="10.0.0.0/8,nonsense")

    assert result.returncode == 2
    assert "BUDSTIKKE_WEBHOOK_ALLOWED_NETWORKS" in result.stderr
    assert "'nonsense' is not an IP network" in result.stderr


async def test_deliveries_show_failed_events(tmp_path: Path) -> None:
    endpoint_id = endpoint_id_of(run_cli(tmp_path, "add", "--creator", "ttd", URL))
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'budstikke.db'}")
    try:
        await upgrade_to_head(database)
        receipt = await create_instant_order(
            database,
            creator="ttd",
            idempotency_id="failed-event",
            senders_reference=None,
            notification=NewNotification(
                channel=Channel.SMS,
                recipient="+4799999999",
                sender="Kommune",
                body="Hello",
                ttl_s=300,
            ),
            now=datetime.now(UTC),
        )
        async with database.write() as connection:
            await connection.execute(
                update(webhook_deliveries).values(
                    state="failed", failed_at=datetime.now(UTC), attempts=31, last_error="HTTP 500"
                )
            )
    finally:
        await database.dispose()

    failed = run_cli(tmp_path, "deliveries", endpoint_id)
    pending = run_cli(tmp_path, "deliveries", endpoint_id, "--state", "pending")
    listed = run_cli(tmp_path, "list")

    assert failed.returncode == 0, failed.stderr
    assert str(receipt.shipment_id) in failed.stdout
    assert "SMS_New" in failed.stdout
    assert "HTTP 500" in failed.stdout
    assert str(receipt.shipment_id) not in pending.stdout
    [row] = [line.split() for line in listed.stdout.splitlines() if line.startswith(endpoint_id)]
    assert row[2:5] == ["enabled", "0", "1"]


def test_enable_unknown_endpoint(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "enable", "not-a-uuid")

    assert result.returncode == 2
    assert "is not an endpoint id" in result.stderr
