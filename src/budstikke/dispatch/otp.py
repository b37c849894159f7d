"""OTP verifications: create one and send its code, check a code, send a new code.

The code exists only in this module's memory and in the message that carries
it; the store keeps its HMAC. Each code travels as an ordinary instant order
placed through InstantOrders, so it gets the same limits, hand-off, retries,
TTL, status tracking and body erasure as any other order.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from budstikke.config import Settings
from budstikke.dispatch.dispatcher import utc_now
from budstikke.dispatch.instant import InstantOrders
from budstikke.domain.order_requests import InstantEmailOrder, InstantSmsOrder
from budstikke.domain.otp import (
    MAX_ATTEMPTS,
    MAX_RESENDS,
    MIN_TTL_S,
    RESEND_COOLDOWN_S,
    OtpStatus,
    code_digest,
    effective_status,
    email_subject,
    generate_code,
    message_text,
    whole_minutes,
)
from budstikke.domain.otp_requests import OtpRequest
from budstikke.domain.rate_limits import OTP_COOLDOWN_LIMIT, RateLimitExceededError
from budstikke.domain.recipients import mask_recipient
from budstikke.domain.request_fields import RequestValidationError
from budstikke.domain.statuses import Channel
from budstikke.errors import BudstikkeError, ConfigurationError
from budstikke.otp_key import KEY_SETTING, describe_key_source, key_fingerprint, load_otp_key
from budstikke.store.database import Database
from budstikke.store.otp import NewVerification, OtpStore, Verification, order_key
from budstikke.store.otp_key import claim_otp_key_fingerprint
from budstikke.store.records import OrderReceipt

# The paths under which the instant order's checks report the message text.
MESSAGE_BODY_PATHS = frozenset(
    ("recipientSms.smsSettings.body", "recipientEmail.emailSettings.body")
)

logger = logging.getLogger(__name__)


class ResendRejection(StrEnum):
    # The verification was approved, ran out of attempts or expired.
    CLOSED = "closed"
    # MAX_RESENDS new codes were sent already.
    NO_RESENDS_LEFT = "no_resends_left"
    # Less than MIN_TTL_S seconds of the verification are left: too little to use a new code.
    EXPIRES_SOON = "expires_soon"


class ResendRejectedError(BudstikkeError):
    """A new code cannot be sent for this verification; `reason` is the cause."""

    def __init__(self, reason: ResendRejection, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class VerificationState:
    """A verification as a caller may see it: never the code or its digest."""

    verification: Verification
    status: OtpStatus
    remaining_attempts: int
    resends_left: int


@dataclass(frozen=True, slots=True)
class CheckResult:
    status: OtpStatus
    remaining_attempts: int


def state_of(verification: Verification, now: datetime) -> VerificationState:
    return VerificationState(
        verification=verification,
        status=effective_status(verification.status, verification.expires_at, now),
        remaining_attempts=MAX_ATTEMPTS - verification.attempts,
        resends_left=MAX_RESENDS - verification.code_serial,
    )


@dataclass(frozen=True, slots=True)
class OtpLimits:
    recipient_per_hour: int  # verifications per creator and recipient
    failed_checks_per_hour: int  # wrong codes per creator and recipient


async def load_checked_otp_key(settings: Settings, database: Database, *, now: datetime) -> bytes:
    """Return the OTP key once it is known to be the key the other processes use.

    Reads or creates the key. The first process on a database records the
    key's fingerprint there, and a later process whose key has another
    fingerprint raises ConfigurationError: its digests would match no code
    the other processes sent, and every check would use up an attempt.
    """
    key = load_otp_key(settings)
    fingerprint = key_fingerprint(key)
    stored = await claim_otp_key_fingerprint(database, fingerprint, now=now)
    if stored.fingerprint != fingerprint:
        raise ConfigurationError(
            KEY_SETTING,
            f"the OTP key from {describe_key_source(settings)} is not the key recorded in the "
            f"database on {stored.recorded_at:%Y-%m-%d %H:%M} UTC, so this process would reject "
            f"every code the others send. Give every process the same {KEY_SETTING}, or, to "
            "change the key on purpose, run `budstikke otp-key rotate`; codes sent before "
            "then stop working.",
        )
    return key


def build_otp_verifications(
    settings: Settings,
    database: Database,
    instant_orders: InstantOrders,
    *,
    key: bytes,
    clock: Callable[[], datetime] = utc_now,
) -> OtpVerifications:
    return OtpVerifications(
        OtpStore(database),
        instant_orders,
        key=key,
        limits=OtpLimits(
            recipient_per_hour=settings.otp_recipient_limit_per_hour,
            failed_checks_per_hour=settings.otp_failed_check_limit_per_hour,
        ),
        clock=clock,
    )


class OtpVerifications:
    """Create, check and resend verifications; each code travels as a plain instant order."""

    def __init__(
        self,
        store: OtpStore,
        instant_orders: InstantOrders,
        *,
        key: bytes,
        limits: OtpLimits,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.instant_orders = instant_orders
        self._key = key
        self.limits = limits
        self.clock = clock

    def __repr__(self) -> str:
        return f"OtpVerifications(store={self.store!r})"  # without the key

    async def create(self, creator: str, request: OtpRequest) -> tuple[VerificationState, bool]:
        """Create a verification and send its first code; returns its state and whether it is new.

        The same creator and idempotency id give the stored verification back
        and send nothing. Raises RateLimitExceededError past the per-recipient
        limit, and whatever placing the instant order raises (a creator limit,
        an unavailable database), in which case no verification is kept.
        """
        now = self.clock()
        verification_id = uuid.uuid4()
        code = generate_code(request.code_length)
        new = NewVerification(
            id=verification_id,
            creator=creator,
            idempotency_id=request.idempotency_id,
            channel=request.channel,
            recipient=request.recipient,
            sender=request.sender,
            senders_reference=request.senders_reference,
            language=request.language,
            template=request.template,
            code_length=request.code_length,
            code_digest=code_digest(self._key, verification_id, code),
            expires_at=now + timedelta(seconds=request.ttl_s),
        )
        verification, created = await self.store.create(
            new, recipient_limit=self.limits.recipient_per_hour, now=now
        )
        if created:
            try:
                receipt = await self._send(verification, code, ttl_s=request.ttl_s)
            except Exception:
                # NOTE: a cancelled request keeps the verification: its order
                # may be stored already, and a replay then shows shipmentId null.
                await self.store.discard(verification)
                raise
            verification = replace_shipment(verification, receipt)
        logger.info(
            "OTP verification created" if created else "OTP verification replayed",
            extra={
                "event": "otp_created" if created else "otp_replayed",
                "verification_id": str(verification.id),
                "creator": creator,
                "channel": verification.channel.value,
                "recipient": mask_recipient(verification.channel, verification.recipient),
            },
        )
        return state_of(verification, now), created

    async def check(self, creator: str, verification_id: UUID, code: str) -> CheckResult | None:
        """Check a code exactly as sent; returns None for an unknown verification.

        Raises RateLimitExceededError past the limit of wrong codes for the recipient.
        """
        now = self.clock()
        outcome = await self.store.check(
            creator,
            verification_id,
            submitted_digest=code_digest(self._key, verification_id, code),
            failed_check_limit=self.limits.failed_checks_per_hour,
            now=now,
        )
        if outcome is None:
            return None
        state = state_of(outcome.verification, now)
        status = state.status
        if status is OtpStatus.APPROVED and not outcome.approved:
            # Approved by an earlier check: a code approves at most once, so
            # this check learns only that the verification is over.
            status = OtpStatus.EXPIRED
        log_check(verification_id, outcome.counted, status, state.remaining_attempts)
        return CheckResult(status=status, remaining_attempts=state.remaining_attempts)

    async def resend(self, creator: str, verification_id: UUID) -> VerificationState | None:
        """Send a new code that replaces the current one; returns None for an unknown verification.

        Raises RateLimitExceededError during the cooldown and ResendRejectedError
        when no new code may be sent. When placing the order fails, the
        previous code is made valid again and the error is raised.
        """
        # A concurrent resend or check can change the row between the read and
        # the conditional update. The second pass then reads the new state and reports it.
        for _ in range(2):
            now = self.clock()
            verification = await self.store.get(creator, verification_id)
            if verification is None:
                return None
            check_resend_allowed(verification, now)
            code = generate_code(verification.code_length)
            replaced = await self.store.replace_code(
                verification, code_digest=code_digest(self._key, verification.id, code), now=now
            )
            if replaced is None:
                continue
            current, previous_digest = replaced
            remaining_s = (current.expires_at - now).total_seconds()
            try:
                receipt = await self._send(
                    current, code, ttl_s=math.ceil(remaining_s), valid_s=remaining_s
                )
            except Exception:
                await self.store.restore_code(verification, code_digest=previous_digest, now=now)
                raise
            logger.info(
                "OTP code resent",
                extra={
                    "event": "otp_resent",
                    "verification_id": str(verification_id),
                    "resends_left": MAX_RESENDS - current.code_serial,
                },
            )
            return state_of(replace_shipment(current, receipt), now)
        raise cooldown_error(RESEND_COOLDOWN_S)

    async def get(self, creator: str, verification_id: UUID) -> VerificationState | None:
        verification = await self.store.get(creator, verification_id)
        return None if verification is None else state_of(verification, self.clock())

    async def _send(
        self, verification: Verification, code: str, *, ttl_s: int, valid_s: float | None = None
    ) -> OrderReceipt:
        """Place the instant order that carries the code of the verification's current serial."""
        text = message_text(
            language=verification.language,
            template=verification.template,
            code=code,
            valid_minutes=whole_minutes(ttl_s if valid_s is None else valid_s),
        )
        key = order_key(verification.id, verification.code_serial)
        try:
            return await self._place(verification, key, text, ttl_s)
        except RequestValidationError as error:
            raise RequestValidationError(errors_of_template(error.errors)) from error

    async def _place(
        self, verification: Verification, key: str, text: str, ttl_s: int
    ) -> OrderReceipt:
        if verification.channel is Channel.SMS:
            return await self.instant_orders.place_sms(
                verification.creator,
                InstantSmsOrder(
                    idempotency_id=key,
                    senders_reference=verification.senders_reference,
                    phone_number=verification.recipient,
                    ttl_s=ttl_s,
                    sender=verification.sender,
                    body=text,
                ),
            )
        return await self.instant_orders.place_email(
            verification.creator,
            InstantEmailOrder(
                idempotency_id=key,
                senders_reference=verification.senders_reference,
                email_address=verification.recipient,
                ttl_s=ttl_s,
                sender=verification.sender,
                subject=email_subject(verification.language),
                body=text,
                content_type="Plain",
            ),
        )


