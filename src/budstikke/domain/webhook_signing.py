"""Standard Webhooks signatures (specification 1.0.0, symmetric scheme).

Each request carries `webhook-id` (the same for every attempt of one event),
`webhook-timestamp` (Unix seconds of the attempt) and `webhook-signature`:
"v1," plus the base64 HMAC-SHA256 of "{id}.{timestamp}.{body}" under the
secret. During a secret rotation the header lists one signature per valid
secret, separated by a space, and a receiver accepts the request when any
of them matches. Secrets are shown as "whsec_" plus the base64 key bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import uuid

SECRET_PREFIX = "whsec_"  # noqa: S105 - the marker of the format, not a secret
# Standard Webhooks 1.0.0 requires 24 to 64 random bytes.
SECRET_BYTES = 32
SIGNATURE_VERSION = "v1"


def new_secret() -> str:
    """Return a new random signing secret in the whsec_ form."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """Return the HMAC key bytes of a whsec_ secret; raises ValueError for a malformed one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"invalid webhook secret: it must start with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("invalid webhook secret: it must be base64 after its prefix") from None
    if not key:
        raise ValueError("invalid webhook secret: it must not be empty")
    return key


def new_message_id() -> str:
    """Return a new webhook-id; it has no "." so the signed content stays unambiguous."""
    return f"msg_{uuid.uuid4().hex}"


def sign(message_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """Return one "v1,<base64>" signature of the body under one secret."""
    content = f"{message_id}.{timestamp}.".encode("ascii") + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_header(
    message_id: str, timestamp: int, body: bytes, signing_secrets: list[str]
) -> str:
    """Return the webhook-signature value: one signature per secret, separated by spaces."""
    return " ".join(sign(message_id, timestamp, body, secret) for secret in signing_secrets)


def webhook_headers(
    message_id: str, timestamp: int, body: bytes, signing_secrets: list[str]
) -> dict[str, str]:
    """Return the three Standard Webhooks headers of one attempt."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(message_id, timestamp, body, signing_secrets),
    }
