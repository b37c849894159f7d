"""Strict checks the test SMSC applies to every submit_sm and bind, and readable PDU lines.

Each check returns the command_status a strict SMSC answers and a sentence
saying what is wrong. Content is checked against data_coding: GSM 03.38
septets one per octet for 0, UCS-2 big-endian for 8, each within the 140
octets of one short message after the user data header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from budstikke.channels.smpp.config import VALID_NPIS, VALID_TONS
from budstikke.channels.smpp.pdu import (
    INTERFACE_VERSION_3_4,
    SEQUENCE_NUMBER_MAX,
    SEQUENCE_NUMBER_MIN,
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DeliverSm,
    Pdu,
    SubmitSm,
)
from budstikke.channels.smpp.status_codes import CommandStatus, describe_status
from budstikke.channels.smpp.tlv import TlvTag, find_tlv
from budstikke.channels.smpp.validity import parse_smpp_time
from budstikke.domain.masking import mask_phone

S = CommandStatus

# One short message carries 140 octets of user data (3GPP TS 23.040 9.2.3.16).
USER_DATA_OCTETS: Final = 140

# Septets that may follow the escape 0x1B (the GSM 03.38 extension table).
GSM_EXTENSION_CODES: Final = frozenset({0x0A, 0x14, 0x28, 0x29, 0x2F, 0x3C, 0x3D, 0x3E, 0x40, 0x65})
GSM_ESCAPE: Final = 0x1B

DATA_CODING_GSM7: Final = 0
DATA_CODING_UCS2: Final = 8

ESM_CLASS_UDHI: Final = 0x40
# esm_class message types an ESME may put in a submit_sm: default, ESME delivery
# acknowledgement and ESME manual/user acknowledgement (SMPP 3.4 5.2.12).
_SUBMIT_MESSAGE_TYPES: Final = frozenset({0x00, 0x08, 0x10})

_IEI_CONCATENATION_8BIT: Final = 0x00
_IEI_CONCATENATION_16BIT: Final = 0x08

INTERFACE_VERSIONS: Final = frozenset({0x33, INTERFACE_VERSION_3_4})


@dataclass(frozen=True, slots=True)
class Violation:
    command_status: int
    message: str


@dataclass(frozen=True, slots=True)
class Concatenation:
    """The concatenation information element of a part: reference, total parts, sequence."""

    reference: int
    total: int
    sequence: int


def check_sequence_number(pdu: Pdu) -> Violation | None:
    if not SEQUENCE_NUMBER_MIN <= pdu.sequence_number <= SEQUENCE_NUMBER_MAX:
        return Violation(
            S.ESME_RINVCMDLEN,
            f"{pdu.name} sequence_number {pdu.sequence_number} is outside 1..0x7FFFFFFF",
        )
    if not pdu.is_response and pdu.command_status != 0:
        return Violation(
            S.ESME_RINVCMDLEN,
            f"{pdu.name} is a request but has command_status 0x{pdu.command_status:08X}",
        )
    return None


def check_bind(pdu: BindTransmitter | BindReceiver | BindTransceiver) -> Violation | None:
    if pdu.interface_version not in INTERFACE_VERSIONS:
        return Violation(
            S.ESME_RBINDFAIL,
            f"interface_version 0x{pdu.interface_version:02X} is neither 3.3 (0x33) nor 3.4 (0x34)",
        )
    if pdu.addr_ton not in VALID_TONS or pdu.addr_npi not in VALID_NPIS:
        return Violation(S.ESME_RBINDFAIL, f"bind addr_ton/addr_npi {pdu.addr_ton}/{pdu.addr_npi}")
    if not pdu.system_id:
        return Violation(S.ESME_RINVSYSID, "bind has an empty system_id")
    return None


def check_submit_sm(pdu: SubmitSm) -> Violation | None:
    """Check every field of a submit_sm; return the first violation or None."""
    for check in (_check_addresses, _check_flags, _check_times, _check_content):
        violation = check(pdu)
        if violation is not None:
            return violation
    return None


def _check_addresses(pdu: SubmitSm) -> Violation | None:
    if pdu.source_addr_ton not in VALID_TONS:
        return Violation(S.ESME_RINVSRCTON, f"source_addr_ton {pdu.source_addr_ton} is not 0..6")
    if pdu.source_addr_npi not in VALID_NPIS:
        return Violation(S.ESME_RINVSRCNPI, f"source_addr_npi {pdu.source_addr_npi} is undefined")
    if pdu.dest_addr_ton not in VALID_TONS:
        return Violation(S.ESME_RINVDSTTON, f"dest_addr_ton {pdu.dest_addr_ton} is not 0..6")
    if pdu.dest_addr_npi not in VALID_NPIS:
        return Violation(S.ESME_RINVDSTNPI, f"dest_addr_npi {pdu.dest_addr_npi} is undefined")
    source = pdu.source_addr
    if pdu.source_addr_ton == 5:
        if not 1 <= len(source) <= 11:
            return Violation(
                S.ESME_RINVSRCADR,
                f"alphanumeric source_addr has {len(source)} characters, not 1..11",
            )
    elif source and not (source.isascii() and source.isdigit() and len(source) <= 15):
        return Violation(
            S.ESME_RINVSRCADR,
            f"source_addr with TON {pdu.source_addr_ton} must be up to 15 digits",
        )
    destination = pdu.destination_addr
    if not (destination.isascii() and destination.isdigit() and 1 <= len(destination) <= 15):
        return Violation(S.ESME_RINVDSTADR, "destination_addr must be 1 to 15 digits")
    if pdu.dest_addr_ton == 1 and destination.startswith("0"):
        return Violation(
            S.ESME_RINVDSTADR, "an international destination_addr must start with the country code"
        )
    return None


def _check_flags(pdu: SubmitSm) -> Violation | None:
    if (pdu.esm_class & 0x3C) not in _SUBMIT_MESSAGE_TYPES:
        return Violation(S.ESME_RINVESMCLASS, f"esm_class 0x{pdu.esm_class:02X} has a bad type")
    if pdu.priority_flag > 3:
        return Violation(S.ESME_RINVPRTFLG, f"priority_flag {pdu.priority_flag} is not 0..3")
    if pdu.registered_delivery & 0x03 == 0x03 or pdu.registered_delivery & 0xE0:
        return Violation(
            S.ESME_RINVREGDLVFLG,
            f"registered_delivery 0x{pdu.registered_delivery:02X} uses reserved bits",
        )
    if pdu.replace_if_present_flag > 1:
        return Violation(
            S.ESME_RINVREPFLAG,
            f"replace_if_present_flag {pdu.replace_if_present_flag} is not 0 or 1",
        )
    if pdu.sm_default_msg_id != 0:
        return Violation(S.ESME_RINVDFTMSGID, "the test SMSC has no predefined messages")
    if not pdu.service_type.isascii() or not pdu.service_type.isprintable():
        return Violation(S.ESME_RINVSERTYP, "service_type must be printable ASCII")
    return None


def _check_times(pdu: SubmitSm) -> Violation | None:
    for name, value, status in (
        ("schedule_delivery_time", pdu.schedule_delivery_time, S.ESME_RINVSCHED),
        ("validity_period", pdu.validity_period, S.ESME_RINVEXPIRY),
    ):
        if not value:
            continue
        try:
            parsed = parse_smpp_time(value)
        except ValueError as exc:
            return Violation(status, f"{name}: {exc}")
        if parsed.relative is not None and parsed.relative.total_seconds() <= 0:
            return Violation(status, f"{name} {value!r} is a zero interval")
    return None


def _check_content(pdu: SubmitSm) -> Violation | None:
    payload_tlv = find_tlv(pdu.tlvs, TlvTag.MESSAGE_PAYLOAD)
    if payload_tlv is not None:
        if pdu.short_message:
            return Violation(
                S.ESME_RINVMSGLEN, "short_message and message_payload must not both carry text"
            )
        return None
    if pdu.data_coding not in (DATA_CODING_GSM7, DATA_CODING_UCS2):
        return Violation(
            S.ESME_RINVMSGLEN, f"data_coding {pdu.data_coding} is not supported (only 0 and 8)"
        )
    header_length = 0
    if pdu.esm_class & ESM_CLASS_UDHI:
        header = parse_user_data_header(pdu.short_message)
        if isinstance(header, Violation):
            return header
        header_length = pdu.short_message[0] + 1
    user_data = pdu.short_message[header_length:]
    if pdu.data_coding == DATA_CODING_GSM7:
        return _check_gsm_septets(user_data, header_length)
    return _check_ucs2(user_data, header_length)


def parse_user_data_header(short_message: bytes) -> Concatenation | Violation | None:
    """Parse the user data header of a short_message with UDHI set.

    Returns its concatenation element, None when it has none, or a violation.
    """
    if not short_message:
        return Violation(S.ESME_RINVESMCLASS, "UDHI is set but short_message is empty")
    header_length = short_message[0]
    if header_length == 0 or header_length + 1 > len(short_message):
        return Violation(
            S.ESME_RINVESMCLASS, f"user data header length {header_length} does not fit the message"
        )
    elements = short_message[1 : header_length + 1]
    concatenation: Concatenation | None = None
    offset = 0
    while offset < len(elements):
        if offset + 2 > len(elements):
            return Violation(S.ESME_RINVESMCLASS, "user data header ends inside an element")
        identifier, length = elements[offset], elements[offset + 1]
        data = elements[offset + 2 : offset + 2 + length]
        if len(data) != length:
            return Violation(S.ESME_RINVESMCLASS, f"element 0x{identifier:02X} overruns the header")
        if identifier == _IEI_CONCATENATION_8BIT and length == 3:
            concatenation = Concatenation(data[0], data[1], data[2])
        elif identifier == _IEI_CONCATENATION_16BIT and length == 4:
            concatenation = Concatenation(int.from_bytes(data[0:2], "big"), data[2], data[3])
        elif identifier in (_IEI_CONCATENATION_8BIT, _IEI_CONCATENATION_16BIT):
            return Violation(S.ESME_RINVESMCLASS, f"concatenation element has length {length}")
        offset += 2 + length
    if concatenation is not None and not 1 <= concatenation.sequence <= concatenation.total:
        return Violation(
            S.ESME_RINVESMCLASS,
            f"part {concatenation.sequence} of {concatenation.total} is out of range",
        )
    return concatenation


def _check_gsm_septets(septets: bytes, header_length: int) -> Violation | None:
    # The header is followed by fill bits up to a septet boundary.
    header_septets = -(-header_length * 8 // 7)
    max_septets = USER_DATA_OCTETS * 8 // 7 - header_septets
    if len(septets) > max_septets:
        return Violation(
            S.ESME_RINVMSGLEN,
            f"{len(septets)} septets follow a {header_length}-octet header; "
            f"at most {max_septets} fit",
        )
    index = 0
    while index < len(septets):
        value = septets[index]
        if value > 0x7F:
            return Violation(S.ESME_RINVMSGLEN, f"octet 0x{value:02X} at {index} is not a septet")
        if value == GSM_ESCAPE:
            if index + 1 >= len(septets):
                return Violation(
                    S.ESME_RINVMSGLEN, "the part ends with an escape split from its code"
                )
            if septets[index + 1] not in GSM_EXTENSION_CODES:
                return Violation(
                    S.ESME_RINVMSGLEN,
                    f"escape at {index} is followed by 0x{septets[index + 1]:02X}, "
                    "which is not in the extension table",
                )
            index += 1
        index += 1
    return None


def _check_ucs2(data: bytes, header_length: int) -> Violation | None:
    max_octets = USER_DATA_OCTETS - header_length
    if len(data) > max_octets:
        return Violation(
            S.ESME_RINVMSGLEN,
            f"{len(data)} UCS-2 octets follow a {header_length}-octet header; "
            f"at most {max_octets} fit",
        )
    if len(data) % 2:
        return Violation(S.ESME_RINVMSGLEN, f"UCS-2 text has an odd length of {len(data)} octets")
    units = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    index = 0
    while index < len(units):
        unit = units[index]
        if 0xD800 <= unit <= 0xDBFF:
            if index + 1 >= len(units) or not 0xDC00 <= units[index + 1] <= 0xDFFF:
                return Violation(S.ESME_RINVMSGLEN, f"high surrogate at unit {index} has no pair")
            index += 1
        elif 0xDC00 <= unit <= 0xDFFF:
            return Violation(S.ESME_RINVMSGLEN, f"low surrogate at unit {index} has no pair")
        index += 1
    return None


# Readable lines.


def _mask_address(value: str, ton: int) -> str:
    if ton == 5:
        return value
    return mask_phone(f"+{value}") if ton == 1 else mask_phone(value)


def describe_pdu(pdu: Pdu) -> str:
    """Describe a PDU in one line, with phone numbers masked and no message text."""
    line = f"{pdu.name} seq={pdu.sequence_number}"
    if pdu.command_status:
        line += f" status={describe_status(pdu.command_status)}"
    if isinstance(pdu, SubmitSm | DeliverSm):
        source = _mask_address(pdu.source_addr, pdu.source_addr_ton)
        destination = _mask_address(pdu.destination_addr, pdu.dest_addr_ton)
        line += (
            f" from={source}({pdu.source_addr_ton}/{pdu.source_addr_npi})"
            f" to={destination}({pdu.dest_addr_ton}/{pdu.dest_addr_npi})"
            f" data_coding={pdu.data_coding} esm_class=0x{pdu.esm_class:02X}"
            f" sm_length={len(pdu.short_message)}"
        )
        if pdu.esm_class & ESM_CLASS_UDHI and pdu.short_message:
            header = pdu.short_message[: pdu.short_message[0] + 1]
            line += f" udh={header.hex(' ').upper()}"
        if pdu.validity_period:
            line += f" validity={pdu.validity_period}"
        line += f" registered_delivery={pdu.registered_delivery}"
    elif isinstance(pdu, BindTransmitter | BindReceiver | BindTransceiver):
        line += f" system_id={pdu.system_id!r} system_type={pdu.system_type!r}"
    else:
        message_id = getattr(pdu, "message_id", None)
        if message_id:
            line += f" message_id={message_id}"
    if pdu.tlvs:
        line += " tlvs=" + ",".join(f"0x{tlv.tag:04X}" for tlv in pdu.tlvs)
    return line
