"""The people-facing commands (send, status, feed, completion) against a real `budstikke serve`."""

from __future__ import annotations

import itertools
import json
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from budstikke.cli import main
from tests.serve_process import (
    ServeProcess,
    budstikke_executable,
    dev_smsc_process,
    free_port,
    serve_process,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serve_process(tmp_path_factory.mktemp("cli") / "data") as running:
        yield running


@pytest.fixture(scope="module")
def api_key(server: ServeProcess) -> str:
    return server.create_api_key("ttd")


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run(server: ServeProcess, api_key: str, *args: str, input_text: str | None = None) -> CliResult:
    """Run `budstikke ARGS` in this process against the server; the server is a real process."""
    environment = {"BUDSTIKKE_API_URL": server.url, "BUDSTIKKE_API_KEY": api_key}
    result = CliRunner().invoke(main, list(args), env=environment, input=input_text)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


# The server limits instant messages per recipient, so each test sends to its own number.
NUMBERS = itertools.count(1)


def unique_number() -> str:
    return f"+4799{next(NUMBERS):06d}"


def shipment_id_from(stdout: str) -> str:
    first = stdout.splitlines()[0]
    assert first.startswith("shipment "), stdout
    return first.split()[1]


def test_send_sms_follows_to_delivered(server: ServeProcess, api_key: str) -> None:
    number = unique_number()
    result = run(server, api_key, "send", "sms", number, "Your code is 482913.")

    assert result.returncode == 0, result.stderr
    uuid.UUID(shipment_id_from(result.stdout))
    assert f"SMS_Delivered {number}" in result.stdout
    assert "Order_Completed, final" in result.stdout


def test_send_sms_json_for_scripts(server: ServeProcess, api_key: str) -> None:
    result = run(server, api_key, "send", "sms", unique_number(), "Code 1", "--json")

    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["created"] is True
    assert output["final"] is True
    assert output["shipment"]["shipmentId"] == output["notification"]["shipmentId"]
    assert output["shipment"]["recipients"][0]["status"] == "SMS_Delivered"


def test_send_twice_with_one_idempotency_id(server: ServeProcess, api_key: str) -> None:
    key = f"cli-test-{uuid.uuid4()}"
    number = unique_number()
    first = run(server, api_key, "send", "sms", number, "hi", "--idempotency-id", key)
    second = run(server, api_key, "send", "sms", number, "hi", "--idempotency-id", key)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert shipment_id_from(first.stdout) == shipment_id_from(second.stdout)
    assert "already placed" in second.stdout
    assert "already placed" not in first.stdout


def test_send_email_reads_text_from_stdin(server: ServeProcess, api_key: str) -> None:
    result = run(
        server,
        api_key,
        "send",
        "email",
        "ola.nordmann@example.com",
        "-",
        "--subject",
        "Your code",
        "--reference",
        "case-7",
        input_text="Your code is 482913.\n",
    )

    assert result.returncode == 0, result.stderr
    assert "Email_Delivered ola.nordmann@example.com" in result.stdout
    outbox = (server.data_dir / "outbox" / "email.jsonl").read_text().splitlines()
    assert json.loads(outbox[-1])["body"] == "Your code is 482913.\n"


def test_send_no_follow_returns_at_once(server: ServeProcess, api_key: str) -> None:
    result = run(server, api_key, "send", "sms", unique_number(), "hi", "--no-follow", "--json")

    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["created"] is True
    assert "final" not in output


def test_send_invalid_number_names_field(server: ServeProcess, api_key: str) -> None:
    result = run(server, api_key, "send", "sms", "12345", "hi")

    assert result.returncode == 1
    assert "the request is invalid" in result.stderr
    assert "recipientSms.phoneNumber" in result.stderr
    assert result.stdout == ""


def test_status_prints_shipment(server: ServeProcess, api_key: str) -> None:
    number = unique_number()
    sent = run(server, api_key, "send", "sms", number, "hi", "--reference", "case-9")
    shipment_id = shipment_id_from(sent.stdout)

    text = run(server, api_key, "status", shipment_id)
    as_json = run(server, api_key, "status", shipment_id, "--json")

    assert text.returncode == 0, text.stderr
    assert f"shipment  {shipment_id}" in text.stdout
    assert "reference case-9" in text.stdout
    assert f"SMS   {number}  SMS_Delivered" in text.stdout
    assert json.loads(as_json.stdout)["shipmentId"] == shipment_id


def test_status_rejects_non_uuid(server: ServeProcess, api_key: str) -> None:
    result = run(server, api_key, "status", "not-an-id")

    assert result.returncode == 2
    assert "is not a shipment id" in result.stderr


def test_status_of_unknown_shipment(server: ServeProcess, api_key: str) -> None:
    result = run(server, api_key, "status", str(uuid.uuid4()))

    assert result.returncode == 1
    assert "no such shipment for this API key" in result.stderr


def test_feed_lists_final_orders(server: ServeProcess, api_key: str) -> None:
    run(server, api_key, "send", "sms", unique_number(), "hi")

    text = run(server, api_key, "feed")
    lines = run(server, api_key, "feed", "--json").stdout.splitlines()
    entries = [json.loads(line) for line in lines]
    after_last = run(server, api_key, "feed", "--seq", str(entries[-1]["sequenceNumber"]))

    assert text.returncode == 0, text.stderr
    assert "Order_Completed" in text.stdout
    assert entries
    assert all(entry["status"] == "Order_Completed" for entry in entries)
    assert after_last.returncode == 0
    assert after_last.stdout == ""


# Runs a command with SIGINT set to its default action, as in a terminal. A test
# run started in the background of a shell script inherits an ignored SIGINT,
# and without this the follower would ignore the test's Ctrl-C too.
WITH_DEFAULT_SIGINT = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]


