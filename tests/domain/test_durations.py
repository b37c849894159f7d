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
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        (" 7 D ", timedelta(days=7)),
        ("0d", timedelta(0)),
    ],
)
def test_durations_read(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["90", "d", "1.5d", "-1d", "90 days", "1d2h", ""])
def test_bad_durations_rejected(text: str) -> None:
    with pytest.raises(InvalidDurationError, match="for example 90d"):
        parse_duration(text)
