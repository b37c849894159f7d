"""The daytime sending window of regular SMS: 09:00 to 17:00 in Norway (Europe/Oslo).

The window is read in local time through zoneinfo, so it moves with the
daylight-saving changes: 09:00 Oslo is 08:00 UTC in winter (CET, UTC+1) and
07:00 UTC in summer (CEST, UTC+2). Neither change touches the window,
because Norway switches at 02:00 and 03:00 local time.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

DAYTIME_ZONE = "Europe/Oslo"
DAYTIME_START = time(9, 0)
# The first moment outside the window: 16:59:59.999 is inside, 17:00:00 is not.
DAYTIME_END = time(17, 0)


@cache
def daytime_zone() -> ZoneInfo:
    return ZoneInfo(DAYTIME_ZONE)


def is_daytime(moment: datetime) -> bool:
    """Tell whether an aware moment lies in [09:00, 17:00) Oslo time."""
    local = moment.astimezone(daytime_zone())
    return DAYTIME_START <= local.time() < DAYTIME_END


def next_daytime(moment: datetime) -> datetime:
    """Return `moment` if it lies in the window, else the next 09:00 Oslo time, in UTC.

    Every day counts, weekends and public holidays included.
    """
    if is_daytime(moment):
        return moment.astimezone(UTC)
    local = moment.astimezone(daytime_zone())
    day = local.date() if local.time() < DAYTIME_START else local.date() + timedelta(days=1)
    start = datetime.combine(day, DAYTIME_START, tzinfo=daytime_zone())
    return start.astimezone(UTC)
