"""The SMTP provider: hands emails to an SMTP server over a small pool of connections.

Configured by `BUDSTIKKE_EMAIL_URL`, for example
`smtp://user:pass@mail.example.com:587?tls=starttls&timeout_s=10&connections=4`.
Every aiosmtplib and socket error is translated into SmtpHandOffError in one
place, `translate_smtp_error`, where the SMTP reply code decides between a
transient failure (retried while the TTL lasts) and a final status.
"""

from __future__ import annotations

import logging
import math
import socket
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Final, NoReturn, Self
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlsplit

import aiosmtplib

from budstikke.channels.base import HandOffReceipt, OutgoingEmail, OutgoingMessage, ReportSink
from budstikke.channels.priority_slots import PrioritySlots, reserved_slots
from budstikke.channels.smtp_message import build_message, serialize_message
from budstikke.domain.email_address import (
    EmailAddress,
    InvalidEmailAddressError,
    parse_email_address,
)
from budstikke.domain.masking import mask_email
from budstikke.domain.statuses import Channel, NotificationStatus
from budstikke.errors import ConfigurationError, HandOffError

logger = logging.getLogger(__name__)

EMAIL_URL_SETTING: Final = "BUDSTIKKE_EMAIL_URL"

# Reply codes to RCPT TO for a mailbox that does not exist or never accepts
# mail (RFC 5321 section 4.2.3): 550 mailbox unavailable, 551 user not local,
# 553 mailbox name not allowed.
BOUNCE_REPLY_CODES: Final = frozenset({550, 551, 553})

# RFC 5321 section 4.2.3: 421 means the server is closing the connection.
_SERVICE_CLOSING: Final = 421


class TlsMode(StrEnum):
    # Connect in plain text, then upgrade with STARTTLS (RFC 3207) before anything else.
    STARTTLS = "starttls"
    # TLS from the first byte (RFC 8314), usually port 465.
    IMPLICIT = "implicit"
    # No TLS at all, only for a relay on a trusted network.
    NONE = "none"


