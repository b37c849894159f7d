"""Relative validity periods and SMPP time strings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from budstikke.channels.smpp.validity import (
    MAX_RELATIVE_SECONDS,
    parse_smpp_time,
    relative_validity_period,
)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (60, "000000000100000R"),
        (300, "000000000500000R"),
        (3599, "000000005959000R"),
        (86400, "000001000000000R"),
        (172800, "000002000000000R"),
        (1, "000000000001000R"),
    ],
)
def test_relative_validity_period(seconds: int, expected: str) -> None:
    assert relative_validity_period(seconds) == expected


def test_every_ttl_in_range_formats_and_parses_back() -> None:
    for seconds in range(60, 172801, 7):
        text = relative_validity_period(seconds)

        assert len(text) == 16
        assert text.endswith("000R")
        assert parse_smpp_time(text).relative == timedelta(seconds=seconds)


@pytest.mark.parametrize("seconds", [0, -1, MAX_RELATIVE_SECONDS + 1])
def test_relative_validity_period_out_of_range(seconds: int) -> None:
    with pytest.raises(ValueError, match="relative validity period"):
        relative_validity_period(seconds)


def test_parse_absolute_time_with_offset() -> None:
    parsed = parse_smpp_time("240601140000004+")

    assert parsed.absolute == datetime(2024, 6, 1, 13, 0, tzinfo=UTC)
    assert parsed.relative is None


def test_parse_absolute_time_negative_offset() -> None:
    parsed = parse_smpp_time("240601120000508-")

    assert parsed.absolute == datetime(2024, 6, 1, 14, 0, 0, 500000, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "000000000500000",  # 15 characters
        "000000000500000X",  # bad p
        "241301120000000+",  # month 13
        "240601120000049+",  # offset over 12 hours
        "000000250000000R",  # 25 hours
        "000000000500100R",  # tenths in a relative time
    ],
)
def test_parse_malformed_time(text: str) -> None:
    with pytest.raises(ValueError, match="SMPP time"):
        parse_smpp_time(text)
