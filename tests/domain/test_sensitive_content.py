"""The sensitive content guard: identity numbers and card numbers, and what must not match."""

from __future__ import annotations

import random
import uuid

import pytest

from budstikke.domain.sensitive_content import (
    MAX_CHECKED_GROUPS,
    SensitiveMatch,
    SensitiveRule,
    find_sensitive_content,
    is_identity_number,
    passes_luhn,
)

# Check digits worked out by hand: 0101901248 gives 8, then 0.
IDENTITY_NUMBER = "01019012480"
# A D-number (day + 40): check digits 7 and 4, worked out by hand.
D_NUMBER = "41019012474"
VISA_TEST_CARD = "4111111111111111"
CARDS = {
    "13 digits": "4222222222222",
    "15 digits": "378282246310005",
    "16 digits": VISA_TEST_CARD,
    "19 digits": "6304000000000000018",
}
OTP_TEMPLATES = [
    "Your code is {code}.",
    "{code} is your one-time code. It expires in 5 minutes.",
    "Engangskode: {code}. Gyldig i 10 minutter. Ikke del koden med andre.",
    "Code {code} for login at 12:30 on 2026-12-07 (ref 4471).",
]


def rule_of(text: str) -> SensitiveRule | None:
    match = find_sensitive_content(text)
    return None if match is None else match.rule


def test_hand_checked_numbers_are_valid() -> None:
    assert is_identity_number(IDENTITY_NUMBER)
    assert is_identity_number(D_NUMBER)
    assert passes_luhn(VISA_TEST_CARD)


@pytest.mark.parametrize(
    "text",
    [
        f"Fødselsnummer {IDENTITY_NUMBER}.",
        f"fnr: {IDENTITY_NUMBER[:6]} {IDENTITY_NUMBER[6:]}",
        f"fnr {IDENTITY_NUMBER[:6]}-{IDENTITY_NUMBER[6:]}",
        f"fnr {IDENTITY_NUMBER[:6]}\u00a0{IDENTITY_NUMBER[6:]}",
        f"ID:{IDENTITY_NUMBER}",
        f"D-number {D_NUMBER}",
        f"Tel 22 {IDENTITY_NUMBER[:6]} {IDENTITY_NUMBER[6:]} end",
    ],
)
def test_identity_number_found(text: str) -> None:
    assert rule_of(text) is SensitiveRule.NATIONAL_IDENTITY_NUMBER


@pytest.mark.parametrize(
    "text",
    [
        # One check digit wrong each.
        "Reference 01019012481",
        "Reference 01019012490",
        # Part of a longer number, or split in the wrong place.
        f"Account 9{IDENTITY_NUMBER}",
        f"Account {IDENTITY_NUMBER}7",
        f"{IDENTITY_NUMBER[:5]} {IDENTITY_NUMBER[5:]}",
        # Separated by more than one character.
        f"{IDENTITY_NUMBER[:6]} - {IDENTITY_NUMBER[6:]}",
    ],
)
def test_identity_number_lookalikes_pass(text: str) -> None:
    assert rule_of(text) is None


@pytest.mark.parametrize("card", CARDS.values(), ids=CARDS.keys())
def test_card_number_found(card: str) -> None:
    assert rule_of(f"Card {card} was charged") is SensitiveRule.PAYMENT_CARD_NUMBER


@pytest.mark.parametrize(
    "text",
    [
        "Card 4111 1111 1111 1111.",
        "Card 4111-1111-1111-1111.",
        "Card 3782 822463 10005",
        "Order 12 4111 1111 1111 1111",
    ],
)
def test_grouped_card_number_found(text: str) -> None:
    assert rule_of(text) is SensitiveRule.PAYMENT_CARD_NUMBER


@pytest.mark.parametrize(
    "text",
    [
        "Card 4111111111111112",  # Luhn fails
        "Number 41111111111111111111",  # 20 digits: not a card
        "Card 4111  1111 1111 1111",  # two spaces end a group run
        "Card 4111.1111.1111.1111",
    ],
)
def test_card_lookalikes_pass(text: str) -> None:
    assert rule_of(text) is None


@pytest.mark.parametrize(
    "text",
    [
        # UUIDs whose digit groups pass the Luhn check when read as one number.
        "Ref: f31aeb00-4982-4407-8941-965096ee86ef",
        "(TEST) Dette er en instant-testmelding (Ref: 313874cd-dfbc-423d-b246-548991270564)",
        "Ref 53033190-7660-45b1-99e1-7b552e94525c",
        # Hexadecimal digests and key ids whose digits pass the Luhn check.
        "Digest e3b0c4411111111111111114",
        "Key id 4111111111111111ABC",
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    ],
)
def test_identifiers_pass(text: str) -> None:
    assert rule_of(text) is None


