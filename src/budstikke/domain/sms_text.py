"""Encode SMS text as GSM 03.38 septets or UCS-2 and split it into concatenated parts.

The tables and packing follow 3GPP TS 23.038 (GSM 7-bit default alphabet,
extension table, section 6.1.2.1.1 packing). National language shift tables
are not supported: text outside the default alphabet and its extension table
is sent as UCS-2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Final

DATA_CODING_GSM7: Final = 0
DATA_CODING_UCS2: Final = 8

# A short message carries 140 octets of user data: 160 packed septets or 70
# UCS-2 code units. Each part of a concatenated message also carries a 6-octet
# user data header (8-bit reference concatenation), which leaves 134 octets:
# 153 septets (after 1 fill bit that aligns the septets) or 67 UCS-2 units.
SINGLE_SMS_SEPTETS: Final = 160
CONCATENATED_PART_SEPTETS: Final = 153
SINGLE_SMS_UCS2_UNITS: Final = 70
CONCATENATED_PART_UCS2_UNITS: Final = 67

ESCAPE: Final = 0x1B

# The default alphabet, 16 codes per row from 0x00 to 0x7F. Position 0x1B is
# the escape to the extension table, not a character, so it is left out of the
# encoding map and the control character U+001B is sent as UCS-2.
# NOTE: Unicode's GSM0338.TXT maps 0x09 to small ç, while the TS 23.038 figure
# shows capital Ç. This module follows the 3GPP figure, and ç is sent as UCS-2.
_BASIC_TABLE: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

# The extension table: each character is sent as ESC followed by this code.
_EXTENSION_CODES: Final[dict[str, int]] = {
    "\f": 0x0A,  # form feed, shown as a page break
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

_BASIC_CODES: Final[dict[str, int]] = {
    character: code for code, character in enumerate(_BASIC_TABLE) if code != ESCAPE
}

# Septets of every GSM-7 character: one for the basic table, two for the extension table.
_GSM7_SEPTETS: Final[dict[str, bytes]] = {
    **{character: bytes([code]) for character, code in _BASIC_CODES.items()},
    **{character: bytes([ESCAPE, code]) for character, code in _EXTENSION_CODES.items()},
}

_EXTENSION_CHARACTERS_BY_CODE: Final[dict[int, str]] = {
    code: character for character, code in _EXTENSION_CODES.items()
}


@dataclass(frozen=True)
class EncodedSms:
    """SMS text encoded for SMPP and split into the parts of a concatenated message."""

    # DATA_CODING_GSM7 (0) or DATA_CODING_UCS2 (8).
    data_coding: int
    # Septets for GSM-7, UTF-16 code units for UCS-2, over the whole text.
    unit_count: int
    # Payload of each part without the user data header: unpacked septets, one
    # per octet (as SMPP carries data_coding 0), or UCS-2 big-endian. A single
    # SMS has one part, and empty text has one empty part.
    parts: tuple[bytes, ...]

    @property
    def segment_count(self) -> int:
        """Number of short messages the text is sent as."""
        return len(self.parts)


def is_gsm7(text: str) -> bool:
    """Return whether every character is in the GSM-7 basic or extension table."""
    return all(character in _GSM7_SEPTETS for character in text)


def is_gsm7_basic(text: str) -> bool:
    """Return whether every character is in the GSM-7 basic table (no escape needed)."""
    return all(character in _BASIC_CODES for character in text)


def encode_sms(text: str) -> EncodedSms:
    """Encode text as GSM-7 if every character allows it, else as UCS-2, and split it.

    Text that fits one SMS (160 septets or 70 units) gives one part. Longer text
    is split into parts of at most 153 septets or 67 units. A part ends early
    rather than split an escape sequence or a surrogate pair.
    Raises ValueError if the text contains a lone surrogate, which UTF-16 cannot
    encode.
    """
    if is_gsm7(text):
        data_coding = DATA_CODING_GSM7
        chunks = [_GSM7_SEPTETS[character] for character in text]
        sizes = [len(chunk) for chunk in chunks]
        single_max, part_max = SINGLE_SMS_SEPTETS, CONCATENATED_PART_SEPTETS
    else:
        data_coding = DATA_CODING_UCS2
        chunks = [_encode_ucs2_character(text, index) for index in range(len(text))]
        sizes = [len(chunk) // 2 for chunk in chunks]
        single_max, part_max = SINGLE_SMS_UCS2_UNITS, CONCATENATED_PART_UCS2_UNITS

    boundaries = _part_boundaries(sizes, single_max, part_max)
    parts = tuple(b"".join(chunks[start:end]) for start, end in pairwise(boundaries))
    return EncodedSms(data_coding=data_coding, unit_count=sum(sizes), parts=parts)


def count_segments(text: str) -> int:
    """Count the short messages encode_sms(text) produces, without building the parts."""
    if is_gsm7(text):
        sizes = [len(_GSM7_SEPTETS[character]) for character in text]
        boundaries = _part_boundaries(sizes, SINGLE_SMS_SEPTETS, CONCATENATED_PART_SEPTETS)
    else:
        sizes = [_ucs2_unit_count(text, index) for index in range(len(text))]
        boundaries = _part_boundaries(sizes, SINGLE_SMS_UCS2_UNITS, CONCATENATED_PART_UCS2_UNITS)
    return len(boundaries) - 1


def _part_boundaries(sizes: Sequence[int], single_max: int, part_max: int) -> list[int]:
    """Return the character indexes where parts start, followed by len(sizes).

    `sizes` contains the units of each character. A character is never split, so a
    part is shorter than `part_max` when the next character does not fit.
    """
    if sum(sizes) <= single_max:
        return [0, len(sizes)]

    boundaries = [0]
    units_in_part = 0
    for index, size in enumerate(sizes):
        if units_in_part + size > part_max:
            boundaries.append(index)
            units_in_part = 0
        units_in_part += size
    boundaries.append(len(sizes))
    return boundaries


def _encode_ucs2_character(text: str, index: int) -> bytes:
    _reject_lone_surrogate(text, index)
    return text[index].encode("utf-16-be")


def _ucs2_unit_count(text: str, index: int) -> int:
    _reject_lone_surrogate(text, index)
    # A character above U+FFFF is a surrogate pair: two UTF-16 code units.
    return 2 if ord(text[index]) > 0xFFFF else 1


def _reject_lone_surrogate(text: str, index: int) -> None:
    code_point = ord(text[index])
    if 0xD800 <= code_point <= 0xDFFF:
        raise ValueError(
            f"SMS text contains a lone surrogate U+{code_point:04X} at position {index}, "
            "which UCS-2 cannot encode. Pass well-formed Unicode text."
        )


def decode_gsm_septets(data: bytes) -> str:
    """Decode unpacked GSM-7 septets, one per octet, into text.

    An escape followed by a code that the extension table does not define shows
    the basic-table character for that code, and ESC ESC shows a space, as TS
    23.038 specifies for a receiver.
    Raises ValueError for an octet above 0x7F or an escape at the end of the data.
    """
    characters: list[str] = []
    index = 0
    while index < len(data):
        septet = data[index]
        _check_septet(septet, index)
        if septet != ESCAPE:
            characters.append(_BASIC_TABLE[septet])
            index += 1
            continue

        if index + 1 == len(data):
            raise ValueError(
                f"GSM-7 data ends with an escape septet 0x1B at position {index} and no "
                "extension code after it; the data was probably cut inside an escape sequence"
            )
        code = data[index + 1]
        _check_septet(code, index + 1)
        if code == ESCAPE:
            characters.append(" ")
        else:
            characters.append(_EXTENSION_CHARACTERS_BY_CODE.get(code, _BASIC_TABLE[code]))
        index += 2
    return "".join(characters)


def _check_septet(value: int, index: int) -> None:
    if value > 0x7F:
        raise ValueError(
            f"GSM-7 data has octet 0x{value:02X} at position {index}; a septet is at most "
            "0x7F (for packed data, call unpack_septets first)"
        )


def decode_ucs2(data: bytes) -> str:
    """Decode UCS-2 big-endian data into text, accepting surrogate pairs as UTF-16 does.

    Raises ValueError for an odd number of octets or a lone surrogate.
    """
    if len(data) % 2:
        raise ValueError(
            f"UCS-2 data has an odd length of {len(data)} octets; each code unit is 2 octets"
        )
    try:
        return data.decode("utf-16-be")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"UCS-2 data has a lone surrogate at octets {error.start}-{error.end - 1}"
        ) from error


def pack_septets(septets: bytes) -> bytes:
    """Pack septets into octets as TS 23.038 section 6.1.2.1.1 describes for SMS.

    Septet n starts at bit 7*n, least significant bit first, and the spare bits
    of the last octet are zero. The packing starts at bit 0, so data that follows
    a user data header needs the header's fill bits added by the caller.
    Raises ValueError for a value above 0x7F.
    """
    packed = bytearray()
    accumulator = 0
    bit_count = 0
    for index, septet in enumerate(septets):
        _check_septet(septet, index)
        accumulator |= septet << bit_count
        bit_count += 7
        while bit_count >= 8:
            packed.append(accumulator & 0xFF)
            accumulator >>= 8
            bit_count -= 8
    if bit_count:
        packed.append(accumulator)
    return bytes(packed)


def unpack_septets(packed: bytes, count: int) -> bytes:
    """Unpack `count` septets from packed octets, one septet per output octet.

    Raises ValueError unless `packed` is exactly the ceil(count * 7 / 8) octets
    that pack_septets produces for `count` septets.
    """
    if count < 0:
        raise ValueError(f"septet count must not be negative; got {count}")
    expected_length = (count * 7 + 7) // 8
    if len(packed) != expected_length:
        raise ValueError(
            f"{count} packed septets take {expected_length} octets; got {len(packed)} octets"
        )

    septets = bytearray()
    accumulator = 0
    bit_count = 0
    for octet in packed:
        accumulator |= octet << bit_count
        bit_count += 8
        while bit_count >= 7 and len(septets) < count:
            septets.append(accumulator & 0x7F)
            accumulator >>= 7
            bit_count -= 7
    return bytes(septets)
