"""Replays the recorded Altinn HTTP cases against a running app and checks their expectations."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from budstikke.domain.sms_text import encode_sms
from budstikke.store.tables import orders
from tests.conftest import CREATE_SCOPE, JwtIssuer, RunningApp

CASES_FILE = Path(__file__).parent / "data" / "altinn_replay.json"
UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
FINAL_ORDER_STATUSES = {"Order_Completed", "Order_Cancelled", "Order_SendConditionNotMet"}


def load_cases() -> list[dict[str, Any]]:
    return json.loads(CASES_FILE.read_text())  # type: ignore[no-any-return]


CASES = load_cases()
CASES_BY_ID = {case["id"]: case for case in CASES}


@dataclass
class Replay:
    """One run of cases against one app; earlier responses feed later placeholders."""

    app: RunningApp
    issuer: JwtIssuer
    responses: dict[str, httpx.Response] = field(default_factory=dict)
    named_uuids: dict[str, str] = field(default_factory=dict)
    keys: dict[tuple[str, str], str] = field(default_factory=dict)

    def substitute(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: self.substitute(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.substitute(item) for item in value]
        if isinstance(value, str):
            return re.sub(r"\{\{([^}]*)\}\}", lambda match: self.placeholder(match[1]), value)
        return value

    def placeholder(self, name: str) -> str:
        if name == "uuid":
            return str(uuid.uuid4())
        if name.startswith("uuid:"):
            return self.named_uuids.setdefault(name, str(uuid.uuid4()))
        if name.startswith(("shipmentId:", "notificationOrderId:")):
            kind, case_id = name.split(":", 1)
            body = self.responses[case_id].json()
            return str(body["notification"]["shipmentId"] if kind == "shipmentId" else body[kind])
        return {"phone": "+4799999999", "email": "ola.nordmann@example.com", "Environment": "test"}[
            name
        ]

    async def credentials(self, auth: dict[str, Any]) -> dict[str, str]:
        kind = auth["kind"]
        if kind == "none":
            return {}
        if kind == "platformAccessToken":
            token = self.issuer.token(
                {"urn:altinn:app": auth.get("app", ""), "iss": auth.get("issuer", "")}
            )
            return {"PlatformAccessToken": token}
        if kind == "user":
            return {"Authorization": "Bearer " + self.issuer.token({"urn:altinn:userid": "1337"})}
        assert kind == "org", kind
        if not auth["org"]:
            # A token that carries the scope but names no creator needs a JWT:
            # every API key belongs to a creator.
            return {"Authorization": "Bearer " + self.issuer.token({"scope": auth["scope"]})}
        key = self.keys.get((auth["org"], auth["scope"]))
        if key is None:
            key = await self.app.new_key(auth["org"], (auth["scope"],))
            self.keys[(auth["org"], auth["scope"])] = key
        return {"Authorization": f"Bearer {key}"}

    async def send(self, case: dict[str, Any]) -> httpx.Response:
        headers = await self.credentials(case["auth"])
        kwargs: dict[str, Any] = {"headers": headers}
        if "body" in case:
            kwargs["json"] = self.substitute(case["body"])
        response = await self.app.client.request(
            case["method"], self.substitute(case["path"]), **kwargs
        )
        self.responses[case["id"]] = response
        return response

    async def order_count(self) -> int:
        async with self.app.database.read() as connection:
            return int(
                (await connection.execute(select(func.count()).select_from(orders))).scalar_one()
            )

    def sent_count(self) -> int:
        return len(self.app.outbox_lines("sms")) + len(self.app.outbox_lines("email"))


def read_path(body: Any, path: str) -> Any:
    """Follow `a.b[0].c` into a JSON value; raises KeyError when a step is missing."""
    current = body
    for step in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if step.startswith("["):
            current = current[int(step[1:-1])]
        else:
            current = current[step]
    return current


async def check_case(replay: Replay, case: dict[str, Any]) -> None:
    """Send the case and assert every expectation it lists."""
    orders_before = await replay.order_count()
    sent_before = replay.sent_count()
    response = await replay.send(case)
    body = response.json() if response.content else None
    for key, expected in case["expect"].items():
        context = (
            f"{case['id']}: {key} = {expected!r}; got {response.status_code} {response.text[:500]}"
        )
        if key == "status":
            assert response.status_code == expected, context
        elif key == "content-type":
            assert response.headers["content-type"].startswith(expected), context
        elif key.startswith("header."):
            check_header(response, key[len("header.") :], expected, body, context)
        elif key == "body.errors keys":
            assert set(body["errors"]) == set(expected), context
        elif key.startswith("body."):
            check_body_value(replay, body, key[len("body.") :], expected, context)
        elif key == "side effects":
            assert await replay.order_count() == orders_before + (
                1 if response.status_code == 201 else 0
            ), context
            assert replay.sent_count() == sent_before + (1 if response.status_code == 201 else 0), (
                context
            )
        elif key == "message":
            check_message(case, body, context)
        elif key == "provider receives sender":
            check_sender(replay, case, expected, context)
        elif key == "sent as":
            line = replay.app.outbox_lines("email")[-1]
            assert {"text/plain": "Plain", "text/html": "Html"}[expected] == line["contentType"], (
                context
            )
        elif key == "encoding":
            check_encoding(replay.substitute(case["body"]), expected, context)
        elif key == "destination shown by GET shipment":
            location = response.headers["location"]
            shipment = (
                await replay.app.client.get(location, headers=response.request.headers)
            ).json()
            assert shipment["recipients"][0]["destination"] == expected, context
        elif key in FEED_CHECKS:
            FEED_CHECKS[key](body, expected, context)
        elif key == "body":
            check_body_sentence(body, expected, context)
        else:
            raise AssertionError(f"{case['id']}: no check written for expectation {key!r}")


def check_header(
    response: httpx.Response, name: str, expected: str, body: Any, context: str
) -> None:
    value = response.headers.get(name)
    if expected == "absent":
        assert value is None, context
        return
    assert expected.startswith("== "), context
    template = expected[3:]
    wanted = re.sub(r"\{body\.([^}]+)\}", lambda m: str(read_path(body, m[1])), template)
    assert value == wanted, context


def check_body_value(replay: Replay, body: Any, path: str, expected: Any, context: str) -> None:
    if expected == "absent":
        parent, _, last = path.rpartition(".")
        assert last not in (read_path(body, parent) if parent else body), context
        return
    value = read_path(body, path)
    if (
        not isinstance(expected, str)
        or expected in ("", "Instant")
        or not (expected.startswith(("uuid", "== ", "!= ", "one of ", "an ", "RFC 3339")))
    ):
        assert value == expected, context
    elif expected.startswith("uuid"):
        assert isinstance(value, str) and UUID_PATTERN.match(value), context
        if "different from notificationOrderId" in expected:
            assert value != body["notificationOrderId"], context
    elif expected.startswith(("== ", "!= ")):
        case_id, _, other_path = expected[3:].partition(".body.")
        other = read_path(replay.responses[case_id].json(), other_path)
        assert (value == other) == expected.startswith("=="), context
    elif expected.startswith("one of "):
        assert value in [item.strip() for item in expected[len("one of ") :].split(",")], context
    elif expected.startswith(("an SMS_", "an Email_")):
        prefix = "SMS_" if "SMS_" in expected else "Email_"
        assert isinstance(value, str) and value.startswith(prefix), context
    elif expected.startswith("RFC 3339"):
        assert isinstance(value, str) and TIME_PATTERN.match(value), context


def first_error(body: Any) -> tuple[str, str]:
    errors = body["errors"]
    key = next(iter(errors))
    return key, errors[key][0]


def check_message(case: dict[str, Any], body: Any, context: str) -> None:
    key, message = first_error(body)
    sent = read_path(case["body"], key)
    assert str(sent) in message, context
    if key.endswith("timeToLiveInSeconds"):
        assert "60" in message and "172800" in message, context
    if key.endswith("sender"):
        assert "11" in message, context


def check_sender(replay: Replay, case: dict[str, Any], expected: str, context: str) -> None:
    channel = "email" if "instant/email" in case["path"] else "sms"
    line = replay.app.outbox_lines(channel)[-1]
    settings = replay.app.settings
    default = settings.default_email_sender if channel == "email" else settings.default_sms_sender
    expected_sender = default if expected.startswith("the sender") else expected
    assert line["sender"] == expected_sender, context


def check_encoding(body: dict[str, Any], expected: str, context: str) -> None:
    match = re.fullmatch(r"GSM-7, (\d+) septets, (\d+) segments?", expected)
    assert match, context
    encoded = encode_sms(body["recipientSms"]["smsSettings"]["body"])
    assert encoded.data_coding == 0, context
    assert encoded.unit_count == int(match[1]), context
    assert encoded.segment_count == int(match[2]), context


def check_body_sentence(body: Any, expected: str, context: str) -> None:
    assert isinstance(body, list), context
    limit = re.search(r"at most (\d+) entr", expected)
    if limit:
        assert len(body) <= int(limit[1]), context
    if "newest entry" in expected and body:
        assert body[0]["sequenceNumber"] == max(entry["sequenceNumber"] for entry in body), context


def check_entry_keys(body: Any, expected: list[str], context: str) -> None:
    for entry in body:
        assert set(expected) <= set(entry), context


def check_recipient_keys(body: Any, expected: list[str], context: str) -> None:
    for entry in body:
        for recipient in entry["recipients"]:
            assert set(expected) <= set(recipient), context


def check_entry_status(body: Any, _expected: str, context: str) -> None:
    for entry in body:
        assert entry["status"] in FINAL_ORDER_STATUSES, context


def check_ordering(body: Any, _expected: str, context: str) -> None:
    numbers = [entry["sequenceNumber"] for entry in body]
    assert numbers == sorted(numbers) and all(number > 0 for number in numbers), context


def check_max_entries(body: Any, expected: int, context: str) -> None:
    assert len(body) <= expected, context


def check_sequence_floor(body: Any, expected: str, context: str) -> None:
    floor = int(expected.lstrip("> "))
    assert all(entry["sequenceNumber"] > floor for entry in body), context


def check_senders_reference(body: Any, _expected: str, context: str) -> None:
    for entry in body:
        if "sendersReference" in entry:
            assert isinstance(entry["sendersReference"], str), context


def check_own_creator(body: Any, _expected: str, context: str) -> None:
    # Seeded orders of other creators carry sendersReference "other-creator".
    for entry in body:
        assert entry.get("sendersReference") != "other-creator", context


FEED_CHECKS = {
    "each entry has keys": check_entry_keys,
    "each recipient has keys": check_recipient_keys,
    "each entry status": check_entry_status,
    "ordering": check_ordering,
    "max entries": check_max_entries,
    "each sequenceNumber": check_sequence_floor,
    "each entry sendersReference": check_senders_reference,
    "each entry": check_own_creator,
}

__all__ = ["CASES", "CASES_BY_ID", "CREATE_SCOPE", "Replay", "check_case"]
