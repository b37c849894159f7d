"""SMPP time strings (SMPP 3.4 section 7.1.1) for validity_period and receipts.

The format is YYMMDDhhmmsstnnp: year, month, day, hour, minute, second,
tenths of a second, the offset from UTC in quarter hours, and p. For p `+`
or `-` the time is absolute (local time at that offset from UTC). For p `R`
it is relative: an interval from now, which is what budstikke sends, so the
SMSC's clock does not matter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

# A relative interval keeps its days in DD, which has two digits, and SMPP
# gives no fixed length to a relative month, so intervals are limited to 99
# days and 23:59:59. budstikke's TTL is at most 2 days.
MAX_RELATIVE_SECONDS: Final = 99 * 86400 + 86399

_TIME_PATTERN: Final = re.compile(r"(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d)(\d{2})([-+R])")

# nn counts quarter hours from UTC; SMPP 3.4 allows 00 to 48.
_MAX_QUARTER_HOURS: Final = 48


def relative_validity_period(seconds: int) -> str:
    """Format a relative validity period: 300 gives 000000000500000R.

    Raises ValueError for an interval under 1 second or over MAX_RELATIVE_SECONDS.
    """
    if not 1 <= seconds <= MAX_RELATIVE_SECONDS:
        raise ValueError(
            f"a relative validity period must be 1 to {MAX_RELATIVE_SECONDS} seconds; got {seconds}"
        )
    days, remainder = divmod(seconds, 86400)
    hours, remainder = divmod(remainder, 3600)
    minutes, secs = divmod(remainder, 60)
    # Years and months stay 00; tenths 0, offset 00, p R.
    return f"0000{days:02d}{hours:02d}{minutes:02d}{secs:02d}000R"


@dataclass(frozen=True, slots=True)
class SmppTime:
    """A decoded SMPP time string: an absolute moment or a relative interval."""

    absolute: datetime | None
    relative: timedelta | None


def parse_smpp_time(text: str) -> SmppTime:
    """Parse a 16-character SMPP time string, raising ValueError when it is malformed."""
    match = _TIME_PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(f"SMPP time {text!r} is not in the form YYMMDDhhmmsstnnp")
    year, month, day, hour, minute, second, tenths, quarters = (int(g) for g in match.groups()[:8])
    sign = match.group(9)
    if sign == "R":
        if quarters != 0 or tenths != 0:
            # SMPP 3.4 7.1.1.2 fixes t and nn for relative times only loosely;
            # nothing but 0 and 00 has a meaning, so others are rejected.
            raise ValueError(f"relative SMPP time {text!r} must end in 000R")
        if month > 11 or day > 99 or hour > 23 or minute > 59 or second > 59:
            raise ValueError(f"relative SMPP time {text!r} has a field out of range")
        # NOTE: a relative year or month has no fixed length; 365 and 30 days are assumed.
        return SmppTime(
            absolute=None,
            relative=timedelta(
                days=year * 365 + month * 30 + day, hours=hour, minutes=minute, seconds=second
            ),
        )
    if quarters > _MAX_QUARTER_HOURS:
        raise ValueError(f"SMPP time {text!r} has a UTC offset over 12 hours")
    offset = timedelta(minutes=15 * quarters) * (1 if sign == "+" else -1)
    try:
        local = datetime(2000 + year, month, day, hour, minute, second, tenths * 100_000)
    except ValueError as exc:
        raise ValueError(f"SMPP time {text!r} is not a valid date: {exc}") from None
    return SmppTime(absolute=(local - offset).replace(tzinfo=UTC), relative=None)