def replace_shipment(verification: Verification, receipt: OrderReceipt) -> Verification:
    return dataclasses.replace(verification, shipment_id=receipt.shipment_id)


def check_resend_allowed(verification: Verification, now: datetime) -> None:
    status = effective_status(verification.status, verification.expires_at, now)
    if status is not OtpStatus.PENDING:
        raise ResendRejectedError(
            ResendRejection.CLOSED,
            f"The verification is {status.value}; no new code can be sent. Create a new one.",
        )
    if verification.code_serial >= MAX_RESENDS:
        raise ResendRejectedError(
            ResendRejection.NO_RESENDS_LEFT,
            f"The verification had {MAX_RESENDS} new codes already. Create a new one.",
        )
    ready_at = verification.last_sent_at + timedelta(seconds=RESEND_COOLDOWN_S)
    if now < ready_at:
        raise cooldown_error(max(1, math.ceil((ready_at - now).total_seconds())))
    remaining_s = (verification.expires_at - now).total_seconds()
    if remaining_s < MIN_TTL_S:
        raise ResendRejectedError(
            ResendRejection.EXPIRES_SOON,
            f"The verification expires in {math.ceil(remaining_s)} s, too soon for a new code "
            f"(at least {MIN_TTL_S} s are needed). Create a new verification.",
        )


