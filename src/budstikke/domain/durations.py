"""Durations written for people on the command line: 90d, 12h, 30min, 45s."""

from __future__ import annotations

import re
from datetime import timedelta

DURATION = re.compile(r"\s*(\d{1,9})\s*([a-z]+)\s*")
UNIT_SECONDS = {"s": 1, "min": 60, "h": 3600, "d": 86_400, "w": 604_800}
UNITS_HELP = "s, min, h, d (days) or w (weeks)"


class InvalidDurationError(ValueError):
    """A duration that cannot be read; the message shows the accepted forms."""


def parse_duration(text: str) -> timedelta:
    """Read a whole number and one unit: s, min, h, d (days) or w (weeks).

    A bare `m` is rejected, because "1m" reads as one month as often as one
    minute, and a purge of orders older than one minute removes nearly all.
    """
    match = DURATION.fullmatch(text.lower())
    if match is not None and match.group(2) in UNIT_SECONDS:
        return timedelta(seconds=int(match.group(1)) * UNIT_SECONDS[match.group(2)])
    if match is not None and match.group(2) == "m":
        count = match.group(1)
        raise InvalidDurationError(
            f"{text.strip()!r} is ambiguous: write {count}min for minutes, or days for months "
            f"(30d is about a month); the units are {UNITS_HELP}"
        )
    raise InvalidDurationError(
        f"{text[:40]!r} is not a duration; write a whole number and a unit, "
        f"for example 90d, 12h, 30min or 45s (units: {UNITS_HELP})"
    )
