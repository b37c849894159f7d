"""The SMPP 3.4 PDU codec: exact octets, round trips, bounds and arbitrary input."""

from __future__ import annotations

import asyncio
import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from budstikke.channels.smpp.errors import PduError
from budstikke.channels.smpp.pdu import (
    MAX_COMMAND_LENGTH,
    PDU_TYPES,
    RESPONSE_TYPES,
    AlertNotification,
    BindTransceiver,
    BindTransceiverResp,
    CancelSm,
    CommandId,
    DataSm,
    DataSmResp,
    DeliverSm,
    EnquireLink,
    GenericNack,
    Outbind,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    SubmitSm,
    SubmitSmResp,
    decode_pdu,
    encode_pdu,
    read_pdu,
    response_for,
)
from budstikke.channels.smpp.status_codes import CommandStatus
from budstikke.channels.smpp.tlv import Tlv, TlvTag


def test_enquire_link_octets() -> None:
    assert encode_pdu(EnquireLink(sequence_number=7)) == bytes.fromhex(
        "00000010000000150000000000000007"
    )


def test_submit_sm_octets() -> None:
    pdu = SubmitSm(
        sequence_number=2,
        source_addr_ton=5,
        source_addr="Kommune",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="4799999999",
        validity_period="000000000500000R",
        registered_delivery=1,
        short_message=b"Hi",
    )
    body = (
        b"\x00"  # service_type
        + b"\x05\x00Kommune\x00"
        + b"\x01\x014799999999\x00"
        + b"\x00\x00\x00"  # esm_class, protocol_id, priority_flag
        + b"\x00"  # schedule_delivery_time
        + b"000000000500000R\x00"
        + b"\x01\x00\x00\x00"  # registered_delivery, replace_if_present, data_coding, default id
        + b"\x02Hi"
    )
    expected = struct.pack(">IIII", 16 + len(body), 0x00000004, 0, 2) + body

    assert encode_pdu(pdu) == expected
    assert decode_pdu(expected) == pdu


EXAMPLES = [
    GenericNack(sequence_number=1, command_status=CommandStatus.ESME_RINVCMDID),
    BindTransceiver(sequence_number=1, system_id="budstikke", password="secret", system_type="OTP"),
    BindTransceiverResp(
        sequence_number=1, system_id="SMSC", tlvs=(Tlv.u8(TlvTag.SC_INTERFACE_VERSION, 0x34),)
    ),
    Outbind(sequence_number=3, system_id="SMSC", password="pw"),
    SubmitSm(
        sequence_number=0x7FFFFFFF,
        source_addr="4799999999",
        destination_addr="4798888888",
        esm_class=0x40,
        data_coding=8,
        short_message=bytes(range(140)),
        tlvs=(Tlv.u16(TlvTag.USER_MESSAGE_REFERENCE, 9),),
    ),
    SubmitSmResp(sequence_number=4, message_id="00A1B2C3"),
    DeliverSm(
        sequence_number=5,
        esm_class=0x04,
        short_message=b"id:1 stat:DELIVRD",
        tlvs=(Tlv.cstring(TlvTag.RECEIPTED_MESSAGE_ID, "1"), Tlv(0x2001, b"\x00\x01\x02\x03")),
    ),
    DataSm(sequence_number=6, source_addr="1" * 64, destination_addr="2" * 64, esm_class=0x04),
    DataSmResp(sequence_number=6, message_id="x"),
    QuerySm(sequence_number=7, message_id="abc", source_addr="123"),
    QuerySmResp(
        sequence_number=7, message_id="abc", final_date="240601120000000+", message_state=2
    ),
    CancelSm(sequence_number=8, message_id="abc", destination_addr="47"),
    ReplaceSm(sequence_number=9, message_id="abc", short_message=b"new"),
    AlertNotification(sequence_number=10, source_addr="47", esme_addr="budstikke"),
]


@pytest.mark.parametrize("pdu", EXAMPLES, ids=lambda pdu: pdu.name)
def test_round_trip(pdu: object) -> None:
    assert decode_pdu(encode_pdu(pdu)) == pdu  # type: ignore[arg-type]


