"""submit_sm per part: short_message octets, user data headers and per-part fields."""

from __future__ import annotations

import pytest

from budstikke.channels.smpp.dev_smsc_checks import check_submit_sm
from budstikke.channels.smpp.parts import (
    Address,
    build_submit_parts,
    concatenation_header,
    destination_address,
)
from budstikke.channels.smpp.pdu import SubmitSm
from budstikke.domain.sender import parse_sms_sender
from budstikke.domain.sms_text import encode_sms

SOURCE = Address("Kommune", 5, 0)
DESTINATION = Address("4799999999", 1, 1)
VALIDITY_300_S = "000000000500000R"


def build(text: str, *, reference: int = 0x2A, validity: str = VALIDITY_300_S) -> list[SubmitSm]:
    return build_submit_parts(
        encode_sms(text),
        source=SOURCE,
        destination=DESTINATION,
        reference=reference,
        validity_period=validity,
    )


def assert_same_per_part_fields(parts: list[SubmitSm]) -> None:
    for part in parts:
        assert part.data_coding == parts[0].data_coding
        assert part.esm_class == parts[0].esm_class
        assert (part.source_addr_ton, part.source_addr_npi) == (5, 0)
        assert (part.dest_addr_ton, part.dest_addr_npi) == (1, 1)
        assert part.registered_delivery == 1
        assert part.validity_period == parts[0].validity_period
        assert check_submit_sm(part) is None


def test_euro_sign_septets() -> None:
    (part,) = build("Kode: 1234 €")

    assert part.data_coding == 0
    assert part.esm_class == 0x00
    assert part.short_message == bytes.fromhex("4B 6F 64 65 3A 20 31 32 33 34 20 1B 65")


def test_extension_characters_septets() -> None:
    (part,) = build("Ref {A1} [B2]")

    assert part.data_coding == 0
    assert part.short_message == bytes.fromhex("52 65 66 20 1B 28 41 31 1B 29 20 1B 3C 42 32 1B 3E")


def test_spanish_accents_switch_to_ucs2() -> None:
    (part,) = build("Tú código: 4821")

    assert part.data_coding == 8
    assert part.esm_class == 0x00
    assert len(part.short_message) == 30
    assert part.short_message.decode("utf-16-be") == "Tú código: 4821"


def test_en_dash_switches_to_ucs2() -> None:
    (part,) = build("Koden er 4821 – gjelder i 5 min.")

    assert part.data_coding == 8
    assert len(part.short_message) == 64


def test_160_septets_with_extensions_fit_one_part() -> None:
    (part,) = build("x" * 150 + "€" * 5)

    assert len(part.short_message) == 160
    assert part.esm_class == 0x00


def test_161_septets_split_without_breaking_escape() -> None:
    first, second = build("x" * 151 + "€" * 5)

    assert first.short_message[:6] == bytes.fromhex("05 00 03 2A 02 01")
    assert second.short_message[:6] == bytes.fromhex("05 00 03 2A 02 02")
    assert len(first.short_message) == 6 + 153
    assert len(second.short_message) == 6 + 8
    assert first.short_message[-2:] == b"\x1b\x65"
    assert second.short_message[6:] == b"\x1b\x65" * 4
    assert_same_per_part_fields([first, second])


def test_144_gsm_characters_are_one_part() -> None:
    body = (
        "Engangskode: 482913. Gjelder i 5 min. Ikke del koden med noen, ikke engang med oss. "
        "Spørsmål? Ring 99999999. Hilsen Bø kommune, økonomi, Åsgård."
    )

    (part,) = build(body)

    assert len(body) == 144
    assert part.data_coding == 0
    assert len(part.short_message) == 144


def test_2449_septets_give_17_parts() -> None:
    parts = build("x" * 2449)

    assert len(parts) == 17
    for index, part in enumerate(parts, start=1):
        assert part.short_message[:6] == bytes([5, 0, 3, 0x2A, 17, index])
    assert [len(p.short_message) - 6 for p in parts] == [153] * 16 + [1]
    assert_same_per_part_fields(parts)


def test_120_cyrillic_characters_give_2_parts() -> None:
    parts = build("Ваш код: 4821.\n" * 8)

    assert len(parts) == 2
    assert [len(p.short_message) for p in parts] == [140, 112]
    assert [p.data_coding for p in parts] == [8, 8]
    assert_same_per_part_fields(parts)


def test_long_ucs2_message_parts() -> None:
    body = ("Привет" * 20)[:100]

    first, second = build(body, reference=0x9C)

    assert first.data_coding == second.data_coding == 0x08
    assert first.esm_class == second.esm_class == 0x40
    assert first.short_message[:6] == bytes.fromhex("05 00 03 9C 02 01")
    assert second.short_message[:6] == bytes.fromhex("05 00 03 9C 02 02")
    assert len(first.short_message) == 140
    assert len(second.short_message) == 72
    joined = first.short_message[6:] + second.short_message[6:]
    assert joined.decode("utf-16-be") == body
    assert_same_per_part_fields([first, second])


def test_validity_on_every_part() -> None:
    parts = build(("Din kode er 482913. " * 10)[:200])

    assert [len(p.short_message) - 6 for p in parts] == [153, 47]
    assert [p.validity_period for p in parts] == [VALIDITY_300_S, VALIDITY_300_S]
    assert [p.registered_delivery for p in parts] == [1, 1]


def test_surrogate_pairs_stay_in_one_part() -> None:
    parts = build("a" + "😀" * 40)

    assert len(parts) == 2
    for part in parts:
        assert check_submit_sm(part) is None
        part.short_message[6:].decode("utf-16-be")


def test_single_part_has_no_header() -> None:
    (part,) = build("Din kode er 482913")

    assert part.esm_class == 0
    assert part.short_message == encode_sms("Din kode er 482913").parts[0]


@pytest.mark.parametrize(
    ("sender", "ton", "npi", "value"),
    [
        ("Kommune", 5, 0, "Kommune"),
        ("Bank&Co", 5, 0, "Bank&Co"),
        ("4799999999", 1, 1, "4799999999"),
        ("+4799999999", 1, 1, "4799999999"),
    ],
)
def test_sender_ton_npi(sender: str, ton: int, npi: int, value: str) -> None:
    parsed = parse_sms_sender(sender)

    assert (parsed.value, parsed.ton, parsed.npi) == (value, ton, npi)


def test_destination_address() -> None:
    assert destination_address("+4799999999") == Address("4799999999", 1, 1)


@pytest.mark.parametrize("number", ["4799999999", "+47 999", "+", "+1234567890123456", "+٤٧"])
def test_destination_address_rejects_non_e164(number: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        destination_address(number)


def test_concatenation_header_bounds() -> None:
    assert concatenation_header(255, 255, 255) == bytes([5, 0, 3, 255, 255, 255])
    with pytest.raises(ValueError, match="reference"):
        concatenation_header(256, 2, 1)
    with pytest.raises(ValueError, match="part"):
        concatenation_header(1, 2, 3)
