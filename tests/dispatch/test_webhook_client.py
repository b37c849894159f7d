"""The webhook HTTP client against a real receiver on loopback: the address guard, TLS with
the original host name, redirects, timeouts and bounded response bodies."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from budstikke.dispatch.webhook_client import (
    MAX_RESPONSE_BYTES,
    TargetRefusedError,
    WebhookCallError,
    WebhookClient,
)
from budstikke.domain.webhook_urls import AddressPolicy, IPAddress, parse_networks
from tests.webhook_receiver import Receiver, Reply

NAME = "hooks.budstikke.test"
LOOPBACK_ONLY = AddressPolicy(parse_networks("127.0.0.1/32"))


def resolver_for(mapping: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    """Return a resolver that reads `mapping`, so no test queries a real DNS server."""

    async def resolve(host: str, _port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(address) for address in mapping[host]]

    return resolve


def write_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate_path, key_path


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as running:
        yield running


def plain_client(policy: AddressPolicy = LOOPBACK_ONLY, *, timeout_s: float = 1.0) -> WebhookClient:
    return WebhookClient(policy, allow_http=True, timeout_s=timeout_s, max_connections=4)


async def test_tls_uses_the_original_host_name(tmp_path: Path) -> None:
    certificate_path, key_path = write_certificate(tmp_path, NAME)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificate_path, key_path)
    client_context = ssl.create_default_context(cafile=str(certificate_path))
    client = WebhookClient(
        LOOPBACK_ONLY,
        allow_http=False,
        timeout_s=2.0,
        max_connections=4,
        ssl_context=client_context,
        resolver=resolver_for({NAME: ["127.0.0.1"]}),
    )
    async with Receiver(server_context) as receiver:
        try:
            response = await client.post(receiver.url(host=NAME), b"{}", {"webhook-id": "msg_1"})
        finally:
            await client.aclose()

    assert response.status_code == 204
    request = receiver.requests[0]
    assert request.server_name == NAME
    assert request.headers["host"] == f"{NAME}:{receiver.port}"
    assert request.headers["webhook-id"] == "msg_1"
    assert request.headers["content-type"] == "application/json"


async def test_tls_rejects_certificate_of_another_name(tmp_path: Path) -> None:
    certificate_path, key_path = write_certificate(tmp_path, "other.budstikke.test")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificate_path, key_path)
    client_context = ssl.create_default_context(cafile=str(certificate_path))
    client = WebhookClient(
        LOOPBACK_ONLY,
        allow_http=False,
        timeout_s=2.0,
        max_connections=4,
        ssl_context=client_context,
        resolver=resolver_for({NAME: ["127.0.0.1"]}),
    )
    async with Receiver(server_context) as receiver:
        try:
            with pytest.raises(WebhookCallError) as raised:
                await client.post(receiver.url(host=NAME), b"{}", {})
        finally:
            await client.aclose()

    assert raised.value.reason == "connection"
    assert receiver.requests == []


async def test_name_resolving_to_private_address_is_refused(receiver: Receiver) -> None:
    client = WebhookClient(
        LOOPBACK_ONLY,
        allow_http=True,
        timeout_s=1.0,
        max_connections=4,
        resolver=resolver_for({NAME: ["10.0.0.1"]}),
    )
    try:
        with pytest.raises(TargetRefusedError) as raised:
            await client.post(receiver.url(host=NAME), b"{}", {})
    finally:
        await client.aclose()

    assert "10.0.0.1, a private address" in str(raised.value)
    assert "BUDSTIKKE_WEBHOOK_ALLOWED_NETWORKS" in str(raised.value)
    assert receiver.connections == 0


async def test_one_refused_address_refuses_the_name(receiver: Receiver) -> None:
    client = WebhookClient(
        LOOPBACK_ONLY,
        allow_http=True,
        timeout_s=1.0,
        max_connections=4,
        resolver=resolver_for({NAME: ["127.0.0.1", "169.254.169.254"]}),
    )
    try:
        with pytest.raises(TargetRefusedError, match="metadata"):
            await client.post(receiver.url(host=NAME), b"{}", {})
    finally:
        await client.aclose()

    assert receiver.connections == 0


async def test_loopback_refused_unless_allowed(receiver: Receiver) -> None:
    client = plain_client(AddressPolicy())
    try:
        with pytest.raises(TargetRefusedError, match=r"127\.0\.0\.1, a loopback address"):
            await client.post(receiver.url(host="localhost"), b"{}", {})
    finally:
        await client.aclose()

    assert receiver.connections == 0


async def test_connects_to_the_checked_address_only(receiver: Receiver) -> None:
    # The resolver answers differently on each call, as a rebinding DNS server
    # would; the connection must use the one answer that was checked.
    answers = [["127.0.0.1"], ["10.0.0.1"]]

    async def rebinding(host: str, _port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(address) for address in answers.pop(0)]

    client = WebhookClient(
        LOOPBACK_ONLY, allow_http=True, timeout_s=1.0, max_connections=4, resolver=rebinding
    )
    try:
        response = await client.post(receiver.url(host=NAME), b"{}", {})
    finally:
        await client.aclose()

    assert response.status_code == 204
    assert answers == [["10.0.0.1"]]
    assert receiver.requests[0].headers["host"] == f"{NAME}:{receiver.port}"


async def test_http_refused_unless_allowed(receiver: Receiver) -> None:
    client = WebhookClient(LOOPBACK_ONLY, allow_http=False, timeout_s=1.0, max_connections=4)
    try:
        with pytest.raises(TargetRefusedError, match="https://"):
            await client.post(receiver.url(), b"{}", {})
    finally:
        await client.aclose()

    assert receiver.connections == 0


async def test_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.reply(Reply(status=302, headers=[("Location", receiver.url("/elsewhere"))]))
    client = plain_client()
    try:
        response = await client.post(receiver.url(), b"{}", {})
    finally:
        await client.aclose()

    assert response.status_code == 302
    assert [request.path for request in receiver.requests] == ["/hooks"]


async def test_stalled_body_is_not_waited_for(receiver: Receiver) -> None:
    receiver.reply(Reply(status=200, stalled_length=10_000_000, stall_after=2 * MAX_RESPONSE_BYTES))
    client = plain_client(timeout_s=3.0)
    started = time.monotonic()
    try:
        response = await client.post(receiver.url(), b"{}", {})
    finally:
        await client.aclose()

    assert response.status_code == 200
    assert time.monotonic() - started < 1.0


async def test_slow_answer_times_out(receiver: Receiver) -> None:
    receiver.reply(Reply(delay_s=2.0))
    client = plain_client(timeout_s=0.3)
    try:
        with pytest.raises(WebhookCallError, match=r"timed out after 0\.3 s") as raised:
            await client.post(receiver.url(), b"{}", {})
    finally:
        await client.aclose()

    assert raised.value.reason == "timeout"


async def test_closed_port_is_a_connection_failure() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = plain_client()
    try:
        with pytest.raises(WebhookCallError) as raised:
            await client.post(f"http://127.0.0.1:{port}/hooks", b"{}", {})
    finally:
        await client.aclose()

    assert raised.value.reason == "connection"


async def test_dropped_connection_is_a_failure(receiver: Receiver) -> None:
    receiver.reply(Reply(drop=True))
    client = plain_client()
    try:
        with pytest.raises(WebhookCallError) as raised:
            await client.post(receiver.url(), b"{}", {})
    finally:
        await client.aclose()

    assert raised.value.reason in ("connection", "invalid_response")


async def test_garbage_answer_is_invalid_response(receiver: Receiver) -> None:
    receiver.reply(Reply(raw=b"HTTP/1.1 200 OK\r\nsecret-looking garbage\r\n\r\n"))
    client = plain_client()
    try:
        with pytest.raises(WebhookCallError) as raised:
            await client.post(receiver.url(), b"{}", {})
    finally:
        await client.aclose()

    assert raised.value.reason == "invalid_response"
    assert "garbage" not in str(raised.value)


async def test_retry_after_seconds_are_read(receiver: Receiver) -> None:
    receiver.reply(Reply(status=503, headers=[("Retry-After", "120")]))
    client = plain_client()
    try:
        response = await client.post(receiver.url(), b"{}", {})
    finally:
        await client.aclose()

    assert response.status_code == 503
    assert response.retry_after_s == 120.0
