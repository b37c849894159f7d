"""SmtpProvider against a real aiosmtpd server on 127.0.0.1 with injected faults."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Literal

import pytest

from budstikke.channels.base import OutgoingEmail, OutgoingSms
from budstikke.channels.smtp import SmtpHandOffError, SmtpPhase, SmtpProvider
from budstikke.domain.statuses import NotificationStatus
from tests.channels.smtp_server import (
    ReceivedMessage,
    SmtpTestServer,
    StartServer,
    TlsFiles,
)

MakeProvider = Callable[..., Awaitable[SmtpProvider]]
SUCCEEDED = NotificationStatus.EMAIL_SUCCEEDED
LONG_LINK = "https://example.com/verify?t=" + "a" * 2000
PASSWORD = "pa55-w0rd-secret"


@pytest.fixture
async def make_provider(
    start_server: StartServer, tls_files: TlsFiles
) -> AsyncIterator[MakeProvider]:
    providers: list[SmtpProvider] = []

    async def make(
        server: SmtpTestServer, query: str = "tls=none", userinfo: str = ""
    ) -> SmtpProvider:
        url = f"smtp://{userinfo}127.0.0.1:{server.port}?{query}"
        provider = SmtpProvider.from_url(url, tls_context=tls_files.client_context())
        await provider.start(_ignore_report)
        providers.append(provider)
        return provider

    yield make

    for provider in providers:
        await provider.stop()


async def _ignore_report(report: object) -> None:
    del report


def outgoing(
    recipient: str = "ola@example.com",
    *,
    subject: str = "Your one-time code",
    body: str = "Your code is 482913.",
    content_type: Literal["Plain", "Html"] = "Plain",
    expires_in_s: float = 300,
) -> OutgoingEmail:
    return OutgoingEmail(
        notification_id=uuid.uuid4(),
        recipient=recipient,
        sender="noreply@example.com",
        subject=subject,
        body=body,
        content_type=content_type,
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in_s),
    )


def parse(received: ReceivedMessage) -> EmailMessage:
    message = email.message_from_bytes(received.content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def header_lines(received: ReceivedMessage) -> list[bytes]:
    return received.content.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if getattr(record, "event", None) == name]


# --- sending and content ---------------------------------------------------


async def test_message_accepted_with_message_id(
    start_server: StartServer, make_provider: MakeProvider
) -> None:
    server = await start_server()
    provider = await make_provider(server)

    receipt = await provider.hand_off(outgoing())

    assert receipt.status is SUCCEEDED
    [received] = server.handler.messages
    assert receipt.provider_refs == (parse(received)["Message-ID"],)
    assert received.mail_from == "noreply@example.com"
    assert received.rcpt_tos == ["ola@example.com"]
    assert provider.reference_keys(receipt.provider_refs[0]) == receipt.provider_refs


@pytest.mark.parametrize(
    ("content_type", "mime_type"), [("Plain", "text/plain"), ("Html", "text/html")]
)
async def test_content_type_arrives(
    start_server: StartServer,
    make_provider: MakeProvider,
    content_type: Literal["Plain", "Html"],
    mime_type: str,
) -> None:
    server = await start_server()
    provider = await make_provider(server)

    await provider.hand_off(outgoing(body="<p>482913</p>", content_type=content_type))

    message = parse(server.handler.messages[0])
    assert message.get_content_type() == mime_type
    assert message.get_content_charset() == "utf-8"
    assert message.get_content() == "<p>482913</p>\r\n"


async def test_long_line_body_arrives_intact(
    start_server: StartServer, make_provider: MakeProvider
) -> None:
    server = await start_server()
    provider = await make_provider(server)

    await provider.hand_off(outgoing(body=LONG_LINK))

    [received] = server.handler.messages
    assert max(len(line) for line in received.content.split(b"\r\n")) <= 998
    assert parse(received).get_content() == LONG_LINK + "\r\n"


async def test_headers_ascii_with_rfc2047(
    start_server: StartServer, make_provider: MakeProvider
) -> None:
    server = await start_server(smtputf8=False)
    provider = await make_provider(server)

    await provider.hand_off(outgoing(subject="Kode for Bø"))

    [received] = server.handler.messages
    assert b"Subject: Kode for =?utf-8?q?B=C3=B8?=" in header_lines(received)
    assert all(line.isascii() for line in header_lines(received))


async def test_subject_injection_rejected(
    start_server: StartServer, make_provider: MakeProvider
) -> None:
    server = await start_server()
    provider = await make_provider(server)

    with pytest.raises(SmtpHandOffError) as caught:
        await provider.hand_off(outgoing(subject="Code\r\nBcc: x@example.com"))

    assert caught.value.failure_status is NotificationStatus.EMAIL_FAILED_INVALID_FORMAT
    assert caught.value.phase is SmtpPhase.PREPARE
    assert server.sessions == []
    assert server.handler.messages == []


async def test_invalid_recipient_rejected(
    start_server: StartServer, make_provider: MakeProvider
) -> None:
    server = await start_server()
    provider = await make_provider(server)

    with pytest.raises(SmtpHandOffError) as caught:
        await provider.hand_off(outgoing("invalid-email"))

    assert caught.value.failure_status is NotificationStatus.EMAIL_FAILED_INVALID_FORMAT
    assert "must have an @-sign" in caught.value.reason
    assert server.sessions == []


async def test_expired_message_not_sent(
    start_server: StartServer, make_provider: MakeProvider
) -> None:
    server = await start_server()
    provider = await make_provider(server)

    with pytest.raises(SmtpHandOffError) as caught:
        await provider.hand_off(outgoing(expires_in_s=-1))

    assert caught.value.failure_status is NotificationStatus.EMAIL_FAILED_TTL
    assert server.sessions == []


async def test_sms_rejected_as_bug(start_server: StartServer, make_provider: MakeProvider) -> None:
    provider = await make_provider(await start_server())
    sms = OutgoingSms(
        notification_id=uuid.uuid4(),
        recipient="+4799999999",
        sender="Kommune",
        body="482913",
        expires_at=datetime.now(UTC) + timedelta(minutes=5),
    )

    with pytest.raises(TypeError):
        await provider.hand_off(sms)


# --- reply codes -----------------------------------------------------------


async def test_421_to_mail_retried_until_accepted(
    start_server: StartServer, make_provider: MakeProvider
) -> None:
    server = await start_server()
    server.handler.mail_replies = ["421 4.7.0 Try again later"] * 2
    provider = await make_provider(server)
    message = outgoing()

    for _attempt in (1, 2):
        with pytest.raises(SmtpHandOffError) as caught:
            await provider.hand_off(message)
        assert caught.value.is_transient
        assert caught.value.code == 421
        assert caught.value.phase is SmtpPhase.MAIL
        assert not caught.value.outcome_unknown
    receipt = await provider.hand_off(message)

    assert receipt.status is SUCCEEDED
    assert server.handler.verbs().count("MAIL") == 3
    assert len(server.handler.messages) == 1
    assert provider.is_ready() == (True, "")


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        ("550 5.1.1 User unknown", NotificationStatus.EMAIL_FAILED_BOUNCED),
        ("551 5.1.6 User not local", NotificationStatus.EMAIL_FAILED_BOUNCED),
        ("553 5.1.3 Mailbox name not allowed", NotificationStatus.EMAIL_FAILED_BOUNCED),
        ("554 5.7.1 Relay access denied", NotificationStatus.EMAIL_FAILED),
        ("450 4.2.0 Mailbox busy", None),
    ],
)
async def test_rcpt_refusal_mapped(
    start_server: StartServer,
    make_provider: MakeProvider,
    reply: str,
    status: NotificationStatus | None,
) -> None:
    server = await start_server()
    server.handler.rcpt_reply = reply
    provider = await make_provider(server)

    with pytest.raises(SmtpHandOffError) as caught:
        await provider.hand_off(outgoing())

    assert caught.value.failure_status == status
    assert caught.value.code == int(reply[:3])
    assert caught.value.phase is SmtpPhase.RCPT
    assert caught.value.recipient == "ola@example.com"
    assert server.handler.verbs().count("RCPT") == 1
    assert "DATA" not in server.handler.verbs()


async def test_554_to_data_failed_and_connection_reused(
    start_server: StartServer, make_provider: MakeProvider
) -> None:
    server = await start_server()
    server.handler.data_reply = "554 5.6.0 Message rejected"
    provider = await make_provider(server)

    with pytest.raises(SmtpHandOffError) as caught:
        await provider.hand_off(outgoing())
    server.handler.data_reply = None
    await provider.hand_off(outgoing())

    assert caught.value.failure_status is NotificationStatus.EMAIL_FAILED
    assert caught.value.phase is SmtpPhase.DATA
    assert caught.value.code == 554
    assert "RSET" in server.handler.verbs()
    assert len(server.sessions) == 1
    assert len(server.handler.messages) == 1


async def test_reply_timeout_after_data_outcome_unknown(
    start_server: StartServer, make_provider: MakeProvider
) -> None:
    server = await start_server()
    server.handler.data_delay_s = 5
    provider = await make_provider(server, "tls=none&timeout_s=0.2")

    with pytest.raises(SmtpHandOffError) as caught:
        await provider.hand_off(outgoing())

    assert caught.value.is_transient
    assert caught.value.outcome_unknown
    assert caught.value.phase is SmtpPhase.DATA


async def test_server_down_transient(make_provider: MakeProvider) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    provider = SmtpProvider.from_url(f"smtp://127.0.0.1:{closed_port}?tls=none")
    assert provider.is_ready() == (True, "")

    with pytest.raises(SmtpHandOffError) as caught:
        await provider.hand_off(outgoing())

    assert caught.value.is_transient
    assert caught.value.code is None
    assert caught.value.phase is SmtpPhase.CONNECT
    ready, reason = provider.is_ready()
    assert not ready
    assert str(closed_port) in reason


# --- SMTPUTF8 and internationalised domains --------------------------------


async def test_non_ascii_local_part_without_smtputf8_fails(
    start_server: StartServer, make_provider: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="budstikke.channels.smtp")
    server = await start_server(smtputf8=False)
    provider = await make_provider(server)

    with pytest.raises(SmtpHandOffError) as caught:
        await provider.hand_off(outgoing("øyvind@example.com"))

    assert caught.value.failure_status is NotificationStatus.EMAIL_FAILED
    assert "SMTPUTF8 required" in caught.value.reason
    assert "MAIL" not in server.handler.verbs()
    [failure] = events(caplog, "hand_off_failed")
    assert failure.levelno == logging.ERROR
    assert "SMTPUTF8 required" in failure.getMessage()
    assert provider.is_ready() == (True, "")


async def test_non_ascii_local_part_with_smtputf8_sent(
    start_server: StartServer, make_provider: MakeProvider
) -> None:
    server = await start_server(smtputf8=True)
    provider = await make_provider(server)

    receipt = await provider.hand_off(outgoing("øyvind@example.com", subject="Kode for Bø"))

    assert receipt.status is SUCCEEDED
    [received] = server.handler.messages
    assert received.rcpt_tos == ["øyvind@example.com"]
    assert "SMTPUTF8" in received.mail_options
    assert "To: øyvind@example.com".encode() in header_lines(received)


async def test_idn_recipient_sent_as_punycode(
    start_server: StartServer, make_provider: MakeProvider
) -> None:
    server = await start_server(smtputf8=False)
    provider = await make_provider(server)

    receipt = await provider.hand_off(outgoing("ola@blåbær.example"))

    assert receipt.status is SUCCEEDED
    rcpt = [command for command in server.handler.commands if command.verb == "RCPT"]
    assert [command.argument for command in rcpt] == ["TO:<ola@xn--blbr-roah.example>"]
    assert server.handler.messages[0].rcpt_tos == ["ola@xn--blbr-roah.example"]


# --- TLS and authentication ------------------------------------------------


async def test_starttls_once_then_auth_over_tls(
    start_server: StartServer, make_provider: MakeProvider
) -> None:
    server = await start_server(starttls=True)
    provider = await make_provider(server, "tls=starttls", userinfo=f"app:{PASSWORD}@")

    receipt = await provider.hand_off(outgoing())

    assert receipt.status is SUCCEEDED
    steps = [(command.verb, command.over_tls) for command in server.handler.commands]
    assert steps[:5] == [
        ("EHLO", False),
        ("STARTTLS", False),
        ("EHLO", True),
        ("AUTH", True),
        ("MAIL", True),
    ]
    assert server.handler.verbs().count("STARTTLS") == 1
    assert server.handler.logins == [(b"app", PASSWORD.encode(), True)]
    assert len(server.handler.messages) == 1


async def test_starttls_missing_sends_no_credentials(
    start_server: StartServer, make_provider: MakeProvider
) -> None:
    # The server offers AUTH in plain text, which the provider must not use.
    server = await start_server(starttls=False, auth_require_tls=False)
    provider = await make_provider(server, "tls=starttls", userinfo=f"app:{PASSWORD}@")

    with pytest.raises(SmtpHandOffError) as caught:
        await provider.hand_off(outgoing())
    await asyncio.sleep(0.01)

    assert caught.value.is_transient
    assert caught.value.phase is SmtpPhase.TLS
    assert "does not advertise STARTTLS" in caught.value.reason
    assert server.handler.verbs() == ["EHLO"]
    assert server.handler.logins == []
    assert server.sessions[0].transport is None
    ready, reason = provider.is_ready()
    assert not ready
    assert "STARTTLS" in reason


async def test_implicit_tls_from_first_byte(
    start_server: StartServer, make_provider: MakeProvider
) -> None:
    # aiosmtpd does not detect implicit TLS, so it offers AUTH here only with
    # auth_require_tls off.
    server = await start_server(implicit_tls=True, auth_require_tls=False)
    provider = await make_provider(server, "tls=implicit", userinfo=f"app:{PASSWORD}@")

    receipt = await provider.hand_off(outgoing())

    assert receipt.status is SUCCEEDED
    assert all(command.over_tls for command in server.handler.commands)
    assert "STARTTLS" not in server.handler.verbs()
    assert server.handler.logins == [(b"app", PASSWORD.encode(), True)]


async def test_plain_text_credentials_warned_once(
    start_server: StartServer, make_provider: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="budstikke.channels.smtp")
    server = await start_server(auth_require_tls=False)
    provider = await make_provider(server, "tls=none", userinfo=f"app:{PASSWORD}@")

    await provider.hand_off(outgoing())
    server.close_client_connections()
    await asyncio.sleep(0.01)
    await provider.hand_off(outgoing())

    assert len(events(caplog, "smtp_plain_text_credentials")) == 1
    assert server.handler.logins == [(b"app", PASSWORD.encode(), False)] * 2


# --- the connection pool ---------------------------------------------------


async def test_connection_reused(start_server: StartServer, make_provider: MakeProvider) -> None:
    server = await start_server()
    provider = await make_provider(server)

    await provider.hand_off(outgoing())
    await provider.hand_off(outgoing())

    assert len(server.sessions) == 1
    assert server.handler.verbs().count("EHLO") == 1
    assert len(server.handler.messages) == 2


async def test_tcp_nodelay_set(start_server: StartServer, make_provider: MakeProvider) -> None:
    server = await start_server()
    provider = await make_provider(server)

    await provider.hand_off(outgoing())

    [client] = provider._idle
    sock = client.get_transport_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_pool_bounds_connections(
    start_server: StartServer, make_provider: MakeProvider
) -> None:
    server = await start_server()
    server.handler.data_delay_s = 0.05
    provider = await make_provider(server, "tls=none&connections=2")

    receipts = await asyncio.gather(*(provider.hand_off(outgoing()) for _ in range(6)))

    assert all(receipt.status is SUCCEEDED for receipt in receipts)
    assert len(server.sessions) == 2
    assert len(server.handler.messages) == 6


async def test_idle_connection_closed_by_server_recovered(
    start_server: StartServer, make_provider: MakeProvider
) -> None:
    server = await start_server()
    provider = await make_provider(server)
    await provider.hand_off(outgoing())

    server.close_client_connections()
    await asyncio.sleep(0.01)
    receipt = await provider.hand_off(outgoing())

    assert receipt.status is SUCCEEDED
    assert len(server.sessions) == 2
    assert len(server.handler.messages) == 2


async def test_pooled_connection_dropped_at_mail_reconnects(
    start_server: StartServer, make_provider: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="budstikke.channels.smtp")
    server = await start_server()
    provider = await make_provider(server)
    await provider.hand_off(outgoing())

    server.handler.drops_at_mail = 1
    receipt = await provider.hand_off(outgoing())

    assert receipt.status is SUCCEEDED
    assert len(server.sessions) == 2
    assert len(server.handler.messages) == 2
    assert len(events(caplog, "smtp_connection_stale")) == 1


async def test_new_connection_dropped_at_mail_transient(
    start_server: StartServer, make_provider: MakeProvider
) -> None:
    server = await start_server()
    server.handler.drops_at_mail = 1
    provider = await make_provider(server)

    with pytest.raises(SmtpHandOffError) as caught:
        await provider.hand_off(outgoing())

    assert caught.value.is_transient
    assert caught.value.phase is SmtpPhase.MAIL
    assert not caught.value.outcome_unknown
    assert len(server.sessions) == 1


# --- logging ---------------------------------------------------------------


async def test_logs_hide_secrets_and_content(
    start_server: StartServer, make_provider: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="budstikke.channels.smtp")
    server = await start_server(starttls=True)
    provider = await make_provider(server, "tls=starttls", userinfo=f"app:{PASSWORD}@")
    server.handler.rcpt_reply = "550 5.1.1 <ola.nordmann@example.com>: User unknown"
    message = outgoing("ola.nordmann@example.com", subject="Kode 482913", body="Koden er 482913")

    with pytest.raises(SmtpHandOffError):
        await provider.hand_off(message)
    server.handler.rcpt_reply = None
    await provider.hand_off(message)

    assert {"hand_off_failed", "hand_off_accepted", "smtp_connected"} <= {
        getattr(record, "event", None) for record in caplog.records
    }
    for record in caplog.records:
        text = record.getMessage() + " " + " ".join(map(str, vars(record).values()))
        assert PASSWORD not in text
        assert "482913" not in text
        assert "ola.nordmann@example.com" not in text
