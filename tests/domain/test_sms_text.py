from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from budstikke.domain.sms_text import (
    CONCATENATED_PART_SEPTETS,
    CONCATENATED_PART_UCS2_UNITS,
    DATA_CODING_GSM7,
    DATA_CODING_UCS2,
    SINGLE_SMS_SEPTETS,
    SINGLE_SMS_UCS2_UNITS,
    EncodedSms,
    count_segments,
    decode_gsm_septets,
    decode_ucs2,
    encode_sms,
    is_gsm7,
    is_gsm7_basic,
    pack_septets,
    unpack_septets,
)

# Every character of the default alphabet in code order, 0x00 to 0x7F, with the
# escape at 0x1B written as None. Spelled out again here, one code per entry,
# so that a shifted row in the module's table fails a test.
DEFAULT_ALPHABET: list[str | None] = [
    "@", "£", "$", "¥", "è", "é", "ù", "ì", "ò", "Ç", "\n", "Ø", "ø", "\r", "Å", "å",
    "Δ", "_", "Φ", "Γ", "Λ", "Ω", "Π", "Ψ", "Σ", "Θ", "Ξ", None, "Æ", "æ", "ß", "É",
    " ", "!", '"', "#", "¤", "%", "&", "'", "(", ")", "*", "+", ",", "-", ".", "/",
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", ":", ";", "<", "=", ">", "?",
    "¡", "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O",
    "P", "Q", "R", "S", "T", "U", "V", "W", "X", "Y", "Z", "Ä", "Ö", "Ñ", "Ü", "§",
    "¿", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o",
    "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z", "ä", "ö", "ñ", "ü", "à",
]  # fmt: skip

