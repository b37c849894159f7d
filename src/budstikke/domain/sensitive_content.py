"""Detection of sensitive numbers that instant messages must not carry.

The first rule finds a Norwegian national identity number (fødselsnummer
or D-number): 11 digits whose two mod-11 check digits are valid, written
together or as 6 + 5 digits with one space or hyphen between. The second
finds a payment card number: 13 to 19 digits that pass the Luhn check, in
groups separated by single spaces or hyphens. Digits that belong to a longer
number do not match, and a one-time code of 4 to 10 digits matches
neither rule, because both need at least 11 digits.

The digits of a UUID and of a hexadecimal token of 16 or more characters
(a digest, a key id) are parts of an identifier, not numbers of their own,
and are not checked: a reference UUID or a digest in a message would
otherwise be rejected now and then (about 3 in 1,000 random UUIDs and 5 in
1,000 SHA-256 digests had digits that pass the Luhn check). Any other letter
next to a number ends the number, so "Fnr01019012480" is still found.

Only the check digits are tested, not the date in an identity number, so
about one in 120 random 11-digit numbers matches; the guard prefers a
rejected message over a leaked number. For the same reason a text with more
groups of digits in long numbers than the guard checks is rejected too,
which bounds the time one message can take to check.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import re
from dataclasses import dataclass
from enum import StrEnum

# Runs of ASCII digits with 11 or more digits, in groups separated by one
# space, no-break space or hyphen. Shorter runs match neither rule, and
# skipping them in the regular expression keeps many short numbers quick to scan.
LONG_DIGIT_RUN = re.compile(
    r"(?<![0-9])(?=[0-9](?:[ \u00a0-]?[0-9]){10})[0-9]+(?:[ \u00a0-][0-9]+)*(?![0-9])"
)
# A UUID in its usual form, or a hexadecimal token of 16 or more characters,
# with no letter or digit around it. Only one with a letter from a to f is an
# identifier (`mask_identifier`). A token of digits only is a number.
HEX_TOKEN = re.compile(
    r"(?<![0-9A-Za-z])"
    r"(?:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    r"|[0-9A-Fa-f]{16,})"
    r"(?![0-9A-Za-z])"
)
HEX_LETTER = re.compile(r"[A-Fa-f]")
GROUP_SEPARATORS = (" ", "\u00a0", "-")
GROUP_SEPARATOR = re.compile(r"[ \u00a0-]")

IDENTITY_NUMBER_LENGTH = 11
# Weights of the first and the second check digit (the second also weighs the first).
IDENTITY_WEIGHTS_1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
IDENTITY_WEIGHTS_2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
# The separated form is the birth date (6 digits), then the personal number (5 digits).
IDENTITY_DATE_DIGITS = 6
MIN_CARD_DIGITS = 13
MAX_CARD_DIGITS = 19
# Printed card numbers have 1 to 5 groups (4-4-4-4, 4-6-5, 4-4-4-4-3).
MAX_CARD_GROUPS = 5
# Each group of a long run costs a few microseconds to check, so this many
# take a few tens of milliseconds. A message written for people has far fewer.
MAX_CHECKED_GROUPS = 10_000
# The Luhn value of a digit in an even position from the right: doubled, minus 9 above 9.
LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")


class SensitiveRule(StrEnum):
    NATIONAL_IDENTITY_NUMBER = "national_identity_number"
    PAYMENT_CARD_NUMBER = "payment_card_number"
    TOO_MANY_NUMBERS = "too_many_numbers"


RULE_DESCRIPTIONS = {
    SensitiveRule.NATIONAL_IDENTITY_NUMBER: "a Norwegian national identity number "
    "(11 digits with valid check digits)",
    SensitiveRule.PAYMENT_CARD_NUMBER: "a payment card number (13 to 19 digits that pass the "
    "Luhn check)",
    SensitiveRule.TOO_MANY_NUMBERS: f"more long numbers than the guard checks (over "
    f"{MAX_CHECKED_GROUPS:,} groups of digits in numbers of 11 digits or more)",
}


@dataclass(frozen=True, slots=True)
class SensitiveMatch:
    """Where a rule matched; the digits are left out so that a log line cannot carry them."""

    rule: SensitiveRule
    start: int
    end: int

    @property
    def description(self) -> str:
        return RULE_DESCRIPTIONS[self.rule]


def find_sensitive_content(text: str) -> SensitiveMatch | None:
    """Return the first identity or card number in the text, or None."""
    checked_groups = 0
    if LONG_DIGIT_RUN.search(text) is None:
        return None
    masked = HEX_TOKEN.sub(mask_identifier, text)
    for run in LONG_DIGIT_RUN.finditer(masked):
        digits = run.group()
        checked_groups += 1 + sum(map(digits.count, GROUP_SEPARATORS))
        if checked_groups > MAX_CHECKED_GROUPS:
            return SensitiveMatch(SensitiveRule.TOO_MANY_NUMBERS, run.start(), run.end())
        groups = GROUP_SEPARATOR.split(digits)
        rule = match_identity_number(groups) or match_card_number(groups)
        if rule is not None:
            return SensitiveMatch(rule, run.start(), run.end())
    return None


def mask_identifier(token: re.Match[str]) -> str:
    """Return a hexadecimal identifier as letters of the same length, and a number unchanged.

    The length stays, so the positions reported for what is found stay right.
    """
    found = token.group()
    if HEX_LETTER.search(found) is None:
        return found
    return "x" * len(found)


def match_identity_number(groups: list[str]) -> SensitiveRule | None:
    """Check every group of 11 digits, and every pair of 6 + 5 digits, of one run."""
    candidates = [group for group in groups if len(group) == IDENTITY_NUMBER_LENGTH]
    candidates += [
        first + second
        for first, second in itertools.pairwise(groups)
        if len(first) == IDENTITY_DATE_DIGITS
        and len(second) == IDENTITY_NUMBER_LENGTH - IDENTITY_DATE_DIGITS
    ]
    if any(is_identity_number(candidate) for candidate in candidates):
        return SensitiveRule.NATIONAL_IDENTITY_NUMBER
    return None


def match_card_number(groups: list[str]) -> SensitiveRule | None:
    """Check every span of whole groups that has 13 to 19 digits.

    Spans of whole groups find a card number written after other digits of
    the same run ("order 12 4111 1111 1111 1111") without matching digits
    inside a longer unseparated number. A span has at most MAX_CARD_GROUPS
    groups, and the spans are found by bisecting the running digit counts,
    which keeps a megabyte of "1 1 1 ..." quick to scan.
    """
    ends = list(itertools.accumulate(map(len, groups), initial=0))
    for first in range(len(groups)):
        shortest = bisect.bisect_left(ends, ends[first] + MIN_CARD_DIGITS)
        longest = bisect.bisect_right(ends, ends[first] + MAX_CARD_DIGITS)
        for end in range(shortest, min(longest, first + MAX_CARD_GROUPS + 1)):
            if passes_luhn("".join(groups[first:end])):
                return SensitiveRule.PAYMENT_CARD_NUMBER
    return None


def is_identity_number(digits: str) -> bool:
    """Tell whether 11 digits carry the two valid mod-11 check digits of an identity number."""
    if len(digits) != IDENTITY_NUMBER_LENGTH or not digits.isascii() or not digits.isdigit():
        return False
    values = list(map(int, digits))
    first = mod11_check_digit(values[:9], IDENTITY_WEIGHTS_1)
    if first is None or first != values[9]:
        return False
    second = mod11_check_digit(values[:10], IDENTITY_WEIGHTS_2)
    return second is not None and second == values[10]


def mod11_check_digit(values: list[int], weights: tuple[int, ...]) -> int | None:
    """Return the mod-11 check digit, or None where the rule gives 10 (no valid number)."""
    remainder = sum(map(operator.mul, values, weights)) % 11
    check = (11 - remainder) % 11
    return None if check == 10 else check


def passes_luhn(digits: str) -> bool:
    total = sum(map(int, digits[-1::-2])) + sum(map(int, digits[-2::-2].translate(LUHN_DOUBLED)))
    return total % 10 == 0