_DEFAULT_PORTS: Final = {TlsMode.STARTTLS: 587, TlsMode.IMPLICIT: 465, TlsMode.NONE: 25}
_QUERY_PARAMETERS: Final = ("tls", "timeout_s", "connections", "local_hostname", "instant_share")
# With the default 4 connections this keeps one for instant messages.
DEFAULT_INSTANT_SHARE: Final = 0.05
MAX_INSTANT_SHARE: Final = 0.9


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Connection settings for one SMTP server. The repr leaves out the password."""

    host: str
    port: int
    tls: TlsMode = TlsMode.STARTTLS
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0
    connections: int = 4
    # The name sent in EHLO. None means socket.gethostname().
    local_hostname: str | None = None
    # Share of the connections (rounded up, but never all) kept for instant messages.
    instant_share: float = DEFAULT_INSTANT_SHARE

    @classmethod
    def from_url(cls, url: str) -> Self:
        """Parse `smtp://[user[:password]@]host[:port][?tls=...&timeout_s=...&connections=...]`.

        The user name and password are percent-decoded. Raises ConfigurationError
        naming the invalid part, and never with the password in the message.
        """
        if any(not character.isprintable() or character.isspace() for character in url):
            _invalid_url("it contains spaces or control characters; remove them")
        parts = urlsplit(url)
        if parts.scheme.lower() != "smtp":
            _invalid_url(
                "the scheme must be smtp:// (choose the TLS mode with "
                "?tls=starttls, ?tls=implicit or ?tls=none)"
            )
        # A '/', '?' or '#' left unencoded in the user name or password ends
        # the host part early, and the rest, with its '@', lands in the path,
        # query or fragment. Say so without echoing it, because it contains the password.
        if "@" in parts.path + parts.query + parts.fragment:
            _invalid_url(
                "the part after the host contains '@'; percent-encode '/', '?', '#' "
                "and '@' in the user name and password (for example '/' as %2F)"
            )
        if parts.path not in ("", "/") or parts.fragment:
            _invalid_url("a path or #fragment is not allowed after the host and port")

        options = _parse_query(parts.query)
        tls = _parse_tls(options.get("tls", TlsMode.STARTTLS.value))
        username = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        if password is not None and not username:
            _invalid_url("a password is given without a user name; write smtp://user:password@host")

        return cls(
            host=_parse_host(parts.hostname),
            port=_parse_port(parts, tls),
            tls=tls,
            username=username or None,
            password=password,
            timeout_s=_parse_timeout(options.get("timeout_s", "10")),
            connections=_parse_connections(options.get("connections", "4")),
            local_hostname=_parse_local_hostname(options.get("local_hostname")),
            instant_share=_parse_instant_share(options.get("instant_share")),
        )

    @property
    def redacted_url(self) -> str:
        """The settings as a URL without the password, for logs and messages."""
        user = f"{quote(self.username, safe='')}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (
            f"smtp://{user}{host}:{self.port}?tls={self.tls.value}"
            f"&timeout_s={self.timeout_s:g}&connections={self.connections}"
        )


def _invalid_url(problem: str) -> NoReturn:
    raise ConfigurationError(EMAIL_URL_SETTING, f"invalid SMTP URL: {problem}")


def _parse_query(query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        _invalid_url("the query string is malformed; write ?name=value&name=value")
    options: dict[str, str] = {}
    for name, value in pairs:
        if name not in _QUERY_PARAMETERS:
            known = ", ".join(_QUERY_PARAMETERS)
            _invalid_url(f"unknown query parameter {name!r}; the known ones are {known}")
        if name in options:
            _invalid_url(f"query parameter {name!r} is given more than once")
        options[name] = value
    return options


def _parse_tls(value: str) -> TlsMode:
    try:
        return TlsMode(value.lower())
    except ValueError:
        _invalid_url(f"tls={value!r} is not one of starttls, implicit or none")


def _parse_host(host: str | None) -> str:
    if not host:
        _invalid_url("the host is missing; write smtp://host:port")
    return host


def _parse_port(parts: SplitResult, tls: TlsMode) -> int:
    # The port is not echoed: in "smtp://user:secret" the password parses as a port.
    try:
        port = parts.port
    except ValueError:
        _invalid_url("the port must be a number from 1 to 65535")
    if port is None:
        return _DEFAULT_PORTS[tls]
    if port == 0:
        _invalid_url("the port must be a number from 1 to 65535")
    return port


def _parse_timeout(value: str) -> float:
    try:
        timeout_s = float(value)
    except ValueError:
        timeout_s = math.nan
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        _invalid_url(f"timeout_s={value!r} must be a positive number of seconds")
    return timeout_s


def _parse_connections(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        _invalid_url(f"connections={value!r} must be a whole number of at least 1")
    return int(value)


def _parse_instant_share(value: str | None) -> float:
    if value is None:
        return DEFAULT_INSTANT_SHARE
    try:
        share = float(value)
    except ValueError:
        share = math.nan
    if not 0 <= share <= MAX_INSTANT_SHARE:
        _invalid_url(f"instant_share={value!r} must be a number from 0 to {MAX_INSTANT_SHARE}")
    return share


def _parse_local_hostname(value: str | None) -> str | None:
    if value is not None and not (value.isascii() and value.isprintable() and value.strip()):
        _invalid_url(f"local_hostname={value!r} must be a non-empty ASCII host name")
    return value


class SmtpPhase(StrEnum):
    """The step of an SMTP session in which a hand-off failed."""

    PREPARE = "prepare"  # local checks before any network I/O
    CONNECT = "connect"  # TCP connect, greeting and the first EHLO
    TLS = "tls"  # STARTTLS and the EHLO after it
    AUTH = "auth"
    MAIL = "mail"  # MAIL FROM, and the SMTPUTF8 check before it
    RCPT = "rcpt"
    DATA = "data"


_PHASE_COMMANDS: Final = {
    SmtpPhase.PREPARE: "preparing the message",
    SmtpPhase.CONNECT: "the connection greeting or EHLO",
    SmtpPhase.TLS: "STARTTLS",
    SmtpPhase.AUTH: "AUTH",
    SmtpPhase.MAIL: "MAIL FROM",
    SmtpPhase.RCPT: "RCPT TO",
    SmtpPhase.DATA: "DATA",
}


class SmtpHandOffError(HandOffError):
    """A hand-off to an SMTP server that failed.

    `code` is the server's reply code, or None when there was no reply (a
    refused connection, a timeout, a missing extension). `recipient` is the
    address as given, and `reason` shows it masked.
    """

    def __init__(
        self,
        reason: str,
        *,
        phase: SmtpPhase,
        recipient: str,
        code: int | None = None,
        failure_status: NotificationStatus | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(reason, failure_status=failure_status, outcome_unknown=outcome_unknown)
        self.phase = phase
        self.recipient = recipient
        self.code = code


class _ErrorKind(Enum):
    REPLY = "reply"  # the server sent a reply code
    DISCONNECTED = "disconnected"  # the connection failed, was refused or dropped
    TIMEOUT = "timeout"
    UNSUPPORTED = "unsupported"  # the server lacks an extension the message needs
    PROTOCOL = "protocol"  # any other client-side SMTP error


# Every exception class of aiosmtplib 5.1, with how a hand-off treats it. A
# test fails when aiosmtplib gains a class that is missing here.
_ERROR_KINDS: Final[dict[type[Exception], _ErrorKind]] = {
    aiosmtplib.SMTPException: _ErrorKind.PROTOCOL,
    aiosmtplib.SMTPServerDisconnected: _ErrorKind.DISCONNECTED,
    aiosmtplib.SMTPConnectError: _ErrorKind.DISCONNECTED,
    aiosmtplib.SMTPTimeoutError: _ErrorKind.TIMEOUT,
    aiosmtplib.SMTPConnectTimeoutError: _ErrorKind.TIMEOUT,
    aiosmtplib.SMTPReadTimeoutError: _ErrorKind.TIMEOUT,
    aiosmtplib.SMTPNotSupported: _ErrorKind.UNSUPPORTED,
    aiosmtplib.SMTPResponseException: _ErrorKind.REPLY,
    aiosmtplib.SMTPConnectResponseError: _ErrorKind.REPLY,
    aiosmtplib.SMTPHeloError: _ErrorKind.REPLY,
    aiosmtplib.SMTPAuthenticationError: _ErrorKind.REPLY,
    aiosmtplib.SMTPSenderRefused: _ErrorKind.REPLY,
    aiosmtplib.SMTPRecipientRefused: _ErrorKind.REPLY,
    aiosmtplib.SMTPRecipientsRefused: _ErrorKind.REPLY,
    aiosmtplib.SMTPDataError: _ErrorKind.REPLY,
    # Socket and TLS errors that reach us without an aiosmtplib wrapper.
    TimeoutError: _ErrorKind.TIMEOUT,
    OSError: _ErrorKind.DISCONNECTED,
}

# The exceptions translate_smtp_error accepts. Any other exception is a bug.
TRANSLATED_ERRORS: Final = (aiosmtplib.SMTPException, OSError)


def translate_smtp_error(
    error: aiosmtplib.SMTPException | OSError, *, phase: SmtpPhase, recipient: str
) -> SmtpHandOffError:
    """Translate an aiosmtplib or socket error into the hand-off error it means.

    A 4xx reply, a dropped or refused connection and a timeout are transient.
    A 550, 551 or 553 reply to RCPT TO is Email_Failed_Bounced, and any other
    5xx reply or SMTPNotSupported is Email_Failed. A timeout or a
    dropped connection during DATA sets outcome_unknown, because the server
    may have taken the message before its reply was lost.
    """
    kind = next(_ERROR_KINDS[cls] for cls in type(error).__mro__ if cls in _ERROR_KINDS)
    masked = mask_email(recipient)
    if kind is _ErrorKind.REPLY:
        code, text = _reply_of(error)
        return _translate_reply(code, text.replace(recipient, masked), phase, recipient)

    detail = str(error).replace(recipient, masked) or type(error).__name__
    reason = f"SMTP {_PHASE_COMMANDS[phase]} failed for {masked}: {detail}"
    if kind is _ErrorKind.UNSUPPORTED:
        return SmtpHandOffError(
            reason,
            phase=phase,
            recipient=recipient,
            failure_status=NotificationStatus.EMAIL_FAILED,
        )
    lost_in_data = phase is SmtpPhase.DATA and kind in (_ErrorKind.DISCONNECTED, _ErrorKind.TIMEOUT)
    return SmtpHandOffError(reason, phase=phase, recipient=recipient, outcome_unknown=lost_in_data)


def _reply_of(error: BaseException) -> tuple[int, str]:
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        first = error.recipients[0]
        return first.code, first.message
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return error.code, error.message
    return -1, str(error)


def _translate_reply(code: int, text: str, phase: SmtpPhase, recipient: str) -> SmtpHandOffError:
    reason = (
        f"SMTP server replied {code} {text!r} to {_PHASE_COMMANDS[phase]} "
        f"for {mask_email(recipient)}"
    )
    status: NotificationStatus | None
    if 500 <= code < 600:
        bounced = phase is SmtpPhase.RCPT and code in BOUNCE_REPLY_CODES
        status = (
            NotificationStatus.EMAIL_FAILED_BOUNCED if bounced else NotificationStatus.EMAIL_FAILED
        )
    else:
        # 4xx is transient by definition. Any other code means the session is
        # out of step with the server, which a new connection may fix.
        status = None
    return SmtpHandOffError(
        reason, phase=phase, recipient=recipient, code=code, failure_status=status
    )


@dataclass(frozen=True, slots=True)
class _PreparedEmail:
    sender: EmailAddress
    recipient: EmailAddress
    data: bytes
    message_id: str

    @property
    def needs_smtputf8(self) -> bool:
        return self.sender.needs_smtputf8 or self.recipient.needs_smtputf8


class _StaleConnectionError(Exception):
    """A pooled connection turned out to be closed by the server before MAIL FROM."""


class SmtpProvider:
    """Hands emails to one SMTP server over a pool of reused connections.

    Each connection carries one transaction at a time. A pooled connection
    that the server closed while idle is replaced once, transparently, when
    MAIL FROM finds it closed.
    """

    channel: Channel = Channel.EMAIL

    def __init__(
        self, settings: SmtpSettings, *, tls_context: ssl.SSLContext | None = None
    ) -> None:
        """`tls_context` verifies the server certificate. None means the system's trusted CAs."""
        self._settings = settings
        self._tls_context = tls_context
        self._slots = PrioritySlots(
            settings.connections, reserved_slots(settings.connections, settings.instant_share)
        )
        self._idle: list[aiosmtplib.SMTP] = []
        self._not_ready_reason = ""
        self._warned_plain_credentials = False
        self._stopped = False

    @classmethod
    def from_url(cls, url: str, *, tls_context: ssl.SSLContext | None = None) -> Self:
        return cls(SmtpSettings.from_url(url), tls_context=tls_context)

    def __repr__(self) -> str:
        return f"SmtpProvider({self._settings.redacted_url!r})"

    async def start(self, report_sink: ReportSink) -> None:
        # SMTP has no delivery reports within the session, because bounces arrive later as mail.
        del report_sink
        self._stopped = False
        self._warn_plain_credentials_once()

    async def stop(self) -> None:
        self._stopped = True
        idle, self._idle = self._idle, []
        for client in idle:
            await _quit(client)

    def is_ready(self) -> tuple[bool, str]:
        return (not self._not_ready_reason, self._not_ready_reason)

    def reference_keys(self, provider_ref: str) -> tuple[str, ...]:
        return (provider_ref,)

    async def hand_off(self, message: OutgoingMessage) -> HandOffReceipt:
        if not isinstance(message, OutgoingEmail):
            raise TypeError(f"SmtpProvider takes email, not {message.channel.value}")
        log_context: dict[str, object] = {
            "notification_id": str(message.notification_id),
            "channel": Channel.EMAIL.value,
            "recipient": mask_email(message.recipient),
        }
        try:
            prepared = _prepare(message)
            async with self._slots.hold(message.priority):
                receipt = await self._send(prepared)
        except SmtpHandOffError as error:
            _log_failure(error, log_context)
            raise
        # The dispatcher logs the accepted hand-off at INFO with this id.
        extra = {"event": "hand_off_accepted", "provider_ref": receipt.provider_refs[0]}
        logger.debug("hand-off accepted", extra=extra | log_context)
        return receipt

    async def _send(self, prepared: _PreparedEmail) -> HandOffReceipt:
        client = self._take_idle()
        if client is not None:
            try:
                return await self._transact(client, prepared, reused=True)
            except _StaleConnectionError:
                logger.info(
                    "pooled SMTP connection was closed by the server; reconnecting",
                    extra={"event": "smtp_connection_stale"},
                )
        client = await self._connect(prepared.recipient.original)
        return await self._transact(client, prepared, reused=False)

    async def _transact(
        self, client: aiosmtplib.SMTP, prepared: _PreparedEmail, *, reused: bool
    ) -> HandOffReceipt:
        recipient = prepared.recipient.original
        if prepared.needs_smtputf8 and not client.supports_extension("smtputf8"):
            self._release(client)
            raise SmtpHandOffError(
                f"SMTPUTF8 required: the address {mask_email(recipient)} or the sender has a "
                "non-ASCII local part, and the SMTP server does not advertise SMTPUTF8",
                phase=SmtpPhase.MAIL,
                recipient=recipient,
                failure_status=NotificationStatus.EMAIL_FAILED,
            )

        encoding = "utf-8" if prepared.needs_smtputf8 else "ascii"
        phase = SmtpPhase.MAIL
        try:
            await client.mail(
                prepared.sender.envelope,
                options=_mail_options(client, prepared),
                encoding=encoding,
            )
            phase = SmtpPhase.RCPT
            await client.rcpt(prepared.recipient.envelope, encoding=encoding)
            phase = SmtpPhase.DATA
            await client.data(prepared.data)
        except aiosmtplib.SMTPServerDisconnected as error:
            client.close()
            # Nothing of this message reached the server before DATA, so a
            # pooled connection that died while idle can be replaced safely.
            if reused and phase is SmtpPhase.MAIL:
                raise _StaleConnectionError from error
            raise self._translate(error, phase, recipient) from error
        except TRANSLATED_ERRORS as error:
            await self._reset_or_close(client)
            raise self._translate(error, phase, recipient) from error
        except BaseException:
            # Cancelled mid-command: the reply may still arrive, so the
            # session is out of step and the connection cannot be reused.
            client.close()
            raise

        self._release(client)
        self._not_ready_reason = ""
        return HandOffReceipt(NotificationStatus.EMAIL_SUCCEEDED, (prepared.message_id,))

    async def _connect(self, recipient: str) -> aiosmtplib.SMTP:
        settings = self._settings
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            timeout=settings.timeout_s,
            use_tls=settings.tls is TlsMode.IMPLICIT,
            # False, so that aiosmtplib does not upgrade on its own and
            # _open_session sends exactly one STARTTLS.
            start_tls=False,
            tls_context=self._tls_context if settings.tls is not TlsMode.NONE else None,
            local_hostname=settings.local_hostname or _default_local_hostname(),
        )
        try:
            await self._open_session(client, recipient)
        except SmtpHandOffError as error:
            logger.warning(
                "SMTP connection failed",
                extra={
                    "event": "smtp_connect_failed",
                    "server": settings.redacted_url,
                    "phase": error.phase.value,
                    "code": error.code,
                    "reason": error.reason,
                },
            )
            raise
        except BaseException:
            client.close()
            raise

        self._not_ready_reason = ""
        logger.info(
            "SMTP connection opened",
            extra={"event": "smtp_connected", "server": settings.redacted_url},
        )
        return client

    async def _open_session(self, client: aiosmtplib.SMTP, recipient: str) -> None:
        settings = self._settings
        phase = SmtpPhase.CONNECT
        try:
            await client.connect()
            _set_tcp_nodelay(client)
            await client.ehlo()
            if settings.tls is TlsMode.STARTTLS:
                phase = SmtpPhase.TLS
                await _start_tls(client)
            if settings.username is not None:
                phase = SmtpPhase.AUTH
                self._warn_plain_credentials_once()
                await client.login(settings.username, settings.password or "")
        except TRANSLATED_ERRORS as error:
            client.close()
            raise self._translate(error, phase, recipient) from error

    def _translate(
        self, error: aiosmtplib.SMTPException | OSError, phase: SmtpPhase, recipient: str
    ) -> SmtpHandOffError:
        translated = translate_smtp_error(error, phase=phase, recipient=recipient)
        session_failed = phase in (SmtpPhase.CONNECT, SmtpPhase.TLS, SmtpPhase.AUTH)
        connection_lost = translated.is_transient and translated.code in (None, _SERVICE_CLOSING)
        if session_failed or connection_lost:
            self._not_ready_reason = translated.reason
        return translated

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client
            client.close()
        return None

    def _release(self, client: aiosmtplib.SMTP) -> None:
        if self._stopped or not client.is_connected:
            client.close()
        else:
            self._idle.append(client)

    async def _reset_or_close(self, client: aiosmtplib.SMTP) -> None:
        # After a refused command the envelope must be cleared with RSET before
        # the connection can carry another message (RFC 5321 section 4.1.1.5).
        if not client.is_connected:
            return
        try:
            await client.rset()
        except TRANSLATED_ERRORS:
            client.close()
        except BaseException:
            # Cancelled during RSET: the session is out of step, so the connection goes too.
            client.close()
            raise
        else:
            self._release(client)

    def _warn_plain_credentials_once(self) -> None:
        settings = self._settings
        if (
            settings.tls is TlsMode.NONE
            and settings.username is not None
            and not self._warned_plain_credentials
        ):
            self._warned_plain_credentials = True
            logger.warning(
                "SMTP credentials are configured with tls=none, so they cross the "
                "network in plain text; use tls=starttls or tls=implicit",
                extra={"event": "smtp_plain_text_credentials", "server": settings.redacted_url},
            )


