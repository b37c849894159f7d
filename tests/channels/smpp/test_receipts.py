"""Delivery receipt parsing, state mapping and message id matching."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import String

from budstikke.channels.smpp.pdu import DataSm, DeliverSm
from budstikke.channels.smpp.receipts import (
    MESSAGE_ID_MAX_LENGTH,
    normalise_receipt_id,
    parse_receipt_date,
    parse_receipt_text,
    reference_keys,
    report_from_pdu,
    status_for_stat,
)
from budstikke.channels.smpp.tlv import Tlv, TlvTag
from budstikke.domain.statuses import NotificationStatus
from budstikke.store.tables import provider_ref_keys


def receipt(text: str, *tlvs: Tlv, esm_class: int = 0x04) -> DeliverSm:
    return DeliverSm(
        sequence_number=1, esm_class=esm_class, short_message=text.encode("ascii"), tlvs=tlvs
    )


def match(first: str, second: str, *, case_sensitive: bool = False) -> bool:
    first_keys = reference_keys(first, case_sensitive=case_sensitive)
    second_keys = reference_keys(second, case_sensitive=case_sensitive)
    return bool(set(first_keys) & set(second_keys))


# Parsing the text.


def test_full_receipt_text() -> None:
    parsed = parse_receipt_text(
        "id:0000123456 sub:001 dlvrd:001 submit date:2406011200 "
        "done date:2406011201 stat:DELIVRD err:000 text:Din kode"
    )

    assert parsed.message_id == "0000123456"
    assert parsed.submitted == 1
    assert parsed.delivered == 1
    assert parsed.submit_date == datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    assert parsed.done_date == datetime(2024, 6, 1, 12, 1, tzinfo=UTC)
    assert parsed.stat == "DELIVRD"
    assert parsed.error_code == "000"
    assert parsed.text == "Din kode"


def test_receipt_without_sub_and_dlvrd() -> None:
    parsed = parse_receipt_text(
        "id:7700112233 submit date:2406011200 done date:2406011201 stat:DELIVRD err:000 text:"
    )

    assert parsed.message_id == "7700112233"
    assert parsed.submitted is None
    assert parsed.delivered is None
    assert parsed.stat == "DELIVRD"


def test_receipt_with_only_id_stat_err() -> None:
    parsed = parse_receipt_text("id:7700112233 stat:UNDELIV err:001")

    assert parsed.message_id == "7700112233"
    assert parsed.stat == "UNDELIV"
    assert parsed.error_code == "001"
    assert parsed.submitted is None
    assert parsed.delivered is None
    assert parsed.submit_date is None
    assert parsed.done_date is None
    assert parsed.text is None


def test_receipt_with_32_hex_id_and_12_digit_dates() -> None:
    parsed = parse_receipt_text(
        "id:9f1c2e3d4b5a69788796a5b4c3d2e1f0 sub:001 dlvrd:001 submit date:240601120000 "
        "done date:240601120005 stat:DELIVRD err:000 text:"
    )

    assert parsed.message_id == "9f1c2e3d4b5a69788796a5b4c3d2e1f0"
    assert parsed.submit_date == datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
    assert parsed.done_date == datetime(2024, 6, 1, 12, 0, 5, tzinfo=UTC)
    assert parsed.stat == "DELIVRD"


def test_receipt_keys_in_any_case() -> None:
    parsed = parse_receipt_text("ID:1 SUB:001 DLVRD:001 Stat:delivrd Err:000 Text:x")

    assert parsed.message_id == "1"
    assert parsed.stat == "DELIVRD"
    assert parsed.text == "x"


def test_text_field_may_contain_keys() -> None:
    parsed = parse_receipt_text("id:1 stat:DELIVRD err:000 text:stat:UNDELIV id:2")

    assert parsed.message_id == "1"
    assert parsed.stat == "DELIVRD"
    assert parsed.text == "stat:UNDELIV id:2"


@pytest.mark.parametrize("text", ["", "garbage", "id: stat:", "::::", "id:1 sub:x dlvrd:y"])
def test_unreadable_text_gives_none_fields(text: str) -> None:
    parsed = parse_receipt_text(text)

    assert parsed.stat is None
    assert parsed.submitted is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2406011200", datetime(2024, 6, 1, 12, 0, tzinfo=UTC)),
        ("240601120005", datetime(2024, 6, 1, 12, 0, 5, tzinfo=UTC)),
        ("2413011200", None),
        ("24060112", None),
        ("240601120", None),
        ("abcdefghij", None),
        (None, None),
    ],
)
def test_receipt_dates(text: str | None, expected: datetime | None) -> None:
    assert parse_receipt_date(text) == expected


# States.


@pytest.mark.parametrize(
    ("stat", "status"),
    [
        ("DELIVRD", NotificationStatus.SMS_DELIVERED),
        ("EXPIRED", NotificationStatus.SMS_FAILED_EXPIRED),
        ("DELETED", NotificationStatus.SMS_FAILED_DELETED),
        ("UNDELIV", NotificationStatus.SMS_FAILED_UNDELIVERED),
        ("REJECTD", NotificationStatus.SMS_FAILED_REJECTED),
        ("UNKNOWN", NotificationStatus.SMS_FAILED),
        ("ACCEPTD", None),
        ("ENROUTE", None),
        ("DELIVERED", NotificationStatus.SMS_DELIVERED),
        ("delivrd", NotificationStatus.SMS_DELIVERED),
    ],
)
def test_stat_mapping(stat: str, status: NotificationStatus | None) -> None:
    assert status_for_stat(stat) is status


def test_expired_is_not_ttl() -> None:
    assert status_for_stat("EXPIRED") is not NotificationStatus.SMS_FAILED_TTL


def test_unknown_stat_raises_key_error() -> None:
    with pytest.raises(KeyError):
        status_for_stat("FOOBAR")


# Reports from PDUs.


def test_report_from_deliver_sm_text() -> None:
    report = report_from_pdu(
        receipt(
            "id:7700112233 submit date:2406011200 done date:2406011201 stat:DELIVRD err:000 text:"
        )
    )

    assert report is not None
    assert report.provider_ref == "7700112233"
    assert report.status is NotificationStatus.SMS_DELIVERED
    assert report.done_at == datetime(2024, 6, 1, 12, 1, tzinfo=UTC)


def test_report_undelivered_keeps_error_code() -> None:
    report = report_from_pdu(receipt("id:7700112233 stat:UNDELIV err:001"))

    assert report is not None
    assert report.status is NotificationStatus.SMS_FAILED_UNDELIVERED
    assert report.error_code == "001"
    assert report.done_at is None


def test_report_prefers_tlvs_and_skips_unknown_tlv() -> None:
    pdu = receipt(
        "id:0000123456 sub:001 dlvrd:001 submit date:2406011200 "
        "done date:2406011201 stat:DELIVRD err:000 text:",
        Tlv.cstring(TlvTag.RECEIPTED_MESSAGE_ID, "0000123456"),
        Tlv.u8(TlvTag.MESSAGE_STATE, 0x02),
        Tlv(0x2001, b"\x01\x02\x03\x04"),
    )

    report = report_from_pdu(pdu)

    assert report is not None
    assert report.provider_ref == "0000123456"
    assert report.status is NotificationStatus.SMS_DELIVERED


def test_message_state_tlv_wins_over_text() -> None:
    pdu = receipt(
        "id:1 stat:DELIVRD err:000",
        Tlv.cstring(TlvTag.RECEIPTED_MESSAGE_ID, "1"),
        Tlv.u8(TlvTag.MESSAGE_STATE, 5),
    )

    report = report_from_pdu(pdu)

    assert report is not None
    assert report.status is NotificationStatus.SMS_FAILED_UNDELIVERED


def test_data_sm_receipt_with_tlvs_only() -> None:
    pdu = DataSm(
        sequence_number=3,
        esm_class=0x04,
        tlvs=(
            Tlv.cstring(TlvTag.RECEIPTED_MESSAGE_ID, "ab12"),
            Tlv.u8(TlvTag.MESSAGE_STATE, 3),
            Tlv(TlvTag.NETWORK_ERROR_CODE, b"\x03\x00\x1b"),
        ),
    )

    report = report_from_pdu(pdu)

    assert report is not None
    assert report.provider_ref == "ab12"
    assert report.status is NotificationStatus.SMS_FAILED_EXPIRED
    assert report.error_code == "03001B"


def test_acceptd_then_delivrd() -> None:
    first = report_from_pdu(receipt("id:0000555001 stat:ACCEPTD err:000"))
    second = report_from_pdu(receipt("id:0000555001 stat:DELIVRD err:000"))

    assert first is not None
    assert first.status is None
    assert second is not None
    assert second.status is NotificationStatus.SMS_DELIVERED
    assert first.provider_ref == second.provider_ref


def test_unknown_stat_not_final_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="budstikke.channels.smpp.receipts"):
        report = report_from_pdu(receipt("id:0000555001 stat:FOOBAR err:000"))

    assert report is not None
    assert report.status is None
    assert [r.event for r in caplog.records] == ["receipt_unknown_state"]  # type: ignore[attr-defined]


def test_mobile_originated_message_is_no_report() -> None:
    assert report_from_pdu(receipt("id:1 stat:DELIVRD", esm_class=0x00)) is None


def test_receipt_without_id_is_no_report() -> None:
    assert report_from_pdu(receipt("stat:DELIVRD err:000")) is None


def test_ucs2_receipt_text() -> None:
    pdu = DeliverSm(
        esm_class=0x04, data_coding=8, short_message="id:42 stat:DELIVRD".encode("utf-16-be")
    )

    report = report_from_pdu(pdu)

    assert report is not None
    assert report.provider_ref == "42"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_receipt_text_parser_never_raises(text: str) -> None:
    parse_receipt_text(text)


@settings(max_examples=300, deadline=None)
@given(
    short_message=st.binary(max_size=254),
    data_coding=st.sampled_from([0, 8, 3]),
    tlvs=st.lists(
        st.builds(
            Tlv,
            st.sampled_from([0x001E, 0x0427, 0x0423, 0x0424, 0x2001]),
            st.binary(max_size=8),
        ),
        max_size=4,
    ),
)
def test_report_from_any_receipt_never_raises(
    short_message: bytes, data_coding: int, tlvs: list[Tlv]
) -> None:
    pdu = DeliverSm(
        esm_class=0x04, data_coding=data_coding, short_message=short_message, tlvs=tuple(tlvs)
    )

    report_from_pdu(pdu, receipt_id_base="decimal")


@pytest.mark.parametrize("text", ["id:1 sub:²³ dlvrd:¹", "id:1 submit date:²406011200"])
def test_non_ascii_digits_give_none(text: str) -> None:
    parsed = parse_receipt_text(text)

    assert parsed.submitted is None
    assert parsed.submit_date is None


# Message id matching.


def test_leading_zeros_match() -> None:
    assert match("00A1B2C3", "A1B2C3")
    assert int("00A1B2C3", 16) == 10597059


def test_decimal_receipt_id_converted_to_hex() -> None:
    converted = normalise_receipt_id("10597059", "decimal")

    assert converted == "A1B2C3"
    assert match("00A1B2C3", converted)


def test_hex_receipt_id_converted_to_decimal() -> None:
    assert normalise_receipt_id("00A1B2C3", "hex") == "10597059"
    assert match("10597059", normalise_receipt_id("A1B2C3", "hex"))


def test_receipt_id_left_alone_when_base_does_not_fit() -> None:
    assert normalise_receipt_id(" ab12-cd ", "decimal") == "ab12-cd"
    assert normalise_receipt_id("ab12-cd", "hex") == "ab12-cd"
    assert normalise_receipt_id("10597059", "same") == "10597059"


def test_decimal_and_hex_readings_never_cross() -> None:
    assert not match("10", "16")
    assert not match("00A1B2C3", "10597059")


def test_case_differences_match() -> None:
    assert match("ab12cd-ef3456-0001", "AB12CD-EF3456-0001")
    assert match("00a1b2c3", "A1B2C3")


def test_whitespace_trimmed() -> None:
    assert match(" 00A1B2C3 ", "A1B2C3")


def test_long_hex_id_matches_itself_only() -> None:
    ident = "9f1c2e3d4b5a69788796a5b4c3d2e1f0"

    assert match(ident, ident.upper())
    assert not match(ident, ident[:-1] + "1")


def test_different_ids_do_not_match() -> None:
    assert not match("00A1B2C3", "00A1B2C4")
    assert not match("ab12cd-ef3456-0001", "ab12cd-ef3456-0002")


def test_keys() -> None:
    assert reference_keys("00A1B2C3") == ("id:00a1b2c3", "hex:a1b2c3")
    assert reference_keys("ab12cd-ef3456-0001") == ("id:ab12cd-ef3456-0001",)
    assert reference_keys("0000123456") == ("id:0000123456", "hex:123456")


@pytest.mark.parametrize("character", ["\u00df", "\u0130", "\ufb03"])
def test_keys_fit_ref_key_column(character: str) -> None:
    # These characters get longer in lower or folded case.
    column_type = provider_ref_keys.c.ref_key.type
    assert isinstance(column_type, String)
    assert column_type.length is not None

    for key in reference_keys(character * MESSAGE_ID_MAX_LENGTH):
        assert len(key) <= column_type.length


def test_non_ascii_letters_keep_case() -> None:
    assert match("abc\u00c6", "ABC\u00c6")
    assert not match("abc\u00c6", "abc\u00e6")


def test_case_sensitive_ids() -> None:
    assert reference_keys("aBc", case_sensitive=True) == ("id:aBc",)
    assert not match("aBc", "ABC", case_sensitive=True)


def test_differing_tlv_id_kept() -> None:
    # The TLV carries the id as submit_sm_resp gave it (SMPP 3.4 5.3.2.12), and
    # the text the decimal form this SMSC writes. Only the text id is converted.
    pdu = receipt(
        "id:256 stat:UNDELIV err:001",
        Tlv.cstring(TlvTag.RECEIPTED_MESSAGE_ID, "00000100"),
        Tlv.u8(TlvTag.MESSAGE_STATE, 5),
    )

    report = report_from_pdu(pdu, receipt_id_base="decimal")

    assert report is not None
    assert report.provider_ref == "00000100"


def test_matching_tlv_id_converted() -> None:
    pdu = receipt("id:256 stat:DELIVRD", Tlv.cstring(TlvTag.RECEIPTED_MESSAGE_ID, "256"))

    report = report_from_pdu(pdu, receipt_id_base="decimal")

    assert report is not None
    assert report.provider_ref == "100"


def test_vendor_fields_ignored() -> None:
    parsed = parse_receipt_text(
        "id:77 sub:001 dlvrd:001 submit date:2406011200 done date:2406011201 "
        "stat:DELIVRD network:24201 err:000 mcc:242 mnc:01 network:Telenor Norge ASA "
        "price:0.0500 text:Din kode"
    )

    assert parsed.stat == "DELIVRD"
    assert parsed.error_code == "000"
    assert parsed.delivered == 1
    assert parsed.text == "Din kode"


def test_overlong_error_code_cut_to_column() -> None:
    report = report_from_pdu(receipt("id:77 stat:UNDELIV err:" + "9" * 60))

    assert report is not None
    assert report.error_code == "9" * 32


def test_overlong_message_id_ignored(caplog: pytest.LogCaptureFixture) -> None:
    report = report_from_pdu(receipt("id:" + "A" * 80 + " stat:DELIVRD"))

    assert report is None
    assert [getattr(record, "event", None) for record in caplog.records] == ["receipt_id_too_long"]