def test_random_uuids_pass() -> None:
    generator = random.Random(4)
    for _ in range(20_000):
        reference = str(uuid.UUID(int=generator.getrandbits(128), version=4))
        assert find_sensitive_content(f"Ref: {reference}") is None, reference


@pytest.mark.parametrize(
    "text",
    [
        f"Card {VISA_TEST_CARD}-f31aeb00-4982-4407-8941-965096ee86ef",
        "f31aeb00-4982-4407-8941-965096ee86ef 4111 1111 1111 1111",
        "Card 4111-1111-1111-1111-1111abc",
        f"Kort:{VISA_TEST_CARD}.",
        # A letter that is not hexadecimal ends the number.
        "Kortnr4111 1111 1111 1111",
        "Kort 4111 1111 1111 1111Utl",
        f"\u5361\u53f7{VISA_TEST_CARD}",
    ],
)
def test_card_beside_an_identifier_found(text: str) -> None:
    assert rule_of(text) is SensitiveRule.PAYMENT_CARD_NUMBER


@pytest.mark.parametrize(
    "text",
    [
        f"Fnr{IDENTITY_NUMBER}",
        f"\u8eab\u4efd\u8bc1{IDENTITY_NUMBER}",
        f"fnr:{IDENTITY_NUMBER[:6]}-{IDENTITY_NUMBER[6:]}xyz",
    ],
)
def test_identity_number_against_letters_found(text: str) -> None:
    assert rule_of(text) is SensitiveRule.NATIONAL_IDENTITY_NUMBER


def test_random_digests_pass() -> None:
    generator = random.Random(5)
    for _ in range(20_000):
        digest = f"{generator.getrandbits(256):064x}"
        assert find_sensitive_content(f"Digest {digest}") is None, digest


def test_uuid_of_digits_only_is_checked() -> None:
    # Without a hex letter the groups are read as numbers, and these contain a card number.
    assert rule_of("Ref 41111111-1111-1111-2345-678901234567") is SensitiveRule.PAYMENT_CARD_NUMBER


@pytest.mark.parametrize("length", range(4, 11))
def test_otp_codes_never_match(length: int) -> None:
    generator = random.Random(length)
    for _ in range(300):
        code = "".join(generator.choice("0123456789") for _ in range(length))
        for template in OTP_TEMPLATES:
            text = template.format(code=code)
            assert find_sensitive_content(text) is None, text


def test_match_reports_position_not_digits() -> None:
    text = f"Kort {VISA_TEST_CARD} belastet"

    match = find_sensitive_content(text)

    assert match is not None
    assert (match.start, match.end) == (5, 21)
    assert VISA_TEST_CARD not in repr(match)
    assert "Luhn" in match.description


def test_non_ascii_digits_ignored() -> None:
    # Full-width digits are not read as a number by anyone who would misuse one.
    assert rule_of("４１１１１１１１１１１１１１１１") is None


def test_megabyte_of_digit_groups_is_rejected_whole() -> None:
    # An email body may be 1 MB. Groups of four make every span of four
    # groups a card candidate, so checking them all would take seconds.
    text = "1111 " * 200_000

    match = find_sensitive_content(text)

    assert match == SensitiveMatch(SensitiveRule.TOO_MANY_NUMBERS, 0, len(text) - 1)


def test_groups_up_to_the_limit_are_checked() -> None:
    # Runs of 11 digits, 6 + 5 groups each, with letters between the runs.
    run = "111111 11111"
    at_limit = " x ".join([run] * (MAX_CHECKED_GROUPS // 2))
    over_limit = f"{at_limit} x {run}"

    assert find_sensitive_content(at_limit) is None
    assert find_sensitive_content(over_limit) == SensitiveMatch(
        SensitiveRule.TOO_MANY_NUMBERS, len(at_limit) + 3, len(over_limit)
    )


def test_number_before_the_limit_keeps_its_rule() -> None:
    text = f"{IDENTITY_NUMBER} " + " x ".join(["111111 11111"] * MAX_CHECKED_GROUPS)

    match = find_sensitive_content(text)

    assert match is not None
    assert match.rule is SensitiveRule.NATIONAL_IDENTITY_NUMBER


def test_many_short_numbers_pass() -> None:
    # Ten digits or fewer in a run match no rule and are not counted.
    text = "a1 b22 c333 d4444 e55555-6666 " * 40_000

    assert find_sensitive_content(text) is None
