"""The strict test SMSC, driven with raw PDUs over TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest

from budstikke.channels.smpp.dev_smsc import DevSmsc, DevSmscOptions, run_dev_smsc
from budstikke.channels.smpp.pdu import (
    BindReceiver,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    DeliverSm,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    encode_pdu,
    read_pdu,
    response_for,
)
from budstikke.channels.smpp.status_codes import CommandStatus

from .conftest import wait_until

S = CommandStatus

VALID_SUBMIT = SubmitSm(
    source_addr_ton=5,
    source_addr="Kommune",
    dest_addr_ton=1,
    dest_addr_npi=1,
    destination_addr="4799999999",
    registered_delivery=1,
    validity_period="000000000500000R",
    short_message=b"Din kode er 482913",
)


class RawClient:
    """An ESME that writes the PDUs a test gives it, valid or not."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.sequence_number = 0

    async def send(self, pdu: Pdu) -> int:
        self.sequence_number += 1
        self.writer.write(encode_pdu(replace(pdu, sequence_number=self.sequence_number)))
        await self.writer.drain()
        return self.sequence_number

    async def call(self, pdu: Pdu) -> Pdu:
        sequence_number = await self.send(pdu)
        response = await self.read()
        assert response.sequence_number == sequence_number
        return response

    async def read(self) -> Pdu:
        async with asyncio.timeout(2):
            return await read_pdu(self.reader)

    async def bind(self) -> None:
        response = await self.call(BindTransceiver(system_id="budstikke", password="secret"))
        assert response.command_status == 0


Connect = Callable[[], Awaitable[RawClient]]


@pytest.fixture
async def connect(smsc: DevSmsc) -> AsyncIterator[Connect]:
    clients: list[RawClient] = []

    async def open_client() -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", smsc.port)
        client = RawClient(reader, writer)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.writer.close()
        await client.writer.wait_closed()


async def submit_status(connect: Connect, pdu: SubmitSm) -> int:
    client = await connect()
    await client.bind()
    return (await client.call(pdu)).command_status


# Binds.


async def test_bind_accepted(smsc: DevSmsc, connect: Connect) -> None:
    client = await connect()

    response = await client.call(BindTransceiver(system_id="budstikke", password="secret"))

    assert isinstance(response, BindTransceiverResp)
    assert response.command_status == 0
    assert response.system_id == "budstikke"
    assert smsc.binds_accepted == 1


@pytest.mark.parametrize(
    ("system_id", "password", "status"),
    [("other", "secret", S.ESME_RINVSYSID), ("budstikke", "wrong", S.ESME_RINVPASWD)],
)
async def test_bind_credentials_checked(
    smsc: DevSmsc, connect: Connect, system_id: str, password: str, status: int
) -> None:
    smsc.options.system_id = "budstikke"
    smsc.options.password = "secret"
    client = await connect()

    response = await client.call(BindTransceiver(system_id=system_id, password=password))

    assert response.command_status == status
    assert len(encode_pdu(response)) == 16


async def test_second_bind_already_bound(connect: Connect) -> None:
    client = await connect()
    await client.bind()

    response = await client.call(BindTransceiver(system_id="budstikke"))

    assert response.command_status == S.ESME_RALYBND


async def test_bad_interface_version_rejected(smsc: DevSmsc, connect: Connect) -> None:
    client = await connect()

    response = await client.call(BindTransceiver(system_id="a", interface_version=0x50))

    assert response.command_status == S.ESME_RBINDFAIL
    assert smsc.violations


async def test_submit_before_bind_rejected(smsc: DevSmsc, connect: Connect) -> None:
    client = await connect()

    response = await client.call(VALID_SUBMIT)

    assert isinstance(response, SubmitSmResp)
    assert response.command_status == S.ESME_RINVBNDSTS


async def test_submit_on_receiver_bind_rejected(connect: Connect) -> None:
    client = await connect()
    await client.call(BindReceiver(system_id="a"))

    assert (await client.call(VALID_SUBMIT)).command_status == S.ESME_RINVBNDSTS


async def test_submit_on_transmitter_bind_accepted(connect: Connect) -> None:
    client = await connect()
    await client.call(BindTransmitter(system_id="a"))

    assert (await client.call(VALID_SUBMIT)).command_status == 0


# Submits.


async def test_valid_submit_accepted_and_receipt_sent(smsc: DevSmsc, connect: Connect) -> None:
    client = await connect()
    await client.bind()

    response = await client.call(VALID_SUBMIT)
    receipt = await client.read()
    client.writer.write(encode_pdu(response_for(receipt)))
    await wait_until(lambda: smsc.receipts_acknowledged == ["00000001"])

    assert isinstance(response, SubmitSmResp)
    assert response.message_id == "00000001"
    assert isinstance(receipt, DeliverSm)
    assert receipt.esm_class == 0x04
    assert b"id:00000001 " in receipt.short_message
    assert b"stat:DELIVRD" in receipt.short_message
    assert receipt.destination_addr == "Kommune"
    assert receipt.source_addr == "4799999999"


