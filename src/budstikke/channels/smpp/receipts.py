"""Delivery receipts: reading deliver_sm and data_sm receipts and matching message ids.

A receipt carries the SMSC message id and a state in the receipted_message_id
and message_state TLVs (SMPP 3.4 5.3.2.12 and 5.3.2.35), in the text of
short_message (the de-facto format of SMPP 3.4 appendix B:
`id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
stat:DDDDDDD err:E text:...`), or in both. The TLVs win when present. The text
is parsed tolerantly: fields may be missing, dates may have 10 or 12 digits,
and the keys match in any letter case.
"""

from __future__ import annotations

import logging
import re
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from budstikke.channels.base import DeliveryReport
from budstikke.channels.smpp.errors import PduError
from budstikke.channels.smpp.pdu import DataSm, DeliverSm
from budstikke.channels.smpp.tlv import (
    RECEIPTED_MESSAGE_ID_MAX_LENGTH,
    TlvTag,
    find_tlv,
    read_cstring_value,
)
from budstikke.domain.statuses import NotificationStatus

logger = logging.getLogger(__name__)

# esm_class bits 2-5 give the message type of a deliver_sm (SMPP 3.4 5.2.12).
ESM_CLASS_TYPE_MASK: Final = 0x3C
ESM_CLASS_SMSC_DELIVERY_RECEIPT: Final = 0x04
ESM_CLASS_INTERMEDIATE_NOTIFICATION: Final = 0x20

# A message id is at most 64 characters, 65 octets with its NUL (SMPP 3.4
# 5.2.23). The stored lookup keys have room for that.
MESSAGE_ID_MAX_LENGTH: Final = RECEIPTED_MESSAGE_ID_MAX_LENGTH - 1
# The length of every error_code column in the database.
ERROR_CODE_MAX_LENGTH: Final = 32

# data_coding 8 is UCS-2; receipts are otherwise ASCII text.
_DATA_CODING_UCS2: Final = 8

_KEY_PATTERN: Final = re.compile(
    r"(?<![A-Za-z])(id|sub|dlvrd|submit date|done date|stat|err|text)\s*:", re.IGNORECASE
)

# Final states map to a status; ACCEPTD and ENROUTE are not final (None).
_STAT_STATUSES: Final[dict[str, NotificationStatus | None]] = {
    "DELIVRD": NotificationStatus.SMS_DELIVERED,
    "EXPIRED": NotificationStatus.SMS_FAILED_EXPIRED,
    "DELETED": NotificationStatus.SMS_FAILED_DELETED,
    "UNDELIV": NotificationStatus.SMS_FAILED_UNDELIVERED,
    "REJECTD": NotificationStatus.SMS_FAILED_REJECTED,
    "UNKNOWN": NotificationStatus.SMS_FAILED,
    "ACCEPTD": None,
    "ENROUTE": None,
}

# Some SMSCs spell the states out; these are the same states as above.
_STAT_ALIASES: Final[dict[str, str]] = {
    "DELIVERED": "DELIVRD",
    "UNDELIVERABLE": "UNDELIV",
    "REJECTED": "REJECTD",
    "ACCEPTED": "ACCEPTD",
}

# message_state TLV values (SMPP 3.4 5.2.28) as receipt stat words.
MESSAGE_STATES: Final[dict[int, str]] = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
STAT_TO_MESSAGE_STATE: Final[dict[str, int]] = {
    stat: state for state, stat in MESSAGE_STATES.items()
}


@dataclass(frozen=True, slots=True)
class ReceiptText:
    """The fields of a receipt text; a field the SMSC left out is None."""

    message_id: str | None = None
    submitted: int | None = None
    delivered: int | None = None
    submit_date: datetime | None = None
    done_date: datetime | None = None
    stat: str | None = None
    error_code: str | None = None
    text: str | None = None