def errors_of_template(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """Return the errors with the message text's paths renamed to "template".

    The sensitive content guard checks the message text, which in a
    verification is the template with the code filled in.
    """
    renamed: dict[str, list[str]] = {}
    for path, messages in errors.items():
        if path in MESSAGE_BODY_PATHS:
            texts = [re.sub(r"^body\b", "template", message) for message in messages]
            renamed.setdefault("template", []).extend(texts)
        else:
            renamed.setdefault(path, []).extend(messages)
    return renamed


def cooldown_error(wait_s: int) -> RateLimitExceededError:
    return RateLimitExceededError(
        OTP_COOLDOWN_LIMIT,
        wait_s,
        f"A new code can be sent {RESEND_COOLDOWN_S} s after the last one. Retry after {wait_s} s.",
    )


def log_check(
    verification_id: UUID, counted: bool, status: OtpStatus, remaining_attempts: int
) -> None:
    """Log a check by its outcome; never the code, only the verification id."""
    context = {"verification_id": str(verification_id), "remaining_attempts": remaining_attempts}
    if status is OtpStatus.APPROVED:
        logger.info("OTP code approved", extra={"event": "otp_approved", **context})
    elif counted:
        logger.warning(
            "OTP check failed: wrong code",
            extra={"event": "otp_check_failed", "status": status.value, **context},
        )
    else:
        logger.info(
            "OTP check not counted: verification is closed",
            extra={"event": "otp_check_closed", "status": status.value, **context},
        )
