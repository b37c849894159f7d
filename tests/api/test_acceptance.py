"""The `budstikke` command end to end: serve over HTTP, the file outbox, SIGTERM, bad settings."""

from __future__ import annotations

import json
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.servers import (
    cli_environment,
    create_api_key_with_cli,
    run_cli,
    serve_process,
)

API = "/notifications/api/v1/future"
STOP_TIMEOUT_S = 15.0
SMS_ORDER = {
    "idempotencyId": "acceptance-sms-1",
    "sendersReference": "case-sms",
    "recipientSms": {
        "phoneNumber": "+4799999999",
        "timeToLiveInSeconds": 300,
        "smsSettings": {"sender": "Kommune", "body": "Your code is 482913."},
    },
}
EMAIL_ORDER = {
    "idempotencyId": "acceptance-email-1",
    "sendersReference": "case-email",
    "recipientEmail": {
        "emailAddress": "ola.nordmann@example.com",
        "emailSettings": {
            "senderEmailAddress": "noreply@kommune.example.com",
            "subject": "Your one-time code",
            "body": "Your code is 482913.",
        },
    },
}


def read_outbox(data_dir: Path, channel: str) -> list[dict[str, Any]]:
    path = data_dir / "outbox" / f"{channel}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def place_order(client: httpx.Client, path: str, order: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"{API}/orders/instant/{path}", json=order)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"] == (f"{API}/shipment/{body['notification']['shipmentId']}")
    return body


def read_shipment(client: httpx.Client, shipment_id: str) -> dict[str, Any]:
    response = client.get(f"{API}/shipment/{shipment_id}")
    assert response.status_code == 200, response.text
    shipment: dict[str, Any] = response.json()
    return shipment


def test_serve_sends_sms_and_email_then_stops(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    environment = cli_environment(data_dir)
    key = create_api_key_with_cli(environment, creator="ttd")

    with serve_process(environment, tmp_path) as server:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as client:
            sms = place_order(client, "sms", SMS_ORDER)
            email = place_order(client, "email", EMAIL_ORDER)

            sms_shipment = read_shipment(client, sms["notification"]["shipmentId"])
            assert sms_shipment["status"] == "Order_Completed"
            assert sms_shipment["sendersReference"] == "case-sms"
            assert sms_shipment["recipients"][0]["status"] == "SMS_Delivered"
            assert sms_shipment["recipients"][0]["destination"] == "+4799999999"
            email_shipment = read_shipment(client, email["notification"]["shipmentId"])
            assert email_shipment["status"] == "Order_Completed"
            assert email_shipment["recipients"][0]["status"] == "Email_Delivered"
            assert email_shipment["recipients"][0]["destination"] == "ola.nordmann@example.com"

            feed = client.get(f"{API}/shipment/feed", params={"seq": 0})
            assert feed.status_code == 200, feed.text
            entries = feed.json()

        [sms_line] = read_outbox(data_dir, "sms")
        assert sms_line["recipient"] == "+4799999999"
        assert sms_line["sender"] == "Kommune"
        assert sms_line["body"] == "Your code is 482913."
        assert sms_line["notificationId"]
        [email_line] = read_outbox(data_dir, "email")
        assert email_line["recipient"] == "ola.nordmann@example.com"
        assert email_line["sender"] == "noreply@kommune.example.com"
        assert email_line["subject"] == "Your one-time code"
        assert email_line["body"] == "Your code is 482913."
        assert email_line["notificationId"]

        assert len(entries) == 2
        assert {entry["shipmentId"] for entry in entries} == {
            sms["notification"]["shipmentId"],
            email["notification"]["shipmentId"],
        }
        assert all(entry["status"] == "Order_Completed" for entry in entries)

        exit_status = server.stop(signal.SIGTERM, timeout_s=STOP_TIMEOUT_S)
        stderr = server.stderr()
        assert exit_status == 0, stderr
        assert "worker stopped" in stderr
        assert "Traceback" not in stderr


def test_serve_exits_zero_on_sigint(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path / "data")

    with serve_process(environment, tmp_path) as server:
        exit_status = server.stop(signal.SIGINT, timeout_s=STOP_TIMEOUT_S)
        stderr = server.stderr()

    assert exit_status == 0, stderr
    assert "worker stopped" in stderr
    assert "Traceback" not in stderr


# Each case runs `budstikke serve` with one bad variable, four at a time (see
# bad_setting_results), because each start-up spends about a second of CPU on imports.
BAD_SETTINGS = {
    "timeout-not-a-number": ("BUDSTIKKE_HANDOFF_TIMEOUT_S", "abc"),
    "sms-url-ftp": ("BUDSTIKKE_SMS_URL", "ftp://x"),
    "sms-url-smpp-without-system-id": ("BUDSTIKKE_SMS_URL", "smpp://x"),
    "database-url-mysql": ("BUDSTIKKE_DATABASE_URL", "mysql://x"),
    "jwks-url-missing-file": ("BUDSTIKKE_JWKS_URL", "file:{data_dir}/missing-jwks.json"),
    "database-url-missing-postgres-database": (
        "BUDSTIKKE_DATABASE_URL",
        "postgresql://postgres@127.0.0.1:5432/budstikke_no_such_database",
    ),
}


@pytest.fixture(scope="module")
def bad_setting_results(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, subprocess.CompletedProcess[str] | subprocess.TimeoutExpired]:
    """Run `budstikke serve` once per bad setting, four at a time.

    A serve that keeps running gives TimeoutExpired in place of its result.
    """

    def attempt(case: str) -> subprocess.CompletedProcess[str] | subprocess.TimeoutExpired:
        variable, value = BAD_SETTINGS[case]
        data_dir = tmp_path_factory.mktemp(case) / "data"
        environment = cli_environment(data_dir)
        environment[variable] = value.format(data_dir=data_dir)
        try:
            # The limit only ends a serve that started despite the setting. It is
            # generous because start-up slows down a lot on a busy machine.
            return run_cli(
                "serve", "--host", "127.0.0.1", "--port", "0", environment=environment, timeout_s=60
            )
        except subprocess.TimeoutExpired as error:
            return error

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(BAD_SETTINGS, pool.map(attempt, BAD_SETTINGS), strict=True))


@pytest.mark.parametrize("case", BAD_SETTINGS)
def test_serve_rejects_bad_setting(
    case: str,
    bad_setting_results: dict[str, subprocess.CompletedProcess[str] | subprocess.TimeoutExpired],
) -> None:
    variable, _value = BAD_SETTINGS[case]
    result = bad_setting_results[case]

    assert isinstance(result, subprocess.CompletedProcess), "serve started despite the setting"
    assert result.returncode != 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]


@pytest.mark.parametrize(
    ("database_url", "reason"),
    [
        ("postgresql://postgres@127.0.0.1:9/budstikke", "Connect call failed"),
        (
            "postgresql://postgres@127.0.0.1:5432/budstikke_no_such_database",
            'database "budstikke_no_such_database" does not exist',
        ),
    ],
)
def test_migrate_reports_unusable_database_in_one_line(
    tmp_path: Path, database_url: str, reason: str
) -> None:
    environment = cli_environment(tmp_path / "data", database_url=database_url)

    result = run_cli("migrate", environment=environment, timeout_s=60)

    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("budstikke: database unavailable (BUDSTIKKE_DATABASE_URL): ")
    assert reason in line