def parse_receipt_text(text: str) -> ReceiptText:
    """Parse receipt text; never raises, and unreadable fields come back as None."""
    matches = list(_KEY_PATTERN.finditer(text))
    raw: dict[str, str] = {}
    for index, match in enumerate(matches):
        key = match.group(1).lower()
        if key == "text":
            value = text[match.end() :]
        else:
            end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
            # In the receipt format these values have no spaces, so a key of
            # the SMSC's own after them, such as `network:24201`, is left out.
            tokens = text[match.end() : end].split(maxsplit=1)
            value = tokens[0] if tokens else ""
        raw.setdefault(key, value)
        if key == "text":
            break
    return ReceiptText(
        message_id=raw.get("id") or None,
        submitted=_parse_count(raw.get("sub")),
        delivered=_parse_count(raw.get("dlvrd")),
        submit_date=parse_receipt_date(raw.get("submit date")),
        done_date=parse_receipt_date(raw.get("done date")),
        stat=(raw.get("stat") or "").upper() or None,
        error_code=raw.get("err") or None,
        text=raw.get("text"),
    )


def _parse_count(value: str | None) -> int | None:
    if value is None or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def parse_receipt_date(value: str | None) -> datetime | None:
    """Parse YYMMDDhhmm or YYMMDDhhmmss as UTC; return None for anything else.

    NOTE: receipt dates carry no zone. Most SMSCs write UTC, but some write
    their local time, which this reads as UTC.
    """
    if value is None or not (value.isascii() and value.isdigit()) or len(value) not in (10, 12):
        return None
    seconds = int(value[10:12]) if len(value) == 12 else 0
    try:
        return datetime(
            2000 + int(value[0:2]),
            int(value[2:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[8:10]),
            seconds,
            tzinfo=UTC,
        )
    except ValueError:
        return None


def status_for_stat(stat: str) -> NotificationStatus | None:
    """Map a receipt stat word to a status; None for a state that is not final.

    Raises KeyError for a stat word SMPP does not define.
    """
    word = stat.strip().upper()
    return _STAT_STATUSES[_STAT_ALIASES.get(word, word)]


def is_receipt(esm_class: int) -> bool:
    return (esm_class & ESM_CLASS_TYPE_MASK) in (
        ESM_CLASS_SMSC_DELIVERY_RECEIPT,
        ESM_CLASS_INTERMEDIATE_NOTIFICATION,
    )


def report_from_pdu(
    pdu: DeliverSm | DataSm, *, receipt_id_base: str = "same"
) -> DeliveryReport | None:
    """Build the delivery report a receipt PDU carries.

    Returns None when the PDU is no receipt or names no message id. The
    caller still sends its response. A receipt with an unknown stat word gives a
    report with status None (not final), and a warning is logged. The
    message id is converted with `normalise_receipt_id`.
    """
    if not is_receipt(pdu.esm_class):
        return None
    text = _receipt_text(pdu)
    tlv_id = _receipted_message_id(pdu)
    text_id = (text.message_id or "").strip()
    message_id = tlv_id or text_id
    if not message_id:
        logger.warning(
            "delivery receipt without a message id ignored",
            extra={"event": "receipt_without_id", "sequence_number": pdu.sequence_number},
        )
        return None
    if len(message_id) > MESSAGE_ID_MAX_LENGTH:
        logger.warning(
            "delivery receipt with a message id over %d characters ignored",
            MESSAGE_ID_MAX_LENGTH,
            extra={"event": "receipt_id_too_long", "sequence_number": pdu.sequence_number},
        )
        return None
    if tlv_id and text_id and tlv_id != text_id:
        # The TLV carries the id as submit_sm_resp gave it (SMPP 3.4 5.3.2.12).
        # Only the text may write it in the base of `receipt_id_base`.
        provider_ref = tlv_id
    else:
        provider_ref = normalise_receipt_id(message_id, receipt_id_base)
    stat = _message_state_stat(pdu) or text.stat
    status: NotificationStatus | None = None
    if stat is not None:
        try:
            status = status_for_stat(stat)
        except KeyError:
            logger.warning(
                "delivery receipt with an unknown state kept as not final",
                extra={"event": "receipt_unknown_state", "stat": stat, "message_id": message_id},
            )
    error_code = text.error_code or _network_error_code(pdu)
    return DeliveryReport(
        provider_ref=provider_ref,
        status=status,
        error_code=error_code[:ERROR_CODE_MAX_LENGTH] if error_code else None,
        done_at=text.done_date,
    )


def _receipt_text(pdu: DeliverSm | DataSm) -> ReceiptText:
    payload = pdu.short_message if isinstance(pdu, DeliverSm) else b""
    if not payload:
        tlv = find_tlv(pdu.tlvs, TlvTag.MESSAGE_PAYLOAD)
        payload = tlv.value if tlv is not None else b""
    if pdu.data_coding == _DATA_CODING_UCS2:
        decoded = payload.decode("utf-16-be", errors="replace")
    else:
        decoded = payload.decode("latin-1")
    return parse_receipt_text(decoded)


def _receipted_message_id(pdu: DeliverSm | DataSm) -> str | None:
    tlv = find_tlv(pdu.tlvs, TlvTag.RECEIPTED_MESSAGE_ID)
    if tlv is None:
        return None
    try:
        return read_cstring_value(tlv, RECEIPTED_MESSAGE_ID_MAX_LENGTH).strip() or None
    except PduError:
        return None


def _message_state_stat(pdu: DeliverSm | DataSm) -> str | None:
    tlv = find_tlv(pdu.tlvs, TlvTag.MESSAGE_STATE)
    if tlv is None or len(tlv.value) != 1:
        return None
    return MESSAGE_STATES.get(tlv.value[0], f"STATE_{tlv.value[0]}")


def _network_error_code(pdu: DeliverSm | DataSm) -> str | None:
    """Format the network_error_code TLV as network type and error code: 3 octets in hex."""
    tlv = find_tlv(pdu.tlvs, TlvTag.NETWORK_ERROR_CODE)
    if tlv is None or len(tlv.value) != 3:
        return None
    return tlv.value.hex().upper()


# Message id matching.

_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")

# Only ASCII letters are folded, because str.casefold() can lengthen an id
# ("ß" becomes "ss"), and a 64-character id would then overflow the
# 100-character ref_key columns.
_ASCII_LOWER_CASE: Final = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

# Bases in which an SMSC may write receipt message ids, relative to submit_sm_resp.
RECEIPT_ID_BASES: Final = ("same", "decimal", "hex")


def reference_keys(message_id: str, *, case_sensitive: bool = False) -> tuple[str, ...]:
    """Return the lookup keys of an SMSC message id, most specific first.

    SMSCs write the same id with or without leading zeros (`00A1B2C3` and
    `A1B2C3`) or in another letter case in submit_sm_resp and in receipts.
    Two ids match when their key sets share a key:

    - `id:` + the trimmed id, with ASCII letters in lower case unless
      `case_sensitive`;
    - `hex:` + the value read as hexadecimal without leading zeros, when the
      id is all hex digits and `case_sensitive` is off.

    A receipt id written in another base (decimal for a hexadecimal
    submit_sm_resp id) is converted by `normalise_receipt_id` before it
    reaches the report, not matched here: a string of decimal digits reads
    in both bases, so a key for each reading would let `10` and `16` match.
    """
    trimmed = message_id.strip()
    if case_sensitive:
        return (f"id:{trimmed}",)
    keys = [f"id:{trimmed.translate(_ASCII_LOWER_CASE)}"]
    if trimmed and set(trimmed) <= _HEX_DIGITS:
        keys.append(f"hex:{int(trimmed, 16):x}")
    return tuple(keys)


def normalise_receipt_id(message_id: str, receipt_id_base: str) -> str:
    """Write a receipt's message id in the base of the submit_sm_resp ids.

    `receipt_id_base` "decimal" means the SMSC returns a hexadecimal id in
    submit_sm_resp and writes it in decimal in receipts (10597059 for
    00A1B2C3), so a decimal id is converted to upper-case hexadecimal.
    "hex" is the reverse. "same" and ids that do not fit the base are
    returned trimmed and unchanged.
    """
    trimmed = message_id.strip()
    if receipt_id_base == "decimal" and trimmed.isascii() and trimmed.isdigit():
        return f"{int(trimmed, 10):X}"
    if receipt_id_base == "hex" and trimmed and set(trimmed) <= _HEX_DIGITS:
        return str(int(trimmed, 16))
    return trimmed
