"""A strict SMSC for tests and local use: an asyncio SMPP 3.4 server on one port.

It accepts binds (any credentials unless a system_id and password are set),
answers submit_sm with message ids, checks every PDU strictly (lengths,
TON/NPI, flags, times, data_coding against content, user data headers,
concatenated parts that agree with each other) and sends delivery receipts
after `receipt_delay_s` with an outcome drawn from `outcomes`. Every PDU
it receives is recorded for assertions. Faults on command: throttle or fail
the next submits, answer slowly or never, enforce a window, drop every
connection now or after N more submits, reject binds, refuse connections
for a while, restart.

Run it with `python -m budstikke.channels.smpp.dev_smsc --port 2775`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from budstikke.channels.smpp.dev_smsc_checks import (
    Concatenation,
    Violation,
    check_bind,
    check_sequence_number,
    check_submit_sm,
    describe_pdu,
    parse_user_data_header,
)
from budstikke.channels.smpp.errors import PduError
from budstikke.channels.smpp.pdu import (
    RESPONSE_TYPES,
    SEQUENCE_NUMBER_MAX,
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DataSm,
    DeliverSm,
    EnquireLink,
    GenericNack,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    encode_pdu,
    read_pdu,
    response_for,
)
from budstikke.channels.smpp.receipts import STAT_TO_MESSAGE_STATE
from budstikke.channels.smpp.status_codes import CommandStatus
from budstikke.channels.smpp.tlv import Tlv, TlvTag

logger = logging.getLogger(__name__)

S = CommandStatus

# A receipt without deliver_sm_resp within this time is sent again later.
RECEIPT_RESPONSE_TIMEOUT_S = 5.0
_RECEIPT_RETRY_S = 0.1

_FAILED_STATS = frozenset({"UNDELIV", "REJECTD", "EXPIRED", "DELETED", "UNKNOWN"})


@dataclass
class DevSmscOptions:
    """Settings of the test SMSC; tests may change them while it runs."""

    host: str = "127.0.0.1"
    port: int = 2775
    # When set, binds must carry this system_id and password.
    system_id: str | None = None
    password: str | None = field(default=None, repr=False)
    # Seconds from submit_sm_resp to the final receipt.
    receipt_delay_s: float = 0.5
    send_receipts: bool = True
    # Final receipt states and their weights, e.g. {"DELIVRD": 0.9, "UNDELIV": 0.1}.
    outcomes: dict[str, float] = field(default_factory=lambda: {"DELIVRD": 1.0})
    # Receipts sent before the final one, e.g. ("ACCEPTD", "ENROUTE").
    intermediate_states: tuple[str, ...] = ()
    # Include receipted_message_id and message_state TLVs in receipts.
    receipt_tlvs: bool = True
    # Send receipts as data_sm, with the text in a message_payload TLV.
    receipts_as_data_sm: bool = False
    # How the receipt writes the message id: "same", "stripped" (no leading
    # zeros), "lower" or "upper" (letter case) or "decimal" (the hex id as a
    # decimal number).
    receipt_id_form: str = "same"
    # Send the receipt before the submit_sm_resp that carries its message id.
    receipt_before_response: bool = False
    # Seconds before each submit_sm_resp.
    response_delay_s: float = 0.0
    answer_submits: bool = True
    answer_enquire_link: bool = True
    # Unanswered submit_sm per connection beyond which submits get ESME_RMSGQFUL.
    window: int | None = None
    # Send enquire_link to bound ESMEs this often.
    enquire_link_s: float | None = None
    first_message_id: int = 1
    # Makes the message id from a counter; the default writes 8 hex digits (00000001).
    message_id_factory: Callable[[int], str] | None = None
    # Added to every receipt, e.g. a vendor TLV the ESME does not know.
    receipt_extra_tlvs: tuple[Tlv, ...] = ()
    # Serve TLS (smpps) with this context.
    ssl_context: ssl.SSLContext | None = None
    seed: int | None = None
    # Called with one readable line per PDU received or sent.
    echo: Callable[[str], None] | None = None
    # Keep every PDU and accepted message in the records below for assertions.
    # A long-running SMSC turns this off, or its memory grows with each message.
    keep_history: bool = True


@dataclass(frozen=True)
class ReceivedPdu:
    connection_id: int
    pdu: Pdu
    at: float


@dataclass
class AcceptedMessage:
    message_id: str
    submit: SubmitSm
    connection_id: int
    system_id: str
    accepted_at: datetime


@dataclass
class _Connection:
    connection_id: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    system_id: str = ""
    bind_type: type[Pdu] | None = None
    outstanding: int = 0
    last_sequence: int = 0
    pending: dict[int, asyncio.Future[Pdu]] = field(default_factory=dict)

    @property
    def can_transmit(self) -> bool:
        return self.bind_type in (BindTransmitter, BindTransceiver)

    @property
    def can_receive(self) -> bool:
        return self.bind_type in (BindReceiver, BindTransceiver)

    def send(self, pdu: Pdu) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode_pdu(pdu))

    def numbered(self, pdu: Pdu) -> Pdu:
        """Return the request with this connection's next sequence number."""
        self.last_sequence = self.last_sequence % SEQUENCE_NUMBER_MAX + 1
        return replace(pdu, sequence_number=self.last_sequence)

    async def request(self, pdu: Pdu, timeout_s: float) -> Pdu | None:
        """Send a numbered request; return its response, or None on timeout or disconnect."""
        sequence_number = pdu.sequence_number
        future: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        self.pending[sequence_number] = future
        try:
            self.send(pdu)
            async with asyncio.timeout(timeout_s):
                return await future
        except (TimeoutError, ConnectionError):
            return None
        finally:
            self.pending.pop(sequence_number, None)