def _prepare(message: OutgoingEmail) -> _PreparedEmail:
    recipient = message.recipient
    if datetime.now(UTC) >= message.expires_at:
        raise SmtpHandOffError(
            f"the message to {mask_email(recipient)} expired at "
            f"{message.expires_at.isoformat()} before it was handed off",
            phase=SmtpPhase.PREPARE,
            recipient=recipient,
            failure_status=NotificationStatus.EMAIL_FAILED_TTL,
        )
    try:
        sender_address = parse_email_address(message.sender)
        recipient_address = parse_email_address(recipient)
        built = build_message(
            sender=sender_address,
            recipient=recipient_address,
            subject=message.subject,
            body=message.body,
            content_type=message.content_type,
        )
        data = serialize_message(built)
    except ValueError as error:
        # InvalidEmailAddressError names the address, so only its rule is kept.
        detail = error.rule if isinstance(error, InvalidEmailAddressError) else str(error)
        raise SmtpHandOffError(
            f"the email to {mask_email(recipient)} cannot be sent: {detail}",
            phase=SmtpPhase.PREPARE,
            recipient=recipient,
            failure_status=NotificationStatus.EMAIL_FAILED_INVALID_FORMAT,
        ) from error
    return _PreparedEmail(
        sender=sender_address,
        recipient=recipient_address,
        data=data,
        message_id=str(built["Message-ID"]),
    )


