"""RFC 3339 date-times: the accepted forms and the ISO 8601 forms that are not RFC 3339."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from budstikke.domain.date_times import InvalidDateTimeError, parse_date_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-06T10:00:00Z", datetime(2026, 12, 6, 10, tzinfo=UTC)),
        ("2026-12-06t10:00:00z", datetime(2026, 12, 6, 10, tzinfo=UTC)),
        ("2026-12-06T10:00:00-00:00", datetime(2026, 12, 6, 10, tzinfo=UTC)),
        (
            "2026-12-06T10:00:00+01:00",
            datetime(2026, 12, 6, 10, tzinfo=timezone(timedelta(hours=1))),
        ),
        (
            "2026-12-06T10:00:00-09:30",
            datetime(2026, 12, 6, 10, tzinfo=timezone(-timedelta(hours=9, minutes=30))),
        ),
        ("2026-12-06T10:00:00.5Z", datetime(2026, 12, 6, 10, 0, 0, 500000, tzinfo=UTC)),
        (
            "2026-12-06T10:00:00.123456789Z",
            datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=UTC),
        ),
    ],
)
def test_parse_date_time_accepts(text: str, expected: datetime) -> None:
    parsed = parse_date_time(text)

    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2026-W49-6T10:00:00Z", "not an RFC 3339 date-time"),
        ("2026-340T10:00:00Z", "not an RFC 3339 date-time"),
        ("2026-12-06T10:00:00+01:00:30", "not an RFC 3339 date-time"),
        ("2026-12-06T10:00Z", "not an RFC 3339 date-time"),
        ("2026-12-06 10:00:00Z", "not an RFC 3339 date-time"),
        ("20261206T100000Z", "not an RFC 3339 date-time"),
        ("2026-12-06T10:00:00+0100", "not an RFC 3339 date-time"),
        ("2026-12-06T10:00:00+01", "not an RFC 3339 date-time"),
        ("2026-12-06T10:00:00.Z", "not an RFC 3339 date-time"),
        (" 2026-12-06T10:00:00Z", "not an RFC 3339 date-time"),
        ("2026-12-06T10:00:00Z\n", "not an RFC 3339 date-time"),
        ("2026-12-06", "not an RFC 3339 date-time"),
        ("\uff12026-12-06T10:00:00Z", "not an RFC 3339 date-time"),
        ("2026-12-06T10:00:00", "offset is missing"),
        ("2026-02-30T10:00:00Z", "invalid date or time"),
        ("2026-12-06T24:00:00Z", "invalid date or time"),
        ("2026-12-31T23:59:60Z", "invalid date or time"),
        ("2026-12-06T10:00:00+24:00", "offset +24:00 is out of range"),
        ("2026-12-06T10:00:00+01:60", "offset +01:60 is out of range"),
    ],
)
def test_parse_date_time_rejects(text: str, reason: str) -> None:
    with pytest.raises(InvalidDateTimeError) as raised:
        parse_date_time(text)

    assert reason in str(raised.value)
