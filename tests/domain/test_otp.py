"""OTP codes, digests and message texts, without I/O."""

from __future__ import annotations

import hmac
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from budstikke.domain import otp
from budstikke.domain.otp import (
    LANGUAGES,
    MAX_CODE_LENGTH,
    MAX_TTL_S,
    MIN_CODE_LENGTH,
    MIN_TTL_S,
    OtpStatus,
    code_digest,
    digests_match,
    effective_status,
    email_subject,
    generate_code,
    message_text,
    whole_minutes,
)
from budstikke.domain.sms_text import count_segments, is_gsm7

KEY = bytes(range(32))
VERIFICATION = uuid.UUID("6f1c2a43-5e0b-4d7e-9a59-3c1f0d2b8e71")


@pytest.mark.parametrize("length", range(MIN_CODE_LENGTH, MAX_CODE_LENGTH + 1))
def test_code_has_the_requested_digits(length: int) -> None:
    code = generate_code(length)
    assert len(code) == length
    assert code.isascii()
    assert code.isdigit()


@pytest.mark.parametrize("length", [3, 11, 0])
def test_code_length_outside_range_raises(length: int) -> None:
    with pytest.raises(ValueError, match="code length"):
        generate_code(length)


def test_codes_come_from_secrets_randbelow(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[int] = []

    def fake_randbelow(limit: int) -> int:
        drawn.append(limit)
        return 42

    monkeypatch.setattr(otp.secrets, "randbelow", fake_randbelow)
    assert generate_code(6) == "000042"
    assert drawn == [10**6]


def test_code_digits_are_uniform() -> None:
    # 20000 four-digit codes: each digit value appears 8000 times over all
    # positions on average; the bounds are about 5 standard deviations
    # (sd = sqrt(80000 * 0.1 * 0.9) ~ 85), so a fair generator fails
    # with a probability far below one in a million.
    counts = Counter("".join(generate_code(4) for _ in range(20_000)))
    assert set(counts) == set("0123456789")
    for digit, count in counts.items():
        assert 7_575 <= count <= 8_425, (digit, count)


def test_leading_zero_codes_occur() -> None:
    codes = {generate_code(4) for _ in range(5_000)}
    assert any(code.startswith("0") for code in codes)


def test_digest_bound_to_verification() -> None:
    digest = code_digest(KEY, VERIFICATION, "482913")
    other = code_digest(KEY, uuid.uuid4(), "482913")
    assert len(digest) == 64
    assert digest != other
    assert "482913" not in digest


def test_digest_uses_the_code_as_sent() -> None:
    right = code_digest(KEY, VERIFICATION, "482913")
    for variant in (" 482913", "482913 ", "4829130", "48291", "٤٨٢٩١٣"):
        assert not digests_match(right, code_digest(KEY, VERIFICATION, variant)), variant
    assert digests_match(right, code_digest(KEY, VERIFICATION, "482913"))


def test_digests_are_compared_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(otp.hmac, "compare_digest", spy)
    short = code_digest(KEY, VERIFICATION, "48291")
    long = code_digest(KEY, VERIFICATION, "4829130")
    assert not digests_match(short, long)
    # A code of another length still gives a full-length digest to compare.
    assert [len(a) for a, _ in calls] == [64]
    assert [len(b) for _, b in calls] == [64]


def test_digest_depends_on_the_key() -> None:
    assert code_digest(KEY, VERIFICATION, "1234") != code_digest(bytes(32), VERIFICATION, "1234")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("length", range(MIN_CODE_LENGTH, MAX_CODE_LENGTH + 1))
def test_built_in_texts_fit_one_gsm7_segment(language: str, length: int) -> None:
    for minutes in range(MIN_TTL_S // 60, MAX_TTL_S // 60 + 1):
        text = message_text(
            language=language, template=None, code="9" * length, valid_minutes=minutes
        )
        assert is_gsm7(text)
        assert count_segments(text) == 1, text
        assert "9" * length in text
        assert f" {minutes} " in text


@pytest.mark.parametrize(
    ("language", "minutes", "expected"),
    [
        (
            "en",
            5,
            "Your one-time code is 482913. It is valid for 5 minutes. Do not share it with anyone.",
        ),
        (
            "en",
            1,
            "Your one-time code is 482913. It is valid for 1 minute. Do not share it with anyone.",
        ),
        (
            "nb",
            5,
            "Engangskoden din er 482913. Den er gyldig i 5 minutter. Ikke del koden med noen.",
        ),
        ("nb", 1, "Engangskoden din er 482913. Den er gyldig i 1 minutt. Ikke del koden med noen."),
        (
            "nn",
            5,
            "Eingongskoden din er 482913. Han er gyldig i 5 minutt. Ikkje del koden med nokon.",
        ),
        (
            "nn",
            1,
            "Eingongskoden din er 482913. Han er gyldig i 1 minutt. Ikkje del koden med nokon.",
        ),
    ],
)
def test_built_in_text_states_minutes(language: str, minutes: int, expected: str) -> None:
    assert (
        message_text(language=language, template=None, code="482913", valid_minutes=minutes)
        == expected
    )


def test_template_replaces_only_the_code() -> None:
    text = message_text(
        language="en", template="Kode {code} for {minutes} {0}", code="0042", valid_minutes=5
    )
    assert text == "Kode 0042 for {minutes} {0}"


def test_email_subjects() -> None:
    assert [email_subject(language) for language in LANGUAGES] == [
        "Your one-time code",
        "Engangskoden din",
        "Eingongskoden din",
    ]


@pytest.mark.parametrize(
    ("seconds", "minutes"), [(60, 1), (119.9, 1), (120, 2), (300, 5), (900, 15)]
)
def test_whole_minutes_rounds_down(seconds: float, minutes: int) -> None:
    assert whole_minutes(seconds) == minutes


def test_expiry_boundary_is_exact() -> None:
    expires_at = datetime(2024, 10, 27, 1, 0, tzinfo=UTC)
    just_before = expires_at - timedelta(microseconds=1)
    assert effective_status(OtpStatus.PENDING, expires_at, just_before) is OtpStatus.PENDING
    assert effective_status(OtpStatus.PENDING, expires_at, expires_at) is OtpStatus.EXPIRED
    assert effective_status(OtpStatus.APPROVED, expires_at, expires_at) is OtpStatus.APPROVED