async def _start_tls(client: aiosmtplib.SMTP) -> None:
    if not client.supports_extension("starttls"):
        raise aiosmtplib.SMTPException(
            "the server does not advertise STARTTLS, which tls=starttls requires; the "
            "connection was closed before AUTH and MAIL FROM, so no credentials were sent. "
            "Enable STARTTLS on the server or set tls=implicit"
        )
    await client.starttls()
    # RFC 3207 section 4.2: the client discards what it learned before TLS, so
    # the extensions (AUTH, SMTPUTF8, SIZE) are read again over TLS.
    await client.ehlo()


def _mail_options(client: aiosmtplib.SMTP, prepared: _PreparedEmail) -> list[str]:
    options = []
    if client.supports_extension("size"):
        # RFC 1870: the size lets the server refuse an oversized message up front.
        options.append(f"SIZE={len(prepared.data)}")
    if prepared.needs_smtputf8:
        options.append("SMTPUTF8")
        if client.supports_extension("8bitmime"):
            # RFC 6531 section 3.4: UTF-8 headers are 8-bit content.
            options.append("BODY=8BITMIME")
    return options


async def _quit(client: aiosmtplib.SMTP) -> None:
    if not client.is_connected:
        return
    try:
        await client.quit()
    except TRANSLATED_ERRORS:
        client.close()


def _default_local_hostname() -> str:
    # socket.gethostname() reads the local name without a DNS look-up, unlike
    # aiosmtplib's default socket.getfqdn().
    hostname = socket.gethostname()
    if hostname and hostname.isascii() and hostname.isprintable() and " " not in hostname:
        return hostname
    return "localhost"


def _set_tcp_nodelay(client: aiosmtplib.SMTP) -> None:
    # SMTP commands are small and each waits for a reply, so Nagle's
    # algorithm would add a delay to every round trip.
    sock = client.get_transport_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _log_failure(error: SmtpHandOffError, log_context: dict[str, object]) -> None:
    level = logging.WARNING if error.is_transient else logging.ERROR
    failure_status = error.failure_status.value if error.failure_status else None
    extra = {
        "event": "hand_off_failed",
        "phase": error.phase.value,
        "code": error.code,
        "failure_status": failure_status,
        "outcome_unknown": error.outcome_unknown,
        **log_context,
    }
    logger.log(level, "hand-off failed: %s", error.reason, extra=extra)
