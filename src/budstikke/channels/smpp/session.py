"""One SMPP 3.4 bind_transceiver session over one TCP (or TLS) connection.

The session owns the socket: it reads every PDU in one task, matches
responses to requests by sequence number, answers the SMSC's own requests
(enquire_link, unbind, deliver_sm, data_sm), sends enquire_link on a timer
and limits unanswered submit_sm to the window. A missing enquire_link_resp,
an unbind from the peer or a PDU that breaks the framing closes the session;
the client then binds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from budstikke.channels.base import DeliveryReport
from budstikke.channels.loop_headroom import LoopHeadroom
from budstikke.channels.priority_slots import PrioritySlots, reserved_slots
from budstikke.channels.smpp.errors import (
    BindError,
    MalformedResponseError,
    PduError,
    ResponseTimeoutError,
    SessionClosedError,
)
from budstikke.channels.smpp.pacing import Pacer
from budstikke.channels.smpp.pdu import (
    RESPONSE_TYPES,
    SEQUENCE_NUMBER_MAX,
    SEQUENCE_NUMBER_MIN,
    AlertNotification,
    BindTransceiver,
    DataSm,
    DeliverSm,
    EnquireLink,
    GenericNack,
    Outbind,
    Pdu,
    SubmitSm,
    Unbind,
    encode_pdu,
    read_pdu,
    response_for,
)
from budstikke.channels.smpp.receipts import is_receipt, report_from_pdu
from budstikke.channels.smpp.status_codes import CommandStatus, describe_status
from budstikke.channels.smpp.tlv import is_known_tag
from budstikke.domain.statuses import Priority

logger = logging.getLogger(__name__)

ReportHandler = Callable[[DeliveryReport], Awaitable[None]]

# Receipts handed to the report sink at once, per session. A receipt beyond
# that gets ESME_RX_T_APPN in its response at once, so the SMSC sends it again
# later while the session goes on reading submit responses. An SMSC may send
# its stored receipts in a burst after a bind, so this is well above a batch.
MAX_CONCURRENT_RECEIPTS: Final = 512

# An SMSC that stops reading leaves our PDUs in the write buffer. Above this
# many unsent bytes, far more than a full window of submits, the session closes.
MAX_UNSENT_BYTES: Final = 4 * 1024 * 1024

# An unbind on shutdown waits at most this long for unbind_resp.
UNBIND_TIMEOUT_S: Final = 2.0

# A closing session waits at most this long for its tasks to end and its
# unsent PDUs to reach the socket, then aborts the connection.
CLOSE_FLUSH_TIMEOUT_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class SessionSettings:
    system_id: str
    password: str = field(repr=False)
    system_type: str = ""
    window: int = 10
    enquire_link_s: float = 30.0
    response_timeout_s: float = 10.0
    max_rate: float | None = None
    throttle_pause_s: float = 0.5
    throttle_max_pause_s: float = 8.0
    receipt_id_base: str = "same"
    # Share of the window and of max_rate that regular messages leave to instant ones.
    instant_share: float = 0.0
    # Event-loop lag above which regular submits wait (None: they never wait for it).
    max_loop_lag_s: float | None = None


@dataclass(slots=True)
class _PendingRequest:
    future: asyncio.Future[Pdu]
    command_id: int


class SmppSession:
    """A bound ESME session. Create it with `open_session`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        settings: SessionSettings,
        *,
        on_report: ReportHandler | None = None,
        label: str = "smpp",
    ) -> None:
        self.label = label
        self.settings = settings
        self.pacer = Pacer(
            settings.max_rate,
            pause_s=settings.throttle_pause_s,
            max_pause_s=settings.throttle_max_pause_s,
            instant_share=settings.instant_share,
        )
        self._reader = reader
        self._writer = writer
        self._on_report = on_report
        self._pending: dict[int, _PendingRequest] = {}
        self._window = PrioritySlots(
            settings.window, reserved_slots(settings.window, settings.instant_share)
        )
        self._receipts_running = 0
        self.headroom = (
            LoopHeadroom(target_s=settings.max_loop_lag_s)
            if settings.max_loop_lag_s is not None
            else None
        )
        self._closed = asyncio.Event()
        self._close_reason = ""
        self._aborted = False
        self._bound = False
        self._last_sequence = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader_task: asyncio.Task[None] | None = None
        self._logged_unknown_tags: set[int] = set()
        # submit_sm written and still without a response, and submit_sm waiting for the window.
        self.outstanding = 0
        self.waiting = 0
        self.max_outstanding_seen = 0

    # State.

    @property
    def is_bound(self) -> bool:
        return self._bound and not self._closed.is_set()

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    @property
    def close_reason(self) -> str:
        return self._close_reason

    @property
    def load(self) -> int:
        return self.outstanding + self.waiting

    def start(self) -> None:
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"{self.label} reader")
        if self.headroom is not None:
            self._spawn(self.headroom.run_probe(), "event loop lag probe")

    # Requests.

    def _next_sequence_number(self) -> int:
        sequence = self._last_sequence
        while True:
            sequence = sequence + 1 if sequence < SEQUENCE_NUMBER_MAX else SEQUENCE_NUMBER_MIN
            if sequence not in self._pending:
                self._last_sequence = sequence
                return sequence

    async def request(self, pdu: Pdu, *, timeout_s: float | None = None) -> Pdu:
        """Send a request and return its response (or a generic_nack).

        Raises SessionClosedError (with `written` telling whether the request
        went out), ResponseTimeoutError after the response timeout,
        MalformedResponseError for a response that breaks SMPP, and PduError
        when the request cannot be encoded (before anything is written).
        """
        if self._closed.is_set():
            raise SessionClosedError(f"{self.label} is closed: {self._close_reason}", written=False)
        sequence_number = self._next_sequence_number()
        pdu = dataclasses.replace(pdu, sequence_number=sequence_number)
        data = encode_pdu(pdu)
        future: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        self._pending[sequence_number] = _PendingRequest(future, pdu.command_id)
        try:
            self._writer.write(data)
        except (OSError, RuntimeError) as exc:
            self._pending.pop(sequence_number, None)
            self._shutdown(f"write failed: {exc}")
            raise SessionClosedError(f"{self.label} write failed: {exc}", written=False) from exc
        timeout_s = self.settings.response_timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await self._writer.drain()
                return await future
        except TimeoutError:
            raise ResponseTimeoutError(
                f"{self.label}: no response to {pdu.name} (sequence {sequence_number}) "
                f"within {timeout_s} s"
            ) from None
        except (ConnectionError, OSError) as exc:
            self._shutdown(f"connection lost: {exc}")
            raise SessionClosedError(f"{self.label} connection lost: {exc}", written=True) from exc
        finally:
            self._pending.pop(sequence_number, None)

    async def submit(
        self,
        pdu: SubmitSm,
        before_send: Callable[[SubmitSm], SubmitSm] | None = None,
        priority: Priority = Priority.INSTANT,
    ) -> Pdu:
        """Send a submit_sm within the window and pacing; return its response or a generic_nack.

        `before_send` gets the PDU once the window and pacing allow it to go
        out and returns the PDU to write, so time-dependent fields such as the
        validity period are current. An exception from it propagates, and
        nothing is written. A regular `priority` leaves the share of the
        window and rate kept for instant messages to them, and waits while
        the event loop runs later than `max_loop_lag_s` (see `LoopHeadroom`).
        """
        if self._closed.is_set():
            raise SessionClosedError(f"{self.label} is closed: {self._close_reason}", written=False)
        self.waiting += 1
        try:
            if priority > Priority.INSTANT and self.headroom is not None:
                await self.headroom.wait()
            await self._window.acquire(priority)
        finally:
            self.waiting -= 1
        try:
            await self.pacer.wait(self._closed, priority)
            if self._closed.is_set():
                raise SessionClosedError(
                    f"{self.label} closed before the submit went out: {self._close_reason}",
                    written=False,
                )
            if before_send is not None:
                pdu = before_send(pdu)
            self.outstanding += 1
            self.max_outstanding_seen = max(self.max_outstanding_seen, self.outstanding)
            try:
                return await self.request(pdu)
            finally:
                self.outstanding -= 1
        finally:
            self._window.release(priority)

    async def bind(self) -> None:
        """Send bind_transceiver and wait for its response, raising BindError on failure."""
        request = BindTransceiver(
            system_id=self.settings.system_id,
            password=self.settings.password,
            system_type=self.settings.system_type,
        )
        try:
            response = await self.request(request)
        except (ResponseTimeoutError, SessionClosedError, MalformedResponseError) as exc:
            raise BindError(f"{self.label}: bind_transceiver failed: {exc}") from exc
        if response.command_status != CommandStatus.ESME_ROK:
            raise BindError(
                f"{self.label}: the SMSC rejected bind_transceiver with "
                f"{describe_status(response.command_status)}",
                command_status=response.command_status,
            )
        if isinstance(response, GenericNack):
            raise BindError(f"{self.label}: the SMSC rejected bind_transceiver with generic_nack")
        self._bound = True
        self._spawn(self._enquire_link_loop(), "enquire_link")

    # Closing.

    def _shutdown(self, reason: str) -> None:
        """Mark the session closed, fail every pending request and close the transport."""
        if self._closed.is_set():
            return
        self._close_reason = reason
        self._closed.set()
        self._bound = False
        for sequence_number, pending in list(self._pending.items()):
            if not pending.future.done():
                pending.future.set_exception(
                    SessionClosedError(
                        f"{self.label} closed with sequence {sequence_number} unanswered: {reason}",
                        written=True,
                    )
                )
        self._pending.clear()
        # Wake every submit waiting for the window, so each raises SessionClosedError.
        self._window.close()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._writer.close()

    async def wait_closed(self) -> None:
        """Wait until the session is closed and every task and the socket are done.

        A peer that stops reading keeps unsent PDUs in the transport, which
        then never reports the connection lost. After CLOSE_FLUSH_TIMEOUT_S
        the connection is aborted and those PDUs are dropped.
        """
        await self._closed.wait()
        current = asyncio.current_task()
        tasks = [task for task in (*self._tasks, self._reader_task) if task and task is not current]
        try:
            async with asyncio.timeout(CLOSE_FLUSH_TIMEOUT_S):
                await self._wait_tasks_and_socket(tasks)
        except TimeoutError:
            if not self._aborted:
                # Both close() and the bind task may wait here, so only the first one warns.
                self._aborted = True
                logger.warning(
                    "SMSC did not read the last PDUs, aborting the connection",
                    extra={
                        "event": "smpp_close_aborted",
                        "session": self.label,
                        "unsent_octets": self._writer.transport.get_write_buffer_size(),
                    },
                )
            self._writer.transport.abort()
            await self._wait_tasks_and_socket(tasks)

    async def _wait_tasks_and_socket(self, tasks: list[asyncio.Task[None]]) -> None:
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(OSError, ssl.SSLError):
            await self._writer.wait_closed()

    async def close(self, reason: str = "closed by the client") -> None:
        self._shutdown(reason)
        await self.wait_closed()

    async def unbind_and_close(self) -> None:
        """Unbind politely when bound, then close."""
        if self.is_bound:
            with contextlib.suppress(
                SessionClosedError, ResponseTimeoutError, MalformedResponseError
            ):
                await self.request(
                    Unbind(), timeout_s=min(UNBIND_TIMEOUT_S, self.settings.response_timeout_s)
                )
        await self.close("unbound by the client")

    # Reading.

    async def _read_loop(self) -> None:
        reason = "connection closed by the SMSC"
        try:
            while not self._closed.is_set():
                try:
                    pdu = await read_pdu(self._reader)
                except PduError as exc:
                    if not exc.resynchronisable:
                        reason = f"unreadable PDU from the SMSC: {exc}"
                        logger.error(
                            "closing SMPP session after an unreadable PDU",
                            extra={
                                "event": "smpp_framing_error",
                                "session": self.label,
                                "error": str(exc),
                            },
                        )
                        break
                    self._answer_invalid_pdu(exc)
                else:
                    self._dispatch(pdu)
                unsent = self._writer.transport.get_write_buffer_size()
                if unsent > MAX_UNSENT_BYTES:
                    reason = f"the SMSC does not read: {unsent} bytes unsent"
                    logger.error(
                        "closing SMPP session: the SMSC stopped reading",
                        extra={"event": "smpp_peer_not_reading", "session": self.label},
                    )
                    break
        except asyncio.IncompleteReadError:
            pass
        except (ConnectionError, OSError) as exc:
            reason = f"connection lost: {exc}"
        finally:
            self._shutdown(reason)

    def _dispatch(self, pdu: Pdu) -> None:
        if pdu.is_response:
            self._resolve(pdu)
        elif isinstance(pdu, EnquireLink):
            self._send(response_for(pdu))
        elif isinstance(pdu, DeliverSm | DataSm):
            self._take_receipt(pdu)
        elif isinstance(pdu, Unbind):
            logger.warning(
                "SMSC unbound the session",
                extra={"event": "smpp_peer_unbind", "session": self.label},
            )
            self._send(response_for(pdu))
            self._shutdown("unbound by the SMSC")
        elif isinstance(pdu, AlertNotification | Outbind):
            # alert_notification has no response; an outbind to a bound ESME means nothing.
            logger.info(
                "ignored %s from the SMSC",
                pdu.name,
                extra={"event": "smpp_request_ignored", "session": self.label},
            )
        else:
            self._send(
                GenericNack(
                    sequence_number=pdu.sequence_number,
                    command_status=CommandStatus.ESME_RINVCMDID,
                )
            )

    def _resolve(self, response: Pdu) -> None:
        pending = self._pending.get(response.sequence_number)
        if pending is None or pending.future.done():
            logger.warning(
                "response to an unknown or timed-out request dropped",
                extra={
                    "event": "smpp_unmatched_response",
                    "session": self.label,
                    "command": response.name,
                    "sequence_number": response.sequence_number,
                    "command_status": describe_status(response.command_status),
                },
            )
            return
        expected = RESPONSE_TYPES.get(pending.command_id)
        if isinstance(response, GenericNack) or (
            expected is not None and isinstance(response, expected)
        ):
            pending.future.set_result(response)
            return
        pending.future.set_exception(
            MalformedResponseError(
                f"{response.name} is not a response to command 0x{pending.command_id:08X}"
            )
        )

    def _answer_invalid_pdu(self, exc: PduError) -> None:
        logger.warning(
            "invalid PDU from the SMSC",
            extra={"event": "smpp_invalid_pdu", "session": self.label, "error": str(exc)},
        )
        sequence_number = exc.sequence_number or 0
        if exc.command_id is not None and exc.command_id & 0x80000000:
            # A response gets no response. Fail the request it belonged to.
            pending = self._pending.get(sequence_number)
            if pending is not None and not pending.future.done():
                pending.future.set_exception(MalformedResponseError(str(exc)))
            return
        self._send(GenericNack(sequence_number=sequence_number, command_status=exc.command_status))

    def _take_receipt(self, pdu: DeliverSm | DataSm) -> None:
        """Start handling a receipt, or defer it to the SMSC when every receipt slot is taken."""
        if self._receipts_running >= MAX_CONCURRENT_RECEIPTS:
            logger.warning(
                "receipt deferred: the report sink is busy",
                extra={"event": "smpp_receipt_deferred", "session": self.label},
            )
            self._send(response_for(pdu, command_status=CommandStatus.ESME_RX_T_APPN))
            return
        self._receipts_running += 1
        task = self._spawn(self._handle_message(pdu), "receipt")
        # Also called when the task is cancelled before it starts.
        task.add_done_callback(self._end_receipt)

    def _end_receipt(self, _task: asyncio.Future[None]) -> None:
        self._receipts_running -= 1

    async def _handle_message(self, pdu: DeliverSm | DataSm) -> None:
        """Pass a receipt to the report handler, then send its response.

        _take_receipt runs at most MAX_CONCURRENT_RECEIPTS of these at a time.

        A handler failure responds with ESME_RX_T_APPN, so the SMSC keeps the
        receipt and delivers it again later.
        """
        self._log_unknown_tags(pdu)
        status = CommandStatus.ESME_ROK
        report = report_from_pdu(pdu, receipt_id_base=self.settings.receipt_id_base)
        if report is None and not is_receipt(pdu.esm_class):
            logger.info(
                "mobile-originated message ignored",
                extra={"event": "smpp_mo_ignored", "session": self.label},
            )
        if report is not None and self._on_report is not None:
            try:
                await self._on_report(report)
            except Exception:
                logger.exception(
                    "delivery report could not be recorded; the SMSC will send it again",
                    extra={
                        "event": "receipt_sink_failed",
                        "session": self.label,
                        "message_id": report.provider_ref,
                    },
                )
                status = CommandStatus.ESME_RX_T_APPN
        self._send(response_for(pdu, command_status=status))

    def _log_unknown_tags(self, pdu: Pdu) -> None:
        for tlv in pdu.tlvs:
            if not is_known_tag(tlv.tag) and tlv.tag not in self._logged_unknown_tags:
                # Logged once per tag and session, because vendors add theirs to every receipt.
                self._logged_unknown_tags.add(tlv.tag)
                logger.info(
                    "skipped unknown optional parameter 0x%04X in %s",
                    tlv.tag,
                    pdu.name,
                    extra={"event": "smpp_unknown_tlv", "session": self.label, "tag": tlv.tag},
                )

    # Writing and background tasks.

    def _send(self, pdu: Pdu) -> None:
        if self._closed.is_set():
            return
        try:
            self._writer.write(encode_pdu(pdu))
        except (OSError, RuntimeError) as exc:
            self._shutdown(f"write failed: {exc}")

    def _spawn(self, coroutine: Awaitable[None], name: str) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coroutine)
        task.set_name(f"{self.label} {name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _enquire_link_loop(self) -> None:
        while not self._closed.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.enquire_link_s):
                    await self._closed.wait()
            if self._closed.is_set():
                return
            try:
                await self.request(EnquireLink())
            except ResponseTimeoutError:
                logger.warning(
                    "no enquire_link_resp; closing the session",
                    extra={"event": "smpp_enquire_link_timeout", "session": self.label},
                )
                self._shutdown("no answer to enquire_link")
                return
            except (SessionClosedError, MalformedResponseError):
                return


async def open_session(
    host: str,
    port: int,
    settings: SessionSettings,
    *,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout_s: float = 10.0,
    on_report: ReportHandler | None = None,
    label: str = "smpp",
) -> SmppSession:
    """Connect, set TCP_NODELAY, start reading and bind as a transceiver.

    Raises OSError or TimeoutError when the connection fails and BindError
    when the bind does; the connection is closed in every failure case.
    """
    async with asyncio.timeout(connect_timeout_s):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl_context, server_hostname=host if ssl_context else None
        )
    session = SmppSession(reader, writer, settings, on_report=on_report, label=label)
    try:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # Small PDUs must not wait for Nagle's algorithm.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session.start()
        await session.bind()
    except BaseException:
        await asyncio.shield(session.close("bind failed"))
        raise
    return session