class DevSmsc:
    """The test SMSC; use `async with DevSmsc(options) as smsc:` or start() and stop()."""

    def __init__(self, options: DevSmscOptions | None = None) -> None:
        self.options = options or DevSmscOptions()
        self._rng = random.Random(self.options.seed)  # noqa: S311 - test outcomes, not secrets
        self._server: asyncio.Server | None = None
        self._connections: dict[int, _Connection] = {}
        self._connection_tasks: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._connection_ids = itertools.count(1)
        self._message_ids = itertools.count(self.options.first_message_id)
        self._forced_statuses: deque[int] = deque()
        self._drop_after_submits: int | None = None
        self._open_concatenations: dict[tuple[str, str, int], tuple[SubmitSm, set[int]]] = {}
        self.port = self.options.port
        self.bind_status: int = S.ESME_ROK
        # Records for assertions.
        self.received: list[ReceivedPdu] = []
        self.sent: list[Pdu] = []
        self.accepted: dict[str, AcceptedMessage] = {}
        self.violations: list[str] = []
        self.duplicate_parts: list[Concatenation] = []
        self.receipts_acknowledged: list[str] = []
        self.window_rejections = 0
        self.max_outstanding = 0
        self.connections_accepted = 0
        self.binds_accepted = 0

    # Lifecycle.

    async def __aenter__(self) -> DevSmsc:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on the configured host and port; port 0 picks a free port (see `port`)."""
        self._server = await asyncio.start_server(
            self._serve_connection, self.options.host, self.port, ssl=self.options.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info(
            "test SMSC listening",
            extra={"event": "dev_smsc_listening", "host": self.options.host, "port": self.port},
        )
        self._echo(f"listening on {self.options.host}:{self.port}")

    async def stop(self) -> None:
        """Stop listening, drop every connection and cancel pending receipts."""
        await self._stop_listening()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _stop_listening(self) -> None:
        await self.drop_connections()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # Fault injection.

    def throttle_next(self, count: int, status: int = S.ESME_RTHROTTLED) -> None:
        """Reject the next `count` valid submit_sm with a throttling status."""
        self._forced_statuses.extend([status] * count)

    def fail_next(self, count: int, status: int) -> None:
        """Respond to the next `count` valid submit_sm with `status`."""
        self._forced_statuses.extend([status] * count)

    def reject_binds(self, status: int | None = S.ESME_RBINDFAIL) -> None:
        """Reject every bind with `status` from now on; None accepts binds again."""
        self.bind_status = S.ESME_ROK if status is None else status

    def drop_after_submits(self, count: int) -> None:
        """Drop every connection, unanswered, when `count` more submit_sm have arrived."""
        self._drop_after_submits = count

    async def drop_connections(self) -> None:
        """Abort every TCP connection at once, with no unbind."""
        for connection in list(self._connections.values()):
            connection.writer.transport.abort()
        await asyncio.gather(*self._connection_tasks, return_exceptions=True)

    async def unbind_all(self) -> None:
        """Send unbind on every bound connection, as an SMSC does before maintenance."""

        async def unbind(connection: _Connection) -> None:
            pdu = connection.numbered(Unbind())
            self._record_sent(pdu)
            self._echo(f"[{connection.connection_id}] -> {describe_pdu(pdu)}")
            await connection.request(pdu, RECEIPT_RESPONSE_TIMEOUT_S)
            connection.writer.close()

        bound = [c for c in self._connections.values() if c.bind_type is not None]
        await asyncio.gather(*(unbind(connection) for connection in bound))

    async def refuse_connections(self, duration_s: float) -> None:
        """Drop every connection and refuse new ones for `duration_s`, then listen again."""
        await self._stop_listening()
        self._echo(f"refusing connections for {duration_s} s")

        async def listen_later() -> None:
            await asyncio.sleep(duration_s)
            await self.start()

        self._spawn(listen_later())

    async def restart(self, down_s: float = 0.0) -> None:
        """Drop everything, stay down for `down_s` and listen again on the same port."""
        await self._stop_listening()
        await asyncio.sleep(down_s)
        await self.start()

    # Recorded facts.

    @property
    def submits(self) -> list[SubmitSm]:
        return [r.pdu for r in self.received if isinstance(r.pdu, SubmitSm)]

    @property
    def bound_connections(self) -> int:
        return sum(1 for c in self._connections.values() if c.bind_type is not None)

    def responses_with_status(self, status: int) -> list[Pdu]:
        return [pdu for pdu in self.sent if pdu.is_response and pdu.command_status == status]

    # Serving.

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connection_tasks.add(task)
        connection = _Connection(next(self._connection_ids), reader, writer)
        self._connections[connection.connection_id] = connection
        self.connections_accepted += 1
        self._echo(f"[{connection.connection_id}] connected")
        try:
            await self._read_loop(connection)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._connections.pop(connection.connection_id, None)
            for future in connection.pending.values():
                if not future.done():
                    future.set_exception(ConnectionResetError("connection closed"))
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self._echo(f"[{connection.connection_id}] disconnected")
            self._connection_tasks.discard(task)

    async def _read_loop(self, connection: _Connection) -> None:
        while True:
            try:
                pdu = await read_pdu(connection.reader)
            except PduError as exc:
                self._violation(connection, str(exc))
                self._answer(
                    connection,
                    GenericNack(
                        sequence_number=exc.sequence_number or 0,
                        command_status=exc.command_status,
                    ),
                )
                if not exc.resynchronisable:
                    return
                continue
            if self.options.keep_history:
                self.received.append(ReceivedPdu(connection.connection_id, pdu, time.monotonic()))
            self._echo(f"[{connection.connection_id}] <- {describe_pdu(pdu)}")
            if not self._handle(connection, pdu):
                return

    def _handle(self, connection: _Connection, pdu: Pdu) -> bool:
        """Handle one PDU; return False when the connection is to close."""
        violation = check_sequence_number(pdu)
        if violation is not None:
            self._violation(connection, violation.message)
        if pdu.is_response:
            future = connection.pending.get(pdu.sequence_number)
            if future is None or future.done():
                self._violation(connection, f"{pdu.name} answers no request of ours")
            else:
                future.set_result(pdu)
            return True
        if isinstance(pdu, BindTransmitter | BindReceiver | BindTransceiver):
            self._handle_bind(connection, pdu)
        elif isinstance(pdu, EnquireLink):
            if self.options.answer_enquire_link:
                self._answer(connection, response_for(pdu))
        elif isinstance(pdu, Unbind):
            self._answer(connection, response_for(pdu))
            connection.writer.close()
            return False
        elif connection.bind_type is None:
            self._violation(connection, f"{pdu.name} before a bind")
            self._answer_error(connection, pdu, S.ESME_RINVBNDSTS)
        elif isinstance(pdu, SubmitSm):
            self._handle_submit(connection, pdu)
        else:
            self._answer_error(connection, pdu, S.ESME_RINVCMDID)
        return True

    def _handle_bind(
        self, connection: _Connection, pdu: BindTransmitter | BindReceiver | BindTransceiver
    ) -> None:
        status: int = S.ESME_ROK
        violation = check_bind(pdu)
        if connection.bind_type is not None:
            status = S.ESME_RALYBND
        elif violation is not None:
            self._violation(connection, violation.message)
            status = violation.command_status
        elif self.options.system_id is not None and pdu.system_id != self.options.system_id:
            status = S.ESME_RINVSYSID
        elif self.options.password is not None and pdu.password != self.options.password:
            status = S.ESME_RINVPASWD
        elif self.bind_status != S.ESME_ROK:
            status = self.bind_status
        if status == S.ESME_ROK:
            connection.bind_type = type(pdu)
            connection.system_id = pdu.system_id
            self.binds_accepted += 1
            if self.options.enquire_link_s:
                self._spawn(self._enquire_link_loop(connection))
        self._answer(connection, response_for(pdu, command_status=status, system_id="budstikke"))

    def _handle_submit(self, connection: _Connection, pdu: SubmitSm) -> None:
        if not connection.can_transmit:
            self._answer_error(connection, pdu, S.ESME_RINVBNDSTS)
            return
        if self.options.window is not None and connection.outstanding >= self.options.window:
            self.window_rejections += 1
            self._answer_error(connection, pdu, S.ESME_RMSGQFUL)
            return
        violation = check_submit_sm(pdu) or self._check_concatenation(pdu)
        if violation is not None:
            self._violation(connection, violation.message)
            self._answer_error(connection, pdu, violation.command_status)
            return
        connection.outstanding += 1
        self.max_outstanding = max(self.max_outstanding, connection.outstanding)
        if self._drop_after_submits is not None:
            self._drop_after_submits -= 1
            if self._drop_after_submits <= 0:
                self._drop_after_submits = None
                self._echo("dropping every connection with submits in flight")
                self._spawn(self.drop_connections())
                return
        if not self.options.answer_submits:
            return
        status = self._forced_statuses.popleft() if self._forced_statuses else S.ESME_ROK
        if self.options.response_delay_s > 0:
            self._spawn(self._answer_submit_later(connection, pdu, status))
        else:
            self._answer_submit(connection, pdu, status)

    async def _answer_submit_later(
        self, connection: _Connection, pdu: SubmitSm, status: int
    ) -> None:
        await asyncio.sleep(self.options.response_delay_s)
        self._answer_submit(connection, pdu, status)

    def _answer_submit(self, connection: _Connection, pdu: SubmitSm, status: int) -> None:
        connection.outstanding -= 1
        if connection.connection_id not in self._connections:
            return
        if status != S.ESME_ROK:
            self._answer(
                connection, SubmitSmResp(sequence_number=pdu.sequence_number, command_status=status)
            )
            return
        counter = next(self._message_ids)
        factory = self.options.message_id_factory
        message_id = factory(counter) if factory is not None else f"{counter:08X}"
        accepted = AcceptedMessage(
            message_id, pdu, connection.connection_id, connection.system_id, datetime.now(UTC)
        )
        if self.options.keep_history:
            self.accepted[message_id] = accepted
        self._record_part(pdu)
        if self.options.receipt_before_response and self._wants_receipt(pdu):
            self._spawn(self._send_receipts(accepted, delay_s=0.0))
            self._spawn(self._answer_after_receipt(connection, pdu, message_id))
            return
        self._answer(
            connection, SubmitSmResp(sequence_number=pdu.sequence_number, message_id=message_id)
        )
        if self._wants_receipt(pdu):
            self._spawn(self._send_receipts(accepted, delay_s=self.options.receipt_delay_s))

    async def _answer_after_receipt(
        self, connection: _Connection, pdu: SubmitSm, message_id: str
    ) -> None:
        # Let the receipt task write its deliver_sm first.
        await asyncio.sleep(0.05)
        self._answer(
            connection, SubmitSmResp(sequence_number=pdu.sequence_number, message_id=message_id)
        )

    def _wants_receipt(self, pdu: SubmitSm) -> bool:
        return self.options.send_receipts and pdu.registered_delivery & 0x03 in (1, 2)

    # Concatenated parts.

    def _check_concatenation(self, pdu: SubmitSm) -> Violation | None:
        """Check a part against the first accepted part with the same addresses and reference."""
        if not pdu.esm_class & 0x40:
            return None
        header = parse_user_data_header(pdu.short_message)
        if not isinstance(header, Concatenation):
            return None
        key = (pdu.source_addr, pdu.destination_addr, header.reference)
        first = self._open_concatenations.get(key)
        if first is None:
            return None

        first_pdu = first[0]
        first_header = parse_user_data_header(first_pdu.short_message)
        assert isinstance(first_header, Concatenation)
        differences = [
            name
            for name in (
                "data_coding",
                "source_addr_ton",
                "source_addr_npi",
                "dest_addr_ton",
                "dest_addr_npi",
                "registered_delivery",
                "esm_class",
            )
            if getattr(pdu, name) != getattr(first_pdu, name)
        ]
        if first_header.total != header.total:
            differences.append("total parts")

        if differences:
            return Violation(
                S.ESME_RSUBMITFAIL,
                f"part {header.sequence} of reference {header.reference} differs from an "
                f"earlier part in {', '.join(differences)}",
            )
        return None

    def _record_part(self, pdu: SubmitSm) -> None:
        if not pdu.esm_class & 0x40:
            return
        header = parse_user_data_header(pdu.short_message)
        if not isinstance(header, Concatenation):
            return
        key = (pdu.source_addr, pdu.destination_addr, header.reference)
        _, sequences = self._open_concatenations.setdefault(key, (pdu, set()))
        if header.sequence in sequences:
            self.duplicate_parts.append(header)
        sequences.add(header.sequence)
        if len(sequences) == header.total:
            del self._open_concatenations[key]

    # Receipts.

    def _pick_outcome(self) -> str:
        stats = list(self.options.outcomes)
        weights = list(self.options.outcomes.values())
        return self._rng.choices(stats, weights)[0]

    def _receipt_id(self, message_id: str) -> str:
        form = self.options.receipt_id_form
        if form == "stripped":
            return message_id.lstrip("0") or "0"
        if form == "lower":
            return message_id.lower()
        if form == "upper":
            return message_id.upper()
        if form == "decimal":
            return str(int(message_id, 16))
        return message_id

    async def _send_receipts(self, accepted: AcceptedMessage, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        for stat in (*self.options.intermediate_states, self._pick_outcome()):
            await self._deliver_until_acknowledged(accepted, stat)

    async def _deliver_until_acknowledged(self, accepted: AcceptedMessage, stat: str) -> None:
        receipt = self._receipt_pdu(accepted, stat)
        while True:
            connection = self._receiver_for(accepted)
            if connection is not None:
                pdu = connection.numbered(receipt)
                self._record_sent(pdu)
                self._echo(f"[{connection.connection_id}] -> {describe_pdu(pdu)} stat={stat}")
                response = await connection.request(pdu, RECEIPT_RESPONSE_TIMEOUT_S)
                if response is not None and response.command_status == S.ESME_ROK:
                    if self.options.keep_history:
                        self.receipts_acknowledged.append(accepted.message_id)
                    return
            await asyncio.sleep(_RECEIPT_RETRY_S)

    def _receiver_for(self, accepted: AcceptedMessage) -> _Connection | None:
        own = self._connections.get(accepted.connection_id)
        if own is not None and own.can_receive:
            return own
        for connection in self._connections.values():
            if connection.can_receive and connection.system_id == accepted.system_id:
                return connection
        return None

    def _receipt_pdu(self, accepted: AcceptedMessage, stat: str) -> DeliverSm | DataSm:
        submit = accepted.submit
        now = datetime.now(UTC)
        receipt_id = self._receipt_id(accepted.message_id)
        error_code = "001" if stat in _FAILED_STATS else "000"
        text = (
            f"id:{receipt_id} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
            f"submit date:{accepted.accepted_at:%y%m%d%H%M} done date:{now:%y%m%d%H%M} "
            f"stat:{stat} err:{error_code} text:"
        )
        tlvs: tuple[Tlv, ...] = ()
        if self.options.receipt_tlvs:
            tlvs = (
                Tlv.cstring(TlvTag.RECEIPTED_MESSAGE_ID, receipt_id),
                Tlv.u8(TlvTag.MESSAGE_STATE, STAT_TO_MESSAGE_STATE.get(stat, 7)),
            )
        tlvs += self.options.receipt_extra_tlvs
        if self.options.receipts_as_data_sm:
            return DataSm(
                source_addr_ton=submit.dest_addr_ton,
                source_addr_npi=submit.dest_addr_npi,
                source_addr=submit.destination_addr,
                dest_addr_ton=submit.source_addr_ton,
                dest_addr_npi=submit.source_addr_npi,
                destination_addr=submit.source_addr,
                esm_class=0x04,
                tlvs=(*tlvs, Tlv(TlvTag.MESSAGE_PAYLOAD, text.encode("ascii"))),
            )
        return DeliverSm(
            source_addr_ton=submit.dest_addr_ton,
            source_addr_npi=submit.dest_addr_npi,
            source_addr=submit.destination_addr,
            dest_addr_ton=submit.source_addr_ton,
            dest_addr_npi=submit.source_addr_npi,
            destination_addr=submit.source_addr,
            esm_class=0x04,
            short_message=text.encode("ascii"),
            tlvs=tlvs,
        )

    async def _enquire_link_loop(self, connection: _Connection) -> None:
        interval_s = self.options.enquire_link_s or 0.0
        while connection.connection_id in self._connections:
            await asyncio.sleep(interval_s)
            response = await connection.request(
                connection.numbered(EnquireLink()), RECEIPT_RESPONSE_TIMEOUT_S
            )
            if response is None and connection.connection_id in self._connections:
                self._violation(connection, "no enquire_link_resp")

    # Helpers.

    def _record_sent(self, pdu: Pdu) -> None:
        if self.options.keep_history:
            self.sent.append(pdu)

    def _answer(self, connection: _Connection, pdu: Pdu) -> None:
        self._record_sent(pdu)
        self._echo(f"[{connection.connection_id}] -> {describe_pdu(pdu)}")
        connection.send(pdu)

    def _answer_error(self, connection: _Connection, request: Pdu, status: int) -> None:
        if request.command_id in RESPONSE_TYPES:
            self._answer(connection, response_for(request, command_status=status))
        else:
            self._answer(
                connection,
                GenericNack(sequence_number=request.sequence_number, command_status=status),
            )

    def _violation(self, connection: _Connection, message: str) -> None:
        self.violations.append(message)
        logger.warning(
            "test SMSC found an invalid PDU",
            extra={
                "event": "dev_smsc_violation",
                "connection": connection.connection_id,
                "error": message,
            },
        )
        self._echo(f"[{connection.connection_id}] !! {message}")

    def _echo(self, line: str) -> None:
        if self.options.echo is not None:
            self.options.echo(line)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def run_dev_smsc(
    host: str = "127.0.0.1",
    port: int = 2775,
    system_id: str | None = None,
    password: str | None = None,
    receipt_delay_s: float = 0.5,
    *,
    outcomes: dict[str, float] | None = None,
    echo: Callable[[str], None] | None = print,
    ready: Callable[[DevSmsc], None] | None = None,
) -> None:
    """Run the test SMSC until the task is cancelled; `ready` gets it once it listens."""
    options = DevSmscOptions(
        host=host,
        port=port,
        system_id=system_id,
        password=password,
        receipt_delay_s=receipt_delay_s,
        echo=echo,
        # It runs until stopped, so records for assertions would only grow.
        keep_history=False,
    )
    if outcomes is not None:
        options.outcomes = outcomes
    async with DevSmsc(options) as smsc:
        if ready is not None:
            ready(smsc)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run budstikke's strict test SMSC.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=2775, help="TCP port to listen on")
    parser.add_argument("--system-id", help="accept binds only with this system_id")
    parser.add_argument("--password", help="accept binds only with this password")
    parser.add_argument(
        "--receipt-delay", type=float, default=0.5, help="seconds before each delivery receipt"
    )
    arguments = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_dev_smsc(
                arguments.host,
                arguments.port,
                arguments.system_id,
                arguments.password,
                arguments.receipt_delay,
            )
        )


if __name__ == "__main__":
    main()
