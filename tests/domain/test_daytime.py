"""The daytime window 09:00-17:00 Europe/Oslo, on ordinary days and on daylight-saving days."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from budstikke.domain.daytime import is_daytime, next_daytime

# Norway leaves winter time (UTC+1) on 2026-03-29 and returns to it on 2026-10-25.
WINTER_DAY = "2026-01-15"
SPRING_FORWARD = "2026-03-29"
SUMMER_DAY = "2026-07-01"
FALL_BACK = "2026-10-25"
UTC_OFFSET_H = {WINTER_DAY: 1, SPRING_FORWARD: 2, SUMMER_DAY: 2, FALL_BACK: 1}


def oslo(day: str, clock: str) -> datetime:
    """Return the UTC moment of a wall-clock time in Oslo on one of the days above."""
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    local = datetime.fromisoformat(f"{day}T00:00:00+00:00").replace(
        hour=hours, minute=minutes, second=seconds
    )
    return local.replace(hour=hours - UTC_OFFSET_H[day])


@pytest.mark.parametrize("day", list(UTC_OFFSET_H))
@pytest.mark.parametrize(
    ("clock", "inside"),
    [("08:59:59", False), ("09:00:00", True), ("16:59:59", True), ("17:00:00", False)],
)
def test_window_edges(day: str, clock: str, inside: bool) -> None:
    assert is_daytime(oslo(day, clock)) is inside


@pytest.mark.parametrize("day", list(UTC_OFFSET_H))
def test_window_edges_in_utc(day: str) -> None:
    offset = UTC_OFFSET_H[day]
    start_utc = datetime.fromisoformat(f"{day}T00:00:00+00:00").replace(hour=9 - offset)
    assert start_utc.tzinfo is UTC
    assert is_daytime(start_utc)
    assert not is_daytime(start_utc.replace(hour=8 - offset, minute=59, second=59))


def test_inside_window_keeps_the_moment() -> None:
    moment = oslo(SUMMER_DAY, "12:34:56")
    assert next_daytime(moment) == moment


@pytest.mark.parametrize("day", list(UTC_OFFSET_H))
def test_before_nine_moves_to_same_day(day: str) -> None:
    assert next_daytime(oslo(day, "08:59:59")) == oslo(day, "09:00:00")


def test_evening_moves_to_next_morning() -> None:
    # 17:00 on the day before the spring change is UTC+1; 09:00 the next day is UTC+2.
    evening = datetime(2026, 3, 28, 16, 0, tzinfo=UTC)
    assert not is_daytime(evening)
    assert next_daytime(evening) == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)


def test_night_of_fall_back_moves_to_winter_morning() -> None:
    # 02:30 Oslo happens twice on 2026-10-25 (00:30 and 01:30 UTC); both wait for 08:00 UTC.
    for hour in (0, 1):
        night = datetime(2026, 10, 25, hour, 30, tzinfo=UTC)
        assert next_daytime(night) == datetime(2026, 10, 25, 8, 0, tzinfo=UTC)


def test_result_is_utc() -> None:
    assert next_daytime(oslo(WINTER_DAY, "18:00:00")).tzinfo is UTC