def test_feed_follow_prints_new_entries(server: ServeProcess, api_key: str) -> None:
    listed = run(server, api_key, "feed", "--json")
    last_seq = max(
        (json.loads(line)["sequenceNumber"] for line in listed.stdout.splitlines()), default=0
    )
    follower = subprocess.Popen(
        [
            *WITH_DEFAULT_SIGINT,
            budstikke_executable(),
            "feed",
            "--follow",
            "--json",
            "--interval",
            "0.2",
            "--seq",
            str(last_seq),
        ],
        env={**server.environment, "BUDSTIKKE_API_URL": server.url, "BUDSTIKKE_API_KEY": api_key},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    followed: list[str] = []
    try:
        sent = run(server, api_key, "send", "sms", unique_number(), "followed", "--json")
        shipment_id = json.loads(sent.stdout)["notification"]["shipmentId"]
        assert follower.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and follower.poll() is None:
            readable, _, _ = select.select([follower.stdout], [], [], 0.5)
            if readable:
                line = follower.stdout.readline()
                followed.append(line)
                if shipment_id in line:
                    break
    finally:
        follower.send_signal(signal.SIGINT)
        _out, err = follower.communicate(timeout=10)

    assert followed, f"feed --follow printed nothing; stderr: {err}"
    assert json.loads(followed[-1])["shipmentId"] == shipment_id
    assert follower.returncode == 0, err


def test_feed_seq_out_of_range(server: ServeProcess, api_key: str) -> None:
    result = run(server, api_key, "feed", "--seq", "99999999999999999999")

    assert result.returncode == 2
    assert "99999999999999999999 is not in the range 0<=x<=9223372036854775807" in result.stderr


def test_wrong_api_key_explains_fix(server: ServeProcess) -> None:
    result = run(server, "bsk_wrong_key", "status", str(uuid.uuid4()))

    assert result.returncode == 1
    assert "the API key was rejected (401: The API key is unknown or revoked.)" in result.stderr
    # The server's hint is dropped for the client's own, which names --api-key.
    assert result.stderr.count("budstikke apikey create") == 1
    assert "--api-key or BUDSTIKKE_API_KEY" in result.stderr


def test_missing_api_key_is_usage_error(server: ServeProcess) -> None:
    result = run(server, "", "feed")

    assert result.returncode == 2
    assert "missing API key" in result.stderr


def test_unreachable_server_explains_fix(server: ServeProcess, api_key: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"

    result = run(server, api_key, "feed", "--api-url", closed)

    assert result.returncode == 1
    assert f"cannot connect to budstikke at {closed}" in result.stderr
    assert "budstikke serve" in result.stderr


def test_send_exits_3_when_not_final(tmp_path: Path) -> None:
    # Receipts come after 30 s, so the SMS stays SMS_Accepted while the command waits.
    with (
        dev_smsc_process(tmp_path, receipt_delay_s=30) as smsc_port,
        serve_process(
            tmp_path / "data", BUDSTIKKE_SMS_URL=f"smpp://budstikke:secret@127.0.0.1:{smsc_port}"
        ) as server,
    ):
        key = server.create_api_key()
        wait_for_ready(server)
        started = time.monotonic()
        result = run(server, key, "send", "sms", "+4799999999", "hi", "--wait", "1")

    assert result.returncode == 3, result.stderr
    assert "SMS_Accepted +4799999999" in result.stdout
    assert "not final after 1 s" in result.stdout
    assert time.monotonic() - started < 20


def wait_for_ready(server: ServeProcess) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body = httpx.get(f"{server.url}/health/ready", timeout=2).json()
        if body["status"] == "ready":
            return
        time.sleep(0.1)
    raise AssertionError(f"not ready: {body}")


def test_help_shows_environment_variables(server: ServeProcess) -> None:
    result = run(server, "", "send", "email", "--help")

    assert result.returncode == 0
    assert "BUDSTIKKE_API_URL" in result.stdout
    assert "BUDSTIKKE_API_KEY" in result.stdout


def test_completion_script_and_candidates(server: ServeProcess) -> None:
    script = server.run_cli("completion", "bash")
    candidates = server.run_cli(
        _BUDSTIKKE_COMPLETE="bash_complete", COMP_WORDS="budstikke se", COMP_CWORD="1"
    )

    assert script.returncode == 0
    assert "_BUDSTIKKE_COMPLETE=bash_complete" in script.stdout
    assert "plain,send" in candidates.stdout
    assert "plain,serve" in candidates.stdout