def test_every_command_id_has_a_type_except_submit_multi() -> None:
    missing = set(CommandId) - set(PDU_TYPES)

    assert missing == {CommandId.SUBMIT_MULTI, CommandId.SUBMIT_MULTI_RESP}


def test_every_request_type_has_a_response_type() -> None:
    assert RESPONSE_TYPES[CommandId.SUBMIT_SM] is SubmitSmResp
    assert CommandId.ALERT_NOTIFICATION not in RESPONSE_TYPES
    assert CommandId.OUTBIND not in RESPONSE_TYPES


def test_response_for_keeps_sequence_number() -> None:
    response = response_for(DeliverSm(sequence_number=41), command_status=0)

    assert response.command_id == CommandId.DELIVER_SM_RESP
    assert response.sequence_number == 41


def test_bind_repr_hides_password() -> None:
    text = repr(BindTransceiver(system_id="id", password="secret"))

    assert "secret" not in text
    assert "***" in text


def test_submit_sm_repr_hides_text() -> None:
    assert "482913" not in repr(SubmitSm(short_message=b"Kode 482913"))


def test_error_response_omits_body() -> None:
    data = encode_pdu(SubmitSmResp(sequence_number=3, command_status=0x58, message_id="ignored"))

    assert len(data) == 16
    assert decode_pdu(data) == SubmitSmResp(sequence_number=3, command_status=0x58)


def test_error_response_with_body_decodes() -> None:
    header = struct.pack(">IIII", 16 + 4, 0x80000004, 0x14, 3)

    assert decode_pdu(header + b"abc\x00").command_status == 0x14


# Bounds.


def test_command_length_below_header_rejected() -> None:
    with pytest.raises(PduError) as caught:
        decode_pdu(struct.pack(">IIII", 15, 0x15, 0, 1))

    assert caught.value.command_status == CommandStatus.ESME_RINVCMDLEN
    assert not caught.value.resynchronisable


def test_command_length_above_maximum_rejected() -> None:
    too_long = MAX_COMMAND_LENGTH + 1
    data = struct.pack(">IIII", too_long, 0x15, 0, 1) + bytes(too_long - 16)

    with pytest.raises(PduError) as caught:
        decode_pdu(data)

    assert not caught.value.resynchronisable


def test_command_length_mismatch_rejected() -> None:
    with pytest.raises(PduError):
        decode_pdu(struct.pack(">IIII", 20, 0x15, 0, 1))


def test_unknown_command_id_is_resynchronisable() -> None:
    with pytest.raises(PduError) as caught:
        decode_pdu(struct.pack(">IIII", 16, 0x00000021, 0, 9))

    assert caught.value.command_status == CommandStatus.ESME_RINVCMDID
    assert caught.value.sequence_number == 9
    assert caught.value.resynchronisable


@pytest.mark.parametrize(
    ("pdu", "field"),
    [
        (BindTransceiver(system_id="x" * 16), "system_id"),
        (BindTransceiver(system_id="a", password="x" * 9), "password"),
        (BindTransceiver(system_id="a", system_type="x" * 13), "system_type"),
        (SubmitSm(service_type="x" * 6), "service_type"),
        (SubmitSm(source_addr="1" * 21), "source_addr"),
        (SubmitSm(destination_addr="1" * 21), "destination_addr"),
        (SubmitSmResp(message_id="x" * 65), "message_id"),
        (SubmitSm(validity_period="000000000500000"), "validity_period"),
    ],
)
def test_cstring_over_maximum_rejected_on_encode(pdu: object, field: str) -> None:
    with pytest.raises(PduError, match=field):
        encode_pdu(pdu)  # type: ignore[arg-type]


def test_cstring_at_maximum_accepted() -> None:
    pdu = SubmitSm(source_addr="1" * 20, destination_addr="2" * 20, service_type="x" * 5)

    assert decode_pdu(encode_pdu(pdu)) == pdu


def test_cstring_without_nul_within_maximum_rejected_on_decode() -> None:
    body = b"x" * 16 + b"\x00" + b"\x00" * 3 + b"\x34\x00\x00\x00"
    data = struct.pack(">IIII", 16 + len(body), 0x09, 0, 1) + body

    with pytest.raises(PduError, match="system_id"):
        decode_pdu(data)


