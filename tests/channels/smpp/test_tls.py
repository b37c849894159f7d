"""smpps://: the provider binds over TLS and checks the SMSC's certificate."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from budstikke.channels.smpp import SmppProvider
from budstikke.channels.smpp.dev_smsc import DevSmsc, DevSmscOptions
from budstikke.domain.statuses import NotificationStatus

from .conftest import make_sms, wait_until


def write_self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_path = folder / "smsc.pem"
    key_path = folder / "smsc.key"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate_path, key_path


async def test_hand_off_over_tls(tmp_path: Path) -> None:
    certificate_path, key_path = write_self_signed_certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificate_path, key_path)
    client_context = ssl.create_default_context(cafile=str(certificate_path))
    reports: list[object] = []

    async def sink(report: object) -> None:
        reports.append(report)

    options = DevSmscOptions(port=0, receipt_delay_s=0.01, ssl_context=server_context)
    async with DevSmsc(options) as smsc:
        provider = SmppProvider.from_url(
            f"smpps://budstikke:secret@127.0.0.1:{smsc.port}", ssl_context=client_context
        )
        await provider.start(sink)
        try:
            await wait_until(lambda: provider.is_ready()[0])
            receipt = await provider.hand_off(make_sms())
            await wait_until(lambda: len(reports) == 1)
        finally:
            await provider.stop()

    assert receipt.status is NotificationStatus.SMS_ACCEPTED
    assert provider.config.tls


async def test_untrusted_certificate_never_binds(tmp_path: Path) -> None:
    certificate_path, key_path = write_self_signed_certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificate_path, key_path)

    async def sink(report: object) -> None:
        raise AssertionError("no report expected")

    options = DevSmscOptions(port=0, ssl_context=server_context)
    async with DevSmsc(options) as smsc:
        provider = SmppProvider.from_url(
            f"smpps://budstikke:secret@127.0.0.1:{smsc.port}?reconnect_initial_s=0.05"
            "&reconnect_max_s=0.1"
        )
        await provider.start(sink)
        try:
            await wait_until(lambda: "CERTIFICATE_VERIFY_FAILED" in provider.is_ready()[1])
        finally:
            await provider.stop()

    assert smsc.binds_accepted == 0


def test_smpps_uses_default_context() -> None:
    provider = SmppProvider.from_url("smpps://id:pw@smsc.example")

    assert isinstance(provider._ssl_context, ssl.SSLContext)
    assert provider._ssl_context.verify_mode is ssl.CERT_REQUIRED
    with pytest.raises(AttributeError):
        provider.config.tls = False  # type: ignore[misc]
