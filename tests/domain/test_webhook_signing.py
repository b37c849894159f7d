"""Standard Webhooks signatures: a known answer, rotation, and the secret format."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from budstikke.domain.webhook_signing import (
    new_message_id,
    new_secret,
    secret_key,
    sign,
    webhook_headers,
)

# The signing test of the Standard Webhooks reference library for Python
# (libraries/python/tests/test_webhooks.py, test_sign_function).
REFERENCE_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
REFERENCE_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
REFERENCE_TIMESTAMP = 1614265330
REFERENCE_BODY = b'{"test": 2432232314}'
REFERENCE_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_sign_matches_reference_vector() -> None:
    signature = sign(REFERENCE_ID, REFERENCE_TIMESTAMP, REFERENCE_BODY, REFERENCE_SECRET)

    assert signature == REFERENCE_SIGNATURE


def test_headers_carry_one_signature_per_secret() -> None:
    other = new_secret()

    headers = webhook_headers(
        REFERENCE_ID, REFERENCE_TIMESTAMP, REFERENCE_BODY, [REFERENCE_SECRET, other]
    )

    assert headers["webhook-id"] == REFERENCE_ID
    assert headers["webhook-timestamp"] == str(REFERENCE_TIMESTAMP)
    first, second = headers["webhook-signature"].split(" ")
    assert first == REFERENCE_SIGNATURE
    key = base64.b64decode(other.removeprefix("whsec_"))
    content = f"{REFERENCE_ID}.{REFERENCE_TIMESTAMP}.".encode() + REFERENCE_BODY
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    assert second == f"v1,{expected}"


def test_new_secret_has_32_random_bytes() -> None:
    first, second = new_secret(), new_secret()

    assert first.startswith("whsec_")
    assert len(secret_key(first)) == 32
    assert first != second


@pytest.mark.parametrize("secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_###"])
def test_secret_key_rejects_malformed_secret(secret: str) -> None:
    with pytest.raises(ValueError, match="webhook secret"):
        secret_key(secret)


def test_message_id_has_no_dot() -> None:
    message_id = new_message_id()

    assert message_id.startswith("msg_")
    assert "." not in message_id
    assert message_id != new_message_id()
