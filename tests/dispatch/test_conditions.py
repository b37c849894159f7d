"""Condition endpoints asked over real HTTP on loopback: answers, failures and refused addresses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from budstikke.dispatch.conditions import (
    MAX_ANSWER_BYTES,
    ConditionChecker,
    parse_condition_body,
)
from tests.api.condition_server import ConditionServer, closed_port, condition_server


@pytest.fixture
async def server() -> AsyncIterator[ConditionServer]:
    async with condition_server() as running:
        yield running


@pytest.fixture
async def checker() -> AsyncIterator[ConditionChecker]:
    checker = ConditionChecker(allow_private=True, timeout_s=2.0)
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
        (b'"true"', True),
        (b"TRUE", True),
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


async def test_loopback_refused_without_setting(server: ConditionServer) -> None:
    checker = ConditionChecker(allow_private=False, timeout_s=2.0)
    try:
        # The name is checked by the addresses it resolves to, at connect time.
        answer = await checker.ask(f"http://localhost:{server.port}/condition")
    finally:
        await checker.aclose()
    assert answer.send is None
    assert "non-public" in answer.reason
    assert server.paths == []
