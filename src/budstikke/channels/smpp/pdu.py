"""Encoding and decoding of SMPP 3.4 PDUs.

A PDU is a 16-octet header (command_length, command_id, command_status,
sequence_number, each a 4-octet big-endian integer) and a body of mandatory
fields followed by optional TLVs. Each PDU type below is a frozen dataclass
whose body fields carry their wire format in the field metadata, so one
encoder and one decoder serve every type.

Limits enforced on both directions:
- command_length is at least 16 (the header) and at most MAX_COMMAND_LENGTH;
- every C-octet string has its SMPP 3.4 maximum length including the NUL;
- schedule_delivery_time, validity_period and final_date are empty or 16 characters;
- short_message is at most 254 octets (sm_length is one octet; SMPP 3.4 5.2.21).

submit_multi and its response are not implemented: the decoder rejects them
with ESME_RINVCMDID, as an SMSC without distribution lists does.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field, fields
from enum import Enum, IntEnum
from typing import Any, ClassVar, Final

from budstikke.channels.smpp.errors import PduError
from budstikke.channels.smpp.status_codes import CommandStatus
from budstikke.channels.smpp.tlv import Tlv, decode_tlvs, encode_tlvs

HEADER: Final = struct.Struct(">IIII")
HEADER_LENGTH: Final = HEADER.size

# SMPP 3.4 sets no upper bound on command_length. This one leaves room for a
# full message_payload TLV (its length field is 16 bits) and every mandatory
# field, and stops a corrupt or hostile length from making us buffer gigabytes.
MAX_COMMAND_LENGTH: Final = 0x10000 + 1024

# sm_length is one octet and SMPP 3.4 allows 0 to 254 octets of short_message.
MAX_SHORT_MESSAGE_LENGTH: Final = 254

# Length of an SMPP time string (YYMMDDhhmmsstnnp) without its NUL.
TIME_STRING_LENGTH: Final = 16

SEQUENCE_NUMBER_MIN: Final = 0x00000001
SEQUENCE_NUMBER_MAX: Final = 0x7FFFFFFF

INTERFACE_VERSION_3_4: Final = 0x34

RESPONSE_BIT: Final = 0x80000000


class CommandId(IntEnum):
    """command_id values of SMPP 3.4 (table 5-1)."""

    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103


class _Kind(Enum):
    U8 = 1
    U16 = 2
    U32 = 4
    CSTRING = "cstring"
    TIME = "time"
    SHORT_MESSAGE = "short_message"


@dataclass(frozen=True, slots=True)
class _FieldFormat:
    kind: _Kind
    # Maximum octets of a C-octet string including its NUL.
    max_length: int = 0


_FORMAT_KEY: Final = "smpp"


def _u8(default: int = 0) -> Any:
    return field(default=default, metadata={_FORMAT_KEY: _FieldFormat(_Kind.U8)})


def _cstring(max_length: int, default: str = "") -> Any:
    return field(default=default, metadata={_FORMAT_KEY: _FieldFormat(_Kind.CSTRING, max_length)})


def _time() -> Any:
    return field(
        default="", metadata={_FORMAT_KEY: _FieldFormat(_Kind.TIME, TIME_STRING_LENGTH + 1)}
    )


def _short_message() -> Any:
    # repr=False keeps message text (an OTP code, say) out of reprs and so out of logs.
    return field(default=b"", repr=False, metadata={_FORMAT_KEY: _FieldFormat(_Kind.SHORT_MESSAGE)})


@dataclass(frozen=True, slots=True, kw_only=True)
class Pdu:
    """Header fields and optional parameters common to every PDU."""

    command_id: ClassVar[CommandId]
    # In SMPP 3.4 a bind response or submit_sm_resp with a non-zero
    # command_status has no body. The encoder omits it, and the decoder
    # accepts it with or without one.
    omit_body_on_error: ClassVar[bool] = False

    sequence_number: int = 0
    command_status: int = 0
    tlvs: tuple[Tlv, ...] = ()

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)

    @property
    def name(self) -> str:
        return self.command_id.name.lower()


# Session management.


@dataclass(frozen=True, slots=True, kw_only=True)
class GenericNack(Pdu):
    command_id: ClassVar[CommandId] = CommandId.GENERIC_NACK


@dataclass(frozen=True, slots=True, kw_only=True)
class _Bind(Pdu):
    system_id: str = _cstring(16)
    password: str = _cstring(9)
    system_type: str = _cstring(13)
    interface_version: int = _u8(INTERFACE_VERSION_3_4)
    addr_ton: int = _u8()
    addr_npi: int = _u8()
    address_range: str = _cstring(41)

    def __repr__(self) -> str:
        # The password never appears in a repr, and so never in a log line.
        return (
            f"{type(self).__name__}(sequence_number={self.sequence_number}, "
            f"system_id={self.system_id!r}, password='***', system_type={self.system_type!r})"
        )


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class BindTransmitter(_Bind):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class BindReceiver(_Bind):
    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class BindTransceiver(_Bind):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER


@dataclass(frozen=True, slots=True, kw_only=True)
class _BindResp(Pdu):
    omit_body_on_error: ClassVar[bool] = True
    system_id: str = _cstring(16)


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransmitterResp(_BindResp):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSMITTER_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class BindReceiverResp(_BindResp):
    command_id: ClassVar[CommandId] = CommandId.BIND_RECEIVER_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class BindTransceiverResp(_BindResp):
    command_id: ClassVar[CommandId] = CommandId.BIND_TRANSCEIVER_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class Outbind(Pdu):
    command_id: ClassVar[CommandId] = CommandId.OUTBIND
    system_id: str = _cstring(16)
    password: str = _cstring(9)

    def __repr__(self) -> str:
        return (
            f"Outbind(sequence_number={self.sequence_number}, "
            f"system_id={self.system_id!r}, password='***')"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Unbind(Pdu):
    command_id: ClassVar[CommandId] = CommandId.UNBIND


@dataclass(frozen=True, slots=True, kw_only=True)
class UnbindResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.UNBIND_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class EnquireLink(Pdu):
    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK


@dataclass(frozen=True, slots=True, kw_only=True)
class EnquireLinkResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.ENQUIRE_LINK_RESP


# Messages.


@dataclass(frozen=True, slots=True, kw_only=True)
class _ShortMessagePdu(Pdu):
    """The body shared by submit_sm and deliver_sm (SMPP 3.4 4.4.1 and 4.6.1)."""

    service_type: str = _cstring(6)
    source_addr_ton: int = _u8()
    source_addr_npi: int = _u8()
    source_addr: str = _cstring(21)
    dest_addr_ton: int = _u8()
    dest_addr_npi: int = _u8()
    destination_addr: str = _cstring(21)
    esm_class: int = _u8()
    protocol_id: int = _u8()
    priority_flag: int = _u8()
    schedule_delivery_time: str = _time()
    validity_period: str = _time()
    registered_delivery: int = _u8()
    replace_if_present_flag: int = _u8()
    data_coding: int = _u8()
    sm_default_msg_id: int = _u8()
    short_message: bytes = _short_message()


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSm(_ShortMessagePdu):
    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitSmResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.SUBMIT_SM_RESP
    omit_body_on_error: ClassVar[bool] = True
    message_id: str = _cstring(65)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverSm(_ShortMessagePdu):
    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverSmResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.DELIVER_SM_RESP
    message_id: str = _cstring(65)


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSm(Pdu):
    command_id: ClassVar[CommandId] = CommandId.DATA_SM
    service_type: str = _cstring(6)
    source_addr_ton: int = _u8()
    source_addr_npi: int = _u8()
    source_addr: str = _cstring(65)
    dest_addr_ton: int = _u8()
    dest_addr_npi: int = _u8()
    destination_addr: str = _cstring(65)
    esm_class: int = _u8()
    registered_delivery: int = _u8()
    data_coding: int = _u8()


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSmResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.DATA_SM_RESP
    message_id: str = _cstring(65)


@dataclass(frozen=True, slots=True, kw_only=True)
class QuerySm(Pdu):
    command_id: ClassVar[CommandId] = CommandId.QUERY_SM
    message_id: str = _cstring(65)
    source_addr_ton: int = _u8()
    source_addr_npi: int = _u8()
    source_addr: str = _cstring(21)


@dataclass(frozen=True, slots=True, kw_only=True)
class QuerySmResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.QUERY_SM_RESP
    message_id: str = _cstring(65)
    final_date: str = _time()
    message_state: int = _u8()
    error_code: int = _u8()


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelSm(Pdu):
    command_id: ClassVar[CommandId] = CommandId.CANCEL_SM
    service_type: str = _cstring(6)
    message_id: str = _cstring(65)
    source_addr_ton: int = _u8()
    source_addr_npi: int = _u8()
    source_addr: str = _cstring(21)
    dest_addr_ton: int = _u8()
    dest_addr_npi: int = _u8()
    destination_addr: str = _cstring(21)


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelSmResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.CANCEL_SM_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaceSm(Pdu):
    command_id: ClassVar[CommandId] = CommandId.REPLACE_SM
    message_id: str = _cstring(65)
    source_addr_ton: int = _u8()
    source_addr_npi: int = _u8()
    source_addr: str = _cstring(21)
    schedule_delivery_time: str = _time()
    validity_period: str = _time()
    registered_delivery: int = _u8()
    sm_default_msg_id: int = _u8()
    short_message: bytes = _short_message()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaceSmResp(Pdu):
    command_id: ClassVar[CommandId] = CommandId.REPLACE_SM_RESP


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertNotification(Pdu):
    command_id: ClassVar[CommandId] = CommandId.ALERT_NOTIFICATION
    source_addr_ton: int = _u8()
    source_addr_npi: int = _u8()
    source_addr: str = _cstring(65)
    esme_addr_ton: int = _u8()
    esme_addr_npi: int = _u8()
    esme_addr: str = _cstring(65)


PDU_TYPES: Final[dict[int, type[Pdu]]] = {
    cls.command_id: cls
    for cls in (
        GenericNack,
        BindTransmitter,
        BindTransmitterResp,
        BindReceiver,
        BindReceiverResp,
        BindTransceiver,
        BindTransceiverResp,
        Outbind,
        Unbind,
        UnbindResp,
        EnquireLink,
        EnquireLinkResp,
        SubmitSm,
        SubmitSmResp,
        DeliverSm,
        DeliverSmResp,
        DataSm,
        DataSmResp,
        QuerySm,
        QuerySmResp,
        CancelSm,
        CancelSmResp,
        ReplaceSm,
        ReplaceSmResp,
        AlertNotification,
    )
}

# The response type of each request, for building responses and matching them.
RESPONSE_TYPES: Final[dict[int, type[Pdu]]] = {
    command_id: PDU_TYPES[command_id | RESPONSE_BIT]
    for command_id in PDU_TYPES
    if not command_id & RESPONSE_BIT and command_id | RESPONSE_BIT in PDU_TYPES
}


def _body_formats(cls: type[Pdu]) -> list[tuple[str, _FieldFormat]]:
    return [(f.name, f.metadata[_FORMAT_KEY]) for f in fields(cls) if _FORMAT_KEY in f.metadata]


_FORMATS: Final[dict[int, list[tuple[str, _FieldFormat]]]] = {
    command_id: _body_formats(cls) for command_id, cls in PDU_TYPES.items()
}


# Encoding.


def encode_pdu(pdu: Pdu) -> bytes:
    """Encode a PDU, raising PduError when a field is out of its SMPP bounds."""
    body = bytearray()
    if not (pdu.omit_body_on_error and pdu.command_status != 0):
        for name, field_format in _FORMATS[pdu.command_id]:
            _encode_field(body, name, getattr(pdu, name), field_format, pdu.command_id)
        body += encode_tlvs(pdu.tlvs)
    command_length = HEADER_LENGTH + len(body)
    if command_length > MAX_COMMAND_LENGTH:
        raise PduError(
            f"{pdu.name} would be {command_length} octets; "
            f"at most {MAX_COMMAND_LENGTH} are allowed",
            command_status=CommandStatus.ESME_RINVCMDLEN,
            command_id=pdu.command_id,
        )
    for name in ("command_status", "sequence_number"):
        value = getattr(pdu, name)
        if not 0 <= value <= 0xFFFFFFFF:
            raise PduError(
                f"{name} {value} does not fit in 4 octets",
                command_status=CommandStatus.ESME_RINVCMDLEN,
                command_id=pdu.command_id,
            )
    header = HEADER.pack(command_length, pdu.command_id, pdu.command_status, pdu.sequence_number)
    return header + bytes(body)


def _encode_field(
    body: bytearray, name: str, value: object, field_format: _FieldFormat, command_id: int
) -> None:
    kind = field_format.kind
    if kind is _Kind.U8:
        assert isinstance(value, int)
        if not 0 <= value <= 0xFF:
            raise _field_error(f"{name} {value} does not fit in one octet", command_id)
        body.append(value)
    elif kind in (_Kind.CSTRING, _Kind.TIME):
        assert isinstance(value, str)
        body += _encode_cstring(name, value, field_format, command_id)
    elif kind is _Kind.SHORT_MESSAGE:
        assert isinstance(value, bytes)
        if len(value) > MAX_SHORT_MESSAGE_LENGTH:
            raise PduError(
                f"short_message is {len(value)} octets; at most {MAX_SHORT_MESSAGE_LENGTH} fit",
                command_status=CommandStatus.ESME_RINVMSGLEN,
                command_id=command_id,
            )
        body.append(len(value))
        body += value
    else:  # pragma: no cover - every kind is handled above
        raise AssertionError(kind)


def _encode_cstring(name: str, value: str, field_format: _FieldFormat, command_id: int) -> bytes:
    try:
        encoded = value.encode("latin-1")
    except UnicodeEncodeError:
        raise _field_error(f"{name} {value!r} has characters outside Latin-1", command_id) from None
    if b"\x00" in encoded:
        raise _field_error(f"{name} must not contain a NUL character", command_id)
    if len(encoded) + 1 > field_format.max_length:
        raise _field_error(
            f"{name} {value!r} is {len(encoded)} characters; at most "
            f"{field_format.max_length - 1} are allowed",
            command_id,
        )
    if field_format.kind is _Kind.TIME and len(encoded) not in (0, TIME_STRING_LENGTH):
        raise _field_error(
            f"{name} {value!r} must be empty or {TIME_STRING_LENGTH} characters", command_id
        )
    return encoded + b"\x00"


def _field_error(
    message: str, command_id: int | None, sequence_number: int | None = None
) -> PduError:
    return PduError(
        message,
        command_status=CommandStatus.ESME_RINVCMDLEN,
        command_id=command_id,
        sequence_number=sequence_number,
    )


# Decoding.


def read_command_length(header_prefix: bytes) -> int:
    """Return command_length from the first 4 octets of a PDU, checking its bounds.

    A length out of bounds means the stream can no longer be split into PDUs.
    """
    (command_length,) = struct.unpack(">I", header_prefix[:4])
    if not HEADER_LENGTH <= command_length <= MAX_COMMAND_LENGTH:
        raise PduError(
            f"command_length {command_length} is outside {HEADER_LENGTH}..{MAX_COMMAND_LENGTH}",
            command_status=CommandStatus.ESME_RINVCMDLEN,
            resynchronisable=False,
        )
    return int(command_length)


def decode_pdu(data: bytes) -> Pdu:
    """Decode one whole PDU; any fault raises PduError and nothing else."""
    if len(data) < HEADER_LENGTH:
        raise PduError(
            f"a PDU needs at least {HEADER_LENGTH} octets; got {len(data)}",
            command_status=CommandStatus.ESME_RINVCMDLEN,
            resynchronisable=False,
        )
    command_length, command_id, command_status, sequence_number = HEADER.unpack_from(data)
    if command_length != len(data):
        raise PduError(
            f"command_length {command_length} differs from the {len(data)} octets received",
            command_status=CommandStatus.ESME_RINVCMDLEN,
            command_id=command_id,
            sequence_number=sequence_number,
            resynchronisable=False,
        )
    read_command_length(data[:4])
    cls = PDU_TYPES.get(command_id)
    if cls is None:
        raise PduError(
            f"command_id 0x{command_id:08X} is not supported",
            command_status=CommandStatus.ESME_RINVCMDID,
            command_id=command_id,
            sequence_number=sequence_number,
        )
    body = bytes(data[HEADER_LENGTH:])
    try:
        values = _decode_body(body, cls, sequence_number)
    except PduError:
        # An error response may omit its body or carry a partial one; its
        # command_status is what matters, so keep the defaults.
        if not (cls.command_id & RESPONSE_BIT and command_status != 0):
            raise
        values = {}
    return cls(sequence_number=sequence_number, command_status=command_status, **values)


def _decode_body(body: bytes, cls: type[Pdu], sequence_number: int) -> dict[str, Any]:
    values: dict[str, Any] = {}
    offset = 0
    for name, field_format in _FORMATS[cls.command_id]:
        values[name], offset = _decode_field(body, offset, name, field_format, cls, sequence_number)
    values["tlvs"] = _decode_tlvs(body[offset:], cls, sequence_number)
    return values


def _decode_tlvs(data: bytes, cls: type[Pdu], sequence_number: int) -> tuple[Tlv, ...]:
    try:
        return decode_tlvs(data)
    except PduError as exc:
        exc.command_id = cls.command_id
        exc.sequence_number = sequence_number
        raise


def _decode_field(
    body: bytes,
    offset: int,
    name: str,
    field_format: _FieldFormat,
    cls: type[Pdu],
    sequence_number: int,
) -> tuple[object, int]:
    kind = field_format.kind

    def truncated() -> PduError:
        return _field_error(
            f"{cls.command_id.name.lower()} body ends inside {name}",
            cls.command_id,
            sequence_number,
        )

    if kind is _Kind.U8:
        if offset >= len(body):
            raise truncated()
        return body[offset], offset + 1
    if kind in (_Kind.CSTRING, _Kind.TIME):
        end = body.find(b"\x00", offset, offset + field_format.max_length)
        if end < 0:
            if body.find(b"\x00", offset) < 0:
                raise truncated()
            raise _field_error(
                f"{name} is longer than {field_format.max_length - 1} characters",
                cls.command_id,
                sequence_number,
            )
        text = body[offset:end].decode("latin-1")
        if kind is _Kind.TIME and len(text) not in (0, TIME_STRING_LENGTH):
            raise _field_error(
                f"{name} {text!r} must be empty or {TIME_STRING_LENGTH} characters",
                cls.command_id,
                sequence_number,
            )
        return text, end + 1
    if kind is _Kind.SHORT_MESSAGE:
        if offset >= len(body):
            raise truncated()
        sm_length = body[offset]
        if sm_length > MAX_SHORT_MESSAGE_LENGTH:
            raise PduError(
                f"sm_length {sm_length} is over {MAX_SHORT_MESSAGE_LENGTH}",
                command_status=CommandStatus.ESME_RINVMSGLEN,
                command_id=cls.command_id,
                sequence_number=sequence_number,
            )
        start = offset + 1
        if start + sm_length > len(body):
            raise truncated()
        return bytes(body[start : start + sm_length]), start + sm_length
    raise AssertionError(kind)  # pragma: no cover


async def read_pdu(reader: asyncio.StreamReader) -> Pdu:
    """Read and decode the next PDU from a stream.

    Raises asyncio.IncompleteReadError at end of stream and PduError for a
    fault; a PduError with resynchronisable False leaves the stream unusable.
    """
    prefix = await reader.readexactly(4)
    command_length = read_command_length(prefix)
    rest = await reader.readexactly(command_length - 4)
    return decode_pdu(prefix + rest)


def response_for(request: Pdu, *, command_status: int = 0, **values: Any) -> Pdu:
    """Build the response to a request, with the same sequence number."""
    response_type = RESPONSE_TYPES[request.command_id]
    return response_type(
        sequence_number=request.sequence_number, command_status=command_status, **values
    )
