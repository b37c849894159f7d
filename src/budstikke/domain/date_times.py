"""RFC 3339 date-times as request fields carry them.

`datetime.fromisoformat` on Python 3.11 reads far more of ISO 8601 than
RFC 3339 allows: week dates, basic format without separators,
a space for the "T", missing seconds and offsets with seconds. A value in
one of those forms may mean something else to the client that sent it,
so only the RFC 3339 `date-time` production is accepted here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

# RFC 3339 section 5.6: full-date "T" full-time, where full-time ends in "Z"
# or a numeric offset of hours and minutes. "T" and "Z" may be lower case.
DATE_TIME_PATTERN = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"[Tt](?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})(?:\.(?P<fraction>\d+))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})?",
    re.ASCII,
)
MAX_OFFSET_HOURS = 23


class InvalidDateTimeError(ValueError):
    """A text is not an RFC 3339 date-time; the message names the part that is wrong."""


def parse_date_time(text: str) -> datetime:
    """Parse an RFC 3339 date-time with an offset or Z into an aware datetime.

    Fractional seconds are kept to the microsecond and cut beyond it. A leap
    second (:60) is rejected, because `datetime` cannot hold it. Raises
    InvalidDateTimeError without an offset, in another ISO 8601 form, or
    for a date or time that does not exist.
    """
    match = DATE_TIME_PATTERN.fullmatch(text)
    if match is None:
        raise InvalidDateTimeError("not an RFC 3339 date-time")
    offset = match["offset"]
    if offset is None:
        raise InvalidDateTimeError("the time-zone offset is missing")

    zone = parse_offset(offset)
    fraction = match["fraction"] or ""
    microsecond = int(fraction[:6].ljust(6, "0"))
    try:
        return datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"]),
            microsecond,
            tzinfo=zone,
        )
    except ValueError as error:
        raise InvalidDateTimeError(f"invalid date or time ({error})") from None


def parse_offset(text: str) -> timezone:
    """Return the time zone of an RFC 3339 offset: Z, or +hh:mm / -hh:mm."""
    if text in ("Z", "z"):
        return UTC
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > MAX_OFFSET_HOURS or minutes > 59:
        raise InvalidDateTimeError(f"the offset {text} is out of range")
    size = timedelta(hours=hours, minutes=minutes)
    return timezone(-size if text[0] == "-" else size)
