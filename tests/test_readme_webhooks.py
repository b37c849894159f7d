"""The receiver example in the README verifies what budstikke signs."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from budstikke.domain.webhook_signing import new_secret, webhook_headers

README = Path(__file__).resolve().parent.parent / "README.md"
BODY = b'{"type":"notification.status_changed","status":"SMS_Delivered","sequenceNumber":7}'


@pytest.fixture(scope="module")
def verify() -> Callable[..., Any]:
    """Run the first Python block of the README's webhook section and return its verify()."""
    section = README.read_text().split("## Status webhooks", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the README's webhook section has no Python example"
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), str(README), "exec"), namespace)
    function: Callable[..., Any] = namespace["verify"]
    return function


def test_example_accepts_a_signed_request(verify: Callable[..., Any]) -> None:
    secret = new_secret()
    headers = webhook_headers("msg_1", int(time.time()), BODY, [secret])

    assert verify(secret, headers, BODY)["sequenceNumber"] == 7


def test_example_accepts_either_secret_during_rotation(verify: Callable[..., Any]) -> None:
    old, new = new_secret(), new_secret()
    headers = webhook_headers("msg_1", int(time.time()), BODY, [new, old])

    assert verify(old, headers, BODY)["status"] == "SMS_Delivered"
    assert verify(new, headers, BODY)["status"] == "SMS_Delivered"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("body", "no valid webhook signature"),
        ("secret", "no valid webhook signature"),
        ("timestamp", "too far from now"),
        ("id", "no valid webhook signature"),
    ],
)
def test_example_rejects_a_changed_request(
    verify: Callable[..., Any], change: str, message: str
) -> None:
    secret = new_secret()
    moment = int(time.time()) - (600 if change == "timestamp" else 0)
    headers = webhook_headers("msg_1", moment, BODY, [secret])
    body = BODY.replace(b"7", b"8") if change == "body" else BODY
    if change == "secret":
        secret = new_secret()
    if change == "id":
        headers["webhook-id"] = "msg_2"

    with pytest.raises(ValueError, match=message):
        verify(secret, headers, body)
