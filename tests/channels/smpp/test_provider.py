"""The SMPP provider against the test SMSC over TCP on 127.0.0.1: hand-off and receipts."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time

import pytest

from budstikke.channels.base import HandOffReceipt
from budstikke.channels.smpp.dev_smsc import DevSmsc
from budstikke.channels.smpp.pdu import DataSmResp, DeliverSm, DeliverSmResp, SubmitSm
from budstikke.channels.smpp.tlv import Tlv
from budstikke.domain.statuses import NotificationStatus
from budstikke.errors import HandOffError

from .conftest import StartProvider, make_sms, wait_until


async def test_hand_off_accepted_then_delivered(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider()

    receipt = await harness.provider.hand_off(make_sms())

    assert receipt == HandOffReceipt(NotificationStatus.SMS_ACCEPTED, ("00000001",))
    (submit,) = smsc.submits
    assert (submit.source_addr, submit.source_addr_ton, submit.source_addr_npi) == ("Kommune", 5, 0)
    assert (submit.destination_addr, submit.dest_addr_ton, submit.dest_addr_npi) == (
        "4799999999",
        1,
        1,
    )
    assert submit.registered_delivery == 1
    assert submit.validity_period == "000000000500000R"
    assert submit.data_coding == 0
    assert submit.esm_class == 0
    await harness.wait_for_reports(1)
    (report,) = harness.reports_for("00000001")
    assert report.status is NotificationStatus.SMS_DELIVERED
    assert smsc.violations == []


async def test_numeric_sender_is_international(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider()

    await harness.provider.hand_off(make_sms(sender="4799999999"))

    (submit,) = smsc.submits
    assert (submit.source_addr, submit.source_addr_ton, submit.source_addr_npi) == (
        "4799999999",
        1,
        1,
    )


async def test_source_ton_npi_override(smsc: DevSmsc, start_provider: StartProvider) -> None:
    harness = await start_provider(source_ton=0, source_npi=1)

    await harness.provider.hand_off(make_sms(sender="123456"))

    (submit,) = smsc.submits
    assert (submit.source_addr_ton, submit.source_addr_npi) == (0, 1)


async def test_long_message_parts_carry_validity(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider()

    receipt = await harness.provider.hand_off(make_sms(("Din kode er 482913. " * 10)[:200]))

    assert len(receipt.provider_refs) == 2
    first, second = smsc.submits
    assert (
        first.short_message[:5]
        == second.short_message[:5]
        == bytes([5, 0, 3]) + first.short_message[3:4] + b"\x02"
    )
    assert [first.short_message[5], second.short_message[5]] == [1, 2]
    assert [first.validity_period, second.validity_period] == ["000000000500000R"] * 2
    assert [first.registered_delivery, second.registered_delivery] == [1, 1]
    await harness.wait_for_reports(2)
    assert smsc.violations == []


async def test_references_differ_between_messages(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider()

    await harness.provider.hand_off(make_sms("x" * 200))
    await harness.provider.hand_off(make_sms("y" * 200))

    references = [submit.short_message[3] for submit in smsc.submits]
    assert references[0] == references[1]
    assert references[2] == references[3]
    assert references[0] != references[2]


async def test_cyrillic_parts_share_coding_and_reference(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider()

    await harness.provider.hand_off(make_sms(("Привет" * 20)[:100]))

    first, second = smsc.submits
    assert (first.data_coding, second.data_coding) == (8, 8)
    assert (first.esm_class, second.esm_class) == (0x40, 0x40)
    assert first.short_message[3] == second.short_message[3]
    assert [len(first.short_message), len(second.short_message)] == [140, 72]
    assert smsc.violations == []


async def test_2449_septets_go_out_as_17_submits(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider()

    receipt = await harness.provider.hand_off(make_sms("x" * 2449))

    assert len(receipt.provider_refs) == 17
    assert len(smsc.submits) == 17
    assert {submit.short_message[4] for submit in smsc.submits} == {17}
    assert smsc.violations == []


# Receipt matching.


async def test_receipt_id_without_leading_zeros_matches(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    smsc.options.message_id_factory = lambda _: "00A1B2C3"
    smsc.options.receipt_id_form = "stripped"
    harness = await start_provider()

    receipt = await harness.provider.hand_off(make_sms())
    await harness.wait_for_reports(1)

    assert receipt.provider_refs == ("00A1B2C3",)
    assert harness.reports[0].provider_ref == "A1B2C3"
    (report,) = harness.reports_for("00A1B2C3")
    assert report.status is NotificationStatus.SMS_DELIVERED


async def test_decimal_receipt_id_matches_hex(smsc: DevSmsc, start_provider: StartProvider) -> None:
    smsc.options.message_id_factory = lambda _: "00A1B2C3"
    smsc.options.receipt_id_form = "decimal"
    harness = await start_provider(receipt_id_base="decimal")

    await harness.provider.hand_off(make_sms())
    await harness.wait_for_reports(1)

    assert harness.reports[0].provider_ref == "A1B2C3"
    assert len(harness.reports_for("00A1B2C3")) == 1


async def test_receipt_id_in_other_case_matches(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    smsc.options.message_id_factory = lambda _: "ab12cd-ef3456-0001"
    smsc.options.receipt_id_form = "upper"
    harness = await start_provider()

    receipt = await harness.provider.hand_off(make_sms())
    await harness.wait_for_reports(1)

    assert receipt.provider_refs == ("ab12cd-ef3456-0001",)
    assert harness.reports[0].provider_ref == "AB12CD-EF3456-0001"
    assert harness.reports_for("ab12cd-ef3456-0001")[0].status is NotificationStatus.SMS_DELIVERED


async def test_receipt_with_unknown_tlv_answered_and_applied(
    smsc: DevSmsc, start_provider: StartProvider, caplog: pytest.LogCaptureFixture
) -> None:
    smsc.options.message_id_factory = lambda _: "0000123456"
    smsc.options.receipt_extra_tlvs = (Tlv(0x2001, b"\x00\x00\x00\x01"),)
    harness = await start_provider()

    with caplog.at_level(logging.INFO, logger="budstikke.channels.smpp.session"):
        await harness.provider.hand_off(make_sms())
        await harness.wait_for_reports(1)
        await wait_until(lambda: len(smsc.receipts_acknowledged) == 1)

    (report,) = harness.reports
    assert report.provider_ref == "0000123456"
    assert report.status is NotificationStatus.SMS_DELIVERED
    (receipt_pdu,) = [pdu for pdu in smsc.sent if isinstance(pdu, DeliverSm)]
    assert [tlv.tag for tlv in receipt_pdu.tlvs] == [0x001E, 0x0427, 0x2001]
    (answer,) = [r.pdu for r in smsc.received if isinstance(r.pdu, DeliverSmResp)]
    assert answer.sequence_number == receipt_pdu.sequence_number
    assert answer.command_status == 0
    assert "smpp_unknown_tlv" in [getattr(r, "event", None) for r in caplog.records]
    assert harness.provider.is_ready()[0]
    await harness.provider.hand_off(make_sms())


async def test_receipt_text_without_tlvs(smsc: DevSmsc, start_provider: StartProvider) -> None:
    smsc.options.receipt_tlvs = False
    smsc.options.outcomes = {"UNDELIV": 1.0}
    harness = await start_provider()

    receipt = await harness.provider.hand_off(make_sms())
    await harness.wait_for_reports(1)

    (report,) = harness.reports_for(receipt.provider_refs[0])
    assert report.status is NotificationStatus.SMS_FAILED_UNDELIVERED
    assert report.error_code == "001"


async def test_data_sm_receipt_answered_and_applied(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    smsc.options.receipts_as_data_sm = True
    smsc.options.receipt_tlvs = False
    harness = await start_provider()

    receipt = await harness.provider.hand_off(make_sms())
    await harness.wait_for_reports(1)
    await wait_until(lambda: len(smsc.receipts_acknowledged) == 1)

    (report,) = harness.reports_for(receipt.provider_refs[0])
    assert report.status is NotificationStatus.SMS_DELIVERED
    (answer,) = [r.pdu for r in smsc.received if isinstance(r.pdu, DataSmResp)]
    assert answer.command_status == 0


async def test_no_receipts_when_smsc_never_reports(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    smsc.options.send_receipts = False
    harness = await start_provider()

    await harness.provider.hand_off(make_sms())
    await asyncio.sleep(0.2)

    assert harness.reports == []


async def test_acceptd_then_delivrd(smsc: DevSmsc, start_provider: StartProvider) -> None:
    smsc.options.intermediate_states = ("ACCEPTD",)
    harness = await start_provider()

    await harness.provider.hand_off(make_sms())
    await harness.wait_for_reports(2)

    assert [r.status for r in harness.reports] == [None, NotificationStatus.SMS_DELIVERED]


async def test_expired_receipt(smsc: DevSmsc, start_provider: StartProvider) -> None:
    smsc.options.outcomes = {"EXPIRED": 1.0}
    harness = await start_provider()

    await harness.provider.hand_off(make_sms())
    await harness.wait_for_reports(1)

    assert harness.reports[0].status is NotificationStatus.SMS_FAILED_EXPIRED


async def test_receipt_before_submit_response_is_reported(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    smsc.options.receipt_before_response = True
    harness = await start_provider()

    receipt = await harness.provider.hand_off(make_sms())

    assert len(harness.reports) == 1
    assert (
        harness.reports_for(receipt.provider_refs[0])[0].status is NotificationStatus.SMS_DELIVERED
    )


async def test_failing_sink_makes_smsc_resend(smsc: DevSmsc, start_provider: StartProvider) -> None:
    harness = await start_provider()
    failures = [RuntimeError("database unavailable")]
    original_sink = harness.provider._report_sink
    assert original_sink is not None

    async def flaky_sink(report: object) -> None:
        if failures:
            raise failures.pop()
        await original_sink(report)  # type: ignore[arg-type]

    harness.provider._report_sink = flaky_sink

    def answers() -> list[int]:
        return [r.pdu.command_status for r in smsc.received if isinstance(r.pdu, DeliverSmResp)]

    await harness.provider.hand_off(make_sms())
    await harness.wait_for_reports(1)
    # The sink returns before the session writes deliver_sm_resp, so the
    # SMSC may not have read the second deliver_sm_resp yet.
    await wait_until(lambda: len(answers()) == 2)

    assert answers() == [0x64, 0]
    assert len(harness.reports) == 1


# Session facts.


async def test_socket_has_tcp_nodelay(start_provider: StartProvider) -> None:
    harness = await start_provider()

    (session,) = harness.provider.sessions
    sock = session._writer.get_extra_info("socket")

    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_several_binds_share_load(smsc: DevSmsc, start_provider: StartProvider) -> None:
    harness = await start_provider(binds=3, window=1)
    smsc.options.response_delay_s = 0.05

    await asyncio.gather(*(harness.provider.hand_off(make_sms()) for _ in range(6)))

    assert smsc.binds_accepted == 3
    assert len({r.connection_id for r in smsc.received if isinstance(r.pdu, SubmitSm)}) == 3


async def test_max_rate_spaces_submits(smsc: DevSmsc, start_provider: StartProvider) -> None:
    harness = await start_provider(max_rate=20.0)

    started = time.monotonic()
    await asyncio.gather(*(harness.provider.hand_off(make_sms()) for _ in range(5)))

    assert time.monotonic() - started >= 0.19
    times = [r.at for r in smsc.received if isinstance(r.pdu, SubmitSm)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 0.045


async def test_is_ready_reports_bind_count(start_provider: StartProvider) -> None:
    harness = await start_provider(binds=2)
    await wait_until(lambda: len(harness.provider.sessions) == 2)

    assert harness.provider.is_ready() == (True, "2 of 2 SMPP binds are bound")


# Input the provider rejects before sending.


async def test_ttl_passed_fails_without_submit(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider()

    with pytest.raises(HandOffError) as caught:
        await harness.provider.hand_off(make_sms(ttl_s=-1))

    assert caught.value.failure_status is NotificationStatus.SMS_FAILED_TTL
    assert smsc.submits == []


async def test_bad_recipient_fails_without_submit(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider()

    with pytest.raises(HandOffError) as caught:
        await harness.provider.hand_off(make_sms(recipient="99999999"))

    assert caught.value.failure_status is NotificationStatus.SMS_FAILED_INVALID_RECIPIENT
    assert smsc.submits == []


async def test_sender_outside_latin1_fails_permanently(
    smsc: DevSmsc, start_provider: StartProvider
) -> None:
    harness = await start_provider()

    with pytest.raises(HandOffError) as caught:
        await harness.provider.hand_off(make_sms(sender="ΔΦ Kommune"))

    assert caught.value.failure_status is NotificationStatus.SMS_FAILED
    assert smsc.submits == []


async def test_thousand_messages_each_once(smsc: DevSmsc, start_provider: StartProvider) -> None:
    harness = await start_provider(window=10)
    bodies = [f"Din kode er {index:06d}" for index in range(1000)]

    receipts = await asyncio.gather(*(harness.provider.hand_off(make_sms(b)) for b in bodies))
    await harness.wait_for_reports(1000, timeout_s=15)

    refs = [ref for receipt in receipts for ref in receipt.provider_refs]
    assert len(refs) == len(set(refs)) == 1000
    assert len(smsc.submits) == 1000
    assert sorted(s.short_message for s in smsc.submits) == sorted(b.encode() for b in bodies)
    for ref in refs:
        (report,) = harness.reports_for(ref)
        assert report.status is NotificationStatus.SMS_DELIVERED
    assert smsc.max_outstanding <= 10
    assert smsc.violations == []