async def test_no_history_keeps_no_records(smsc: DevSmsc, connect: Connect) -> None:
    smsc.options.keep_history = False
    client = await connect()
    await client.bind()

    response = await client.call(VALID_SUBMIT)
    receipt = await client.read()
    client.writer.write(encode_pdu(response_for(receipt)))
    await client.writer.drain()
    # The SMSC reads the receipt's response meanwhile and records nothing for it.
    await asyncio.sleep(0.2)

    assert isinstance(response, SubmitSmResp)
    assert response.message_id == "00000001"
    assert isinstance(receipt, DeliverSm)
    assert b"id:00000001 " in receipt.short_message
    assert smsc.received == []
    assert smsc.sent == []
    assert smsc.accepted == {}


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"source_addr_ton": 7}, S.ESME_RINVSRCTON),
        ({"source_addr_npi": 2}, S.ESME_RINVSRCNPI),
        ({"dest_addr_ton": 9}, S.ESME_RINVDSTTON),
        ({"dest_addr_npi": 5}, S.ESME_RINVDSTNPI),
        ({"source_addr": "MinKommune24"}, S.ESME_RINVSRCADR),
        ({"source_addr_ton": 1, "source_addr": "Kommune"}, S.ESME_RINVSRCADR),
        ({"destination_addr": "+4799999999"}, S.ESME_RINVDSTADR),
        ({"destination_addr": ""}, S.ESME_RINVDSTADR),
        ({"esm_class": 0x04}, S.ESME_RINVESMCLASS),
        ({"priority_flag": 4}, S.ESME_RINVPRTFLG),
        ({"registered_delivery": 3}, S.ESME_RINVREGDLVFLG),
        ({"replace_if_present_flag": 2}, S.ESME_RINVREPFLAG),
        ({"validity_period": "000000000500100R"}, S.ESME_RINVEXPIRY),
        ({"validity_period": "000000000000000R"}, S.ESME_RINVEXPIRY),
        ({"schedule_delivery_time": "241301120000000+"}, S.ESME_RINVSCHED),
        ({"sm_default_msg_id": 1}, S.ESME_RINVDFTMSGID),
        ({"data_coding": 4}, S.ESME_RINVMSGLEN),
        ({"short_message": b"\x80"}, S.ESME_RINVMSGLEN),
        ({"short_message": b"abc\x1b"}, S.ESME_RINVMSGLEN),
        ({"short_message": b"abc\x1b\x41"}, S.ESME_RINVMSGLEN),
        ({"short_message": b"x" * 161}, S.ESME_RINVMSGLEN),
        ({"data_coding": 8, "short_message": b"\x00a\x00"}, S.ESME_RINVMSGLEN),
        ({"data_coding": 8, "short_message": b"\xd8\x3d"}, S.ESME_RINVMSGLEN),
        ({"data_coding": 8, "short_message": b"\xde\x00\x00a"}, S.ESME_RINVMSGLEN),
        ({"data_coding": 8, "short_message": b"\x00a" * 71}, S.ESME_RINVMSGLEN),
        ({"esm_class": 0x40, "short_message": b"\x05\x00\x03\x01\x02"}, S.ESME_RINVESMCLASS),
        ({"esm_class": 0x40, "short_message": b"\x05\x00\x03\x01\x02\x03x"}, S.ESME_RINVESMCLASS),
        ({"esm_class": 0x40, "short_message": b"\x05\x00\x02\x01\x02x"}, S.ESME_RINVESMCLASS),
        (
            {"esm_class": 0x40, "short_message": b"\x05\x00\x03\x01\x02\x01" + b"x" * 154},
            S.ESME_RINVMSGLEN,
        ),
    ],
)
async def test_invalid_submit_rejected(
    smsc: DevSmsc, connect: Connect, changes: dict[str, object], status: int
) -> None:
    assert await submit_status(connect, replace(VALID_SUBMIT, **changes)) == status
    assert len(smsc.violations) == 1
    assert smsc.accepted == {}


@pytest.mark.parametrize(
    "changes",
    [
        {"short_message": b"x" * 160},
        {"esm_class": 0x40, "short_message": b"\x05\x00\x03\x01\x02\x01" + b"x" * 153},
        {
            "esm_class": 0x40,
            "data_coding": 8,
            "short_message": b"\x05\x00\x03\x01\x02\x01" + b"\x00a" * 67,
        },
        {"data_coding": 8, "short_message": "😀".encode("utf-16-be")},
        {"short_message": b"\x1b\x65"},
        {"source_addr_ton": 1, "source_addr_npi": 1, "source_addr": "4799999999"},
        {"validity_period": "", "source_addr_ton": 0, "source_addr": ""},
    ],
)
async def test_valid_submit_accepted(
    smsc: DevSmsc, connect: Connect, changes: dict[str, object]
) -> None:
    assert await submit_status(connect, replace(VALID_SUBMIT, **changes)) == 0
    assert smsc.violations == []


