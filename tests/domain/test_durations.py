"""Durations on the command line."""

from __future__ import annotations

from datetime import timedelta

import pytest

from budstikke.domain.durations import InvalidDurationError, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("30min", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        (" 7 D ", timedelta(days=7)),
        ("0d", timedelta(0)),
    ],
)
def test_durations_read(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["90", "d", "1.5d", "-1d", "90 days", "1d2h", "", "5mo", "3y", "min"]
)
def test_bad_durations_rejected(text: str) -> None:
    with pytest.raises(InvalidDurationError, match="for example 90d"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["1m", " 30M "])
def test_bare_m_rejected_as_ambiguous(text: str) -> None:
    with pytest.raises(InvalidDurationError) as raised:
        parse_duration(text)

    count = text.strip().lower().removesuffix("m")
    assert f"is ambiguous: write {count}min for minutes" in str(raised.value)
    assert "30d is about a month" in str(raised.value)
