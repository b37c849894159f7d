"""Condition endpoints asked over real HTTP on loopback: answers, failures, rejected addresses."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import AsyncIterator

import pytest

from budstikke.dispatch.address_guard import Resolver
from budstikke.dispatch.conditions import (
    MAX_ANSWER_BYTES,
    ConditionChecker,
    parse_condition_body,
)
from budstikke.domain.webhook_urls import AddressPolicy, IPAddress, parse_networks
from tests.api.condition_server import ConditionServer, closed_port, condition_server

NAME = "conditions.budstikke.test"
LOOPBACK_ONLY = AddressPolicy(parse_networks("127.0.0.1/32"))


def resolver_for(*answers: list[str]) -> Resolver:
    """Return a resolver that gives the next answer on each call, so no test queries DNS."""
    remaining = list(answers)

    async def resolve(_host: str, _port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(address) for address in remaining.pop(0)]

    return resolve


@pytest.fixture
async def server() -> AsyncIterator[ConditionServer]:
    async with condition_server() as running:
        yield running


@pytest.fixture
async def checker() -> AsyncIterator[ConditionChecker]:
    checker = ConditionChecker(LOOPBACK_ONLY, timeout_s=2.0)
    yield checker
    await checker.aclose()


@pytest.mark.parametrize(
    ("body", "send"),
    [
        (b'{"sendNotification": true}', True),
        (b'{"sendNotification": false}', False),
        (b'{"SendNotification": true}', True),
        (b"true", True),
        (b" false\n", False),
        (b"\xfftrue", None),
        (b'"true"', None),
        (b"TRUE", None),
        (b"True", None),
        (b'{"sendNotification": "true"}', None),
        (b'{"sendNotification": "false"}', None),
        (b'{"sendNotification": 1}', None),
        (b'{"sendNotification": null}', None),
        (b'{"sendNotification": "yes"}', None),
        (b'{"other": true}', None),
        (b"1", None),
        (b"", None),
        (b"<html>ok</html>", None),
    ],
)
def test_parse_condition_body(body: bytes, send: bool | None) -> None:
    assert parse_condition_body(body) is send


async def test_true_answer(server: ConditionServer, checker: ConditionChecker) -> None:
    answer = await checker.ask(server.url("/case/1?seen=false"))
    assert answer.send is True
    assert server.paths == ["/case/1?seen=false"]


async def test_false_answer(server: ConditionServer, checker: ConditionChecker) -> None:
    server.answer(b"false")
    assert (await checker.ask(server.url())).send is False


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (503, b"true", "HTTP 503"),
        (302, b"", "redirect"),
        (200, b"maybe", "not"),
        (200, b"true" + b" " * MAX_ANSWER_BYTES, "longer than"),
    ],
)
async def test_unclear_answers(
    server: ConditionServer, checker: ConditionChecker, status: int, body: bytes, reason: str
) -> None:
    server.answer(body, status)
    answer = await checker.ask(server.url())
    assert answer.send is None
    assert reason in answer.reason


async def test_unreachable_endpoint(checker: ConditionChecker) -> None:
    answer = await checker.ask(f"http://127.0.0.1:{closed_port()}/condition")
    assert answer.send is None
    assert "request failed" in answer.reason


async def test_loopback_rejected_without_setting(server: ConditionServer) -> None:
    checker = ConditionChecker(AddressPolicy(), timeout_s=2.0)
    try:
        # The name is checked by the addresses it resolves to, at connect time.
        answer = await checker.ask(f"http://localhost:{server.port}/condition")
    finally:
        await checker.aclose()

    assert answer.send is None
    assert answer.rejected is True
    assert "a loopback address" in answer.reason
    assert "BUDSTIKKE_CONDITION_ALLOWED_NETWORKS" in answer.reason
    assert server.paths == []


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("64:ff9b::a00:1", "embedded 10.0.0.1"),
        ("64:ff9b::7f00:1", "embedded 127.0.0.1"),
        ("2002:a00:1::1", "embedded 10.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "metadata"),
        ("168.63.129.16", "metadata"),
        ("64:ff9b::a9fe:a9fe", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
    ],
)
async def test_name_resolving_to_non_public_address_is_rejected(
    server: ConditionServer, address: str, reason: str
) -> None:
    # Each of these passes `ipaddress.is_global` or leads to an internal
    # IPv4 address, so only the webhook address policy catches all of them.
    checker = ConditionChecker(AddressPolicy(), timeout_s=2.0, resolver=resolver_for([address]))
    try:
        answer = await checker.ask(f"http://{NAME}:{server.port}/condition")
    finally:
        await checker.aclose()

    assert answer.send is None
    assert answer.rejected is True
    assert f"{NAME} resolves to {ipaddress.ip_address(address)}" in answer.reason
    assert reason in answer.reason
    assert server.paths == []


async def test_connects_to_the_checked_address(server: ConditionServer) -> None:
    # A rebinding DNS server answers differently on the second query; the
    # connection must use the answer that was checked, without asking again.
    resolver = resolver_for(["127.0.0.1"], ["10.0.0.1"])
    checker = ConditionChecker(LOOPBACK_ONLY, timeout_s=2.0, resolver=resolver)
    try:
        answer = await checker.ask(f"http://{NAME}:{server.port}/condition")
    finally:
        await checker.aclose()

    assert answer.send is True
    assert answer.rejected is False
    assert server.paths == ["/condition"]
    assert server.hosts == [f"{NAME}:{server.port}"]


async def test_unclear_answer_is_not_rejected(
    server: ConditionServer, checker: ConditionChecker
) -> None:
    server.answer(b"maybe")

    answer = await checker.ask(server.url())

    assert answer.send is None
    assert answer.rejected is False


async def test_invalid_port_is_rejected(checker: ConditionChecker) -> None:
    answer = await checker.ask("http://127.0.0.1:99999/condition")

    assert answer.send is None
    assert answer.rejected is True
    assert "99999" in answer.reason


async def test_url_credentials_are_sent_as_basic_auth(
    server: ConditionServer, checker: ConditionChecker
) -> None:
    answer = await checker.ask(f"http://case%40owner:p%3Ass@127.0.0.1:{server.port}/c#part")

    assert answer.send is True
    assert server.paths == ["/c"]
    assert server.authorizations == ["Basic " + base64.b64encode(b"case@owner:p:ss").decode()]


async def test_international_domain_is_sent_in_punycode(server: ConditionServer) -> None:
    resolver = resolver_for(["127.0.0.1"])
    checker = ConditionChecker(LOOPBACK_ONLY, timeout_s=2.0, resolver=resolver)
    try:
        answer = await checker.ask(f"http://bücher.example:{server.port}/sø?q=å")
    finally:
        await checker.aclose()

    assert answer.send is True
    assert server.hosts == [f"xn--bcher-kva.example:{server.port}"]
    assert server.paths == ["/s%C3%B8?q=%C3%A5"]