def test_short_message_over_254_octets_rejected() -> None:
    with pytest.raises(PduError) as caught:
        encode_pdu(SubmitSm(short_message=bytes(255)))

    assert caught.value.command_status == CommandStatus.ESME_RINVMSGLEN


def test_truncated_body_rejected() -> None:
    data = encode_pdu(SubmitSm(short_message=b"hello"))[:-3]
    data = struct.pack(">I", len(data)) + data[4:]

    with pytest.raises(PduError, match="ends inside short_message"):
        decode_pdu(data)


def test_truncated_tlv_rejected() -> None:
    data = encode_pdu(DeliverSm()) + b"\x04\x27\x00"
    data = struct.pack(">I", len(data)) + data[4:]

    with pytest.raises(PduError) as caught:
        decode_pdu(data)

    assert caught.value.command_status == CommandStatus.ESME_RINVOPTPARSTREAM


def test_message_state_tlv_with_wrong_length_rejected() -> None:
    data = encode_pdu(DeliverSm(tlvs=(Tlv(TlvTag.MESSAGE_STATE, b"\x02\x00"),)))

    with pytest.raises(PduError) as caught:
        decode_pdu(data)

    assert caught.value.command_status == CommandStatus.ESME_RINVPARLEN


def test_unknown_tlv_kept() -> None:
    pdu = DeliverSm(tlvs=(Tlv(0x2001, b"\xde\xad\xbe\xef"),))

    assert decode_pdu(encode_pdu(pdu)).tlvs == (Tlv(0x2001, b"\xde\xad\xbe\xef"),)


def test_non_latin1_source_addr_rejected() -> None:
    with pytest.raises(PduError, match="Latin-1"):
        encode_pdu(SubmitSm(source_addr="ΔΦ"))


async def test_read_pdu_from_stream() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(
        encode_pdu(EnquireLink(sequence_number=1))
        + encode_pdu(SubmitSmResp(sequence_number=2, message_id="A"))
    )
    reader.feed_eof()

    first = await read_pdu(reader)
    second = await read_pdu(reader)

    assert first == EnquireLink(sequence_number=1)
    assert second == SubmitSmResp(sequence_number=2, message_id="A")
    with pytest.raises(asyncio.IncompleteReadError):
        await read_pdu(reader)


async def test_read_pdu_rejects_huge_length_before_reading() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(struct.pack(">I", 0xFFFFFFFF))

    with pytest.raises(PduError) as caught:
        await read_pdu(reader)

    assert not caught.value.resynchronisable


# Arbitrary input.


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_decoder_raises_only_pdu_error(data: bytes) -> None:
    with contextlib.suppress(PduError):
        decode_pdu(data)


@settings(max_examples=400, deadline=None)
@given(
    command_id=st.sampled_from(sorted(PDU_TYPES)),
    command_status=st.integers(0, 0xFFFFFFFF),
    body=st.binary(max_size=200),
)
def test_decoder_raises_only_pdu_error_on_valid_headers(
    command_id: int, command_status: int, body: bytes
) -> None:
    data = struct.pack(">IIII", 16 + len(body), command_id, command_status, 1) + body
    try:
        pdu = decode_pdu(data)
    except PduError:
        return
    assert pdu.command_id == command_id


_cstrings = st.text(st.characters(min_codepoint=1, max_codepoint=0xFF), max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    source=_cstrings,
    destination=_cstrings,
    esm_class=st.integers(0, 255),
    data_coding=st.integers(0, 255),
    short_message=st.binary(max_size=254),
    tlvs=st.lists(st.builds(Tlv, st.integers(0x1400, 0x3FFF), st.binary(max_size=20)), max_size=3),
)
def test_submit_sm_round_trip(
    source: str,
    destination: str,
    esm_class: int,
    data_coding: int,
    short_message: bytes,
    tlvs: list[Tlv],
) -> None:
    pdu = SubmitSm(
        sequence_number=1,
        source_addr=source,
        destination_addr=destination,
        esm_class=esm_class,
        data_coding=data_coding,
        short_message=short_message,
        tlvs=tuple(tlvs),
    )

    assert decode_pdu(encode_pdu(pdu)) == pdu