EXTENSION_TABLE = {
    "\f": 0x0A,
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

gsm7_characters = st.sampled_from(
    [character for character in DEFAULT_ALPHABET if character is not None] + list(EXTENSION_TABLE)
)
gsm7_text = st.text(alphabet=gsm7_characters, max_size=800)
# Mostly GSM-7 text with some characters outside it, so both encodings and the
# split at escape sequences and surrogate pairs get exercised.
any_text = st.one_of(
    gsm7_text,
    st.text(max_size=400),
    st.text(alphabet=st.one_of(gsm7_characters, st.sampled_from("Жú–😀𝄞")), max_size=400),
)


def decode_encoded(encoded: EncodedSms) -> str:
    if encoded.data_coding == DATA_CODING_GSM7:
        return "".join(decode_gsm_septets(part) for part in encoded.parts)
    return "".join(decode_ucs2(part) for part in encoded.parts)


def hex_octets(text: str) -> bytes:
    return bytes.fromhex(text)


# --- the tables ---


def test_default_alphabet_has_128_codes() -> None:
    assert len(DEFAULT_ALPHABET) == 128


@pytest.mark.parametrize(
    ("code", "character"),
    [(code, character) for code, character in enumerate(DEFAULT_ALPHABET) if character],
)
def test_basic_character_encodes_to_its_code(code: int, character: str) -> None:
    encoded = encode_sms(character)

    assert encoded.data_coding == DATA_CODING_GSM7
    assert encoded.parts == (bytes([code]),)
    assert decode_gsm_septets(bytes([code])) == character


@pytest.mark.parametrize(("character", "code"), list(EXTENSION_TABLE.items()))
def test_extension_character_is_escape_plus_code(character: str, code: int) -> None:
    encoded = encode_sms(character)

    assert encoded.data_coding == DATA_CODING_GSM7
    assert encoded.unit_count == 2
    assert encoded.parts == (bytes([0x1B, code]),)
    assert decode_gsm_septets(bytes([0x1B, code])) == character


def test_euro_sign_is_escape_plus_0x65() -> None:
    assert encode_sms("€").parts == (b"\x1b\x65",)


@pytest.mark.parametrize(
    "character",
    ["\x1b", "ç", "ú", "ó", "–", "`", "\t", "\x00", "ê", "Ж", "😀"],
)
def test_character_outside_gsm7_selects_ucs2(character: str) -> None:
    assert not is_gsm7(character)
    assert encode_sms(character).data_coding == DATA_CODING_UCS2


def test_ohm_sign_differs_from_greek_omega() -> None:
    # 0x15 is GREEK CAPITAL LETTER OMEGA (U+03A9); OHM SIGN (U+2126) is not in the table.
    assert is_gsm7("\u03a9")
    assert not is_gsm7("\u2126")


def test_is_gsm7_basic_rejects_extension_characters() -> None:
    assert is_gsm7_basic("Bank&Co @£$")
    assert not is_gsm7_basic("Ref{1}")
    assert not is_gsm7_basic("€")
    assert is_gsm7("Ref{1}")


# --- exact encodings ---


def test_kode_with_euro_sign_encodes_to_13_septets() -> None:
    encoded = encode_sms("Kode: 1234 €")

    assert encoded.data_coding == DATA_CODING_GSM7
    assert encoded.unit_count == 13
    assert encoded.segment_count == 1
    assert encoded.parts == (hex_octets("4B 6F 64 65 3A 20 31 32 33 34 20 1B 65"),)


def test_kode_with_euro_sign_packs_to_12_octets() -> None:
    septets = encode_sms("Kode: 1234 €").parts[0]

    packed = pack_septets(septets)

    assert packed == hex_octets("CB 37 B9 AC 03 C5 64 33 1A 68 53 06")
    assert unpack_septets(packed, 13) == septets
    assert decode_gsm_septets(unpack_septets(packed, 13)) == "Kode: 1234 €"


def test_curly_and_square_brackets_encode_as_escapes() -> None:
    encoded = encode_sms("Ref {A1} [B2]")

    assert encoded.data_coding == DATA_CODING_GSM7
    assert encoded.unit_count == 17
    assert encoded.segment_count == 1
    assert encoded.parts == (hex_octets("52 65 66 20 1B 28 41 31 1B 29 20 1B 3C 42 32 1B 3E"),)
    assert decode_gsm_septets(encoded.parts[0]) == "Ref {A1} [B2]"


def test_spanish_accents_select_ucs2() -> None:
    encoded = encode_sms("Tú código: 4821")

    assert encoded.data_coding == DATA_CODING_UCS2
    assert encoded.unit_count == 15
    assert encoded.segment_count == 1
    assert len(encoded.parts[0]) == 30
    assert decode_ucs2(encoded.parts[0]) == "Tú código: 4821"


def test_en_dash_selects_ucs2() -> None:
    text = "Koden er 4821 – gjelder i 5 min."

    encoded = encode_sms(text)

    assert encoded.data_coding == DATA_CODING_UCS2
    assert encoded.unit_count == 32
    assert encoded.segment_count == 1
    assert len(encoded.parts[0]) == 64
    assert decode_ucs2(encoded.parts[0]) == text


def test_norwegian_letters_and_caret_stay_gsm7() -> None:
    encoded = encode_sms("æøå ÆØÅ ^")

    assert encoded.data_coding == DATA_CODING_GSM7
    assert encoded.unit_count == 10
    assert encoded.parts[0][-2:] == b"\x1b\x14"


def test_astral_character_is_surrogate_pair() -> None:
    encoded = encode_sms("😀")

    assert encoded.data_coding == DATA_CODING_UCS2
    assert encoded.unit_count == 2
    assert encoded.parts == (hex_octets("D8 3D DE 00"),)


def test_empty_text_is_one_empty_gsm7_part() -> None:
    encoded = encode_sms("")

    assert encoded.data_coding == DATA_CODING_GSM7
    assert encoded.unit_count == 0
    assert encoded.parts == (b"",)
    assert count_segments("") == 1


# --- segmentation ---


def test_150_x_and_5_euro_fill_one_sms() -> None:
    encoded = encode_sms("x" * 150 + "€" * 5)

    assert encoded.unit_count == 160
    assert encoded.segment_count == 1
    assert count_segments("x" * 150 + "€" * 5) == 1


def test_151_x_and_5_euro_split_before_escape() -> None:
    encoded = encode_sms("x" * 151 + "€" * 5)

    assert encoded.unit_count == 161
    assert encoded.segment_count == 2
    assert encoded.parts[0] == b"x" * 151 + b"\x1b\x65"
    assert len(encoded.parts[0]) == 153
    assert encoded.parts[1] == b"\x1b\x65" * 4
    assert count_segments("x" * 151 + "€" * 5) == 2


def test_escape_pair_never_split_at_part_boundary() -> None:
    # 152 basic septets leave one septet in the first part: the € moves to part two.
    encoded = encode_sms("x" * 152 + "€" * 5)

    assert [len(part) for part in encoded.parts] == [152, 10]
    assert encoded.parts[1].startswith(b"\x1b\x65")


def test_144_character_norwegian_otp_is_one_sms() -> None:
    text = (
        "Engangskode: 482913. Gjelder i 5 min. Ikke del koden med noen, ikke engang med "
        "oss. Spørsmål? Ring 99999999. Hilsen Bø kommune, økonomi, Åsgård."
    )

    encoded = encode_sms(text)

    assert len(text) == 144
    assert encoded.data_coding == DATA_CODING_GSM7
    assert encoded.unit_count == 144
    assert encoded.segment_count == 1


def test_2449_septets_need_17_segments() -> None:
    encoded = encode_sms("x" * 2449)

    assert encoded.unit_count == 2449
    assert encoded.segment_count == 17
    assert [len(part) for part in encoded.parts] == [153] * 16 + [1]
    assert count_segments("x" * 2449) == 17


def test_2000_septets_need_14_segments() -> None:
    assert encode_sms("x" * 2000).segment_count == 14
    assert count_segments("x" * 2000) == 14


def test_120_cyrillic_characters_split_67_and_53() -> None:
    text = "Ваш код: 4821.\n" * 8

    encoded = encode_sms(text)

    assert len(text) == 120
    assert encoded.data_coding == DATA_CODING_UCS2
    assert encoded.unit_count == 120
    assert [len(part) for part in encoded.parts] == [134, 106]
    assert decode_encoded(encoded) == text


def test_100_cyrillic_characters_split_67_and_33() -> None:
    text = ("Привет" * 20)[:100]

    encoded = encode_sms(text)

    assert encoded.data_coding == DATA_CODING_UCS2
    assert [len(part) // 2 for part in encoded.parts] == [67, 33]
    assert decode_encoded(encoded) == text


def test_200_septets_split_153_and_47() -> None:
    text = ("Din kode er 482913. " * 10)[:200]

    encoded = encode_sms(text)

    assert encoded.data_coding == DATA_CODING_GSM7
    assert encoded.unit_count == 200
    assert [len(part) for part in encoded.parts] == [153, 47]


def test_surrogate_pair_never_split_at_part_boundary() -> None:
    # 66 units leave one unit in the first part: the emoji's pair moves to part two.
    encoded = encode_sms("Ж" * 66 + "😀" * 3)

    assert [len(part) // 2 for part in encoded.parts] == [66, 6]
    assert decode_ucs2(encoded.parts[1]) == "😀" * 3


def test_70_ucs2_units_fit_one_sms() -> None:
    assert encode_sms("Ж" * 70).segment_count == 1
    assert encode_sms("Ж" * 71).segment_count == 2


# --- errors ---


def test_lone_surrogate_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"lone surrogate U\+D800 at position 3"):
        encode_sms("abc\ud800")


def test_lone_surrogate_count_segments_raises() -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        count_segments("Ж\udc00")


def test_decode_rejects_octet_above_0x7f() -> None:
    with pytest.raises(ValueError, match="0x80 at position 1"):
        decode_gsm_septets(b"A\x80")


def test_decode_rejects_trailing_escape() -> None:
    with pytest.raises(ValueError, match="ends with an escape"):
        decode_gsm_septets(b"AB\x1b")


def test_decode_unknown_extension_code_shows_basic_character() -> None:
    # TS 23.038: a receiver shows the basic-table character for an undefined code.
    assert decode_gsm_septets(b"\x1b\x41") == "A"


def test_decode_double_escape_shows_space() -> None:
    assert decode_gsm_septets(b"A\x1b\x1bB") == "A B"


def test_decode_ucs2_rejects_odd_length() -> None:
    with pytest.raises(ValueError, match="odd length of 3 octets"):
        decode_ucs2(b"\x00A\x00")


def test_decode_ucs2_rejects_lone_surrogate() -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        decode_ucs2(b"\xd8\x3d\x00A")


def test_pack_rejects_value_above_0x7f() -> None:
    with pytest.raises(ValueError, match="0xFF at position 0"):
        pack_septets(b"\xff")


def test_unpack_rejects_wrong_length() -> None:
    with pytest.raises(ValueError, match="13 packed septets take 12 octets; got 11"):
        unpack_septets(bytes(11), 13)


def test_unpack_rejects_negative_count() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        unpack_septets(b"", -1)


# --- packing ---


@pytest.mark.parametrize(
    ("septets", "packed"),
    [
        (b"", b""),
        (b"\x7f", b"\x7f"),
        (b"\x7f\x7f", b"\xff\x3f"),
        (b"\x00" * 8, b"\x00" * 7),
        (b"\x7f" * 8, b"\xff" * 7),
    ],
)
def test_pack_septets_bit_layout(septets: bytes, packed: bytes) -> None:
    assert pack_septets(septets) == packed
    assert unpack_septets(packed, len(septets)) == septets


@given(st.binary(max_size=400).map(lambda data: bytes(octet & 0x7F for octet in data)))
def test_pack_unpack_round_trip(septets: bytes) -> None:
    packed = pack_septets(septets)

    assert len(packed) == (len(septets) * 7 + 7) // 8
    assert unpack_septets(packed, len(septets)) == septets


# --- properties ---


@given(any_text)
def test_encode_decode_round_trip(text: str) -> None:
    assert decode_encoded(encode_sms(text)) == text


@given(any_text)
def test_each_part_decodes_alone(text: str) -> None:
    encoded = encode_sms(text)
    decode = decode_gsm_septets if encoded.data_coding == DATA_CODING_GSM7 else decode_ucs2

    assert "".join(decode(part) for part in encoded.parts) == text


@given(any_text)
def test_segment_count_equals_part_count(text: str) -> None:
    encoded = encode_sms(text)

    assert encoded.segment_count == len(encoded.parts)
    assert count_segments(text) == encoded.segment_count


@given(any_text)
def test_unit_count_sums_parts(text: str) -> None:
    encoded = encode_sms(text)
    octets = sum(len(part) for part in encoded.parts)

    if encoded.data_coding == DATA_CODING_GSM7:
        assert encoded.unit_count == octets
    else:
        assert encoded.unit_count * 2 == octets


@given(any_text)
def test_parts_fit_their_limits(text: str) -> None:
    encoded = encode_sms(text)
    if encoded.data_coding == DATA_CODING_GSM7:
        single_max, part_max = SINGLE_SMS_SEPTETS, CONCATENATED_PART_SEPTETS
    else:
        single_max, part_max = SINGLE_SMS_UCS2_UNITS * 2, CONCATENATED_PART_UCS2_UNITS * 2

    if encoded.segment_count == 1:
        assert len(encoded.parts[0]) <= single_max
    else:
        assert all(len(part) <= part_max for part in encoded.parts)
        assert all(len(part) > 0 for part in encoded.parts)


@given(any_text)
def test_parts_never_split_a_character(text: str) -> None:
    encoded = encode_sms(text)

    for part in encoded.parts:
        if encoded.data_coding == DATA_CODING_GSM7:
            assert not part.endswith(b"\x1b")
        elif part:
            assert not 0xDC <= part[0] <= 0xDF
            assert not 0xD8 <= part[-2] <= 0xDB


@given(gsm7_text)
def test_gsm7_text_never_selects_ucs2(text: str) -> None:
    assert is_gsm7(text)
    assert encode_sms(text).data_coding == DATA_CODING_GSM7
