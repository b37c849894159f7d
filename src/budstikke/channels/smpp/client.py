"""The SMPP provider: N bind_transceiver sessions to one SMSC, kept bound while the service runs.

Hand-off submits each part of a message as one submit_sm and returns the
SMSC message id of every part. Receipts from any session go to the report
sink as they arrive. A receipt can come before its submit_sm_resp. The
provider does not hold it back, because the store keeps a report that
matches no message yet and applies it once the message id is recorded.

When a duplicate is possible
----------------------------
A submit_sm has an unknown outcome when it was written to the socket and
no response came back: the connection dropped with it in flight, or its
response timed out (`response_timeout_s`), or the response was malformed.
The SMSC may have accepted it. The provider then raises
HandOffError(outcome_unknown=True) and never sends that part again by
itself. A caller that retries such an error may deliver the message twice
(for a multi-part message, the parts accepted before the unknown one, too).
These are the only cases in which this provider can cause a duplicate.

The provider does send a part again by itself, without any risk of a
duplicate, when the SMSC answered it with a status that means "not
accepted": ESME_RTHROTTLED and ESME_RMSGQFUL (after slowing the bind down),
a session-state error such as ESME_RINVBNDSTS (after closing that session),
and, once an earlier part of the same message was accepted, transient errors
such as ESME_RSYSERR. It also moves a part that never reached the socket
(waiting for the window when the session closed) to another session. These
retries stop at the message's `expires_at`; a message that could not be
fully accepted by then fails with SMS_Failed_TTL.

Cancelling hand_off (a caller's deadline) while a submit_sm is in flight
leaves that part with an unknown outcome as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from budstikke.channels.base import (
    DeliveryReport,
    HandOffReceipt,
    OutgoingMessage,
    OutgoingSms,
    ReportSink,
)
from budstikke.channels.smpp.config import SmppConfig
from budstikke.channels.smpp.errors import (
    BindError,
    MalformedResponseError,
    PduError,
    ResponseTimeoutError,
    SessionClosedError,
)
from budstikke.channels.smpp.parts import (
    Address,
    build_submit_parts,
    destination_address,
    with_validity,
)
from budstikke.channels.smpp.pdu import GenericNack, Pdu, SubmitSm, SubmitSmResp, encode_pdu
from budstikke.channels.smpp.receipts import reference_keys
from budstikke.channels.smpp.session import SessionSettings, SmppSession, open_session
from budstikke.channels.smpp.status_codes import (
    Action,
    CommandStatus,
    decide_submit_status,
    describe_status,
)
from budstikke.channels.smpp.validity import (
    MAX_RELATIVE_SECONDS,
    relative_validity_period,
)
from budstikke.domain.masking import mask_phone
from budstikke.domain.sender import parse_sms_sender
from budstikke.domain.sms_text import encode_sms
from budstikke.domain.statuses import Channel, NotificationStatus
from budstikke.errors import HandOffError

logger = logging.getLogger(__name__)

# After a session closes, its bind waits a little before connecting again, so
# an SMSC that accepts and at once drops connections is not hammered.
_REBIND_PAUSE_FACTOR: Final = 1.0

# A transient error status for a later part is retried inside hand_off after this pause.
_PART_RETRY_PAUSE_S: Final = 1.0


@dataclass(slots=True)
class _Message:
    """A message prepared for submission: its parts and the facts needed to resend them."""

    sms: OutgoingSms
    parts: list[SubmitSm]
    # The relative validity period every part starts with, in seconds.
    validity_s: int


class SmppProvider:
    """Provider for `smpp://` and `smpps://` URLs; see the module docstring for retries."""

    channel = Channel.SMS

    def __init__(
        self,
        config: SmppConfig,
        *,
        ssl_context: ssl.SSLContext | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        if config.tls and ssl_context is None:
            ssl_context = ssl.create_default_context()
        self._ssl_context = ssl_context if config.tls else None
        self._rng = rng or random.Random()  # noqa: S311 - jitter and references, not secrets
        self._report_sink: ReportSink | None = None
        self._sessions: list[SmppSession] = []
        self._bind_tasks: list[asyncio.Task[None]] = []
        self._session_bound = asyncio.Event()
        self._stopping = asyncio.Event()
        self._started = False
        self._last_error = "not started"
        self._reference = self._rng.randrange(256)
        self._session_settings = SessionSettings(
            system_id=config.system_id,
            password=config.password,
            system_type=config.system_type,
            window=config.window,
            enquire_link_s=config.enquire_link_s,
            response_timeout_s=config.response_timeout_s,
            max_rate=config.max_rate,
            throttle_pause_s=config.throttle_pause_s,
            throttle_max_pause_s=config.throttle_max_pause_s,
            receipt_id_base=config.receipt_id_base,
            instant_share=config.instant_share,
            max_loop_lag_s=config.max_loop_lag_ms / 1000 or None,
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        setting: str = "BUDSTIKKE_SMS_URL",
        ssl_context: ssl.SSLContext | None = None,
    ) -> SmppProvider:
        return cls(SmppConfig.from_url(url, setting=setting), ssl_context=ssl_context)

    def __repr__(self) -> str:
        return f"SmppProvider({self.config.redacted_url}, binds={self.config.binds})"

    # Lifecycle.

    async def start(self, report_sink: ReportSink) -> None:
        """Start one task per bind; each connects, binds and reconnects while the provider runs."""
        if self._started:
            raise RuntimeError("SmppProvider.start was called twice")
        self._started = True
        self._report_sink = report_sink
        self._last_error = "connecting"
        logger.info(
            "SMPP provider starting",
            extra={
                "event": "smpp_starting",
                "url": self.config.redacted_url,
                "binds": self.config.binds,
            },
        )
        for index in range(1, self.config.binds + 1):
            task = asyncio.create_task(self._maintain_bind(index), name=f"smpp bind {index}")
            self._bind_tasks.append(task)

    async def stop(self) -> None:
        """Unbind every session and stop reconnecting; hand-offs still waiting fail transiently."""
        self._stopping.set()
        self._session_bound.set()
        await asyncio.gather(
            *(session.unbind_and_close() for session in list(self._sessions)),
            return_exceptions=True,
        )
        for task in self._bind_tasks:
            task.cancel()
        await asyncio.gather(*self._bind_tasks, return_exceptions=True)
        self._bind_tasks.clear()
        logger.info("SMPP provider stopped", extra={"event": "smpp_stopped"})

    def is_ready(self) -> tuple[bool, str]:
        bound = sum(1 for session in self._sessions if session.is_bound)
        if bound:
            return True, f"{bound} of {self.config.binds} SMPP binds are bound"
        return False, f"no SMPP session is bound: {self._last_error}"

    def reference_keys(self, provider_ref: str) -> tuple[str, ...]:
        return reference_keys(provider_ref, case_sensitive=self.config.case_sensitive_ids)

    @property
    def sessions(self) -> tuple[SmppSession, ...]:
        return tuple(self._sessions)

    # Binding.

    async def _maintain_bind(self, index: int) -> None:
        label = f"smpp bind {index}"
        delay_s = self.config.reconnect_initial_s
        while not self._stopping.is_set():
            try:
                session = await open_session(
                    self.config.host,
                    self.config.port,
                    self._session_settings,
                    ssl_context=self._ssl_context,
                    connect_timeout_s=self.config.connect_timeout_s,
                    on_report=self._emit_report,
                    label=label,
                )
            except (OSError, TimeoutError, BindError) as exc:
                self._last_error = f"{label}: {exc}"
                wait_s = self._jitter(delay_s)
                log = logger.error if isinstance(exc, BindError) else logger.warning
                log(
                    "SMPP bind failed; retrying in %.1f s",
                    wait_s,
                    extra={"event": "smpp_bind_failed", "session": label, "error": str(exc)},
                )
                await self._sleep_unless_stopping(wait_s)
                delay_s = min(delay_s * 2, self.config.reconnect_max_s)
                continue
            delay_s = self.config.reconnect_initial_s
            logger.info("SMPP session bound", extra={"event": "smpp_bound", "session": label})
            self._sessions.append(session)
            self._session_bound.set()
            try:
                await session.wait_closed()
            finally:
                self._sessions.remove(session)
                if not any(s.is_bound for s in self._sessions) and not self._stopping.is_set():
                    self._session_bound.clear()
                if not session.is_closed:
                    await asyncio.shield(session.close("provider stopping"))
            if self._stopping.is_set():
                return
            self._last_error = f"{label}: {session.close_reason}"
            logger.warning(
                "SMPP session closed; binding again",
                extra={
                    "event": "smpp_session_closed",
                    "session": label,
                    "reason": session.close_reason,
                },
            )
            await self._sleep_unless_stopping(self._jitter(delay_s * _REBIND_PAUSE_FACTOR))

    def _jitter(self, delay_s: float) -> float:
        return delay_s * self._rng.uniform(0.5, 1.0)

    async def _sleep_unless_stopping(self, delay_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._stopping.wait()

    async def _emit_report(self, report: DeliveryReport) -> None:
        logger.debug(
            "delivery receipt received",
            extra={
                "event": "smpp_receipt",
                "message_id": report.provider_ref,
                "status": report.status.value if report.status else None,
            },
        )
        if self._report_sink is not None:
            await self._report_sink(report)

    async def _acquire_session(self, sms: OutgoingSms) -> SmppSession:
        """Return the bound session with the least load, waiting up to bind_wait_s for one."""
        loop = asyncio.get_running_loop()
        wait_until = loop.time() + min(self.config.bind_wait_s, _seconds_left(sms))
        while True:
            bound = [session for session in self._sessions if session.is_bound]
            if bound:
                return min(bound, key=lambda session: session.load)
            if self._stopping.is_set():
                raise HandOffError("the SMPP provider is stopping")
            remaining_s = wait_until - loop.time()
            if remaining_s <= 0:
                raise HandOffError(
                    f"no SMPP session is bound ({self._last_error})",
                    retry_after_s=self.config.reconnect_initial_s,
                )
            self._session_bound.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining_s):
                    await self._session_bound.wait()

    # Hand-off.

    async def hand_off(self, message: OutgoingMessage) -> HandOffReceipt:
        if not isinstance(message, OutgoingSms):
            raise HandOffError(
                "the SMPP provider sends SMS only", failure_status=NotificationStatus.SMS_FAILED
            )
        prepared = self._prepare(message)
        message_ids: list[str] = []
        for index, part in enumerate(prepared.parts):
            message_id = await self._submit_part(
                prepared, index, part, accepted_before=len(message_ids)
            )
            message_ids.append(message_id)
        # The dispatcher logs the accepted hand-off at INFO with these ids.
        logger.debug(
            "hand-off accepted",
            extra={
                "event": "hand_off_accepted",
                "channel": "sms",
                "notification_id": str(message.notification_id),
                "recipient": mask_phone(message.recipient),
                "parts": len(message_ids),
                "message_ids": message_ids,
            },
        )
        return HandOffReceipt(
            status=NotificationStatus.SMS_ACCEPTED, provider_refs=tuple(message_ids)
        )

    def _prepare(self, sms: OutgoingSms) -> _Message:
        """Encode the text and build every part, failing permanently on bad input."""
        seconds_left = _seconds_left(sms)
        if seconds_left <= 0:
            raise HandOffError(
                "the message's TTL ended before it was handed off",
                failure_status=NotificationStatus.SMS_FAILED_TTL,
            )
        try:
            destination = destination_address(sms.recipient)
        except ValueError as exc:
            raise HandOffError(
                str(exc), failure_status=NotificationStatus.SMS_FAILED_INVALID_RECIPIENT
            ) from None
        try:
            sender = parse_sms_sender(sms.sender)
            encoded = encode_sms(sms.body)
        except ValueError as exc:
            raise HandOffError(str(exc), failure_status=NotificationStatus.SMS_FAILED) from None
        source = Address(
            sender.value,
            sender.ton if self.config.source_ton is None else self.config.source_ton,
            sender.npi if self.config.source_npi is None else self.config.source_npi,
        )
        reference = 0
        if len(encoded.parts) > 1:
            self._reference = (self._reference + 1) % 256
            reference = self._reference
        validity_s = _validity_seconds(seconds_left)
        try:
            parts = build_submit_parts(
                encoded,
                source=source,
                destination=destination,
                reference=reference,
                validity_period=relative_validity_period(validity_s),
                service_type="",
            )
            for part in parts:
                encode_pdu(part)
        except (ValueError, PduError) as exc:
            raise HandOffError(
                f"the message cannot be sent over SMPP: {exc}",
                failure_status=NotificationStatus.SMS_FAILED,
            ) from None
        return _Message(sms=sms, parts=parts, validity_s=validity_s)

    async def _submit_part(
        self, message: _Message, index: int, part: SubmitSm, *, accepted_before: int
    ) -> str:
        """Submit one part until the SMSC accepts it; return its message id.

        Raises HandOffError for a permanent failure, a transient one before any
        part was accepted, an unknown outcome, or the TTL running out.
        """
        while True:
            if _seconds_left(message.sms) <= 0:
                raise _ttl_ended(message, index)
            session = await self._acquire_session(message.sms)
            response = await self._send_part(session, message, index, part)
            if response is None:
                continue
            decision = decide_submit_status(response.command_status)
            if isinstance(response, GenericNack) and decision.action is Action.ACCEPT:
                # generic_nack never accepts a PDU, whatever its command_status.
                decision = decide_submit_status(CommandStatus.ESME_RSYSERR)
            if decision.action is Action.ACCEPT:
                session.pacer.on_accepted()
                return _message_id(response)
            if decision.action is Action.THROTTLE:
                self._slow_down(session, response)
                continue
            self._log_refused_part(session, message, index, response, decision.action)
            if decision.action is Action.REBIND:
                await session.close(
                    f"submit_sm answered {describe_status(response.command_status)}"
                )
            elif decision.action is Action.RETRY:
                if accepted_before == 0:
                    raise HandOffError(
                        f"the SMSC rejected submit_sm with "
                        f"{describe_status(response.command_status)}; retry later",
                        retry_after_s=_PART_RETRY_PAUSE_S,
                    )
                await self._sleep_unless_stopping(
                    min(_PART_RETRY_PAUSE_S, _seconds_left(message.sms))
                )
            else:
                raise HandOffError(
                    f"the SMSC rejected part {index + 1} of {len(message.parts)} with "
                    f"{describe_status(response.command_status)}",
                    failure_status=decision.failure_status,
                )

    async def _send_part(
        self, session: SmppSession, message: _Message, index: int, part: SubmitSm
    ) -> Pdu | None:
        """Send one submit_sm; return its response, or None when it never left and may be resent."""
        try:
            return await session.submit(
                part,
                lambda pdu: _current_validity(message, index, pdu),
                priority=message.sms.priority,
            )
        except SessionClosedError as exc:
            if not exc.written:
                return None
            reason = f"the SMPP connection closed with part {index + 1} in flight: {exc}"
        except ResponseTimeoutError as exc:
            reason = str(exc)
        except MalformedResponseError as exc:
            reason = f"the response to part {index + 1} was malformed: {exc}"
        logger.warning(
            "hand-off outcome unknown",
            extra={
                "event": "hand_off_outcome_unknown",
                "notification_id": str(message.sms.notification_id),
                "session": session.label,
                "part": index + 1,
                "error": reason,
            },
        )
        raise HandOffError(reason, outcome_unknown=True)

    @staticmethod
    def _slow_down(session: SmppSession, response: Pdu) -> None:
        pause_s = session.pacer.on_throttled()
        # One warning per pause, not one per throttled submit in the window.
        log = logger.debug if pause_s is None else logger.warning
        log(
            "SMSC throttled submit_sm; pausing the bind",
            extra={
                "event": "smpp_throttled",
                "session": session.label,
                "command_status": describe_status(response.command_status),
                "pause_s": pause_s,
                "interval_s": session.pacer.interval_s,
            },
        )

    @staticmethod
    def _log_refused_part(
        session: SmppSession, message: _Message, index: int, response: Pdu, action: Action
    ) -> None:
        log = logger.error if action is Action.FAIL else logger.warning
        log(
            "submit_sm refused",
            extra={
                "event": "smpp_submit_refused",
                "notification_id": str(message.sms.notification_id),
                "session": session.label,
                "part": index + 1,
                "command_status": describe_status(response.command_status),
                "action": action.value,
            },
        )


def _ttl_ended(message: _Message, index: int) -> HandOffError:
    return HandOffError(
        f"the TTL ended before part {index + 1} of {len(message.parts)} was accepted",
        failure_status=NotificationStatus.SMS_FAILED_TTL,
    )


def _current_validity(message: _Message, index: int, pdu: SubmitSm) -> SubmitSm:
    """Check the TTL just before a part is written and bring its validity period up to date.

    Every part keeps the validity computed at the start of the hand-off, so
    the parts of a message carry the same string, unless waiting (window,
    throttling, reconnecting) used up more than a second of it. Then the part
    carries the time left, so it still expires when the message does.
    """
    seconds_left = _seconds_left(message.sms)
    if seconds_left <= 0:
        raise _ttl_ended(message, index)
    current_s = _validity_seconds(seconds_left)
    if current_s < message.validity_s - 1:
        return with_validity(pdu, relative_validity_period(current_s))
    return pdu


def _seconds_left(sms: OutgoingSms) -> float:
    return (sms.expires_at - datetime.now(UTC)).total_seconds()


def _validity_seconds(seconds_left: float) -> int:
    """Return the validity period for the time left, rounded up to whole seconds.

    Rounding up keeps a message sent 299.95 s before its expiry at 300 s:
    the SMSC may hold it at most 1 s longer than the TTL, never shorter.
    """
    return min(max(1, math.ceil(seconds_left)), MAX_RELATIVE_SECONDS)


def _message_id(response: Pdu) -> str:
    if isinstance(response, SubmitSmResp):
        return response.message_id.strip()
    return ""
