"""The SMPP provider under SMSC faults: throttling, windows, drops, timeouts and rebinds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from budstikke.channels.base import HandOffReceipt
from budstikke.channels.smpp import SmppConfig, SmppProvider
from budstikke.channels.smpp.dev_smsc import DevSmsc
from budstikke.channels.smpp.pdu import (
    DeliverSm,
    EnquireLink,
    EnquireLinkResp,
    SubmitSm,
    UnbindResp,
    encode_pdu,
    read_pdu,
    response_for,
)
from budstikke.channels.smpp.session import (
    MAX_CONCURRENT_RECEIPTS,
    MAX_UNSENT_BYTES,
    SmppSession,
)
from budstikke.channels.smpp.status_codes import CommandStatus
from budstikke.domain.statuses import NotificationStatus
from budstikke.errors import HandOffError

from .conftest import PASSWORD, Harness, StartProvider, make_sms, wait_until

S = CommandStatus


async def hand_off_retrying(
    harness: Harness, body: str, outcomes: Counter[str], attempts: int = 5
) -> HandOffReceipt:
    """Hand off like the dispatcher: retry transient errors, unknown outcomes included."""
    sms = make_sms(body)
    for _ in range(attempts):
        try:
            return await harness.provider.hand_off(sms)
        except HandOffError as exc:
            assert exc.is_transient, exc
            outcomes["unknown" if exc.outcome_unknown else "transient"] += 1
    raise AssertionError(f"{body!r} was not accepted after {attempts} attempts")


# Throttling.


async def test_throttled_submit_retried_once(smsc: DevSmsc, start_provider: StartProvider) -> None:
    smsc.options.message_id_factory = lambda _: "00AA0001"
    harness = await start_provider()
    smsc.throttle_next(1)

    receipt = await harness.provider.hand_off(make_sms())
    await harness.wait_for_reports(1)

    assert len(smsc.submits) == 2
    assert len(smsc.accepted) == 1
    assert receipt.provider_refs == ("00AA0001",)
    (report,) = harness.reports_for("00AA0001")
    assert report.status is NotificationStatus.SMS_DELIVERED


async def test_queue_full_retried_then_accepted(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider()
    smsc.fail_next(1, S.ESME_RMSGQFUL)

    receipt = await harness.provider.hand_off(make_sms())

    assert receipt.status is NotificationStatus.SMS_ACCEPTED
    assert len(smsc.submits) == 2


async def test_queue_full_until_ttl_fails_with_ttl(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider()
    smsc.fail_next(1000, S.ESME_RMSGQFUL)
    sms = make_sms(ttl_s=1.0)
    deadline = time.monotonic() + 1.0

    with pytest.raises(HandOffError) as caught:
        await harness.provider.hand_off(sms)

    assert caught.value.failure_status is NotificationStatus.SMS_FAILED_TTL
    submit_times = [r.at for r in smsc.received if isinstance(r.pdu, SubmitSm)]
    assert len(submit_times) >= 3
    assert max(submit_times) <= deadline + 0.01
    assert smsc.accepted == {}


async def test_throttling_slows_the_bind(smsc: DevSmsc, start_provider: StartProvider) -> None:
    harness = await start_provider(throttle_pause_s=0.1, throttle_max_pause_s=0.4)
    smsc.throttle_next(3)

    started = time.monotonic()
    await harness.provider.hand_off(make_sms())

    # Pauses of 0.1, 0.2 and 0.4 s (each with no jitter) before the accepted attempt.
    assert time.monotonic() - started >= 0.65
    (session,) = harness.provider.sessions
    assert session.pacer.interval_s > 0


async def test_throttling_fails_nothing(smsc: DevSmsc, start_provider: StartProvider) -> None:
    harness = await start_provider(window=4)
    smsc.throttle_next(8)

    receipts = await asyncio.gather(*(harness.provider.hand_off(make_sms()) for _ in range(12)))

    assert [r.status for r in receipts] == [NotificationStatus.SMS_ACCEPTED] * 12
    assert len(smsc.accepted) == 12
    assert len(smsc.submits) == 20


# Window.


async def test_window_of_two_with_slow_answers(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    smsc.options.window = 2
    smsc.options.response_delay_s = 0.5
    harness = await start_provider(window=2)

    started = time.monotonic()
    receipts = await asyncio.gather(*(harness.provider.hand_off(make_sms()) for _ in range(10)))
    elapsed_s = time.monotonic() - started

    assert [r.status for r in receipts] == [NotificationStatus.SMS_ACCEPTED] * 10
    assert 2.4 <= elapsed_s <= 3.2
    assert smsc.max_outstanding == 2
    assert harness.provider.sessions[0].max_outstanding_seen == 2
    assert smsc.responses_with_status(S.ESME_RSUBMITFAIL) == []
    assert smsc.responses_with_status(S.ESME_RMSGQFUL) == []
    assert smsc.window_rejections == 0


# Unknown outcomes and connection loss.


async def test_response_timeout_is_unknown_outcome(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    smsc.options.answer_submits = False
    harness = await start_provider(response_timeout_s=0.3)

    with pytest.raises(HandOffError) as caught:
        await harness.provider.hand_off(make_sms())

    assert caught.value.outcome_unknown
    assert caught.value.is_transient
    assert len(smsc.submits) == 1


async def test_drop_mid_window_loses_nothing(smsc: DevSmsc, start_provider: StartProvider) -> None:
    smsc.options.response_delay_s = 0.3
    harness = await start_provider(window=3)
    smsc.drop_after_submits(3)
    bodies = [f"Din kode er {index:06d}" for index in range(10)]
    outcomes: Counter[str] = Counter()

    receipts = await asyncio.gather(*(hand_off_retrying(harness, b, outcomes) for b in bodies))
    await harness.wait_for_reports(10)

    assert [r.status for r in receipts] == [NotificationStatus.SMS_ACCEPTED] * 10
    # The 3 submits in flight have unknown outcomes, and the caller sends them
    # again. Submits still waiting for the window move to the new session.
    assert outcomes == Counter(unknown=3)
    submitted = Counter(submit.short_message for submit in smsc.submits)
    assert sum(submitted.values()) == 10 + 3
    assert sorted(submitted) == sorted(b.encode() for b in bodies)
    assert len(smsc.accepted) == 10
    assert smsc.binds_accepted == 2
    for receipt in receipts:
        assert harness.reports_for(receipt.provider_refs[0])[0].status is (
            NotificationStatus.SMS_DELIVERED
        )


async def test_reconnect_after_smsc_refuses_for_a_while(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider(bind_wait_s=5.0, reconnect_max_s=0.3)
    connections_before = smsc.connections_accepted

    await smsc.refuse_connections(1.5)
    await wait_until(lambda: not harness.provider.is_ready()[0])
    ready, reason = harness.provider.is_ready()
    started = time.monotonic()
    receipt = await harness.provider.hand_off(make_sms())

    assert not ready
    assert reason.startswith("no SMPP session is bound")
    assert receipt.status is NotificationStatus.SMS_ACCEPTED
    assert time.monotonic() - started >= 1.0
    assert len(smsc.submits) == 1
    assert smsc.connections_accepted == connections_before + 1
    assert harness.provider.is_ready()[0]


async def test_hand_off_gives_up_when_no_bind_in_time(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider(bind_wait_s=0.2)
    await smsc.refuse_connections(5.0)
    await wait_until(lambda: not harness.provider.is_ready()[0])

    with pytest.raises(HandOffError) as caught:
        await harness.provider.hand_off(make_sms())

    assert caught.value.is_transient
    assert not caught.value.outcome_unknown
    assert "no SMPP session is bound" in caught.value.reason


async def test_smsc_restart_rebinds(smsc: DevSmsc, start_provider: StartProvider) -> None:
    harness = await start_provider()

    await smsc.restart(down_s=0.3)
    await wait_until(lambda: smsc.binds_accepted == 2)
    receipt = await harness.provider.hand_off(make_sms())

    assert receipt.status is NotificationStatus.SMS_ACCEPTED


async def test_peer_unbind_answered_and_rebound(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider()

    await smsc.unbind_all()
    await wait_until(lambda: smsc.binds_accepted == 2)

    assert any(isinstance(r.pdu, UnbindResp) for r in smsc.received)
    assert (await harness.provider.hand_off(make_sms())).status is NotificationStatus.SMS_ACCEPTED
    assert smsc.violations == []


async def test_rejected_bind_retried_until_accepted(
    smsc: DevSmsc, start_provider: StartProvider, caplog: pytest.LogCaptureFixture
) -> None:
    smsc.reject_binds(S.ESME_RBINDFAIL)

    with caplog.at_level(logging.DEBUG, logger="budstikke"):
        harness = await start_provider(wait_bound=False)
        await wait_until(lambda: "ESME_RBINDFAIL" in harness.provider.is_ready()[1])
        smsc.reject_binds(None)
        await wait_until(lambda: harness.provider.is_ready()[0])

    events = [getattr(record, "event", None) for record in caplog.records]
    assert "smpp_bind_failed" in events
    assert "smpp_bound" in events
    for record in caplog.records:
        assert PASSWORD not in record.getMessage()
        assert PASSWORD not in str(record.__dict__)


async def test_wrong_password_reported(smsc: DevSmsc, start_provider: StartProvider) -> None:
    smsc.options.password = "other"

    harness = await start_provider(wait_bound=False)
    await wait_until(lambda: "ESME_RINVPASWD" in harness.provider.is_ready()[1])

    assert not harness.provider.is_ready()[0]


async def test_unanswered_enquire_link_closes_session(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    smsc.options.answer_enquire_link = False
    await start_provider(enquire_link_s=0.1, response_timeout_s=0.2)

    await wait_until(lambda: smsc.binds_accepted >= 2)


async def test_smsc_enquire_link_answered(smsc: DevSmsc, start_provider: StartProvider) -> None:
    smsc.options.enquire_link_s = 0.05
    await start_provider()

    await wait_until(lambda: sum(isinstance(r.pdu, EnquireLinkResp) for r in smsc.received) >= 2)

    assert smsc.violations == []


# Error statuses in submit_sm_resp.


@pytest.mark.parametrize(
    ("status", "failure_status"),
    [
        (S.ESME_RINVDSTADR, NotificationStatus.SMS_FAILED_INVALID_RECIPIENT),
        (S.ESME_RINVSRCADR, NotificationStatus.SMS_FAILED),
        (S.ESME_RINVMSGLEN, NotificationStatus.SMS_FAILED),
    ],
)
async def test_permanent_errors(
    smsc: DevSmsc,
    start_provider: StartProvider,
    status: int,
    failure_status: NotificationStatus,
) -> None:
    harness = await start_provider()
    smsc.fail_next(1, status)

    with pytest.raises(HandOffError) as caught:
        await harness.provider.hand_off(make_sms())

    assert caught.value.failure_status is failure_status
    assert len(smsc.submits) == 1


async def test_system_error_on_first_part_is_transient(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider()
    smsc.fail_next(1, S.ESME_RSYSERR)

    with pytest.raises(HandOffError) as caught:
        await harness.provider.hand_off(make_sms())

    assert caught.value.is_transient
    assert not caught.value.outcome_unknown
    assert caught.value.retry_after_s is not None


async def test_system_error_on_later_part_retried_inside(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider()
    smsc.fail_next(1, S.ESME_ROK)
    smsc.fail_next(1, S.ESME_RSYSERR)

    receipt = await harness.provider.hand_off(make_sms("x" * 200))

    assert len(receipt.provider_refs) == 2
    assert len(smsc.submits) == 3
    assert smsc.duplicate_parts == []


async def test_bind_state_error_rebinds_and_resends(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider()
    smsc.fail_next(1, S.ESME_RINVBNDSTS)

    receipt = await harness.provider.hand_off(make_sms())

    assert receipt.status is NotificationStatus.SMS_ACCEPTED
    assert len(smsc.submits) == 2
    assert smsc.binds_accepted == 2


async def test_stop_fails_waiting_hand_off(smsc: DevSmsc, start_provider: StartProvider) -> None:
    harness = await start_provider(bind_wait_s=5.0)
    await smsc.refuse_connections(5.0)
    await wait_until(lambda: not harness.provider.is_ready()[0])

    waiting = asyncio.create_task(harness.provider.hand_off(make_sms()))
    await asyncio.sleep(0.1)
    await harness.provider.stop()

    with pytest.raises(HandOffError, match="stopping"):
        await waiting


async def test_malformed_response_is_unknown_outcome() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        bind = await read_pdu(reader)
        writer.write(encode_pdu(response_for(bind, system_id="raw")))
        submit = await read_pdu(reader)
        body = b"x" * 70 + b"\x00"
        header = struct.pack(">IIII", 16 + len(body), 0x80000004, 0, submit.sequence_number)
        writer.write(header + body)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await read_pdu(reader)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = SmppProvider(SmppConfig(host="127.0.0.1", port=port, system_id="raw"))

    async def sink(report: object) -> None:
        raise AssertionError("no report expected")

    await provider.start(sink)
    try:
        await wait_until(lambda: provider.is_ready()[0])
        with pytest.raises(HandOffError) as caught:
            await provider.hand_off(make_sms())
    finally:
        await provider.stop()
        server.close()
        await server.wait_closed()

    assert caught.value.outcome_unknown
    assert "malformed" in caught.value.reason


# A flooding SMSC.


@contextlib.asynccontextmanager
async def flooding_smsc(
    flood: bytes, *, receive_buffer: int | None = None
) -> AsyncIterator[tuple[int, asyncio.Event]]:
    """Run a raw SMSC that binds, writes `flood` at once and never reads again.

    `receive_buffer` sets SO_RCVBUF of its sockets, so that a small flood
    fills them. Yields its port and an event set once the flood is written.
    """
    written = asyncio.Event()
    finished = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        bind = await read_pdu(reader)
        writer.write(encode_pdu(response_for(bind, system_id="raw")))
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(flood)
        written.set()
        await finished.wait()
        writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    if receive_buffer is not None:
        server.sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    try:
        yield server.sockets[0].getsockname()[1], written
    finally:
        finished.set()
        server.close()
        await server.wait_closed()


async def test_receipt_flood_defers_extra_receipts(caplog: pytest.LogCaptureFixture) -> None:
    receipt = DeliverSm(
        sequence_number=1,
        esm_class=0x04,
        short_message=b"id:0000000001 sub:001 dlvrd:001 stat:DELIVRD err:000",
    )
    release_sink = asyncio.Event()
    started_reports = 0

    async def blocked_sink(report: object) -> None:
        nonlocal started_reports
        started_reports += 1
        await release_sink.wait()

    flood_size = MAX_CONCURRENT_RECEIPTS + 2000
    async with flooding_smsc(encode_pdu(receipt) * flood_size) as (port, written):
        provider = SmppProvider(SmppConfig(host="127.0.0.1", port=port, system_id="raw"))
        await provider.start(blocked_sink)
        try:
            await wait_until(lambda: provider.is_ready()[0])
            await written.wait()
            await wait_until(lambda: deferred_receipts(caplog) >= flood_size - started_reports)
            reports_while_blocked = started_reports
            tasks_while_blocked = len(asyncio.all_tasks())
        finally:
            release_sink.set()
            await provider.stop()

    assert reports_while_blocked == MAX_CONCURRENT_RECEIPTS
    # One task per receipt slot, plus the bind, reader, enquire_link and test tasks.
    assert tasks_while_blocked < MAX_CONCURRENT_RECEIPTS + 20


def deferred_receipts(caplog: pytest.LogCaptureFixture) -> int:
    events = [getattr(record, "event", None) for record in caplog.records]
    return events.count("smpp_receipt_deferred")


@contextlib.asynccontextmanager
async def unread_flood(flood: bytes) -> AsyncIterator[tuple[SmppProvider, SmppSession]]:
    """Start a provider against an SMSC that sends `flood` and never reads.

    Both sides get small socket buffers, so the responses stay in the
    provider's write buffer. Yields once the flood is written. The caller
    stops the provider.
    """

    async def sink(report: object) -> None:
        raise AssertionError("no report expected")

    async with flooding_smsc(flood, receive_buffer=4096) as (port, written):
        provider = SmppProvider(SmppConfig(host="127.0.0.1", port=port, system_id="raw"))
        await provider.start(sink)
        await wait_until(lambda: provider.is_ready()[0])
        (session,) = provider.sessions
        sock = session._writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        await written.wait()
        yield provider, session


async def test_stop_with_unread_responses() -> None:
    # 200,000 enquire_link_resp are 3.2 MB, more than the small socket buffers hold.
    flood = encode_pdu(EnquireLink(sequence_number=1)) * 200_000

    async with unread_flood(flood) as (provider, _session):
        await asyncio.sleep(1)
        started = time.monotonic()
        async with asyncio.timeout(15):
            await provider.stop()
        stop_s = time.monotonic() - started

    # The unbind waits up to 2 s for unbind_resp, the close up to 2 s more.
    assert stop_s < 6


async def test_unread_responses_close_session(caplog: pytest.LogCaptureFixture) -> None:
    # One enquire_link_resp is 16 octets, so these leave more than MAX_UNSENT_BYTES unsent.
    flood = encode_pdu(EnquireLink(sequence_number=1)) * (MAX_UNSENT_BYTES // 16 + 20_000)

    async with unread_flood(flood) as (provider, session):
        try:
            await wait_until(lambda: session.is_closed, timeout_s=30)
        finally:
            await provider.stop()

    events = [getattr(record, "event", None) for record in caplog.records]
    assert "smpp_peer_not_reading" in events
