"""A real aiosmtpd SMTP server on 127.0.0.1 with injected faults, as pytest fixtures."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class Command:
    verb: str
    argument: str | None
    over_tls: bool


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    content: bytes


@dataclass
class FaultyHandler:
    """aiosmtpd handler that records the session and replies with injected faults."""

    commands: list[Command] = field(default_factory=list)
    messages: list[ReceivedMessage] = field(default_factory=list)
    logins: list[tuple[bytes, bytes, bool]] = field(default_factory=list)
    # Replies to the next MAIL FROM commands, used in order. After them: 250.
    mail_replies: list[str] = field(default_factory=list)
    rcpt_reply: str | None = None
    data_reply: str | None = None
    data_delay_s: float = 0.0
    # How many upcoming MAIL FROM commands make the server close the
    # connection without a reply.
    drops_at_mail: int = 0

    def verbs(self) -> list[str]:
        return [command.verb for command in self.commands]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.data_delay_s)
        if self.data_reply is not None:
            return self.data_reply
        assert envelope.mail_from is not None
        assert envelope.original_content is not None
        self.messages.append(
            ReceivedMessage(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                mail_options=list(envelope.mail_options),
                content=envelope.original_content,
            )
        )
        return "250 2.0.0 Ok: queued as 4F2A1C"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password, _over_tls(server)))
        return AuthResult(success=True)


def _over_tls(server: SMTP) -> bool:
    return (
        server.transport is not None and server.transport.get_extra_info("sslcontext") is not None
    )


class RecordingSMTP(SMTP):
    """aiosmtpd's SMTP session with every command recorded in the handler."""

    event_handler: FaultyHandler

    def _record(self, verb: str, argument: str | None) -> None:
        self.event_handler.commands.append(Command(verb, argument, _over_tls(self)))

    async def smtp_EHLO(self, hostname: str) -> None:
        self._record("EHLO", hostname)
        await super().smtp_EHLO(hostname)

    async def smtp_STARTTLS(self, arg: str) -> None:
        self._record("STARTTLS", arg)
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        self._record("AUTH", arg.split(maxsplit=1)[0] if arg else arg)
        await super().smtp_AUTH(arg)

    async def smtp_MAIL(self, arg: str | None) -> None:
        self._record("MAIL", arg)
        if self.event_handler.drops_at_mail > 0 and self.transport is not None:
            self.event_handler.drops_at_mail -= 1
            self.transport.close()
            return
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        self._record("RCPT", arg)
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        self._record("DATA", arg)
        await super().smtp_DATA(arg)

    async def smtp_RSET(self, arg: str) -> None:
        self._record("RSET", arg)
        await super().smtp_RSET(arg)

    async def smtp_QUIT(self, arg: str) -> None:
        self._record("QUIT", arg)
        await super().smtp_QUIT(arg)


@dataclass
class SmtpTestServer:
    server: asyncio.Server
    port: int
    handler: FaultyHandler
    sessions: list[RecordingSMTP]

    def close_client_connections(self) -> None:
        for session in self.sessions:
            if session.transport is not None:
                session.transport.close()


StartServer = Callable[..., Awaitable[SmtpTestServer]]


@dataclass(frozen=True)
class TlsFiles:
    certificate: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certificate))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    files = TlsFiles(certificate=directory / "cert.pem", key=directory / "key.pem")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(files.key),
            "-out",
            str(files.certificate),
        ],
        check=True,
        capture_output=True,
    )
    return files


@pytest.fixture
async def start_server(tls_files: TlsFiles) -> AsyncIterator[StartServer]:
    servers: list[SmtpTestServer] = []

    async def start(
        *,
        smtputf8: bool = True,
        starttls: bool = False,
        implicit_tls: bool = False,
        auth_require_tls: bool = True,
        port: int = 0,
    ) -> SmtpTestServer:
        loop = asyncio.get_running_loop()
        handler = FaultyHandler()
        sessions: list[RecordingSMTP] = []
        tls_context = tls_files.server_context() if starttls or implicit_tls else None

        def new_session() -> RecordingSMTP:
            session = RecordingSMTP(
                handler,
                hostname="smtp.test",
                enable_SMTPUTF8=smtputf8,
                tls_context=tls_context if starttls else None,
                authenticator=handler.authenticate,
                auth_require_tls=auth_require_tls,
                loop=loop,
            )
            sessions.append(session)
            return session

        server = await loop.create_server(
            new_session, "127.0.0.1", port, ssl=tls_context if implicit_tls else None
        )
        port = server.sockets[0].getsockname()[1]
        test_server = SmtpTestServer(server, port, handler, sessions)
        servers.append(test_server)
        return test_server

    yield start

    for test_server in servers:
        test_server.server.close()
        test_server.close_client_connections()
        await test_server.server.wait_closed()
    # Let connection_lost callbacks and the cancelled session tasks finish.
    for _ in range(5):
        await asyncio.sleep(0.01)