async def test_parts_must_agree(smsc: DevSmsc, connect: Connect) -> None:
    client = await connect()
    await client.bind()
    first = replace(VALID_SUBMIT, esm_class=0x40, short_message=b"\x05\x00\x03\x07\x02\x01abc")
    second = replace(first, data_coding=8, short_message=b"\x05\x00\x03\x07\x02\x02\x00a")

    assert (await client.call(first)).command_status == 0
    assert (await client.call(second)).command_status == S.ESME_RSUBMITFAIL
    assert "data_coding" in smsc.violations[0]


async def test_accepted_part_sent_twice_is_recorded(smsc: DevSmsc, connect: Connect) -> None:
    client = await connect()
    await client.bind()
    first = replace(VALID_SUBMIT, esm_class=0x40, short_message=b"\x05\x00\x03\x07\x02\x01abc")

    await client.call(first)
    await client.call(first)

    assert len(smsc.duplicate_parts) == 1


async def test_window_enforced(smsc: DevSmsc, connect: Connect) -> None:
    smsc.options.window = 1
    smsc.options.answer_submits = False
    client = await connect()
    await client.bind()

    await client.send(VALID_SUBMIT)
    await client.send(VALID_SUBMIT)
    response = await client.read()

    assert response.sequence_number == 3
    assert response.command_status == S.ESME_RMSGQFUL
    assert smsc.window_rejections == 1


async def test_throttle_next(smsc: DevSmsc, connect: Connect) -> None:
    client = await connect()
    await client.bind()
    smsc.throttle_next(1)

    assert (await client.call(VALID_SUBMIT)).command_status == S.ESME_RTHROTTLED
    assert (await client.call(VALID_SUBMIT)).command_status == 0


# Session PDUs and framing.


async def test_enquire_link_answered(connect: Connect) -> None:
    client = await connect()

    assert isinstance(await client.call(EnquireLink()), EnquireLinkResp)


async def test_unbind_closes(connect: Connect) -> None:
    client = await connect()
    await client.bind()

    assert isinstance(await client.call(Unbind()), UnbindResp)
    assert await client.reader.read() == b""


async def test_unsupported_command_gets_generic_nack(smsc: DevSmsc, connect: Connect) -> None:
    client = await connect()
    client.writer.write(struct.pack(">IIII", 16, 0x00000021, 0, 5))

    response = await client.read()

    assert isinstance(response, GenericNack)
    assert response.sequence_number == 5
    assert response.command_status == S.ESME_RINVCMDID
    assert isinstance(await client.call(EnquireLink()), EnquireLinkResp)


async def test_bad_command_length_closes(smsc: DevSmsc, connect: Connect) -> None:
    client = await connect()
    client.writer.write(struct.pack(">IIII", 8, 0x15, 0, 1))

    response = await client.read()

    assert isinstance(response, GenericNack)
    assert response.command_status == S.ESME_RINVCMDLEN
    assert await client.reader.read() == b""
    assert smsc.violations


async def test_request_with_status_flagged(smsc: DevSmsc, connect: Connect) -> None:
    client = await connect()

    await client.call(EnquireLink(command_status=1))

    assert smsc.violations == ["enquire_link is a request but has command_status 0x00000001"]


# Output and entry points.


async def test_echo_masks_numbers(smsc: DevSmsc, connect: Connect) -> None:
    lines: list[str] = []
    smsc.options.echo = lines.append

    await submit_status(connect, VALID_SUBMIT)

    text = "\n".join(lines)
    assert "submit_sm seq=2 from=Kommune(5/0) to=+47******99(1/1)" in text
    assert "4799999999" not in text
    assert "482913" not in text


async def test_run_dev_smsc_until_cancelled() -> None:
    started: list[DevSmsc] = []
    lines: list[str] = []

    task = asyncio.create_task(
        run_dev_smsc("127.0.0.1", 0, echo=lines.append, ready=started.append)
    )
    while not started:
        await asyncio.sleep(0.01)
    reader, writer = await asyncio.open_connection("127.0.0.1", started[0].port)
    writer.write(encode_pdu(EnquireLink(sequence_number=1)))
    response = await read_pdu(reader)
    writer.close()
    await writer.wait_closed()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert isinstance(response, EnquireLinkResp)
    assert lines[0].startswith("listening on 127.0.0.1:")
    assert started[0].received == []


def test_options_repr_hides_password() -> None:
    assert "secret" not in repr(DevSmscOptions(password="secret"))
