"""The submit_sm PDUs of one SMS: addressing, concatenation header and per-part fields.

A message longer than one segment goes out as concatenated parts (3GPP TS
23.040 9.2.3.24.1): each short_message starts with the 6-octet user data
header 05 00 03 RR TT SS (header length 5, information element 00 "8-bit
reference concatenation" of length 3, reference RR, total TT, sequence SS
from 1) and esm_class has the UDHI bit 0x40. Every part carries the same
data_coding, addresses, registered_delivery and validity_period, because an
SMSC applies each part's own fields to that part only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

from budstikke.channels.smpp.pdu import SubmitSm
from budstikke.domain.sms_text import EncodedSms

UDH_LENGTH: Final = 6
_IEI_CONCATENATION_8BIT: Final = 0x00
ESM_CLASS_UDHI: Final = 0x40

# registered_delivery 1: an SMSC delivery receipt on success or failure (SMPP 3.4 5.2.17).
REGISTERED_DELIVERY_RECEIPT: Final = 0x01

# The 8-bit reference and the one-octet total allow at most 255 parts.
MAX_PARTS: Final = 255

TON_INTERNATIONAL: Final = 1
TON_ALPHANUMERIC: Final = 5
NPI_UNKNOWN: Final = 0
NPI_ISDN: Final = 1

# E.164 numbers have at most 15 digits.
_MAX_E164_DIGITS: Final = 15


@dataclass(frozen=True, slots=True)
class Address:
    """An SMPP address: the digits or text with its type of number and numbering plan."""

    value: str
    ton: int
    npi: int


def destination_address(e164: str) -> Address:
    """Return the destination of an E.164 number (+4799999999): international, ISDN plan.

    Raises ValueError for anything but a + followed by 1 to 15 digits.
    """
    digits = e164[1:] if e164.startswith("+") else ""
    if not digits.isdigit() or not digits.isascii() or len(digits) > _MAX_E164_DIGITS:
        raise ValueError(f"recipient {e164!r} is not an E.164 number such as +4799999999")
    return Address(digits, TON_INTERNATIONAL, NPI_ISDN)


def concatenation_header(reference: int, total: int, sequence: int) -> bytes:
    """Return the user data header of part `sequence` (from 1) of `total` parts."""
    if not 0 <= reference <= 0xFF:
        raise ValueError(f"concatenation reference {reference} does not fit in one octet")
    if not 1 <= sequence <= total <= MAX_PARTS:
        raise ValueError(f"part {sequence} of {total} is outside 1..{MAX_PARTS}")
    return bytes([UDH_LENGTH - 1, _IEI_CONCATENATION_8BIT, 3, reference, total, sequence])


def build_submit_parts(
    encoded: EncodedSms,
    *,
    source: Address,
    destination: Address,
    reference: int,
    validity_period: str,
    service_type: str = "",
) -> list[SubmitSm]:
    """Build one submit_sm per part; sequence numbers are left at 0 for the session to set."""
    total = len(encoded.parts)
    if total > MAX_PARTS:
        raise ValueError(
            f"a message of {total} parts exceeds the {MAX_PARTS} an 8-bit header allows"
        )
    concatenated = total > 1
    pdus: list[SubmitSm] = []
    for index, payload in enumerate(encoded.parts, start=1):
        header = concatenation_header(reference, total, index) if concatenated else b""
        pdus.append(
            SubmitSm(
                service_type=service_type,
                source_addr_ton=source.ton,
                source_addr_npi=source.npi,
                source_addr=source.value,
                dest_addr_ton=destination.ton,
                dest_addr_npi=destination.npi,
                destination_addr=destination.value,
                esm_class=ESM_CLASS_UDHI if concatenated else 0x00,
                validity_period=validity_period,
                registered_delivery=REGISTERED_DELIVERY_RECEIPT,
                data_coding=encoded.data_coding,
                short_message=header + payload,
            )
        )
    return pdus


def with_validity(pdu: SubmitSm, validity_period: str) -> SubmitSm:
    return dataclasses.replace(pdu, validity_period=validity_period)
