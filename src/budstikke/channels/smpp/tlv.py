"""Optional parameters (TLVs) of SMPP 3.4, section 5.3.

A TLV is a 2-octet tag, a 2-octet length and that many octets of value. The
decoder keeps every TLV, known or not, so an unknown vendor tag never breaks a
PDU; callers look up the tags they understand.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from budstikke.channels.smpp.errors import PduError

_TAG_AND_LENGTH: Final = struct.Struct(">HH")

# command_status values used for TLV faults (SMPP 3.4 table 5-2).
_ESME_RINVOPTPARSTREAM: Final = 0x000000C0
_ESME_RINVPARLEN: Final = 0x000000C2


class TlvTag(IntEnum):
    """Optional parameter tags defined by SMPP 3.4 (table 5-4)."""

    DEST_ADDR_SUBUNIT = 0x0005
    DEST_NETWORK_TYPE = 0x0006
    DEST_BEARER_TYPE = 0x0007
    DEST_TELEMATICS_ID = 0x0008
    SOURCE_ADDR_SUBUNIT = 0x000D
    SOURCE_NETWORK_TYPE = 0x000E
    SOURCE_BEARER_TYPE = 0x000F
    SOURCE_TELEMATICS_ID = 0x0010
    QOS_TIME_TO_LIVE = 0x0017
    PAYLOAD_TYPE = 0x0019
    ADDITIONAL_STATUS_INFO_TEXT = 0x001D
    RECEIPTED_MESSAGE_ID = 0x001E
    MS_MSG_WAIT_FACILITIES = 0x0030
    PRIVACY_INDICATOR = 0x0201
    SOURCE_SUBADDRESS = 0x0202
    DEST_SUBADDRESS = 0x0203
    USER_MESSAGE_REFERENCE = 0x0204
    USER_RESPONSE_CODE = 0x0205
    SOURCE_PORT = 0x020A
    DESTINATION_PORT = 0x020B
    SAR_MSG_REF_NUM = 0x020C
    LANGUAGE_INDICATOR = 0x020D
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    CALLBACK_NUM_PRES_IND = 0x0302
    CALLBACK_NUM_ATAG = 0x0303
    NUMBER_OF_MESSAGES = 0x0304
    CALLBACK_NUM = 0x0381
    DPF_RESULT = 0x0420
    SET_DPF = 0x0421
    MS_AVAILABILITY_STATUS = 0x0422
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    DELIVERY_FAILURE_REASON = 0x0425
    MORE_MESSAGES_TO_SEND = 0x0426
    MESSAGE_STATE = 0x0427
    USSD_SERVICE_OP = 0x0501
    DISPLAY_TIME = 0x1201
    SMS_SIGNAL = 0x1203
    MS_VALIDITY = 0x1204
    ALERT_ON_MESSAGE_DELIVERY = 0x130C
    ITS_REPLY_TYPE = 0x1380
    ITS_SESSION_INFO = 0x1383


# Fixed value lengths of the tags this project reads or writes; a TLV of one of
# these tags with another length is rejected with ESME_RINVPARLEN.
FIXED_LENGTHS: Final[dict[int, int]] = {
    TlvTag.MESSAGE_STATE: 1,
    TlvTag.NETWORK_ERROR_CODE: 3,
    TlvTag.SC_INTERFACE_VERSION: 1,
    TlvTag.SAR_MSG_REF_NUM: 2,
    TlvTag.SAR_TOTAL_SEGMENTS: 1,
    TlvTag.SAR_SEGMENT_SEQNUM: 1,
    TlvTag.USER_MESSAGE_REFERENCE: 2,
    TlvTag.ALERT_ON_MESSAGE_DELIVERY: 0,
}

# receipted_message_id is a C-octet string of at most 65 octets including the NUL.
RECEIPTED_MESSAGE_ID_MAX_LENGTH: Final = 65


def is_known_tag(tag: int) -> bool:
    return tag in TlvTag._value2member_map_


@dataclass(frozen=True, slots=True)
class Tlv:
    """One optional parameter: its tag and raw value octets."""

    tag: int
    value: bytes

    @classmethod
    def u8(cls, tag: int, value: int) -> Tlv:
        return cls(tag, bytes([value]))

    @classmethod
    def u16(cls, tag: int, value: int) -> Tlv:
        return cls(tag, value.to_bytes(2, "big"))

    @classmethod
    def cstring(cls, tag: int, value: str) -> Tlv:
        return cls(tag, value.encode("latin-1") + b"\x00")


def encode_tlvs(tlvs: Iterable[Tlv]) -> bytes:
    chunks: list[bytes] = []
    for tlv in tlvs:
        if not 0 <= tlv.tag <= 0xFFFF:
            raise PduError(
                f"TLV tag {tlv.tag} is outside 0..0xFFFF", command_status=_ESME_RINVOPTPARSTREAM
            )
        if len(tlv.value) > 0xFFFF:
            raise PduError(
                f"TLV 0x{tlv.tag:04X} value is {len(tlv.value)} octets; at most 65535 fit",
                command_status=_ESME_RINVPARLEN,
            )
        chunks.append(_TAG_AND_LENGTH.pack(tlv.tag, len(tlv.value)))
        chunks.append(tlv.value)
    return b"".join(chunks)


def decode_tlvs(data: bytes) -> tuple[Tlv, ...]:
    """Decode the optional part of a PDU body, checking lengths but keeping unknown tags."""
    tlvs: list[Tlv] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < _TAG_AND_LENGTH.size:
            raise PduError(
                f"optional parameter at offset {offset} is truncated: "
                f"{len(data) - offset} octets left",
                command_status=_ESME_RINVOPTPARSTREAM,
            )
        tag, length = _TAG_AND_LENGTH.unpack_from(data, offset)
        offset += _TAG_AND_LENGTH.size
        if offset + length > len(data):
            raise PduError(
                f"TLV 0x{tag:04X} declares {length} octets but {len(data) - offset} remain",
                command_status=_ESME_RINVOPTPARSTREAM,
            )
        expected = FIXED_LENGTHS.get(tag)
        if expected is not None and length != expected:
            raise PduError(
                f"TLV 0x{tag:04X} must be {expected} octets long; got {length}",
                command_status=_ESME_RINVPARLEN,
            )
        tlvs.append(Tlv(tag, bytes(data[offset : offset + length])))
        offset += length
    return tuple(tlvs)


def find_tlv(tlvs: Iterable[Tlv], tag: int) -> Tlv | None:
    for tlv in tlvs:
        if tlv.tag == tag:
            return tlv
    return None


def read_cstring_value(tlv: Tlv, max_length: int) -> str:
    """Return a TLV value that is a C-octet string, tolerating a missing NUL."""
    value = tlv.value
    if value.endswith(b"\x00"):
        value = value[:-1]
    if b"\x00" in value:
        raise PduError(
            f"TLV 0x{tlv.tag:04X} has a NUL inside its value", command_status=_ESME_RINVPARLEN
        )
    if len(value) + 1 > max_length:
        raise PduError(
            f"TLV 0x{tlv.tag:04X} is {len(value) + 1} octets; at most {max_length} are allowed",
            command_status=_ESME_RINVPARLEN,
        )
    return value.decode("latin-1")
