"""Translation of aiosmtplib and socket errors into hand-off outcomes."""

from __future__ import annotations

import inspect
import ssl

import aiosmtplib
import aiosmtplib.errors
import pytest

from budstikke.channels.smtp import (
    _ERROR_KINDS,
    SmtpHandOffError,
    SmtpPhase,
    translate_smtp_error,
)
from budstikke.domain.statuses import NotificationStatus

RECIPIENT = "ola@example.com"
BOUNCED = NotificationStatus.EMAIL_FAILED_BOUNCED
FAILED = NotificationStatus.EMAIL_FAILED


def _aiosmtplib_error_classes() -> list[type[aiosmtplib.SMTPException]]:
    return [
        cls
        for _, cls in inspect.getmembers(aiosmtplib.errors, inspect.isclass)
        if issubclass(cls, aiosmtplib.SMTPException)
    ]


def test_every_aiosmtplib_error_mapped() -> None:
    classes = _aiosmtplib_error_classes()

    assert len(classes) >= 15
    for cls in classes:
        assert cls in _ERROR_KINDS, f"{cls.__name__} has no entry in _ERROR_KINDS"


# One instance of every aiosmtplib exception class, with the phase it is
# raised in and the outcome expected: None means transient.
EXAMPLES: list[tuple[Exception, SmtpPhase, NotificationStatus | None, int | None]] = [
    (aiosmtplib.SMTPException("boom"), SmtpPhase.TLS, None, None),
    (aiosmtplib.SMTPServerDisconnected("lost"), SmtpPhase.MAIL, None, None),
    (aiosmtplib.SMTPConnectError("refused"), SmtpPhase.CONNECT, None, None),
    (aiosmtplib.SMTPTimeoutError("slow"), SmtpPhase.RCPT, None, None),
    (aiosmtplib.SMTPConnectTimeoutError("slow"), SmtpPhase.CONNECT, None, None),
    (aiosmtplib.SMTPReadTimeoutError("slow"), SmtpPhase.MAIL, None, None),
    (aiosmtplib.SMTPNotSupported("no SMTPUTF8"), SmtpPhase.MAIL, FAILED, None),
    (aiosmtplib.SMTPResponseException(454, "TLS unavailable"), SmtpPhase.TLS, None, 454),
    (aiosmtplib.SMTPConnectResponseError(554, "no service"), SmtpPhase.CONNECT, FAILED, 554),
    (aiosmtplib.SMTPHeloError(421, "closing"), SmtpPhase.CONNECT, None, 421),
    (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), SmtpPhase.AUTH, FAILED, 535),
    (aiosmtplib.SMTPSenderRefused(421, "try later", "a@example.com"), SmtpPhase.MAIL, None, 421),
    (aiosmtplib.SMTPRecipientRefused(550, "unknown", RECIPIENT), SmtpPhase.RCPT, BOUNCED, 550),
    (
        aiosmtplib.SMTPRecipientsRefused(
            [aiosmtplib.SMTPRecipientRefused(553, "not allowed", RECIPIENT)]
        ),
        SmtpPhase.RCPT,
        BOUNCED,
        553,
    ),
    (aiosmtplib.SMTPDataError(554, "rejected"), SmtpPhase.DATA, FAILED, 554),
]


def test_examples_cover_every_class() -> None:
    assert {type(error) for error, *_ in EXAMPLES} == set(_aiosmtplib_error_classes())


@pytest.mark.parametrize(("error", "phase", "status", "code"), EXAMPLES)
def test_aiosmtplib_error_translated(
    error: Exception, phase: SmtpPhase, status: NotificationStatus | None, code: int | None
) -> None:
    assert isinstance(error, aiosmtplib.SMTPException)
    translated = translate_smtp_error(error, phase=phase, recipient=RECIPIENT)

    assert isinstance(translated, SmtpHandOffError)
    assert translated.failure_status == status
    assert translated.code == code
    assert translated.phase is phase
    assert translated.recipient == RECIPIENT


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (550, BOUNCED),
        (551, BOUNCED),
        (553, BOUNCED),
        (552, FAILED),
        (554, FAILED),
        (450, None),
        (451, None),
        (452, None),
        (421, None),
    ],
)
def test_rcpt_reply_code_decides(code: int, status: NotificationStatus | None) -> None:
    error = aiosmtplib.SMTPRecipientRefused(code, "text", RECIPIENT)

    translated = translate_smtp_error(error, phase=SmtpPhase.RCPT, recipient=RECIPIENT)

    assert translated.failure_status == status


def test_550_to_mail_from_failed() -> None:
    error = aiosmtplib.SMTPSenderRefused(550, "sender rejected", "noreply@example.com")

    translated = translate_smtp_error(error, phase=SmtpPhase.MAIL, recipient=RECIPIENT)

    assert translated.failure_status is FAILED


@pytest.mark.parametrize(
    "error",
    [
        aiosmtplib.SMTPReadTimeoutError("timed out"),
        aiosmtplib.SMTPServerDisconnected("lost"),
        ConnectionResetError("reset"),
    ],
)
def test_lost_reply_after_data_outcome_unknown(error: Exception) -> None:
    assert isinstance(error, aiosmtplib.SMTPException | OSError)
    translated = translate_smtp_error(error, phase=SmtpPhase.DATA, recipient=RECIPIENT)

    assert translated.is_transient
    assert translated.outcome_unknown


def test_timeout_before_data_outcome_known() -> None:
    error = aiosmtplib.SMTPReadTimeoutError("timed out")

    translated = translate_smtp_error(error, phase=SmtpPhase.RCPT, recipient=RECIPIENT)

    assert not translated.outcome_unknown


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError(104, "reset"),
        TimeoutError("timed out"),
        ssl.SSLError("handshake failed"),
    ],
)
def test_socket_error_transient(error: OSError) -> None:
    translated = translate_smtp_error(error, phase=SmtpPhase.CONNECT, recipient=RECIPIENT)

    assert translated.is_transient
    assert translated.code is None


def test_reason_masks_recipient() -> None:
    error = aiosmtplib.SMTPRecipientRefused(550, f"5.1.1 <{RECIPIENT}> unknown", RECIPIENT)

    translated = translate_smtp_error(error, phase=SmtpPhase.RCPT, recipient=RECIPIENT)

    assert RECIPIENT not in translated.reason
    assert "o***@e***.com" in translated.reason
    assert "550" in translated.reason
