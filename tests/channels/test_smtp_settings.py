"""Parsing BUDSTIKKE_EMAIL_URL into SMTP settings."""

from __future__ import annotations

import pytest

from budstikke.channels.smtp import SmtpProvider, SmtpSettings, TlsMode
from budstikke.errors import ConfigurationError

SECRET = "s3cr/t?p@ss"


def test_defaults_to_starttls_on_587() -> None:
    settings = SmtpSettings.from_url("smtp://mail.example.com")

    assert settings == SmtpSettings(host="mail.example.com", port=587)
    assert settings.tls is TlsMode.STARTTLS
    assert settings.timeout_s == 10.0
    assert settings.connections == 4
    assert settings.username is None
    assert settings.password is None


@pytest.mark.parametrize(
    ("tls", "port"),
    [("starttls", 587), ("implicit", 465), ("none", 25), ("IMPLICIT", 465)],
)
def test_default_port_follows_tls_mode(tls: str, port: int) -> None:
    settings = SmtpSettings.from_url(f"smtp://mail.example.com?tls={tls}")

    assert settings.port == port
    assert settings.tls is TlsMode(tls.lower())


def test_all_parameters_parsed() -> None:
    settings = SmtpSettings.from_url(
        "smtp://app%40example.com:s3cr%2Ft%3Fp%40ss@mail.example.com:2525"
        "?tls=implicit&timeout_s=2.5&connections=8&local_hostname=app.example.com"
    )

    assert settings == SmtpSettings(
        host="mail.example.com",
        port=2525,
        tls=TlsMode.IMPLICIT,
        username="app@example.com",
        password=SECRET,
        timeout_s=2.5,
        connections=8,
        local_hostname="app.example.com",
    )


def test_ipv6_host() -> None:
    assert SmtpSettings.from_url("smtp://[::1]:2525").host == "::1"


def test_password_not_in_repr() -> None:
    settings = SmtpSettings.from_url("smtp://app:s3cr%2Ft%3Fp%40ss@mail.example.com")
    provider = SmtpProvider(settings)

    assert SECRET not in repr(settings)
    assert "s3cr" not in repr(settings)
    assert "s3cr" not in settings.redacted_url
    assert "s3cr" not in repr(provider)
    assert settings.redacted_url == (
        "smtp://app@mail.example.com:587?tls=starttls&timeout_s=10&connections=4"
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://mail.example.com", "scheme must be smtp://"),
        ("smtps://mail.example.com", "scheme must be smtp://"),
        ("smtp://", "host is missing"),
        ("smtp://:25", "host is missing"),
        ("smtp://mail.example.com:0", "port must be a number from 1 to 65535"),
        ("smtp://mail.example.com:70000", "port must be a number from 1 to 65535"),
        ("smtp://mail.example.com:abc", "port must be a number from 1 to 65535"),
        ("smtp://mail.example.com?tls=ssl", "tls='ssl' is not one of"),
        ("smtp://mail.example.com?timeout_s=0", "timeout_s='0' must be a positive"),
        ("smtp://mail.example.com?timeout_s=nan", "timeout_s='nan' must be a positive"),
        ("smtp://mail.example.com?timeout_s=", "timeout_s='' must be a positive"),
        ("smtp://mail.example.com?connections=0", "connections='0' must be a whole"),
        ("smtp://mail.example.com?connections=1.5", "connections='1.5' must be a whole"),
        ("smtp://mail.example.com?port=25", "unknown query parameter 'port'"),
        ("smtp://mail.example.com?tls=none&tls=implicit", "'tls' is given more than once"),
        ("smtp://mail.example.com?tls", "query string is malformed"),
        ("smtp://mail.example.com/path", "path or #fragment is not allowed"),
        ("smtp://mail.example.com#x", "path or #fragment is not allowed"),
        ("smtp://:secret@mail.example.com", "password is given without a user name"),
        ("smtp://mail.example.com?local_hostname=", "local_hostname='' must be"),
        ("smtp://mail .example.com", "contains spaces or control characters"),
        ("smtp://mail.example.com\n", "contains spaces or control characters"),
    ],
)
def test_invalid_url_names_problem(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        SmtpSettings.from_url(url)

    assert caught.value.setting == "BUDSTIKKE_EMAIL_URL"
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        # Unencoded '/', '?', '#' in the password end the host part early.
        "smtp://app:pa/ss-secret@mail.example.com",
        "smtp://app:pa?ss-secret@mail.example.com",
        "smtp://app:pa#ss-secret@mail.example.com",
        # Without '@' the password parses as the port.
        "smtp://app:ss-secret",
    ],
)
def test_invalid_url_hides_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        SmtpSettings.from_url(url)

    assert "ss-secret" not in str(caught.value)
