"""Durations written for people on the command line: 90d, 12h, 30m, 45s."""

from __future__ import annotations

import re
from datetime import timedelta

DURATION = re.compile(r"\s*(\d{1,9})\s*([smhdw])\s*")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class InvalidDurationError(ValueError):
    """A duration that cannot be read; the message shows the accepted forms."""


def parse_duration(text: str) -> timedelta:
    """Read a whole number and one unit: s, m, h, d (days) or w (weeks)."""
    match = DURATION.fullmatch(text.lower())
    if match is None:
        raise InvalidDurationError(
            f"{text[:40]!r} is not a duration; write a whole number and a unit, "
            "for example 90d, 12h, 30m or 45s (units: s, m, h, d, w)"
        )
    return timedelta(seconds=int(match.group(1)) * UNIT_SECONDS[match.group(2)])
