"""Choosing and building each channel's provider from its URL."""

from __future__ import annotations

from budstikke.channels.base import Provider
from budstikke.channels.outbox import FileOutbox, outbox_path_from_url
from budstikke.domain.statuses import Channel
from budstikke.errors import ConfigurationError

SMS_SETTING = "BUDSTIKKE_SMS_URL"
EMAIL_SETTING = "BUDSTIKKE_EMAIL_URL"


def build_sms_provider(url: str) -> Provider:
    if url.startswith("file:"):
        return FileOutbox(Channel.SMS, outbox_path_from_url(url, SMS_SETTING))
    if url.startswith(("smpp://", "smpps://")):
        from budstikke.channels.smpp.client import SmppProvider

        return SmppProvider.from_url(url)
    raise ConfigurationError(
        SMS_SETTING,
        f"unsupported scheme in {redact_url(url)!r}; use file:PATH or smpp://id:password@host:port",
    )


def build_email_provider(url: str) -> Provider:
    if url.startswith("file:"):
        return FileOutbox(Channel.EMAIL, outbox_path_from_url(url, EMAIL_SETTING))
    if url.startswith("smtp://"):
        from budstikke.channels.smtp import SmtpProvider

        return SmtpProvider.from_url(url)
    raise ConfigurationError(
        EMAIL_SETTING,
        f"unsupported scheme in {redact_url(url)!r}; use file:PATH or "
        "smtp://user:password@host:port?tls=starttls",
    )


def redact_url(url: str) -> str:
    """Hide the password of a URL for messages: scheme://user:***@host."""
    scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
