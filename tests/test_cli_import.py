"""`budstikke orders import` against a real `budstikke serve`: CSV, JSON Lines, and resuming."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner

from budstikke import cli_import
from budstikke.cli import main
from tests.order_api_stub import StubReply, order_api_stub
from tests.serve_process import ServeProcess, free_port, serve_process

API = "/notifications/api/v1/future"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serve_process(tmp_path_factory.mktemp("import") / "data") as running:
        yield running


@pytest.fixture(scope="module")
def api_key(server: ServeProcess) -> str:
    return server.create_api_key("ttd")


def run_import(server: ServeProcess, api_key: str, path: Path) -> tuple[int, str, str]:
    return run_import_at(server.url, api_key, path)


def run_import_at(url: str, api_key: str, path: Path, *options: str) -> tuple[int, str, str]:
    environment = {"BUDSTIKKE_API_URL": url, "BUDSTIKKE_API_KEY": api_key}
    result = CliRunner().invoke(main, ["orders", "import", str(path), *options], env=environment)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def write_sms_orders(path: Path, count: int) -> None:
    """Write `count` JSON Lines SMS orders with the idempotency ids order-1, order-2, ..."""
    lines = [
        json.dumps(
            {
                "idempotencyId": f"order-{number}",
                "recipient": {
                    "recipientSms": {
                        "phoneNumber": "+4799999999",
                        "smsSettings": {"body": f"Order {number}"},
                    }
                },
            }
        )
        for number in range(1, count + 1)
    ]
    path.write_text("\n".join(lines) + "\n")


def test_csv_import_is_resumable(server: ServeProcess, api_key: str, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "idempotencyId,sendersReference,phoneNumber,sendingTimePolicy,emailAddress,subject,body\n"
        "csv-1,case-1,+4799999991,Anytime,,,Your case was updated\n"
        "csv-2,case-2,,,ola@example.com,Case 2,Your case was updated\n"
    )
    code, stdout, _stderr = run_import(server, api_key, path)
    assert code == 0
    assert stdout.startswith("2 created, 0 already present, 0 failed")

    with path.open("a") as file:
        file.write("csv-3,case-3,+4799999993,Anytime,,,Third\n")
    code, stdout, _stderr = run_import(server, api_key, path)
    assert code == 0
    assert stdout.startswith("1 created, 2 already present, 0 failed")


def test_jsonl_import_reports_bad_lines(server: ServeProcess, api_key: str, tmp_path: Path) -> None:
    good = {
        "idempotencyId": "jsonl-1",
        "recipient": {
            "recipientEmail": {
                "emailAddress": "kari@example.com",
                "emailSettings": {"subject": "Reminder", "body": "Tomorrow at 10."},
            }
        },
        "reminders": [
            {
                "delayDays": 1,
                "recipient": {
                    "recipientSms": {
                        "phoneNumber": "+4799999999",
                        "smsSettings": {"body": "Tomorrow at 10."},
                    }
                },
            }
        ],
    }
    person = {"idempotencyId": "jsonl-2", "recipient": {"recipientPerson": {}}}
    path = tmp_path / "orders.jsonl"
    lines = [json.dumps(good), "{not json", json.dumps(person), json.dumps({"recipient": {}})]
    path.write_text("\n".join(lines) + "\n")

    code, stdout, stderr = run_import(server, api_key, path)

    assert code == 1
    assert stdout.startswith("1 created, 0 already present, 3 failed")
    assert "line 2: not valid JSON" in stderr
    assert "line 3: recipient.recipientPerson:" in stderr
    assert "line 4: idempotencyId is missing" in stderr
    response = httpx.post(
        f"{server.url}{API}/orders", json=good, headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 200
    assert len(response.json()["notification"]["reminders"]) == 1


def test_unknown_csv_column_is_named(server: ServeProcess, api_key: str, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("idempotencyId,phone\nx,+4799999999\n")
    code, _stdout, stderr = run_import(server, api_key, path)
    assert code == 2
    assert "unknown CSV column(s) 'phone'" in stderr


def test_semicolon_header_gets_hint(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("\ufeffidempotencyId;phoneNumber;body\nx;+4799999999;Hei\n", encoding="utf-8")

    with pytest.raises(click.UsageError) as caught:
        list(cli_import.read_orders(path, "csv"))

    assert "unknown CSV column(s) 'idempotencyId;phoneNumber;body'" in caught.value.message
    assert "separated by semicolons; save the file with commas" in caught.value.message


def test_json_error_names_column() -> None:
    line = cli_import.parse_json_line(3, '{"idempotencyId": "a", "body": "b"\n')

    assert line.body is None
    assert line.error == (
        "not valid JSON at column 35: Expecting ',' delimiter. Each line must be one complete "
        "JSON object"
    )


def test_csv_row_field_count_checked(server: ServeProcess, api_key: str, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "idempotencyId,phoneNumber,body\n"
        "count-1,+4799999991,Hello, your case was updated\n"
        'count-2,+4799999992,"Hello, your case was updated"\n'
        "count-3,+4799999993\n"
    )

    code, stdout, stderr = run_import(server, api_key, path)

    assert code == 1
    assert stdout.startswith("1 created, 0 already present, 2 failed")
    assert "line 2: 4 fields where the header has 3 columns; put a value" in stderr
    assert "in double quotes" in stderr
    assert "line 3" not in stderr
    assert "line 4: 2 fields where the header has 3 columns; give every column" in stderr
    rejected = {
        "idempotencyId": "count-1",
        "recipient": {
            "recipientSms": {
                "phoneNumber": "+4799999991",
                "smsSettings": {"body": "Hello, your case was updated"},
            }
        },
    }
    response = httpx.post(
        f"{server.url}{API}/orders", json=rejected, headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 201


def test_csv_with_byte_order_mark(server: ServeProcess, api_key: str, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    text = "idempotencyId,phoneNumber,body\r\nbom-1,+4799999991,Hei på deg\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))

    code, stdout, stderr = run_import(server, api_key, path)

    assert code == 0, stderr
    assert stdout.startswith("1 created, 0 already present, 0 failed")


def test_windows_1252_file_rejected(server: ServeProcess, api_key: str, tmp_path: Path) -> None:
    path = tmp_path / "ansi.csv"
    text = "idempotencyId,phoneNumber,body\r\nansi-1,+4799999991,Hei på deg\r\n"
    path.write_bytes(text.encode("cp1252"))
    offset = text.index("å")

    code, stdout, stderr = run_import(server, api_key, path)

    assert code == 2
    assert stdout == ""
    assert f"{path}: line 2 is not valid UTF-8 (byte 0xe5 at offset {offset})" in stderr
    assert "save the file as UTF-8" in stderr


def test_jsonl_nan_line_reported(server: ServeProcess, api_key: str, tmp_path: Path) -> None:
    order = {
        "idempotencyId": "nan-2",
        "recipient": {
            "recipientEmail": {
                "emailAddress": "kari@example.com",
                "emailSettings": {"subject": "Reminder", "body": "Tomorrow at 10."},
            }
        },
    }
    path = tmp_path / "orders.jsonl"
    lines = [
        json.dumps({**order, "idempotencyId": "nan-1", "extra": float("nan")}),
        json.dumps(order),
        '{"idempotencyId": "deep-1", "extra": ' + "[" * 100_000 + "]" * 100_000 + "}",
    ]
    path.write_text("\n".join(lines) + "\n")

    code, stdout, stderr = run_import(server, api_key, path)

    assert code == 1
    assert stdout.startswith("1 created, 0 already present, 2 failed")
    assert "line 1: not valid JSON: NaN is not a JSON value" in stderr
    assert "line 3: not valid JSON: it is nested too deeply" in stderr


def test_csv_unterminated_quote_rejected(
    server: ServeProcess, api_key: str, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "idempotencyId,phoneNumber,sendingTimePolicy,body\n"
        'quote-1,+4799999991,Anytime,"Hello\n'
        "quote-2,+4799999992,Anytime,Second order\n"
    )

    code, stdout, stderr = run_import(server, api_key, path)

    assert code == 2
    assert stdout == ""
    assert "the CSV record that starts on line 2 cannot be read" in stderr
    assert "Close every double quote" in stderr


def test_csv_oversized_field_rejected(server: ServeProcess, api_key: str, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("idempotencyId,phoneNumber,body\nbig-1,+4799999991," + "a" * 200_000 + "\n")

    code, stdout, stderr = run_import(server, api_key, path)

    assert code == 2
    assert stdout == ""
    assert "the CSV record that starts on line 2 cannot be read" in stderr


def test_repeated_idempotency_id_rejected(
    server: ServeProcess, api_key: str, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "idempotencyId,phoneNumber,sendingTimePolicy,body\n"
        "repeat-1,+4799999991,Anytime,For Alice\n"
        "repeat-1,+4799999992,Anytime,For Bob\n"
    )

    code, stdout, stderr = run_import(server, api_key, path)

    assert code == 1
    assert stdout.startswith("1 created, 0 already present, 1 failed")
    assert "line 3: idempotencyId 'repeat-1' is also used on line 2" in stderr


def test_csv_row_with_two_channels_rejected(
    server: ServeProcess, api_key: str, tmp_path: Path
) -> None:
    path = tmp_path / "orders.csv"
    path.write_text(
        "idempotencyId,phoneNumber,sendingTimePolicy,emailAddress,subject,body\n"
        "both-1,+4799999991,Anytime,ola@example.com,Case 1,Your case was updated\n"
    )

    code, stdout, stderr = run_import(server, api_key, path)

    assert code == 1
    assert stdout.startswith("0 created, 0 already present, 1 failed")
    assert "line 2: the row has phoneNumber and also emailAddress, subject" in stderr


def test_lines_parsed_only_when_posted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    parsed_lines: list[int] = []
    parse_json_line = cli_import.parse_json_line

    def counting_parse(number: int, text: str) -> cli_import.OrderLine:
        parsed_lines.append(number)
        return parse_json_line(number, text)

    monkeypatch.setattr(cli_import, "parse_json_line", counting_parse)
    parsed_at_request: list[int] = []

    def reply(_index: int, _body: dict[str, Any]) -> StubReply:
        parsed_at_request.append(len(parsed_lines))
        return StubReply(201)

    path = tmp_path / "orders.jsonl"
    write_sms_orders(path, 20)
    with order_api_stub(reply) as stub:
        code, stdout, stderr = run_import_at(stub.url, "key", path, "--concurrency", "1")

    assert code == 0, stderr
    assert stdout.startswith("20 created, 0 already present, 0 failed, of 20 orders")
    assert parsed_at_request == list(range(1, 21))


def test_jsonl_line_endings_kept(server: ServeProcess, api_key: str, tmp_path: Path) -> None:
    order = {
        "recipient": {
            "recipientSms": {"phoneNumber": "+4799999999", "smsSettings": {"body": "Hei"}}
        },
    }
    lines = [json.dumps({**order, "idempotencyId": f"ending-{n}"}) for n in range(1, 4)]
    path = tmp_path / "orders.jsonl"
    path.write_bytes(f"{lines[0]}\r\n{lines[1]}\r{lines[2]}\n\n".encode())

    code, stdout, stderr = run_import(server, api_key, path)

    assert code == 0, stderr
    assert stdout.startswith("3 created, 0 already present, 0 failed, of 3 orders")


@pytest.mark.parametrize("target", ["closed port", "https to http"])
def test_unreachable_api_url_stops_import(
    server: ServeProcess, tmp_path: Path, target: str
) -> None:
    if target == "closed port":
        url = f"http://127.0.0.1:{free_port()}"
    else:
        url = server.url.replace("http://", "https://")
    path = tmp_path / "orders.jsonl"
    write_sms_orders(path, 10)

    started = time.monotonic()
    code, stdout, stderr = run_import_at(url, "key", path)

    assert code == 1
    assert time.monotonic() - started < 5
    assert stdout.startswith("0 created, 0 already present, 0 failed, 10 not posted, of 10")
    assert stderr.count("cannot connect to budstikke") == 1
    assert f"cannot connect to budstikke at {url}: ConnectError" in stderr
    assert "--api-url (BUDSTIKKE_API_URL)" in stderr
    assert "running the same command again posts the rest" in stderr
    assert "line " not in stderr


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_api_key_stops_import(
    server: ServeProcess, api_key: str, tmp_path: Path, status: int
) -> None:
    if status == 401:
        key = "bsk_wrong_key"
    else:
        created = server.run_cli(
            "apikey", "create", "--creator", "ttd", "--scope", "altinn:serviceowner/other"
        )
        assert created.returncode == 0, created.stderr
        key = created.stdout.strip()
    path = tmp_path / "orders.jsonl"
    write_sms_orders(path, 10)

    code, stdout, stderr = run_import_at(server.url, key, path)

    assert code == 1
    assert stdout.startswith("0 created, 0 already present, 0 failed, 10 not posted, of 10")
    assert stderr.count(f"({status}:") == 1
    assert stderr.count("budstikke apikey create") == 1
    assert "--api-key or BUDSTIKKE_API_KEY" in stderr
    assert "line " not in stderr


def rate_limited(
    retry_after: str | None, detail: str = "The creator's rate is used up."
) -> StubReply:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return StubReply(429, headers, {"title": "Too many requests", "detail": detail})


def test_rate_limit_waited_out(tmp_path: Path) -> None:
    def reply(index: int, _body: dict[str, Any]) -> StubReply:
        # Six 429 responses per order, more than the attempts of other statuses.
        return rate_limited("0") if index < 18 else StubReply(201)

    path = tmp_path / "orders.jsonl"
    write_sms_orders(path, 3)
    with order_api_stub(reply) as stub:
        code, stdout, stderr = run_import_at(stub.url, "key", path)

    assert code == 0, stderr
    assert stdout.startswith("3 created, 0 already present, 0 failed, of 3 orders")
    assert len(stub.requests) == 21


def test_rate_limit_hint_in_body_kept(tmp_path: Path) -> None:
    def reply(index: int, _body: dict[str, Any]) -> StubReply:
        if index == 0:
            return rate_limited(None, "The creator's rate is used up. Retry after 1 s.")
        return StubReply(201)

    path = tmp_path / "orders.jsonl"
    write_sms_orders(path, 1)
    with order_api_stub(reply) as stub:
        code, stdout, stderr = run_import_at(stub.url, "key", path)

    assert code == 0, stderr
    assert stdout.startswith("1 created")
    (first, _id), (second, _id) = stub.requests
    assert second - first >= 1.0


def test_rate_limit_wait_is_bounded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cli_import, "MAX_RATE_LIMIT_WAIT_S", 1.0)
    path = tmp_path / "orders.jsonl"
    write_sms_orders(path, 1)
    with order_api_stub(lambda _index, _body: rate_limited("0")) as stub:
        code, stdout, stderr = run_import_at(stub.url, "key", path)

    assert code == 1
    assert stdout.startswith("0 created, 0 already present, 1 failed")
    assert "line 1: HTTP 429: The creator's rate is used up." in stderr
    assert "(rate limited: waited 1 s, and the server requests " in stderr
    assert "past the 1 s this import waits for one order" in stderr
    last_request, first_request = stub.requests[-1][0], stub.requests[0][0]
    assert 0.8 <= last_request - first_request <= 1.5


def test_long_rate_limit_fails_at_once(tmp_path: Path) -> None:
    path = tmp_path / "orders.jsonl"
    write_sms_orders(path, 1)
    with order_api_stub(lambda _index, _body: rate_limited("3600")) as stub:
        code, _stdout, stderr = run_import_at(stub.url, "key", path)

    assert code == 1
    assert len(stub.requests) == 1
    assert "(rate limited: waited 0 s, and the server requests 3600 s more" in stderr


def test_unavailable_gets_five_attempts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cli_import, "FIRST_RETRY_S", 0.01)
    path = tmp_path / "orders.jsonl"
    write_sms_orders(path, 1)
    unavailable = StubReply(503, {}, {"title": "Service unavailable"})
    with order_api_stub(lambda _index, _body: unavailable) as stub:
        code, _stdout, stderr = run_import_at(stub.url, "key", path)

    assert code == 1
    assert "line 1: HTTP 503: Service unavailable (after 5 attempts)" in stderr
    assert len(stub.requests) == 5


def test_rate_limit_lowers_requests_in_flight(tmp_path: Path) -> None:
    def reply(index: int, _body: dict[str, Any]) -> StubReply:
        return rate_limited("0") if index < 8 else StubReply(201)

    path = tmp_path / "orders.jsonl"
    write_sms_orders(path, 40)
    # The delay keeps every worker's request open long enough to be counted.
    with order_api_stub(reply, delay_s=0.2) as stub:
        code, stdout, stderr = run_import_at(stub.url, "key", path, "--concurrency", "8")

    assert code == 0, stderr
    assert stdout.startswith("40 created, 0 already present, 0 failed")
    assert max(stub.in_flight_at_arrival[:8]) >= 6
    # The 429s halve the limit to 4, and four successes raise it to 5.
    assert max(stub.in_flight_at_arrival[8:16]) <= 5
